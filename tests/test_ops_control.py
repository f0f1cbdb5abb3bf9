"""The control socket: owner-only permissions, JSON-lines request/response, stale sockets."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from fbterm.control import ControlClient, ControlError, ControlServer, send_request

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sock_path(tmp_path):
    return tmp_path / "run" / "c.sock"


def test_socket_is_0600_in_a_0700_dir_and_round_trips(sock_path):
    calls = []

    def echo(req):
        calls.append((req["cmd"], req["x"], threading.current_thread().name))
        return {"x2": req["x"] * 2}

    with ControlServer(sock_path, {"echo": echo}):
        mode = os.stat(sock_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) == 0o700
        with ControlClient(sock_path, timeout=5) as c:
            assert c.request("echo", x=21) == {"x2": 42}
            assert c.request("echo", x="ab") == {"x2": "abab"}  # several requests, one connection
            assert c.request("ping")["pid"] == os.getpid()
        assert send_request(sock_path, "echo", timeout=5, x=1) == {"x2": 2}
    assert [c[:2] for c in calls] == [("echo", 21), ("echo", "ab"), ("echo", 1)]
    assert not sock_path.exists()  # removed on stop


def test_errors_are_answers_not_dead_connections(sock_path):
    def boom(req):
        raise ValueError("no such order o-9")

    with ControlServer(sock_path, {"boom": boom}), ControlClient(sock_path, timeout=5) as c:
        with pytest.raises(ControlError, match="ValueError: no such order o-9"):
            c.request("boom")
        with pytest.raises(ControlError, match="unknown command 'nope'"):
            c.request("nope")
        assert c.request("ping")["version"]  # the connection survived both


def test_malformed_request_lines(sock_path):
    with ControlServer(sock_path), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock_path))
        f = s.makefile("rwb")
        f.write(b"not json\n[1, 2]\n")
        f.flush()
        first, second = f.readline(), f.readline()
    assert b'"ok": false' in first and b"not JSON" in first
    assert b"a request is a JSON object" in second


def test_refuses_a_live_socket_and_replaces_a_stale_one(sock_path):
    with ControlServer(sock_path), pytest.raises(ControlError, match="another fbterm"):
        ControlServer(sock_path).start()
    # A crashed instance leaves its socket file behind; nobody listens on it.
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()
    assert sock_path.exists()
    with ControlServer(sock_path):
        assert send_request(sock_path, "ping", timeout=5)["pid"] == os.getpid()


def test_client_errors_are_one_liners(tmp_path):
    with pytest.raises(ControlError, match="does not exist"):
        send_request(tmp_path / "missing.sock", "ping", timeout=2)
    with pytest.raises(ControlError, match="too long"):
        send_request(tmp_path / ("x" * 120) / "c.sock", "ping", timeout=2)
