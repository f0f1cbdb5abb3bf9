"""The journal's own guarantees: commit-then-tell, a failed write is final, operator state and
sessions round-trip, one writer lock per journal, and private files.

Real SQLite files throughout; a full disk is made with SQLite's own ``max_page_count`` (no
root, no filled disk), which fails a write exactly the way a full disk does (SQLITE_FULL).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fbterm.journal import (
    Journal,
    JournalWriteError,
    OperatorState,
    StrategyRecord,
)
from fbterm.journal_lock import JournalLock, JournalLocked, lock_path
from fbterm.model import Order, OrderType, Side, Stock, TradingState


def _order(i: int) -> Order:
    return Order(
        client_order_id=f"FB-{i:06d}",
        instrument=Stock("AAPL"),
        side=Side.BUY,
        quantity=1.0,
        order_type=OrderType.MARKET,
        created_ts=1.0,
        updated_ts=1.0,
    )


def _fill_the_disk(j: Journal) -> None:
    """From now on the database may not grow: the next page it needs fails with SQLITE_FULL."""
    pages = j.conn.execute("PRAGMA page_count").fetchone()[0]
    j.conn.execute(f"PRAGMA max_page_count={pages}")


def test_after_commit_waits_for_the_commit_and_never_runs_after_a_rollback(tmp_path: Path):
    j = Journal(tmp_path / "j.sqlite")
    told: list[str] = []
    j.after_commit(lambda: told.append("no transaction: at once"))
    assert told == ["no transaction: at once"]
    with j.batch():
        j.record_order("new", _order(1))
        j.after_commit(lambda: told.append("order 1"))
        assert told == ["no transaction: at once"]  # not before the commit
    assert told[-1] == "order 1"
    with pytest.raises(RuntimeError), j.batch():
        j.record_order("new", _order(2))
        j.after_commit(lambda: told.append("order 2"))
        raise RuntimeError("rolled back")
    assert "order 2" not in told
    assert {o for o in j.load().orders} == {"FB-000001"}


def test_a_failed_write_is_final_rolls_back_and_tells_once(tmp_path: Path):
    j = Journal(tmp_path / "j.sqlite")
    j.record_order("new", _order(1))
    failures: list[str] = []
    j.on_failure = failures.append
    told: list[str] = []
    _fill_the_disk(j)
    full = r"journal write failed \(database or disk is full\)"
    with pytest.raises(JournalWriteError, match=full), j.group():
        for i in range(2, 500):  # enough rows to need a new page
            j.record_order("new", _order(i))
            j.after_commit(lambda: told.append("told"))
    assert failures == [j.failed] and j.failed is not None
    assert told == []  # nothing of the failed transaction is told
    # Sticky: even a write that would fit is refused, and the failure is not told again.
    with pytest.raises(JournalWriteError):
        j.set_meta("k", "v")
    with pytest.raises(JournalWriteError):
        j.save_operator_state(OperatorState(TradingState.HALTED, "x", 1.0, None, None, 0.0))
    j.after_commit(lambda: told.append("after failure"))
    assert told == [] and len(failures) == 1
    j.close()
    # What is on disk is exactly what committed before the failure.
    assert set(Journal(tmp_path / "j.sqlite").load().orders) == {"FB-000001"}


def test_operator_state_strategies_and_sessions_round_trip(tmp_path: Path):
    j = Journal(tmp_path / "j.sqlite")
    assert j.operator_state() is None and j.strategy_records() == {} and j.last_session() is None
    state = OperatorState(TradingState.HALTED, "max_drawdown: 5%", 10.0, 19_700, 1e6, 1.1e6)
    j.save_operator_state(state)
    j.save_strategy(StrategyRecord("sma", True, 50_000.0, 11.0))
    first, prev = j.begin_session(123, 20.0)
    assert prev is None and not first.clean
    second, prev = j.begin_session(456, 30.0)
    assert prev == first  # never ended: the next session sees an unclean end
    j.end_session(second.id, 40.0, TradingState.HALTED, "operator")
    j.close()
    j = Journal(tmp_path / "j.sqlite")
    assert j.operator_state() == state
    assert j.strategy_records() == {"sma": StrategyRecord("sma", True, 50_000.0, 11.0)}
    last = j.last_session()
    assert last is not None and last.clean and last.pid == 456
    assert (last.end_state, last.end_reason) == ("HALTED", "operator")


def test_journal_and_its_wal_files_are_private(tmp_path: Path):
    path = tmp_path / "j.sqlite"
    old = os.umask(0o022)  # the usual umask would give 0644
    try:
        j = Journal(path)
        j.record_order("new", _order(1))
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        j.close()
    finally:
        os.umask(old)


def test_lock_names_its_holder_and_the_kernel_releases_it_when_the_holder_dies(tmp_path: Path):
    journal = tmp_path / "j.sqlite"
    # The holder is another real process, killed with SIGKILL: no chance to clean up.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from fbterm.journal_lock import JournalLock
                JournalLock({str(journal)!r}).acquire()
                print("held", flush=True)
                time.sleep(120)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        lock = JournalLock(journal)
        with pytest.raises(
            JournalLocked, match=rf"in use by another fbterm engine \(pid {child.pid}"
        ):
            lock.acquire()
        assert stat.S_IMODE(lock_path(journal).stat().st_mode) == 0o600
    finally:
        child.kill()
        child.wait(10)
    lock.acquire()  # no stale lock to clear by hand
    assert lock.held
    holder = lock.holder()
    assert holder is not None and holder.pid == os.getpid()
    lock.release()
    assert lock.holder() is None  # released: no stale pid for the next reader
