"""Memory that does not grow with every fill, a command queue that refuses when full, private
files, and a read-only session refused at the engine's boundary with the venue.

The order book keeps only working orders, the most recent finished orders and the most recent
fills; positions are folded fill by fill. Whatever reads them (positions, P&L, metrics, the
snapshot) must still be right, so each check compares against the journal's full history.
"""

from __future__ import annotations

import stat
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from durable_support import wait_for

from fbterm import commands as C
from fbterm.config import PaperBrokerConfig
from fbterm.engine import Engine
from fbterm.execution.brokers.base import CommissionEvent, FillEvent, OrderStatusEvent
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.metrics.live import MetricsCalculation
from fbterm.model import (
    Fill,
    OrderError,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    Stock,
    Tick,
)

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(180)


def _trade(oms: OrderManagement, broker: PaperBroker, n: int) -> None:
    """n market orders that each fill at once, alternating sides, plus one resting limit."""
    px = 100.0
    for i in range(n):
        side = Side.BUY if i % 3 else Side.SELL
        oms.create_order(Signal("s1" if i % 2 else "s2", Stock("AAPL"), side, 1 + i % 5))
        px += 0.1 if i % 2 else -0.07
        broker.on_tick(Tick("AAPL", 1_000.0 + i, px - 0.01, px + 0.01, px, 1e6))


def _fold(fills: list[Fill]) -> dict[str, float]:
    q: dict[str, float] = defaultdict(float)
    for f in fills:
        q[f.instrument.key] += f.signed_quantity
    return dict(q)


def test_the_order_book_keeps_a_bounded_window_and_still_knows_everything(tmp_path: Path):
    j = Journal(tmp_path / "j.sqlite")
    broker = PaperBroker(PaperBrokerConfig(cash=1e12), symbols=["AAPL"], participation=None)
    oms = OrderManagement(broker, j, keep_orders=10, keep_fills=10)
    broker.on_tick(Tick("AAPL", 999.0, 99.99, 100.01, 100.0, 1e6))
    resting = oms.create_order(
        Signal("rest", Stock("AAPL"), Side.BUY, 1, OrderType.LIMIT, limit_price=1.0)
    )
    _trade(oms, broker, 300)
    all_fills = list(j.iter_fills())
    assert len(all_fills) == oms.fills_total == 300
    assert len(oms.fills) == 10 and len(oms._recent_fills) == 10
    assert len(oms.orders) <= 11 and resting.client_order_id in oms.orders  # working: kept
    assert oms.orders_total == 301
    # Positions are folded, not replayed from memory: still those of every fill.
    assert {k: p.quantity for k, p in oms.positions.items()} == pytest.approx(_fold(all_fills))
    # An order that left memory is answered from the journal.
    first = all_fills[0].client_order_id
    assert first not in oms.orders
    report = oms.monitor_order(first)
    assert report.status is OrderStatus.FILLED and [f.fill_id for f in report.fills] == [
        all_fills[0].fill_id
    ]
    assert [s for _, _, s in report.history][-1] is OrderStatus.FILLED
    # A re-sent execution of a fill that left memory is recognised, not booked twice.
    before = dict(oms.positions)
    oms.on_broker_event(FillEvent(all_fills[0]))
    assert oms.positions == before and oms.fills_total == 300
    # A late commission for it still reaches the position and the journal.
    f0 = all_fills[0]
    oms.on_broker_event(CommissionEvent(f0.fill_id, f0.commission + 2.5))
    assert oms.positions["AAPL"].commissions == pytest.approx(before["AAPL"].commissions + 2.5)
    stored = j.fill(f0.fill_id)
    assert stored is not None and stored.commission == pytest.approx(f0.commission + 2.5)
    # A late status for it is ignored as late, not reported as an unknown order.
    said: list[str] = []
    oms.subscribe(lambda kind, obj: said.append(str(getattr(obj, "message", ""))))
    oms.on_broker_event(OrderStatusEvent(first, OrderStatus.CANCELLED, "late"))
    assert said and "ignored late" in said[-1]
    # A restart reads the same with the same bounds, and ids keep going up.
    oms2 = OrderManagement(PaperBroker(), j, keep_orders=10, keep_fills=10)
    assert oms2.fills_total == 300 and oms2.orders_total == 301
    assert len(oms2.fills) == 10 and len(oms2.orders) <= 11
    assert oms2.positions == oms.positions
    assert oms2.next_id() == "FB-000302"


def test_engine_metrics_after_trimming_match_the_full_history(
    tmp_path: Path, make_config: ConfigBuilder
):
    cfg = make_config(
        market={"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0, "stale_after": 60.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        log={"path": str(tmp_path / "activity.jsonl")},
        risk={"max_orders_per_second": 1000.0},
        strategies=[{"name": "sma", "class": "sma_cross", "params": {"fast": 2, "slow": 3}}],
    )
    e = Engine(cfg, pace=False)
    e.oms.fills = type(e.oms.fills)(25)  # a tiny window, so the run goes far beyond it
    e.oms.keep_orders = 25
    e.start()
    try:
        wait_for(lambda: e.oms.fills_total >= 200, 90, "200 fills")
        e.stop_feed()
        snap = e.call(lambda: e.update_metrics(store=True))
    finally:
        e.stop()
    assert snap is not None
    j = Journal(cfg.journal_path)
    fills = list(j.iter_fills())
    stored = j.closed_trades(0.0, 1e12)
    j.close()
    assert len(fills) == e.oms.fills_total and len(e.oms.fills) == 25
    whole = MetricsCalculation(
        {"sma": e.executor.slots["sma"].capital}
    ).calculate_real_time_metrics(
        fills, {k: e.mark(k) or 0.0 for k in e.oms.positions}, now=snap.ts
    )
    got, want = snap.strategies["sma"], whole.strategies["sma"]
    assert got.realized_pnl == pytest.approx(want.realized_pnl)
    assert got.closed_trades == want.closed_trades and got.commissions == pytest.approx(
        want.commissions
    )
    assert e.events.fills_by_strategy["sma"] == len(fills)
    # Every closed trade was stored, though memory never held all their fills at once.
    assert len(stored) == want.closed_trades


def test_a_full_command_queue_refuses_with_engine_busy(tmp_path: Path, make_config):
    cfg = make_config(journal={"path": str(tmp_path / "j.sqlite")}, strategies=[])
    e = Engine(cfg)  # not started: nothing drains the queue
    try:
        ids = [e.submit(C.Halt()) for _ in range(e.commands.size)]
        refused = e.submit(C.Resume())
        results = {r.command_id: r for r in e.commands.results}
        assert not set(ids) & set(results)
        r = results[refused]
        assert not r.ok and r.message.startswith("engine busy: command queue full")
    finally:
        e.stop()


def test_read_only_refuses_new_modify_and_cancel_at_the_boundary(tmp_path: Path):
    j = Journal(tmp_path / "j.sqlite")
    broker = PaperBroker(PaperBrokerConfig(cash=1e9), symbols=["AAPL"])
    rw = OrderManagement(broker, j)
    broker.on_tick(Tick("AAPL", 1.0, 99.9, 100.1, 100.0, 1e6))
    working = rw.create_order(
        Signal("s", Stock("AAPL"), Side.BUY, 1, OrderType.LIMIT, limit_price=50.0)
    )
    ro = OrderManagement(broker, j, read_only="read-only session")
    o = ro.create_order(Signal("s", Stock("AAPL"), Side.BUY, 10))
    assert o.status is OrderStatus.REJECTED and o.reason == "read-only session"
    with pytest.raises(OrderError, match="modify FB-000001 refused: read-only session"):
        ro.modify_order(working.client_order_id, limit_price=51.0)
    with pytest.raises(OrderError, match="cancel FB-000001 refused: read-only session"):
        ro.cancel_order(working.client_order_id)
    assert broker.query_open_orders()[0].limit_price == 50.0  # the venue never heard of it


def test_engine_files_are_owner_only(tmp_path: Path, make_config: ConfigBuilder):
    import os

    old = os.umask(0o022)
    try:
        cfg = make_config(
            journal={"path": str(tmp_path / "journal.sqlite")},
            log={"path": str(tmp_path / "activity.jsonl")},
            strategies=[],
        )
        e = Engine(cfg, pace=False)
        e.start()
        try:
            e.submit(C.Halt(reason="an alert, so the outbox has a row"))
            wait_for(lambda: e.risk.state.value == "HALTED", 30, "the halt")
        finally:
            e.stop()
    finally:
        os.umask(old)
    files = [
        cfg.journal_path,
        Path(f"{cfg.journal_path}.lock"),
        cfg.activity_log_path,
        *sorted(tmp_path.glob("*outbox*")),
    ]
    assert any("outbox" in p.name for p in files), list(tmp_path.rglob("*"))
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
