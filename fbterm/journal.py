"""The order journal: an append-only SQLite file (WAL) written before state changes.

Every order event stores the whole order as it is after the event, so rebuilding is "last
state per order", and a reader never has to replay a diff it might misread. Fills have their
own table keyed by the venue's fill id: a fill that arrives twice (IB re-sends executions after
a reconnect) is recorded once, and :meth:`Journal.record_fill` says whether it was new.

Durability: WAL with ``synchronous=NORMAL`` makes each committed transaction survive the death
of the process (SIGKILL included); only a power cut can lose the last commits. ``FULL`` also
survives that, at the cost of an fsync per commit.

Commit, then tell: :meth:`Journal.after_commit` runs a callback (an activity-log line, an
alert) only once the transaction that holds what it describes has committed, and drops it if
that transaction is rolled back. A failed write (disk full, I/O error) is final: the journal
rolls back the open transaction, remembers the failure (:attr:`Journal.failed`), tells
``on_failure`` once, and refuses every later write with :class:`JournalWriteError`, so nothing
is ever done that the journal does not hold.

Besides orders and fills the journal keeps the operator's decisions (:class:`OperatorState`,
:class:`StrategyRecord`) and the engine sessions that wrote it (:class:`SessionRecord`), so a
restart comes back as the operator left it and can say how the last session ended.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.model import Fill, Order, TradingState
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
CREATE TABLE IF NOT EXISTS operator_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    trading_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    changed_ts REAL NOT NULL,
    day INTEGER,
    day_start_equity REAL,
    peak_equity REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS strategy_state (
    name TEXT PRIMARY KEY,
    paused INTEGER NOT NULL,
    capital REAL NOT NULL,
    updated_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    started_ts REAL NOT NULL,
    ended_ts REAL,
    end_state TEXT NOT NULL DEFAULT '',
    end_reason TEXT NOT NULL DEFAULT ''
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


class JournalWriteError(JournalError):
    """A write to the journal failed (disk full, I/O error); every later write fails too."""


@dataclass(frozen=True, slots=True)
class OperatorState:
    """The trading state the operator (or a risk limit) left, and the loss-limit baselines.

    ``day`` is the trading session ``day_start_equity`` belongs to, as a date ordinal (see
    :func:`fbterm.sessions.trading_day`); on another day it no longer applies.
    """

    trading_state: TradingState
    reason: str
    changed_ts: float
    day: int | None
    day_start_equity: float | None
    peak_equity: float


@dataclass(frozen=True, slots=True)
class StrategyRecord:
    """What the operator decided for one strategy: paused or not, and its capital."""

    name: str
    paused: bool
    capital: float
    updated_ts: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One engine run on this journal: when it started and, if it ended cleanly, how."""

    id: int
    pid: int
    started_ts: float
    ended_ts: float | None
    end_state: str
    end_reason: str

    @property
    def clean(self) -> bool:
        return self.ended_ts is not None


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
            _create_private(self.path)
            # isolation_level=None: we open and commit transactions ourselves, so a burst
            # of events can share one commit (see batch()).
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as e:
            raise JournalError(f"{self.path}: cannot open the journal: {e}") from None
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None  # the thread whose transaction is open
        self._pending: list[Callable[[], None]] = []
        self.failed: str | None = None  # why the first failed write failed
        self.on_failure: Callable[[str], None] | None = None
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
                self._write("BEGIN")
                self._owner = threading.get_ident()
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._end(commit=not rollback_on_error)
                raise
            self._depth -= 1
            if outer:
                self._end(commit=True)

    def _end(self, *, commit: bool) -> None:
        """Close the outermost transaction, then run what waited for its commit."""
        self._owner = None
        pending, self._pending = self._pending, []
        if self.failed is None and commit:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._fail(e)
        if self.failed is not None or not commit:
            # After a failed write SQLite may have rolled back already; either way nothing
            # of this transaction is kept, so nothing of it may be told.
            with suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            if self.failed is not None:
                raise JournalWriteError(self.failed)
            return
        for fn in pending:
            fn()

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once what this thread has written so far is committed: now when no
        transaction is open, else right after its commit; never if it is rolled back or the
        journal has failed (what ``fn`` would tell is not remembered)."""
        if self.failed is not None:
            return
        if self._depth and self._owner == threading.get_ident():
            self._pending.append(fn)
            return
        fn()

    @property
    def in_transaction(self) -> bool:
        return bool(self._depth)

    # -- failures ------------------------------------------------------------------------
    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """Every write goes through here: a failure is final (see the module docstring)."""
        if self.failed is not None:
            raise JournalWriteError(self.failed)
        try:
            return self.conn.execute(sql, tuple(params))
        except sqlite3.Error as e:
            self._fail(e)
            raise JournalWriteError(self.failed) from None

    def _fail(self, e: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = f"journal write failed ({e})"
        self._pending.clear()
        with suppress(sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        if self.on_failure is not None:
            self.on_failure(self.failed)

    def save_after_failure(self, state: OperatorState) -> bool:
        """Try once to record the halt a failed write causes (a full disk may still take a
        row once the failed transaction is rolled back); True when it was written."""
        try:
            with self._lock:
                self.conn.execute(_SAVE_STATE, _state_row(state))
            return True
        except sqlite3.Error:
            return False

    # -- writes --------------------------------------------------------------------------
    def record_order(self, kind: str, order: Order, ts: float | None = None) -> None:
        with self._lock:
            self._seq += 1
            self._write(
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
            cur = self._write(
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
            self._write("UPDATE fills SET data=? WHERE fill_id=?", (_dumps(d), fill_id))
            return Fill.from_dict(d)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._write(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    # -- the operator's decisions and the sessions ----------------------------------------
    def save_operator_state(self, state: OperatorState) -> None:
        with self._lock:
            self._write(_SAVE_STATE, _state_row(state))

    def operator_state(self) -> OperatorState | None:
        row = self.conn.execute(
            "SELECT trading_state, reason, changed_ts, day, day_start_equity, peak_equity "
            "FROM operator_state WHERE id=1"
        ).fetchone()
        if row is None:
            return None
        try:
            state = TradingState(row[0])
        except ValueError:
            raise JournalError(f"{self.path}: unknown trading state {row[0]!r}") from None
        return OperatorState(state, row[1], row[2], row[3], row[4], row[5])

    def save_strategy(self, record: StrategyRecord) -> None:
        with self._lock:
            self._write(
                "INSERT INTO strategy_state(name, paused, capital, updated_ts) VALUES (?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET paused=excluded.paused, "
                "capital=excluded.capital, updated_ts=excluded.updated_ts",
                (record.name, int(record.paused), record.capital, record.updated_ts),
            )

    def strategy_records(self) -> dict[str, StrategyRecord]:
        rows = self.conn.execute(
            "SELECT name, paused, capital, updated_ts FROM strategy_state ORDER BY name"
        )
        return {n: StrategyRecord(n, bool(p), c, ts) for n, p, c, ts in rows}

    def begin_session(self, pid: int, ts: float) -> tuple[SessionRecord, SessionRecord | None]:
        """Record a new engine session (its own commit); returns it and the one before."""
        with self._lock:
            prev = self.last_session()
            cur = self._write("INSERT INTO sessions(pid, started_ts) VALUES (?, ?)", (pid, ts))
            sid = int(cur.lastrowid or 0)
        return SessionRecord(sid, pid, ts, None, "", ""), prev

    def end_session(self, session_id: int, ts: float, state: TradingState, reason: str) -> None:
        """A clean shutdown: without this row the next session says this one died."""
        with self._lock:
            self._write(
                "UPDATE sessions SET ended_ts=?, end_state=?, end_reason=? WHERE id=?",
                (ts, state.value, reason, session_id),
            )

    def last_session(self) -> SessionRecord | None:
        row = self.conn.execute(
            "SELECT id, pid, started_ts, ended_ts, end_state, end_reason FROM sessions "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else SessionRecord(*row)

    # -- contracts a venue qualified ----------------------------------------------------
    def save_venue_contract(self, venue: str, contract: VenueContract) -> None:
        """Keep a qualified contract, so the next session need not ask the venue again."""
        with self._lock:
            self._write(
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
        return read_state(self.conn, self.path)

    def iter_last_orders(self) -> Iterator[Order]:
        """Every order's last state, in creation order, one at a time (bounded memory)."""
        rows = self.conn.execute(
            "SELECT e.data FROM order_events e JOIN (SELECT MIN(seq) first, MAX(seq) last "
            "FROM order_events GROUP BY order_id) g ON e.seq = g.last ORDER BY g.first"
        )
        try:
            for (data,) in rows:
                yield Order.from_dict(json.loads(data))
        except (sqlite3.DatabaseError, ValueError, KeyError) as e:
            raise JournalError(
                f"{self.path}: journal is damaged or not an fbterm journal: {e}"
            ) from None

    def iter_fills(self) -> Iterator[Fill]:
        """Every fill in arrival order, one at a time (bounded memory)."""
        try:
            for (data,) in self.conn.execute("SELECT data FROM fills ORDER BY seq"):
                yield Fill.from_dict(json.loads(data))
        except (sqlite3.DatabaseError, ValueError, KeyError) as e:
            raise JournalError(
                f"{self.path}: journal is damaged or not an fbterm journal: {e}"
            ) from None

    def last_order(self, order_id: str) -> Order | None:
        """The journal's last word on one order (a scan: for orders that left memory)."""
        row = self.conn.execute(
            "SELECT data FROM order_events WHERE order_id=? ORDER BY seq DESC LIMIT 1",
            (order_id,),
        ).fetchone()
        return None if row is None else Order.from_dict(json.loads(row[0]))

    def fill(self, fill_id: str) -> Fill | None:
        row = self.conn.execute("SELECT data FROM fills WHERE fill_id=?", (fill_id,)).fetchone()
        return None if row is None else Fill.from_dict(json.loads(row[0]))

    def has_fill(self, fill_id: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM fills WHERE fill_id=?", (fill_id,)).fetchone()
            is not None
        )

    def fills_of_order(self, order_id: str) -> list[Fill]:
        rows = self.conn.execute(
            "SELECT data FROM fills WHERE order_id=? ORDER BY seq", (order_id,)
        )
        return [Fill.from_dict(json.loads(d)) for (d,) in rows]

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
            if self.failed is not None:
                raise JournalWriteError(self.failed)
            try:
                store_metrics(self.conn, snapshot, trades)
            except sqlite3.Error as e:
                self._fail(e)
                raise JournalWriteError(self.failed) from None

    def closed_trades(self, exit_from: float, exit_to: float) -> list[ClosedTrade]:
        """The stored trades that closed in [exit_from, exit_to) (a day's report)."""
        from fbterm.metrics.reports import load_trades

        with self._lock:
            return load_trades(self.conn, exit_from=exit_from, exit_to=exit_to)

    def close(self) -> None:
        with self._lock, suppress(sqlite3.ProgrammingError):
            self.conn.close()


def read_state(conn: sqlite3.Connection, path: Path) -> JournalState:
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


_SAVE_STATE = (
    "INSERT INTO operator_state(id, trading_state, reason, changed_ts, day, day_start_equity, "
    "peak_equity) VALUES (1,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
    "trading_state=excluded.trading_state, reason=excluded.reason, "
    "changed_ts=excluded.changed_ts, day=excluded.day, "
    "day_start_equity=excluded.day_start_equity, peak_equity=excluded.peak_equity"
)


def _state_row(s: OperatorState) -> tuple[object, ...]:
    return (
        s.trading_state.value,
        s.reason,
        s.changed_ts,
        s.day,
        s.day_start_equity,
        s.peak_equity,
    )


def _create_private(path: Path) -> None:
    """Create ``path`` owner-only (0600) if it does not exist yet.

    SQLite gives the -wal and -shm files the database file's permissions, so creating the
    database first is what keeps all three private; an existing file keeps its mode.
    """
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
