"""The operator's decisions survive a restart: trading state and why, the loss-limit baselines,
paused strategies and allocations; each start says how the previous session ended.

Real engines on the engine thread over a real journal file, stopped and started again on it.
(Exits by SIGKILL and SIGHUP, with real processes, are in test_engine_restarts.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from durable_support import wait_for

from fbterm import commands as C
from fbterm.config import Config
from fbterm.engine import Engine
from fbterm.engine.operator_state import OperatorStateKeeper
from fbterm.journal import Journal, OperatorState
from fbterm.model import StrategyState, TradingState
from fbterm.risk.portfolio import RiskBaselines
from fbterm.sessions import trading_day

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def config(tmp_path: Path, make_config: ConfigBuilder) -> Callable[..., Config]:
    def build(**risk: Any) -> Config:
        return make_config(
            market={"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0, "stale_after": 60.0},
            journal={"path": str(tmp_path / "journal.sqlite")},
            log={"path": str(tmp_path / "activity.jsonl")},
            risk={"max_orders_per_second": 1000.0, **risk},
            strategies=[
                {
                    "name": "sma",
                    "class": "sma_cross",
                    "symbols": ["AAPL", "MSFT"],
                    "params": {"fast": 2, "slow": 3},
                },
                {
                    "name": "mr",
                    "class": "mean_reversion",
                    "symbols": ["AAPL"],
                    "params": {"window": 5, "entry_z": 0.3},
                },
            ],
        )

    return build


def started(cfg: Config) -> Engine:
    e = Engine(cfg, pace=False)
    e.start()
    return e


def command(e: Engine, cmd: C.Command) -> C.CommandResult:
    e.submit(cmd)
    found: list[C.CommandResult] = []

    def answered() -> bool:
        found[:] = [r for r in e.commands.results if r.command_id == cmd.command_id]
        return bool(found)

    wait_for(answered, 30, f"the answer to {type(cmd).__name__}")
    return found[0]


def test_halt_survives_a_restart_and_needs_an_explicit_resume(config: Callable[..., Config]):
    cfg = config()
    e = started(cfg)
    try:
        wait_for(lambda: e.oms.fills_total >= 3, 60, "the strategies to trade")
        assert command(e, C.Halt(reason="desk says stop")).ok
    finally:
        e.stop()

    e = started(cfg)
    try:
        assert (e.risk.state, e.risk.reason) == (TradingState.HALTED, "desk says stop")
        assert all(s.state is StrategyState.HALTED for s in e.executor.slots.values())
        snap = e.build_snapshot_threadsafe()
        assert snap.halted
        assert "previous session ended HALTED (desk says stop)" in snap.session_note
        assert "trading stays HALTED until you resume" in snap.session_note
        assert "recovered from the journal" in snap.session_note
        # Halted means halted: the market moves on, nothing new is sent.
        orders, ticks = e.oms.orders_total, e.ticks_processed
        wait_for(lambda: e.ticks_processed > ticks + 2000, 60, "ticks while halted")
        assert e.oms.orders_total == orders
        assert command(e, C.Resume()).ok
        wait_for(lambda: e.oms.orders_total > orders, 60, "trading after the resume")
    finally:
        e.stop()
    # And the resume is durable too.
    j = Journal(cfg.journal_path)
    try:
        state = j.operator_state()
        assert state is not None and state.trading_state is TradingState.ACTIVE
    finally:
        j.close()


@pytest.mark.parametrize(
    ("day_start", "peak", "rule"),
    [
        (2e6, 1.0, "daily_loss_limit: "),  # opened the day at 2,000,000: lost 1,000,000 since
        (None, 2e6, "max_drawdown: "),  # peaked at 2,000,000: 50% down
    ],
)
def test_loss_limit_baselines_are_not_reset_by_a_restart(
    config: Callable[..., Config], day_start: float | None, peak: float, rule: str
):
    cfg = config(daily_loss_limit=50_000.0, max_drawdown_pct=10.0)
    e = started(cfg)
    try:
        today = trading_day(e.clock()).toordinal()  # the journal's day: a date ordinal
        base = RiskBaselines(TradingState.ACTIVE, "", today, day_start, peak)
        e.call(lambda: e.risk.restore(base))
        e.call(e.keeper.sync)
        e.stop_feed()
    finally:
        e.stop()
    before = e.oms.orders_total
    e = started(cfg)
    try:
        # The restored baselines judge the first equity seen: halted before anything trades.
        assert e.risk.state is TradingState.HALTED
        assert e.risk.reason.startswith(rule)
        ticks = e.ticks_processed
        wait_for(lambda: e.ticks_processed > ticks + 2000, 60, "ticks while halted")
        assert e.oms.orders_total == before
        if day_start is not None:
            assert e.risk.day_start_equity == day_start
        else:
            assert e.risk.peak == peak
    finally:
        e.stop()


def test_paused_strategies_and_allocations_survive_a_restart(config: Callable[..., Config]):
    cfg = config()
    e = started(cfg)
    try:
        assert command(e, C.PauseStrategy(name="sma")).ok
        e.call(lambda: e.executor.scale_strategy("mr", 12_345.0))
        e.call(e.keeper.sync)
    finally:
        e.stop()
    e = started(cfg)
    try:
        assert e.executor.slots["sma"].state is StrategyState.PAUSED
        assert e.executor.slots["mr"].capital == 12_345.0
        note = e.build_snapshot_threadsafe().session_note
        assert "previous session ended cleanly (ACTIVE)" in note
        assert "paused sma" in note and "allocations mr 12,345" in note
        assert command(e, C.ResumeStrategy(name="sma")).ok
    finally:
        e.stop()
    e = started(cfg)
    try:
        assert e.executor.slots["sma"].state is StrategyState.RUNNING
    finally:
        e.stop()


def test_baselines_of_another_trading_day_do_not_carry_over(tmp_path: Path, make_config):
    """The day-start equity belongs to its trading day; the peak (drawdown) carries on."""
    from fbterm.execution.brokers.paper import PaperBroker
    from fbterm.execution.orders import OrderManagement
    from fbterm.risk.portfolio import PortfolioLevelRisk
    from fbterm.strategies.executor import StrategyExecutor

    j = Journal(tmp_path / "j.sqlite")
    day0 = 1_700_000_000.0
    j.save_operator_state(
        OperatorState(
            TradingState.REDUCING, "operator", day0, trading_day(day0).toordinal(), 9e5, 1.2e6
        )
    )
    oms = OrderManagement(PaperBroker(), j)

    def restored(now: float) -> PortfolioLevelRisk:
        risk = PortfolioLevelRisk(clock=lambda: now)
        OperatorStateKeeper(j, risk, StrategyExecutor(oms), oms, lambda: now).restore(None)
        return risk

    same = restored(day0 + 60)
    assert (same.state, same.day_start_equity, same.peak) == (TradingState.REDUCING, 9e5, 1.2e6)
    next_day = restored(day0 + 86_400)
    assert next_day.state is TradingState.REDUCING
    assert next_day.day_start_equity is None and next_day.peak == 1.2e6
    next_day.update_equity(1.1e6, day0 + 86_400)
    assert next_day.day_start_equity == 1.1e6  # a new day: the first equity seen
