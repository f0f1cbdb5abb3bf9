"""The console's terminal goes away while no SIGHUP reaches the console: the real `fbterm`
process on a real pty whose session leader (a shell that traps SIGHUP, as some login setups
and wrappers do) outlives the connection. Before the hang-up guard the console spun on with a
dead terminal, trading and deaf to SIGTERM; now it leaves with 129 and the journal records a
clean end of the session. Nothing is mocked."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import sqlite3
import struct
import sys
import termios
import threading
from pathlib import Path

import pytest
from tui_support import terminal_env
from waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def test_a_terminal_that_hangs_up_without_a_signal_ends_the_console(
    tmp_path: Path, fbterm_home: Path
) -> None:
    journal = tmp_path / "journal.sqlite"
    status = tmp_path / "status"
    env = terminal_env(fbterm_home, tmp_path)
    # The shell is the session leader: the kernel's SIGHUP goes to it, it traps it and waits,
    # and fbterm (in the foreground) gets no signal at all.
    script = f"trap 'true' HUP; {sys.executable} -m fbterm --journal {journal}; echo $? > {status}"
    pid, master = pty.fork()
    if pid == 0:  # the child: exec at once (nothing else is safe after a fork)
        os.execve("/bin/bash", ["bash", "-c", script], env)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    screen = bytearray()
    stop = threading.Event()

    def drain() -> None:  # a terminal that is read, as a real one is
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    screen.extend(os.read(master, 65536))
                except OSError:
                    return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_until(lambda: b"Quit" in screen and b"AAPL" in screen, "the console on the pty", 90)
        wait_until(lambda: _orders(journal) > 0, "the default strategies to trade", 90)
    finally:
        stop.set()
        reader.join(timeout=10)
        os.close(master)  # the connection drops: the terminal hangs up
    try:
        wait_until(lambda: status.exists() and status.read_text().strip(), "fbterm to exit", 60)
        assert status.read_text().strip() == "129"
    finally:
        os.waitpid(pid, 0)
    con = sqlite3.connect(journal)
    try:
        ended = con.execute("SELECT ended_ts FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        assert ended is not None and ended[0] is not None  # a clean end, recorded
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def _orders(journal: Path) -> int:
    if not journal.exists():
        return 0
    con = sqlite3.connect(journal)
    try:
        return int(con.execute("SELECT COUNT(*) FROM order_events").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        con.close()
