"""A failed journal write halts trading at once, cancels at the venue, says one clear line and
stops; nothing is logged or reported that the journal does not hold.

In process, the disk is "full" through SQLite's ``max_page_count`` on the engine's own
connection; with a real ``fbterm run --headless`` child, through ``RLIMIT_FSIZE`` (SIGXFSZ
ignored, so the write fails with EFBIG instead of killing the process). Neither needs root.
"""

from __future__ import annotations

import resource
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from durable_support import (
    headless,
    journal_ids,
    log_entries,
    log_ids,
    wait_for,
    write_busy_config,
)

from fbterm.engine import Engine
from fbterm.journal import Journal
from fbterm.model import TradingState

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(180)


def test_a_full_journal_halts_cancels_and_stops_the_engine(
    tmp_path: Path, make_config: ConfigBuilder
):
    cfg = make_config(
        market={"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0, "stale_after": 60.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        log={"path": str(tmp_path / "activity.jsonl")},
        risk={"max_orders_per_second": 1000.0},
        strategies=[
            {"name": "sma", "class": "sma_cross", "params": {"fast": 2, "slow": 3}},
            {
                "name": "resting",
                "class": "mean_reversion",
                "params": {"window": 5, "entry_z": 0.3},
            },
        ],
    )
    e = Engine(cfg, pace=False)
    e.start()
    try:
        wait_for(lambda: e.oms.fills_total >= 20, 60, "fills")

        def fill_the_disk() -> None:
            pages = e.journal.conn.execute("PRAGMA page_count").fetchone()[0]
            e.journal.conn.execute(f"PRAGMA max_page_count={pages}")

        e.call(fill_the_disk)
        assert e.wait_stopped(60), "the engine must stop by itself"
    finally:
        e.stop()
    assert e.fatal is not None
    assert e.fatal.startswith("journal write failed (database or disk is full): trading halted, ")
    assert " orders cancelled at paper; " in e.fatal
    assert e.broker.query_open_orders() == []  # cancelled at the venue
    assert e.risk.state is TradingState.HALTED
    # Nothing logged that the journal does not hold.
    j_orders, j_fills = journal_ids(cfg.journal_path)
    l_orders, l_fills = log_ids(cfg.activity_log_path)
    assert l_fills and l_fills <= j_fills
    assert l_orders <= j_orders
    fatal = [x for x in log_entries(cfg.activity_log_path) if x["message"] == e.fatal]
    assert fatal and fatal[0]["level"] == "error"
    # The halt was recorded (SQLite had room once the failed transaction was rolled back).
    j = Journal(cfg.journal_path)
    try:
        state = j.operator_state()
        assert state is not None and state.trading_state is TradingState.HALTED
        assert state.reason.startswith("journal write failed")
    finally:
        j.close()
    # The next start comes back HALTED and says the last session did not end cleanly.
    e = Engine(cfg, pace=False)
    e.start()
    try:
        assert e.risk.state is TradingState.HALTED
        note = e.build_snapshot_threadsafe().session_note
        assert "previous session ended uncleanly (no clean shutdown recorded)" in note
        assert "trading HALTED (journal write failed" in note
    finally:
        e.stop()


def _cap_file_size(limit: int) -> None:
    # In the child before exec: an ignored signal stays ignored across exec, so a write
    # past the limit fails with EFBIG (SQLite: "database or disk is full") instead of
    # killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_cli_exits_non_zero_with_one_line_when_the_disk_fills(tmp_path: Path):
    paths = write_busy_config(tmp_path)
    child = headless(paths, preexec_fn=lambda: _cap_file_size(600_000))
    code, out, err = child.finish(timeout=150)
    assert code == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    # A capped file fails as "disk I/O error" or "database or disk is full", as a disk would.
    assert lines[-1].startswith("fbterm: journal write failed ("), lines[-1]
    assert "): trading halted, " in lines[-1]
    assert "orders cancelled at paper" in lines[-1]
    assert out == ""  # no summary: it would show what the journal does not hold
    j_orders, j_fills = journal_ids(paths.journal)
    l_orders, l_fills = log_ids(paths.log)
    assert j_fills, "the run must have traded before the disk filled"
    assert l_fills <= j_fills and l_orders <= j_orders
