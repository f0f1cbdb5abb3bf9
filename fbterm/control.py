"""The local control socket: how ``fbterm update``, ``fbterm status`` and the other operator
commands reach a running engine.

A Unix stream socket created owner-only (mode 0600, in a directory no other user may write to;
one we create is 0700), speaking JSON lines: each request is one line ``{"id": ..., "cmd":
"update", ...}`` and gets one response line ``{"id": ..., "ok": true, "result": ...}`` or
``{"id": ..., "ok": false, "error": "..."}``. The server also checks the peer's uid where the
OS tells us (SO_PEERCRED), so a permissive umask or a copied socket file is not enough to drive
someone else's engine.

The socket path is checked before anything is done with it (:func:`check_socket_path`): a path
that names an existing file that is not a socket is refused, never deleted (``control.socket``
pointed at the journal must not cost the journal); a stale socket is replaced only when nobody
answers on it; a path too long for ``sockaddr_un`` is an error, not a silent failure.

At most ``max_connections`` connections are served at once, each on its own thread and each
closed after ``idle_timeout`` seconds without a request; one more is told so and closed, so a
flood of half-open connections costs a refusal each, not a thread each.

Handlers run on the connection threads: a handler that touches trading state must hand the work
to the engine thread and wait for the answer (the engine owns that state).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import stat
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MAX_LINE = 1 << 20  # a request is a few hundred bytes; refuse anything absurd
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL
MAX_CONNECTIONS = 8
IDLE_TIMEOUT = 10.0

Handler = Callable[[dict[str, Any]], Any]


class ControlError(Exception):
    """The control socket could not be reached, or the engine answered with an error."""


class NoEngine(ControlError):
    """Nothing is serving the control socket: no engine is running there."""


def check_socket_path(path: Path) -> None:
    """Refuse a control socket path we could not (or must not) serve: one line saying why.

    Checked at ``check-config``, at start and by the server itself, so the same path gets the
    same verdict everywhere. An existing socket is fine (a running or a stale engine's).
    """
    raw = os.fsencode(str(path))
    if b"\0" in raw:
        raise ControlError(f"control socket path contains a NUL byte: {str(path)!r}")
    if len(raw) > SUN_PATH_MAX:
        raise ControlError(
            f"control socket path is too long for a Unix socket ({len(raw)} bytes > "
            f"{SUN_PATH_MAX}): {path}; set control.socket to a shorter path"
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ControlError(f"control socket {path}: {e.strerror}") from None
    else:
        if not stat.S_ISSOCK(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "a file that is not a socket"
            raise ControlError(
                f"control socket {path} is {what}; refusing to replace it "
                "(control.socket must name a socket path of its own)"
            )
        if st.st_uid != os.getuid():
            raise ControlError(f"control socket {path} belongs to another user")
    parent = _existing_ancestor(path.parent)
    if parent is not None and parent == path.parent:
        pst = os.stat(parent)
        if not stat.S_ISDIR(pst.st_mode):
            raise ControlError(f"control socket folder {parent} is not a directory")
        if pst.st_uid != os.getuid() or pst.st_mode & 0o022:
            raise ControlError(
                f"control socket folder {parent} may be written by other users; "
                "use a private folder for control.socket"
            )


def _existing_ancestor(p: Path) -> Path | None:
    for candidate in (p, *p.parents):
        if candidate.exists():
            return candidate
    return None


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        # A read that waits longer than this ends the connection and frees its slot.
        self.request.settimeout(self.server.idle_timeout)
        super().setup()

    def handle(self) -> None:
        try:
            self._handle()
        except OSError:  # timed out, or the peer went away: nothing to answer
            return

    def _handle(self) -> None:
        if not self.server.peer_allowed(self.request):
            self._send({"id": None, "ok": False, "error": "permission denied"})
            return
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                self._send({"id": None, "ok": False, "error": "request too large"})
                return
            if not line.strip():
                continue
            self._send(self.server.dispatch(line))

    def _send(self, obj: dict[str, Any]) -> None:
        self.wfile.write((json.dumps(obj, default=str) + "\n").encode())
        self.wfile.flush()


class _Server(socketserver.UnixStreamServer):
    allow_reuse_address = False
    request_queue_size = 64  # the kernel's queue for a burst; beyond it a connect fails at once

    def __init__(
        self,
        path: str,
        handlers: Mapping[str, Handler],
        *,
        max_connections: int,
        idle_timeout: float,
    ) -> None:
        self.handlers = dict(handlers)
        self.socket_path = path
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        super().__init__(path, _RequestHandler, bind_and_activate=False)

    def server_bind(self) -> None:
        # The umask makes bind() create the socket file as 0600 from the start: chmod after
        # bind would leave a moment in which another local user could connect. The umask is
        # process-wide, but for these microseconds it can only make other files stricter.
        old = os.umask(0o177)
        try:
            super().server_bind()
        finally:
            os.umask(old)
        os.chmod(self.socket_path, 0o600)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self._refuse(request)
            return
        t = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="fbterm-control-conn",
            daemon=True,
        )
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a broken connection must not reach stderr as a traceback
            pass
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        msg = {
            "id": None,
            "ok": False,
            "error": f"busy: {self.max_connections} control connections are open; try again",
        }
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall((json.dumps(msg) + "\n").encode())
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Nothing to print: a failed connection is the client's business."""

    def peer_allowed(self, sock: socket.socket) -> bool:
        if not hasattr(socket, "SO_PEERCRED"):
            return True  # file permissions are the guard on platforms without peer credentials
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == os.getuid())

    def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except ValueError as e:
            return {"id": None, "ok": False, "error": f"not JSON: {e}"}
        if not isinstance(req, dict):
            return {"id": None, "ok": False, "error": "a request is a JSON object"}
        rid = req.get("id")
        cmd = req.get("cmd")
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"id": rid, "ok": False, "error": f"unknown command {cmd!r} (known: {known})"}
        try:
            return {"id": rid, "ok": True, "result": handler(req)}
        except Exception as e:  # an error is an answer, not a dead connection
            return {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}


class ControlServer:
    """Serve ``handlers`` (command name -> callable(request dict) -> JSON-able result) on ``path``.

    ``ping`` is built in. ``start()`` refuses a path that is not a socket, and a socket another
    live process serves.
    """

    def __init__(
        self,
        path: Path | str,
        handlers: Mapping[str, Handler] | None = None,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.handlers: dict[str, Handler] = {"ping": self._ping, **(handlers or {})}
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _ping(_req: dict[str, Any]) -> dict[str, Any]:
        from fbterm import __version__

        return {"pid": os.getpid(), "version": __version__}

    @property
    def refused(self) -> int:
        """Connections turned away because ``max_connections`` were open."""
        return self._server.refused if self._server is not None else 0

    def start(self) -> None:
        check_socket_path(self.path)
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700)
            os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
        if os.path.lexists(self.path):
            # check_socket_path let it through, so it is a socket of ours: live or stale.
            if _is_alive(self.path):
                raise ControlError(f"another fbterm is serving {self.path}")
            self.path.unlink()  # left behind by a crashed instance
        self._server = _Server(
            str(self.path),
            self.handlers,
            max_connections=self.max_connections,
            idle_timeout=self.idle_timeout,
        )
        try:
            self._server.server_bind()
            self._server.server_activate()
        except OSError:
            self._server.server_close()
            self._server = None
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="fbterm-control",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                self.path.unlink()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_alive(path: Path) -> bool:
    """Whether a process answers on the socket. Only a refusal proves it dead: a connect that
    times out (a full backlog) is someone busy, and their socket must not be taken."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True
    finally:
        s.close()


class ControlClient:
    """One connection to a running engine; ``request`` sends a command and returns its result."""

    def __init__(self, path: Path | str, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._next_id = 0

    def connect(self) -> None:
        raw = os.fsencode(str(self.path))
        if b"\0" in raw:
            raise ControlError(f"control socket path contains a NUL byte: {str(self.path)!r}")
        if len(raw) > SUN_PATH_MAX:
            raise ControlError(
                f"control socket path is too long for a Unix socket ({len(raw)} bytes > "
                f"{SUN_PATH_MAX}): {self.path}"
            )
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except FileNotFoundError:
            s.close()
            raise NoEngine(f"no running fbterm: {self.path} does not exist") from None
        except ConnectionRefusedError:
            s.close()
            raise NoEngine(f"no running fbterm is listening on {self.path}") from None
        except PermissionError:
            s.close()
            raise ControlError(
                f"permission denied on {self.path} (owned by another user?)"
            ) from None
        self._sock = s
        self._file = s.makefile("rb")

    def request(self, cmd: str, **args: Any) -> Any:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._next_id += 1
        rid = self._next_id
        payload = json.dumps({**args, "cmd": cmd, "id": rid}, default=str) + "\n"
        try:
            # The server may have spoken first and hung up (too many connections): its last
            # line says why, and is a better error than a broken pipe.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._sock.sendall(payload.encode())
            line = self._file.readline(MAX_LINE + 1)
        except TimeoutError:
            raise ControlError(f"no answer from the engine within {self.timeout:g}s") from None
        except OSError as e:
            raise ControlError(f"control socket error: {e}") from None
        if not line:
            raise ControlError("the engine closed the connection")
        try:
            resp = json.loads(line)
        except ValueError:
            raise ControlError("the engine sent a malformed answer") from None
        if not resp.get("ok"):
            raise ControlError(str(resp.get("error", "unknown error")))
        return resp.get("result")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_request(path: Path | str, cmd: str, timeout: float = 30.0, **args: Any) -> Any:
    """Connect, send one command, return its result (raises ControlError)."""
    with ControlClient(path, timeout) as c:
        return c.request(cmd, **args)


if sys.platform == "win32":  # pragma: no cover
    raise ImportError("fbterm.control needs Unix domain sockets")
