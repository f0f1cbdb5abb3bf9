"""The control socket never deletes what is not its own socket, refuses paths it cannot serve
(at check-config and at start), lives 0600 in a 0700 folder, and caps its connections: a
flood of idle connections costs a refusal each, not a thread each. Real Unix sockets."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from fbterm.cli import main
from fbterm.control import ControlError, ControlServer, check_socket_path, send_request

pytestmark = pytest.mark.timeout(60)


def test_a_regular_file_at_the_socket_path_is_refused_and_kept(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    journal.write_bytes(b"SQLite format 3\x00precious")
    with pytest.raises(ControlError, match="is a file that is not a socket; refusing to replace"):
        ControlServer(journal).start()
    assert journal.read_bytes() == b"SQLite format 3\x00precious"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(ControlError, match="is a directory"):
        ControlServer(folder).start()
    link = tmp_path / "link.sock"
    link.symlink_to(journal)
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(link).start()
    assert link.is_symlink() and journal.read_bytes().endswith(b"precious")


def test_an_engine_told_to_serve_on_its_journal_keeps_the_journal(
    tmp_path: Path, make_config: Callable[..., Any]
) -> None:
    from fbterm.engine import Engine

    j = tmp_path / "journal.sqlite"
    cfg = make_config(
        journal={"path": str(j)},
        log={"path": str(tmp_path / "activity.jsonl")},
        control={"socket": str(j)},
    )
    e = Engine(cfg)
    e.start(control=True)
    try:
        assert e.control is None
        lines = [line.message for line in e.activity.lines]
        assert any("control socket not served" in m and "not a socket" in m for m in lines)
        assert j.is_file()
    finally:
        e.stop()
    assert j.is_file() and j.stat().st_size > 0


@pytest.mark.usefixtures("tmp_cwd")
def test_check_config_and_run_refuse_bad_socket_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    j = tmp_path / "journal.sqlite"
    j.write_bytes(b"")
    long_dir = tmp_path / ("d" * 110)
    cases = {
        str(j): "is a file that is not a socket",
        str(long_dir / "c.sock"): "too long for a Unix socket",
    }
    for path, why in cases.items():
        conf = tmp_path / "c.toml"
        conf.write_text(f'[journal]\npath = "{j}"\n[control]\nsocket = "{path}"\n')
        for argv in (["check-config", str(conf)], ["run", "--headless", "--config", str(conf)]):
            assert main(argv) == 2
            [line] = capsys.readouterr().err.splitlines()
            assert line.startswith(f"fbterm: {conf}: control.socket: ") and why in line
    assert j.read_bytes() == b""


def test_a_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ControlError, match="may be written by other users"):
        check_socket_path(shared / "c.sock")
    own = tmp_path / "own"
    own.mkdir()
    own.chmod(0o755)
    check_socket_path(own / "c.sock")  # readable by others is fine: the socket itself is 0600


def test_the_default_socket_is_0600_in_a_0700_folder(make_config: Callable[..., Any]) -> None:
    cfg = make_config()
    path = cfg.control_socket_path
    assert path.parent.name == "run"
    with ControlServer(path):
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert send_request(path, "ping", timeout=5)["pid"] == os.getpid()


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s


def _read_line(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _conn_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "fbterm-control-conn")


def test_connections_over_the_cap_are_refused_without_a_thread(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    server = ControlServer(path, max_connections=4, idle_timeout=30.0)
    server.start()
    held: list[socket.socket] = []
    try:
        held = [_connect(path) for _ in range(4)]  # half-open: connected, never a request
        wait_until(lambda: _conn_threads() == 4, "four connections served")
        for _ in range(200):
            s = _connect(path)
            answer = json.loads(_read_line(s))
            assert answer["ok"] is False and answer["error"].startswith("busy: 4 control")
            assert s.recv(1) == b""  # and closed
            s.close()
        assert _conn_threads() == 4
        assert server.refused == 200
        # A burst, never read: the kernel queues what it can, the rest fail at connect.
        burst = []
        for _ in range(2000):
            with contextlib.suppress(BlockingIOError):
                burst.append(_connect(path))
        assert burst and _conn_threads() == 4
        for s in burst:
            s.close()
        wait_until(lambda: server.refused >= 200 + len(burst), "the burst refused")
        with pytest.raises(ControlError, match="busy"):
            send_request(path, "ping", timeout=5)
        for s in held:
            s.close()
        held = []
        wait_until(lambda: _conn_threads() == 0, "slots freed")
        assert send_request(path, "ping", timeout=5)["pid"] == os.getpid()
    finally:
        for s in held:
            s.close()
        server.stop()


def test_an_idle_connection_is_closed_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with ControlServer(path, max_connections=2, idle_timeout=0.3):
        idle = [_connect(path) for _ in range(2)]
        for s in idle:
            assert s.recv(1) == b""  # the server hung up on it
            s.close()
        wait_until(lambda: _conn_threads() == 0, "slots freed")
        assert send_request(path, "ping", timeout=5)["pid"] == os.getpid()


def test_a_stale_socket_is_replaced_only_when_nobody_answers(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    with ControlServer(path):
        with pytest.raises(ControlError, match="another fbterm is serving"):
            ControlServer(path).start()
        assert send_request(path, "ping", timeout=5)["pid"] == os.getpid()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a killed process leaves
    stale.close()
    with ControlServer(path):
        assert send_request(path, "ping", timeout=5)["pid"] == os.getpid()
