"""The journal file seen from outside an engine: checked before use, read without locking.

``check-config`` and start-up check a journal path here before anything is created there;
``fbterm status|orders|positions`` read a journal here when no engine runs. Neither takes the
engine's lock nor writes a byte.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

from fbterm.journal import JournalError, JournalState, read_state


def read_journal(path: str | Path) -> JournalState:
    """Every order's last state and every fill, read without writing or locking anything.

    For ``fbterm status|orders|positions`` when no engine runs: the file is opened read-only
    (SQLite's ``mode=ro``), so reading can neither create a journal nor change one, and a
    running engine (WAL) is not disturbed.
    """
    p = Path(path)
    if not p.is_file():
        raise JournalError(f"no journal at {p}")
    try:
        conn = _connect_read_only(p)
    except sqlite3.DatabaseError as e:
        raise JournalError(f"{p}: cannot open the journal: {e}") from None
    try:
        return read_state(conn, p)
    finally:
        conn.close()


def _connect_read_only(p: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{urllib.parse.quote(str(p.resolve()))}?mode=ro", uri=True)


_SQLITE_HEADER = b"SQLite format 3\x00"
_SYSTEM_TREES = ("/proc", "/sys", "/dev")


def check_journal_path(path: str | Path) -> None:
    """Refuse a journal path the engine could not use, before anything is created there.

    An existing file must be an SQLite file (ours, or empty); otherwise the folder the engine
    would create it in must take a new file (tried for real: permission bits say nothing to
    root, and nothing at all about /proc). Raises JournalError with one line saying why.
    """
    p = Path(path).expanduser()
    text = str(p)
    if "\0" in text:
        raise JournalError(f"journal path contains a NUL character: {text!r}")
    resolved = p.resolve()
    if any(resolved == Path(t) or Path(t) in resolved.parents for t in _SYSTEM_TREES):
        raise JournalError(f"{p}: a journal cannot live under /{resolved.parts[1]}")
    if p.exists():
        if not p.is_file():
            raise JournalError(f"{p}: not a file")
        try:
            with p.open("rb") as fh:
                head = fh.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise JournalError(f"{p}: cannot read: {e.strerror}") from None
        if head and head != _SQLITE_HEADER:
            raise JournalError(f"{p}: not an fbterm journal (not an SQLite file)")
        if not os.access(p, os.W_OK):
            raise JournalError(f"{p}: not writable")
        if head:
            try:
                conn = _connect_read_only(p)
                try:
                    conn.execute("SELECT name FROM sqlite_master").fetchall()
                finally:
                    conn.close()
            except sqlite3.DatabaseError as e:
                raise JournalError(
                    f"{p}: journal is damaged or not an fbterm journal: {e}"
                ) from None
        return
    folder = next((a for a in (p.parent, *p.parent.parents) if a.exists()), None)
    if folder is None or not folder.is_dir():
        raise JournalError(f"{p}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fbterm-probe-", dir=folder)
    except OSError as e:
        raise JournalError(f"{p}: cannot create files in {folder}: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe)
