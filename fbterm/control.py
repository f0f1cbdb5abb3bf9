"""The local control socket: how ``fbterm update`` (and other CLI commands) reach a running engine.

A Unix stream socket created owner-only (mode 0600, in a 0700 directory where we create it),
speaking JSON lines: each request is one line ``{"id": ..., "cmd": "update", ...}`` and gets one
response line ``{"id": ..., "ok": true, "result": ...}`` or ``{"id": ..., "ok": false, "error":
"..."}``. The server also checks the peer's uid where the OS tells us (SO_PEERCRED), so a
permissive umask or a copied socket file is not enough to drive someone else's engine.

Handlers run on the server's connection threads: a handler that touches trading state must hand
the work to the engine thread and wait for the answer (the engine owns that state).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MAX_LINE = 1 << 20  # a request is a few hundred bytes; refuse anything absurd
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL

Handler = Callable[[dict[str, Any]], Any]


class ControlError(Exception):
    """The control socket could not be reached, or the engine answered with an error."""


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(str(path))) > _SUN_PATH_MAX:
        raise ControlError(
            f"control socket path is too long for a Unix socket ({len(str(path))} > {_SUN_PATH_MAX}): {path}"
        )


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
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


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: str, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)
        self.socket_path = path
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

    ``ping`` is built in. ``start()`` refuses to take over a socket another live process serves.
    """

    def __init__(self, path: Path | str, handlers: Mapping[str, Handler] | None = None) -> None:
        self.path = Path(path)
        self.handlers: dict[str, Handler] = {"ping": self._ping, **(handlers or {})}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _ping(_req: dict[str, Any]) -> dict[str, Any]:
        from fbterm import __version__

        return {"pid": os.getpid(), "version": __version__}

    def start(self) -> None:
        _check_path_length(self.path)
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700)
        if self.path.exists() or self.path.is_symlink():
            if _is_alive(self.path):
                raise ControlError(f"another fbterm is serving {self.path}")
            self.path.unlink()  # left behind by a crashed instance
        self._server = _Server(str(self.path), self.handlers)
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
            self.path.unlink()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
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
        _check_path_length(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except FileNotFoundError:
            s.close()
            raise ControlError(f"no running fbterm: {self.path} does not exist") from None
        except ConnectionRefusedError:
            s.close()
            raise ControlError(f"no running fbterm is listening on {self.path}") from None
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
