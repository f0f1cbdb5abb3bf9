"""The alert outbox: a small SQLite table that keeps undelivered alerts across restarts.

One row per (alert, channel, destination), written *before* delivery is tried, removed once
delivered or given up on; the Diagnostics worker is its only user.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbterm.ops.alerts import Alert, Severity

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    key TEXT NOT NULL,
    created_ts REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ts REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    channel: str
    destination: str
    alert: Alert
    attempts: int
    next_ts: float
    last_error: str


class AlertOutbox:
    """The retry queue: one row per (alert, channel, destination) until delivered or given up."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only (0600); SQLite gives the -wal and -shm files the same permissions.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.conn = sqlite3.connect(self.path, timeout=5.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_OUTBOX_SCHEMA)

    def add(self, alert: Alert, targets: Sequence[tuple[str, str]], now: float) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT INTO outbox (channel, destination, severity, kind, title, body, key, created_ts, next_ts)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        c,
                        d,
                        alert.severity.value,
                        alert.kind,
                        alert.title,
                        alert.body,
                        alert.key,
                        alert.ts,
                        now,
                    )
                    for c, d in targets
                ],
            )

    def items(self, due_before: float | None = None) -> list[OutboxItem]:
        q = "SELECT id, channel, destination, severity, kind, title, body, key, created_ts, attempts, next_ts, last_error FROM outbox"
        args: tuple[Any, ...] = ()
        if due_before is not None:
            q += " WHERE next_ts <= ?"
            args = (due_before,)
        rows = self.conn.execute(q + " ORDER BY id", args).fetchall()
        return [
            OutboxItem(
                r[0],
                r[1],
                r[2],
                Alert(Severity(r[3]), r[5], r[6], r[7], r[4], r[8]),
                r[9],
                r[10],
                r[11],
            )
            for r in rows
        ]

    def remove(self, item_id: int) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def reschedule(self, item_id: int, attempts: int, next_ts: float, error: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE outbox SET attempts = ?, next_ts = ?, last_error = ? WHERE id = ?",
                (attempts, next_ts, error, item_id),
            )

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def next_due(self) -> float | None:
        v = self.conn.execute("SELECT MIN(next_ts) FROM outbox").fetchone()[0]
        return None if v is None else float(v)

    def close(self) -> None:
        self.conn.close()


__all__ = ["AlertOutbox", "OutboxItem"]
