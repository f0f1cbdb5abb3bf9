"""One engine per journal: an OS lock beside the journal file, held for the engine's lifetime.

The lock is ``flock`` on ``<journal>.lock``: the kernel drops it when the holder's process
dies however it dies (SIGKILL included), so a crash never leaves a stale lock to clean up by
hand. The holder writes its pid and start time into the file so a second engine can say who
holds it. Readers (``fbterm log``, commands that only read the journal) never take it: SQLite's
WAL lets them read while the engine writes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from fbterm.journal import JournalError


class JournalLocked(JournalError):
    """Another process holds the journal's writer lock."""


@dataclass(frozen=True, slots=True)
class LockHolder:
    pid: int
    started_ts: float
    host: str

    def describe(self) -> str:
        when = dt.datetime.fromtimestamp(self.started_ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"pid {self.pid}{where}, started {when}"


def lock_path(journal_path: str | Path) -> Path:
    p = Path(journal_path)
    return p.with_name(p.name + ".lock")


class JournalLock:
    """The writer lock of one journal file. :meth:`acquire` once, :meth:`release` at the end."""

    def __init__(self, journal_path: str | Path) -> None:
        self.journal_path = Path(journal_path)
        self.path = lock_path(journal_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`JournalLocked` naming the process that has it."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise JournalError(f"{self.path}: cannot create the journal lock: {e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = self.holder()
            who = holder.describe() if holder is not None else "a process that is starting"
            raise JournalLocked(
                f"journal {self.journal_path} is in use by another fbterm engine ({who}); "
                "stop it first, or give this one another journal (--journal PATH)"
            ) from None
        info = {"pid": os.getpid(), "started_ts": time.time(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with suppress(OSError):
            os.ftruncate(fd, 0)  # no stale pid for the next reader
        with suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> LockHolder | None:
        """Who holds the lock, as the holder wrote it (None if unknown or not written yet)."""
        try:
            d = json.loads(self.path.read_text(encoding="utf-8") or "null")
            return LockHolder(int(d["pid"]), float(d["started_ts"]), str(d.get("host", "")))
        except (OSError, ValueError, TypeError, KeyError):
            return None
