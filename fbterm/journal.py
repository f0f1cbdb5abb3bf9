"""The order journal: an append-only SQLite file (WAL) written before state changes.

Every order event stores the whole order as it is after the event, so rebuilding is "last
state per order", and a reader never has to replay a diff it might misread. Fills have their
own table keyed by the venue's fill id: a fill that arrives twice (IB re-sends executions after
a reconnect) is recorded once, and :meth:`Journal.record_fill` says whether it was new.

Durability: WAL with ``synchronous=NORMAL`` makes each committed transaction survive the death
of the process (SIGKILL included); only a power cut can lose the last commits. ``FULL`` also
survives that, at the cost of an fsync per commit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fbterm.model import Fill, Order
from fbterm.model.venue import VenueContract

if TYPE_CHECKING:
    from fbterm.metrics import ClosedTrade, MetricsSnapshot

SCHEMA = """
CREATE TABLE IF NOT EXISTS order_events (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    fill_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    order_id TEXT NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS venue_contracts (
    venue TEXT NOT NULL,
    key TEXT NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (venue, key)
);
"""


# One compact encoder, built once (json.dumps with separators builds a new one per call).
_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class JournalError(RuntimeError):
    """The journal file cannot be opened or is not an fbterm journal."""


@dataclass(frozen=True, slots=True)
class JournalState:
    orders: dict[str, Order]  # last state of every order, in creation order
    fills: list[Fill]  # in arrival order
    events: int


class Journal:
    """One SQLite file; used from one thread at a time (the engine's)."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL"):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we open and commit transactions ourselves, so a burst
            # of events can share one commit (see batch()).
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise JournalError(f"{self.path}: cannot open the journal: {e}") from None
        self._lock = threading.RLock()
        self._depth = 0
        self._seq = self._max_seq()

    def _max_seq(self) -> int:
        row = self.conn.execute(
            "SELECT MAX(m) FROM (SELECT MAX(seq) m FROM order_events UNION ALL SELECT MAX(seq) FROM fills)"
        ).fetchone()
        return int(row[0] or 0)

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes into one transaction: everything inside commits together or not at all."""
        with self._transaction(rollback_on_error=True):
            yield

    @contextmanager
    def group(self) -> Iterator[None]:
        """Group writes into one commit that happens even if the body raises.

        For work whose every step has already been applied in memory when it is journaled
        (an engine step against an in-process venue): rolling back would leave memory ahead
        of the journal, which is the one thing the journal must never allow.
        """
        with self._transaction(rollback_on_error=False):
            yield

    @contextmanager
    def _transaction(self, *, rollback_on_error: bool) -> Iterator[None]:
        # Nested groups join the outermost one; only it begins and ends the transaction.
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("BEGIN")
            self._depth += 1
            failed = False
            try:
                yield
            except BaseException:
                failed = True
                raise
            finally:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK" if failed and rollback_on_error else "COMMIT")

    # -- writes --------------------------------------------------------------------------
    def record_order(self, kind: str, order: Order, ts: float | None = None) -> None:
        with self._lock:
            self._seq += 1
            self.conn.execute(
                "INSERT INTO order_events(seq, ts, kind, order_id, data) VALUES (?,?,?,?,?)",
                (
                    self._seq,
                    ts or time.time(),
                    kind,
                    order.client_order_id,
                    _dumps(order.to_dict()),
                ),
            )

    def record_fill(self, fill: Fill) -> bool:
        """Append a fill; False when this fill id is already journaled (a re-sent execution)."""
        with self._lock:
            self._seq += 1
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO fills(fill_id, seq, order_id, ts, data) VALUES (?,?,?,?,?)",
                (fill.fill_id, self._seq, fill.client_order_id, fill.ts, _dumps(fill.to_dict())),
            )
            return cur.rowcount == 1

    def update_fill_commission(self, fill_id: str, commission: float) -> Fill | None:
        with self._lock:
            row = self.conn.execute("SELECT data FROM fills WHERE fill_id=?", (fill_id,)).fetchone()
            if row is None:
                return None
            d = json.loads(row[0])
            d["commission"] = commission
            self.conn.execute(
                "UPDATE fills SET data=? WHERE fill_id=?",
                (json.dumps(d, separators=(",", ":")), fill_id),
            )
            return Fill.from_dict(d)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    # -- contracts a venue qualified ----------------------------------------------------
    def save_venue_contract(self, venue: str, contract: VenueContract) -> None:
        """Keep a qualified contract, so the next session need not ask the venue again."""
        with self._lock:
            self.conn.execute(
                "INSERT INTO venue_contracts(venue, key, ts, data) VALUES (?,?,?,?) "
                "ON CONFLICT(venue, key) DO UPDATE SET ts=excluded.ts, data=excluded.data",
                (venue, contract.key, contract.ts, _dumps(dataclasses.asdict(contract))),
            )

    def venue_contracts(self, venue: str) -> dict[str, VenueContract]:
        """Every contract ``venue`` qualified, by instrument key."""
        rows = self.conn.execute("SELECT data FROM venue_contracts WHERE venue=?", (venue,))
        out: dict[str, VenueContract] = {}
        for (data,) in rows:
            c = VenueContract(**json.loads(data))
            out[c.key] = c
        return out

    # -- reads ---------------------------------------------------------------------------
    def load(self) -> JournalState:
        """Every order's last state and every fill, as they were journaled."""
        return _read_state(self.conn, self.path)

    def order_history(self, order_id: str) -> list[tuple[float, str, Order]]:
        # A table scan: an index on order_id would cost every order ~20% of its commit, for a
        # lookup nothing on the hot path makes (OrderManagement keeps each order's history).
        rows = self.conn.execute(
            "SELECT ts, kind, data FROM order_events WHERE order_id=? ORDER BY seq", (order_id,)
        )
        return [(ts, kind, Order.from_dict(json.loads(d))) for ts, kind, d in rows]

    def highest_broker_order_id(self) -> int:
        """The largest numeric venue order id any journaled order carried (0 if none).

        IB order ids must never go backwards, even when the gateway's nextValidId does after a
        restart: the IB adapter starts above this.
        """
        row = self.conn.execute(
            "SELECT MAX(CAST(json_extract(data, '$.broker_id') AS INTEGER)) FROM order_events"
        ).fetchone()
        return int(row[0] or 0)

    def count_records(self) -> int:
        """Order events plus fills: every row the journal holds about trading."""
        orders = self.conn.execute("SELECT COUNT(*) FROM order_events").fetchone()[0]
        fills = self.conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        return int(orders) + int(fills)

    # -- metrics -------------------------------------------------------------------------
    def store_metrics(
        self, snapshot: MetricsSnapshot | None = None, trades: Iterable[ClosedTrade] = ()
    ) -> None:
        """Keep a metrics snapshot and the closed trades beside the orders they came from.

        The tables and their SQL belong to :mod:`fbterm.metrics`; this is the one place that
        hands it the journal's connection, under the journal's lock.
        """
        from fbterm.metrics.reports import store_metrics

        with self._lock:
            store_metrics(self.conn, snapshot, trades)

    def close(self) -> None:
        with self._lock, suppress(sqlite3.ProgrammingError):
            self.conn.close()


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
        return _read_state(conn, p)
    finally:
        conn.close()


def _connect_read_only(p: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{urllib.parse.quote(str(p.resolve()))}?mode=ro", uri=True)


def _read_state(conn: sqlite3.Connection, path: Path) -> JournalState:
    orders: dict[str, Order] = {}
    n = 0
    try:
        for (data,) in conn.execute("SELECT data FROM order_events ORDER BY seq"):
            o = Order.from_dict(json.loads(data))
            orders[o.client_order_id] = o
            n += 1
        fills = [
            Fill.from_dict(json.loads(d))
            for (d,) in conn.execute("SELECT data FROM fills ORDER BY seq")
        ]
    except (sqlite3.DatabaseError, ValueError, KeyError) as e:
        raise JournalError(f"{path}: journal is damaged or not an fbterm journal: {e}") from None
    return JournalState(orders=orders, fills=fills, events=n + len(fills))


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
