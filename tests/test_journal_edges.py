"""The journal's less travelled paths: meta keys, the highest venue order id after a restart,
commission corrections written in place, record counts, trades stored beside the orders,
damaged files, and transactions that must commit or roll back whole
(:mod:`fbterm.journal`, on real SQLite files).

Each test names what an operator would lose; they were written against the mutants the rest of
the suite let through (README "Mutation testing")."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest

from fbterm.journal import Journal, JournalError
from fbterm.journal_files import check_journal_path, read_journal
from fbterm.metrics.live import MetricsCalculation
from fbterm.metrics.trades import match_round_trips
from fbterm.model import Fill, Order, OrderStatus, Side, Stock

T0 = 1_700_000_000.0
AAPL = Stock("AAPL")


def fill(fid: str, oid: str, side: Side, qty: float, price: float, ts: float) -> Fill:
    return Fill(fid, oid, AAPL, side, qty, price, 1.0, ts, "alpha")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite")


def test_meta_keys_are_kept_and_overwritten(journal: Journal, tmp_path: Path) -> None:
    assert journal.get_meta("equity_peak") is None
    assert journal.get_meta("equity_peak", "0") == "0"
    journal.set_meta("equity_peak", "101000.5")
    journal.set_meta("day", "19676")
    journal.set_meta("equity_peak", "102000")
    assert journal.get_meta("equity_peak") == "102000" and journal.get_meta("day") == "19676"
    journal.close()
    assert Journal(tmp_path / "journal.sqlite").get_meta("equity_peak") == "102000"


def test_the_highest_venue_order_id_survives_a_restart(journal: Journal, tmp_path: Path) -> None:
    assert journal.highest_broker_order_id() == 0
    o = Order("FB-1", AAPL, Side.BUY, 10, created_ts=T0)
    journal.record_order("new", o)  # not at the venue yet: no id
    journal.record_order("Submitted", o.transition(OrderStatus.SUBMITTED, broker_order_id="12"))
    journal.record_order("new", Order("FB-2", AAPL, Side.BUY, 5, broker_order_id="9"))
    assert journal.highest_broker_order_id() == 12
    journal.close()
    assert Journal(tmp_path / "journal.sqlite").highest_broker_order_id() == 12


def test_a_commission_correction_is_written_in_place(journal: Journal, tmp_path: Path) -> None:
    assert journal.record_fill(fill("X1", "FB-1", Side.BUY, 10, 100.0, T0))
    assert journal.record_fill(fill("X2", "FB-1", Side.BUY, 5, 100.5, T0 + 1))
    updated = journal.update_fill_commission("X1", 1.35)
    assert updated == dataclasses.replace(
        fill("X1", "FB-1", Side.BUY, 10, 100.0, T0), commission=1.35
    )
    assert journal.update_fill_commission("NOPE", 2.0) is None
    journal.close()
    fills = Journal(tmp_path / "journal.sqlite").load().fills
    assert [(f.fill_id, f.commission) for f in fills] == [("X1", 1.35), ("X2", 1.0)]


def test_a_repeated_fill_is_recorded_once_and_counted_once(journal: Journal) -> None:
    f = fill("X1", "FB-1", Side.BUY, 10, 100.0, T0)
    assert journal.record_fill(f) and not journal.record_fill(f)
    journal.record_order("new", Order("FB-1", AAPL, Side.BUY, 10))
    assert journal.count_records() == 2
    state = journal.load()
    assert state.events == 2 and len(state.fills) == 1 and list(state.orders) == ["FB-1"]


def test_order_history_is_in_the_order_it_happened(journal: Journal) -> None:
    o = Order("FB-1", AAPL, Side.BUY, 10, created_ts=T0)
    journal.record_order("new", o, ts=T0)
    journal.record_order("Submitted", o.transition(OrderStatus.SUBMITTED, ts=T0 + 1), ts=T0 + 1)
    journal.record_order("new", Order("FB-2", AAPL, Side.SELL, 1), ts=T0 + 2)
    journal.record_order("Cancelled", o.transition(OrderStatus.CANCELLED, ts=T0 + 3), ts=T0 + 3)
    history = journal.order_history("FB-1")
    assert [(ts, kind, x.status) for ts, kind, x in history] == [
        (T0, "new", OrderStatus.PENDING_SUBMIT),
        (T0 + 1, "Submitted", OrderStatus.SUBMITTED),
        (T0 + 3, "Cancelled", OrderStatus.CANCELLED),
    ]
    assert journal.order_history("NOPE") == []


def test_closed_trades_are_stored_beside_the_orders(journal: Journal, tmp_path: Path) -> None:
    fills = [
        fill("X1", "FB-1", Side.BUY, 10, 100.0, T0),
        fill("X2", "FB-2", Side.SELL, 10, 103.0, T0 + 60),
    ]
    trades = match_round_trips(fills)
    snapshot = MetricsCalculation({"alpha": 10_000.0}).calculate_real_time_metrics(
        fills, {"AAPL": 103.0}, now=T0 + 120
    )
    journal.store_metrics(snapshot, trades)
    journal.store_metrics(None, trades)  # storing "all trades so far" again adds nothing
    con = sqlite3.connect(tmp_path / "journal.sqlite")
    rows = con.execute(
        "SELECT trade_id, strategy_id, quantity, entry_price, exit_price FROM trades"
    )
    assert rows.fetchall() == [(trades[0].trade_id, "alpha", 10.0, 100.0, 103.0)]
    stored = dict(con.execute("SELECT name, total_pnl FROM metrics_snapshots"))
    assert stored["alpha"] == pytest.approx(snapshot.strategies["alpha"].total_pnl)


def test_a_file_that_is_not_a_journal_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.sqlite"
    bad.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(JournalError, match=rf"^{bad}: cannot open the journal: "):
        Journal(bad)


def test_a_damaged_journal_is_named_when_read(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path)
    j.record_order("new", Order("FB-1", AAPL, Side.BUY, 10))
    j.conn.execute('UPDATE order_events SET data=\'{"id": "FB-1"\'')  # truncated JSON
    with pytest.raises(
        JournalError, match=rf"^{path}: journal is damaged or not an fbterm journal"
    ):
        j.load()


def test_a_batch_rolls_back_whole_and_a_group_commits_whole(
    journal: Journal, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError), journal.batch():
        journal.record_order("new", Order("FB-1", AAPL, Side.BUY, 10))
        with journal.batch():  # nested: joins the outer transaction
            journal.record_fill(fill("X1", "FB-1", Side.BUY, 10, 100.0, T0))
        raise RuntimeError("venue refused")
    assert journal.count_records() == 0
    with pytest.raises(RuntimeError), journal.group():
        journal.record_order("new", Order("FB-2", AAPL, Side.BUY, 10))
        raise RuntimeError("applied in memory already")
    journal.close()
    # what a group wrote survives: memory must never be ahead of the journal
    assert list(Journal(tmp_path / "journal.sqlite").load().orders) == ["FB-2"]


def test_sequence_numbers_continue_after_a_restart(journal: Journal, tmp_path: Path) -> None:
    journal.record_order("new", Order("FB-1", AAPL, Side.BUY, 10))
    journal.record_fill(fill("X1", "FB-1", Side.BUY, 10, 100.0, T0))
    journal.close()
    again = Journal(tmp_path / "journal.sqlite")
    again.record_order("fill", Order("FB-1", AAPL, Side.BUY, 10))
    again.record_fill(fill("X2", "FB-1", Side.BUY, 1, 100.0, T0 + 1))
    state = again.load()
    assert [f.fill_id for f in state.fills] == ["X1", "X2"] and state.events == 4


# ------------------------------------------------------------ reading and checking paths


def test_read_journal_reads_what_was_written_without_touching_it(tmp_path: Path) -> None:
    folder = tmp_path / "odd #name? 50%"
    folder.mkdir()
    path = folder / "journal.sqlite"
    j = Journal(path)
    j.record_order("new", Order("FB-1", AAPL, Side.BUY, 10))
    j.record_fill(fill("X1", "FB-1", Side.BUY, 10, 100.0, T0))
    j.close()
    before = path.read_bytes()
    state = read_journal(path)
    assert list(state.orders) == ["FB-1"] and [f.fill_id for f in state.fills] == ["X1"]
    assert state.events == 2 and path.read_bytes() == before


def test_read_journal_names_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(
        JournalError, match=rf"^no journal at {re.escape(str(tmp_path / 'nope.sqlite'))}$"
    ):
        read_journal(tmp_path / "nope.sqlite")
    with pytest.raises(JournalError, match=rf"^no journal at {re.escape(str(tmp_path))}$"):
        read_journal(tmp_path)  # a folder is no journal
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database " * 100)
    with pytest.raises(
        JournalError, match=rf"^{re.escape(str(text))}: journal is damaged or not an fbterm journal"
    ):
        read_journal(text)


def test_a_usable_journal_path_passes_the_check(tmp_path: Path) -> None:
    check_journal_path(tmp_path / "new" / "deeper" / "journal.sqlite")  # folders made later
    assert list(tmp_path.iterdir()) == []  # the probe file is gone again
    existing = tmp_path / "journal.sqlite"
    Journal(existing).close()
    check_journal_path(existing)
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    check_journal_path(empty)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "not a file"),
        (lambda p: p.write_text("hello " * 10), "not an fbterm journal (not an SQLite file)"),
        (
            lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200),
            "journal is damaged or not an fbterm journal",
        ),
    ],
)
def test_an_unusable_existing_path_is_refused_naming_why(
    tmp_path: Path, make: object, reason: str
) -> None:
    path = tmp_path / "journal.sqlite"
    make(path)  # type: ignore[operator]
    with pytest.raises(JournalError, match=rf"^{re.escape(str(path))}: {re.escape(reason)}"):
        check_journal_path(path)


def test_a_journal_path_outside_any_folder_or_in_system_trees_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(
        JournalError,
        match=rf"^{re.escape(str(blocker / 'j.sqlite'))}: {re.escape(str(blocker))} is not a folder$",
    ):
        check_journal_path(blocker / "j.sqlite")
    with pytest.raises(
        JournalError, match=r"^/proc/fbterm.sqlite: a journal cannot live under /proc$"
    ):
        check_journal_path("/proc/fbterm.sqlite")
    with pytest.raises(JournalError, match=r"^journal path contains a NUL character"):
        check_journal_path("journal\0.sqlite")


# The suite runs as root, which no permission bit can stop: the three refusals below are
# produced by making the one system call that would fail for a normal user fail here too.


def test_a_journal_the_engine_cannot_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()
    monkeypatch.setattr("fbterm.journal.os.access", lambda p, mode: False)
    with pytest.raises(JournalError, match=rf"^{re.escape(str(path))}: not writable$"):
        check_journal_path(path)


def test_a_journal_the_engine_cannot_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.sqlite"
    Journal(path).close()

    def refuse(self: Path, *a: object, **kw: object) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(
        JournalError, match=rf"^{re.escape(str(path))}: cannot read: Permission denied$"
    ):
        check_journal_path(path)


def test_a_folder_the_engine_cannot_create_files_in_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a: object, dir: object = None, **kw: object) -> tuple[int, str]:
        if Path(str(dir)) == locked:
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr("fbterm.journal_files.tempfile.mkstemp", mkstemp)
    path = locked / "journal.sqlite"
    with pytest.raises(
        JournalError,
        match=rf"^{re.escape(str(path))}: cannot create files in {re.escape(str(locked))}: "
        "Permission denied$",
    ):
        check_journal_path(path)


def test_a_journal_is_created_in_new_folders_and_durable_as_configured(tmp_path: Path) -> None:
    j = Journal(tmp_path / "a" / "b" / "journal.sqlite")
    assert j.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert j.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    full = Journal(tmp_path / "full.sqlite", synchronous="FULL")
    assert full.conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_the_engine_thread_writes_a_journal_opened_elsewhere(journal: Journal) -> None:
    errors: list[BaseException] = []

    def engine_thread() -> None:
        try:
            journal.record_order("new", Order("FB-1", AAPL, Side.BUY, 10))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    t = threading.Thread(target=engine_thread)
    t.start()
    t.join(20)
    assert errors == [] and list(journal.load().orders) == ["FB-1"]
