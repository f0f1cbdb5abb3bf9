"""The activity log: one JSON line per event in a rotating file, the latest entries in memory.

``fbterm log`` reads it back (:func:`read_activity_log`, :func:`follow_activity_log`), across
rotations. Secrets are redacted (:mod:`fbterm.redact`: secret-named fields, tokens in URLs and
messages) before anything is written or kept. Standard library only, so ``fbterm log`` stays
cheap to start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbterm.redact import redact_fields, redact_text

LEVELS = ("debug", "info", "warning", "error")
_LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}


def _level_rank(level: str) -> int:
    try:
        return _LEVEL_RANK[level.lower()]
    except KeyError:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}") from None


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    ts: float
    level: str
    kind: str
    message: str
    fields: dict[str, Any]
    seq: int = 0  # position in this process's in-memory log; 0 when read from a file

    def to_json(self) -> str:
        when = dt.datetime.fromtimestamp(self.ts, dt.UTC).isoformat(timespec="milliseconds")
        return json.dumps(
            {
                "ts": when,
                "level": self.level,
                "kind": self.kind,
                "message": self.message,
                "fields": self.fields,
            },
            default=str,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str) -> ActivityEntry:
        d = json.loads(line)
        ts = d["ts"]
        ts = dt.datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else float(ts)
        return cls(
            ts,
            d.get("level", "info"),
            d.get("kind", ""),
            d.get("message", ""),
            d.get("fields") or {},
        )

    def format(self) -> str:
        when = dt.datetime.fromtimestamp(self.ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{when} {self.level.upper():<7} {self.kind:<16} {self.message}" + (
            f"  {extra}" if extra else ""
        )


def _private(path: str, flags: int) -> int:
    """Open with owner-only permissions (0600) when the file is created: orders and fills."""
    return os.open(path, flags, 0o600)


class _RotatingWriter:
    """Appends lines to a file and rotates it by size (``name.1`` ... ``name.N``).

    Written directly rather than through logging handlers: the engine logs every order event
    and fill, and a LogRecord plus a stat per line was a third of its fill path. Each line
    is flushed so ``fbterm log --follow`` sees it at once. ``backups=0`` truncates instead
    (the stdlib handler would never roll over and the file would grow without bound).
    """

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._f: Any = None
        self._size = 0

    def write(self, line: str) -> None:
        data = line + "\n"
        n = len(data.encode("utf-8")) if not data.isascii() else len(data)
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8", opener=_private)  # noqa: SIM115
            self._size = self._f.tell()
        if self._size and self._size + n > self.max_bytes:
            self._rotate()
        self._f.write(data)
        self._f.flush()
        self._size += n

    def _rotate(self) -> None:
        self._f.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._f = open(self.path, "w", encoding="utf-8", opener=_private)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class ActivityLog:
    """JSON-lines activity log: a rotating file plus the latest ``memory`` entries in memory.

    Thread-safe: the engine, the alert worker and the UI may all log at once.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 10_000_000,
        backups: int = 5,
        level: str = "info",
        memory: int = 1000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.min_rank = _level_rank(level)
        self._writer = _RotatingWriter(self.path, max_bytes, backups)
        self._lock = threading.Lock()
        self._recent: deque[ActivityEntry] = deque(maxlen=memory)
        self._seq = 0
        self.write_errors = 0

    def log(
        self, kind: str, message: str, *, level: str = "info", **fields: Any
    ) -> ActivityEntry | None:
        if _level_rank(level) < self.min_rank:
            return None
        with self._lock:
            self._seq += 1
            # A secret handed to the log by mistake must not reach a file an operator may share.
            entry = ActivityEntry(
                time.time(),
                level.lower(),
                kind,
                redact_text(message),
                redact_fields(fields),
                self._seq,
            )
            self._recent.append(entry)
            try:
                self._writer.write(entry.to_json())
            except OSError:
                self.write_errors += (
                    1  # a full disk must not stop trading; the entry stays in memory
                )
        return entry

    def recent(
        self, n: int | None = None, *, level: str | None = None, kind: str | None = None
    ) -> list[ActivityEntry]:
        with self._lock:
            items = list(self._recent)
        items = _filter(items, level, [kind] if kind else None)
        return items[-n:] if n else items

    def since(self, seq: int) -> list[ActivityEntry]:
        """Entries newer than ``seq``: lets a UI pane append only what is new each refresh."""
        with self._lock:
            return [e for e in self._recent if e.seq > seq]

    def close(self) -> None:
        with self._lock:
            self._writer.close()


def _filter(
    entries: list[ActivityEntry], level: str | None, kinds: Sequence[str] | None
) -> list[ActivityEntry]:
    if level:
        r = _level_rank(level)
        entries = [e for e in entries if _LEVEL_RANK.get(e.level, 1) >= r]
    if kinds:
        ks = set(kinds)
        entries = [e for e in entries if e.kind in ks]
    return entries


def activity_log_files(path: Path | str) -> list[Path]:
    """The log and its rotated backups, oldest first (``path.N`` ... ``path.1``, ``path``)."""
    p = Path(path)
    backups = []
    for b in p.parent.glob(p.name + ".*"):
        suffix = b.name[len(p.name) + 1 :]
        if suffix.isdigit():
            backups.append((int(suffix), b))
    return [b for _, b in sorted(backups, reverse=True)] + ([p] if p.exists() else [])


def _parse_lines(lines: Iterator[str]) -> Iterator[ActivityEntry]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            yield ActivityEntry.from_json(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash, or a foreign line: skip, don't die


def _reverse_lines(path: Path, block: int = 65536) -> Iterator[str]:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        rest = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                yield line.decode("utf-8", "replace")
        if rest:
            yield rest.decode("utf-8", "replace")


def read_activity_log(
    path: Path | str,
    *,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    tail: int | None = None,
) -> list[ActivityEntry]:
    """Entries from the log and its backups, oldest first; ``tail`` keeps the last N matches
    and reads backwards, so ``fbterm log`` stays fast on a large log."""
    files = activity_log_files(path)
    if tail is None:
        out: list[ActivityEntry] = []
        for f in files:
            with f.open(encoding="utf-8", errors="replace") as fh:
                out.extend(_filter(list(_parse_lines(iter(fh))), level, kinds))
        return out
    if tail <= 0:
        return []
    found: list[ActivityEntry] = []
    for f in reversed(files):
        for e in _parse_lines(_reverse_lines(f)):
            if _filter([e], level, kinds):
                found.append(e)
                if len(found) >= tail:
                    return found[::-1]
    return found[::-1]


def follow_activity_log(
    path: Path | str,
    *,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    poll: float = 0.25,
    stop: threading.Event | None = None,
    from_start: bool = False,
) -> Iterator[ActivityEntry]:
    """Yield entries as they are appended, across rotations (``tail -F`` semantics)."""
    p = Path(path)
    stop = stop or threading.Event()
    fh = None
    ino = None
    buf = ""
    first = True
    while not stop.is_set():
        if fh is None:
            try:
                fh = p.open(encoding="utf-8", errors="replace")
                ino = os.fstat(fh.fileno()).st_ino
                if first and not from_start:
                    fh.seek(0, os.SEEK_END)
                buf = ""
            except FileNotFoundError:
                fh = None
            first = False
        if fh is not None:
            chunk = fh.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                yield from _filter(list(_parse_lines(iter(lines))), level, kinds)
                continue
            try:
                st = p.stat()
                rotated = st.st_ino != ino or st.st_size < fh.tell()
            except FileNotFoundError:
                rotated = True
            if rotated:
                # The old file is complete (rotation renames it); read the new one from its start.
                fh.close()
                fh = None
                continue
        stop.wait(poll)
    if fh is not None:
        fh.close()


__all__ = [
    "LEVELS",
    "ActivityEntry",
    "ActivityLog",
    "activity_log_files",
    "follow_activity_log",
    "read_activity_log",
]
