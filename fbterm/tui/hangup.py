"""Leaving when the terminal is gone, even when the UI cannot.

A console learns that its terminal is gone in one of two ways: a signal (SIGHUP, which the
kernel sends the session's leader when SSH drops; SIGTERM from a supervisor), or the
terminal itself hanging up with no signal reaching the console (a login shell that traps
SIGHUP and lives on, a wrapper that swallows it). Either way the UI is asked to exit, and a
watchdog ends the process if it has not within the grace period: Textual's output thread
dies on the first write to a dead terminal, after which the UI loop blocks for good on its
full queue. (Seen over SSH before this guard: the console spun on at 80% CPU, trading, deaf
to SIGTERM, until SIGKILL.)

Nothing here depends on the UI's event loop: the signal handlers only write a byte to a
pipe (all a signal handler may safely do), and a thread of its own watches that pipe and the
terminal, asks the UI to exit and, if it must, gives up on it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGHUP, signal.SIGTERM)
HANGUP_EXIT = 128 + signal.SIGHUP


class HangupGuard:
    """Watches for SIGHUP/SIGTERM and for the terminal's hang-up.

    ``request_exit(code)`` is called (from the guard's thread) once, with 128 + the signal,
    or 129 when the terminal hung up; ``give_up(code)`` too if :meth:`stop` has not been
    called ``grace`` seconds later. ``fds`` are the terminal's descriptors (those that are
    not terminals are not watched: a closed pipe also reports a hang-up).
    """

    def __init__(
        self,
        request_exit: Callable[[int], object],
        give_up: Callable[[int], object],
        *,
        grace: float,
        fds: Sequence[int] = (0, 1),
        poll_every: float = 0.5,
    ) -> None:
        self._request_exit = request_exit
        self._give_up = give_up
        self.grace = grace
        self._ttys = [fd for fd in fds if _is_tty(fd)]
        self._poll_ms = int(poll_every * 1000)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._code = 0
        self._done = threading.Event()
        self._old: dict[int, Any] = {}
        self._thread = threading.Thread(target=self._watch, name="fbterm-hangup", daemon=True)
        self.tripped_by = ""  # "signal" or "terminal", once tripped

    def start(self, *, handle_signals: bool = True) -> None:
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_signal)
        self._thread.start()

    def stop(self) -> None:
        """The UI has exited: no watchdog is needed any more; the handlers go back."""
        self._done.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")  # wakes the watcher so that it ends
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._old.items():
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(sig, old)
        self._old.clear()

    def trip(self, code: int) -> None:
        """As a signal would: ``code`` is the exit status to leave with."""
        if not self._code:
            self._code = code
        with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
            os.write(self._wake_w, b"\1")

    # -- internals --------------------------------------------------------------------------
    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        # Runs in the main thread between bytecodes, even while the UI loop is blocked:
        # it must only hand the news on.
        self.trip(128 + sig)

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for fd in self._ttys:
            poller.register(fd, 0)  # 0: only hang-up and error events are reported
        while not self._done.is_set():
            events = poller.poll(self._poll_ms)
            if self._done.is_set():
                return
            if any(fd == self._wake_r for fd, _ in events):
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 512)
                if self._code:
                    self.tripped_by = self.tripped_by or "signal"
                    break
            if any(
                fd in self._ttys and ev & (select.POLLHUP | select.POLLERR) for fd, ev in events
            ):
                self._code = self._code or HANGUP_EXIT
                self.tripped_by = "terminal"
                break
            if any(ev & select.POLLNVAL for _, ev in events):
                return  # a descriptor was closed under us: the process is ending anyway
        else:
            return
        with contextlib.suppress(RuntimeError):  # the UI's loop has already closed
            self._request_exit(self._code)
        if not self._done.wait(self.grace):
            self._give_up(self._code)


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def silence_dead_terminal(fds: Sequence[int] = (1, 2)) -> bool:
    """If the terminal has hung up, point stdout and stderr at /dev/null and say so (True).

    Python flushes its standard streams on the way out, and a flush to a dead terminal turns
    a clean hang-up exit into status 120; what would have been printed has no reader. (A
    hung-up terminal is no longer a tty to ``isatty``: every descriptor is polled. A pipe
    whose reader has gone reports the same, and has no reader either.)
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, 0)
    if not any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0)):
        return False
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
            os.dup2(null, fd)
    finally:
        os.close(null)
    return True
