"""The console in a real terminal: tmux at 80x24 with TERM=xterm, keys sent, pane captured.

Then the terminal is taken away (the tmux session is killed, so the console gets SIGHUP as on
an SSH drop): fbterm must exit by itself, stop the engine and leave a consistent journal whose
write-ahead log was checkpointed and removed (SQLite does that only on a clean close).
Works under CI=true too: tmux runs detached and needs no terminal of its own.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tui_support import terminal_env
from waiting import wait_until

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.timeout(120),
]


def _tmux(sock: str, *args: str) -> str:
    out = subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=20)
    return out.stdout


def _wait_screen(sock: str, needle: str, bound: float = 30.0) -> str:
    last = [""]

    def shown() -> str | None:
        last[0] = _tmux(sock, "capture-pane", "-p", "-t", "fb")
        return last[0] if needle in last[0] else None

    try:
        return wait_until(shown, repr(needle), bound)
    except AssertionError:
        raise AssertionError(f"{needle!r} never appeared; the pane shows:\n{last[0]}") from None


def _wait_gone(sock: str, needle: str, bound: float = 30.0) -> None:
    wait_until(
        lambda: needle not in _tmux(sock, "capture-pane", "-p", "-t", "fb"),
        f"{needle!r} to leave the screen",
        bound,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the tmux server) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_console_in_tmux_then_hangup(tmp_path: Path, fbterm_home: Path) -> None:
    sock = f"fbterm-test-{os.getpid()}"
    journal = tmp_path / "journal.sqlite"
    env = terminal_env(fbterm_home, tmp_path)  # tmux starts the console with only this
    exports = " ".join(f"{k}={v!s}" for k, v in env.items())
    cmd = f"exec env -i {exports} {sys.executable} -m fbterm --journal {journal}"
    try:
        _tmux(sock, "new-session", "-d", "-x", "80", "-y", "24", "-s", "fb", cmd)
        pid = int(_tmux(sock, "display-message", "-p", "-t", "fb", "#{pane_pid}").strip())
        _wait_screen(sock, "Quit")
        screen = _wait_screen(sock, "AAPL")
        assert "PAPER" in screen and "ACTIVE" in screen and "Positions" in screen
        # Every line fits 80 columns; the footer shows the critical keys.
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert "Halt" in screen and "Quit" in screen
        # Keys typed while the terminal is still answering Textual's start-up queries can be
        # eaten by the terminal-response parser; resend only while the screen still says ACTIVE.
        for _ in range(3):
            _tmux(sock, "send-keys", "-t", "fb", "h")
            try:
                _wait_screen(sock, "TRADING HALTED", bound=5.0)
                break
            except AssertionError:
                assert "HALTED" not in _tmux(sock, "capture-pane", "-p", "-t", "fb")
        _wait_screen(sock, "TRADING HALTED")
        _tmux(sock, "send-keys", "-t", "fb", "4")
        _wait_screen(sock, "drawdown")
        _tmux(sock, "kill-session", "-t", "fb")  # the terminal goes away: SIGHUP
        wait_until(lambda: not _alive(pid), "fbterm to exit after its terminal was gone")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=20)
    assert journal.exists()
    assert not Path(f"{journal}-wal").exists() or Path(f"{journal}-wal").stat().st_size == 0
    con = sqlite3.connect(journal)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def _start(sock: str, tmp_path: Path, fbterm_home: Path, term: str, size: tuple[int, int]) -> None:
    env = terminal_env(fbterm_home, tmp_path, term)
    exports = " ".join(f"{k}={v!s}" for k, v in env.items())
    cmd = f"exec env -i {exports} {sys.executable} -m fbterm --journal {tmp_path / 'j.sqlite'}"
    w, h = size
    _tmux(sock, "new-session", "-d", "-x", str(w), "-y", str(h), "-s", "fb", cmd)


def _send_until(sock: str, keys: list[str], needle: str) -> str:
    """Send keys (one send-keys call: one burst) until ``needle`` shows; Textual may eat keys
    that arrive while it is still asking the terminal about itself at start-up."""
    for _ in range(3):
        _tmux(sock, "send-keys", "-t", "fb", *keys)
        try:
            return _wait_screen(sock, needle, bound=5.0)
        except AssertionError:
            continue
    return _wait_screen(sock, needle)


def test_a_burst_through_a_real_terminal_lands_field_by_field(
    tmp_path: Path, fbterm_home: Path
) -> None:
    sock = f"fbterm-burst-{os.getpid()}"
    try:
        _start(sock, tmp_path, fbterm_home, "xterm", (80, 24))
        _wait_screen(sock, "AAPL")
        _send_until(sock, ["2", "n"], "New order")
        # One send-keys call: tmux writes it to the terminal in one go, like a paste.
        _tmux(sock, "send-keys", "-t", "fb", "MSFT", "Tab", "s", "Tab", "l", "Tab", "10")
        _tmux(sock, "send-keys", "-t", "fb", "Tab", "415", "Enter")
        screen = _wait_screen(sock, "Transmit this order?")
        assert "SELL 10 MSFT LMT 415.00 DAY" in screen
        _tmux(sock, "send-keys", "-t", "fb", "Escape")  # back to the ticket: what was typed
        _wait_screen(sock, "Quantity  10 ")
        _wait_screen(sock, "Limit     415 ")
        _tmux(sock, "send-keys", "-t", "fb", "Escape")
        _wait_gone(sock, "Send (enter)")
        _tmux(sock, "send-keys", "-t", "fb", "C-p")
        _wait_screen(sock, "Search for commands")
        _tmux(sock, "send-keys", "-t", "fb", "filt")
        _wait_screen(sock, "Filter [/]")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=20)


def test_dumb_terminal_gets_ascii_without_colour(tmp_path: Path, fbterm_home: Path) -> None:
    sock = f"fbterm-dumb-{os.getpid()}"
    try:
        _start(sock, tmp_path, fbterm_home, "dumb", (80, 24))
        _wait_screen(sock, "AAPL")
        _wait_screen(sock, "Quit")
        screen = _tmux(sock, "capture-pane", "-p", "-t", "fb")
        assert screen.isascii(), sorted({c for c in screen if not c.isascii()})
        styled = _tmux(sock, "capture-pane", "-p", "-e", "-t", "fb")
        assert "38;2;" not in styled and "48;2;" not in styled  # no 24-bit colour
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=20)
