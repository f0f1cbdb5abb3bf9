"""Brackets, trailing stops, IOC and GTD: the model's rules and the paper venue's behaviour
through OrderManagement (the strategy API's path), journal included."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from test_engine import Rig

from fbterm import commands as C
from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.fills import MarketUpdate, match_order, trail_level
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import (
    Bar,
    Order,
    OrderError,
    OrderOptions,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    Stock,
    Tick,
    TimeInForce,
)
from fbterm.strategies.base import StrategyContext, StrategyInterface, signal_frame

AAPL = Stock("AAPL")
T0 = 1_700_000_000.0


class Desk:
    """OrderManagement on a paper venue and a journal, on a hand-driven clock."""

    def __init__(self, path: Path) -> None:
        self.t = T0
        self.journal = Journal(path)
        self.broker = PaperBroker(
            PaperBrokerConfig(cash=1_000_000.0), symbols=["AAPL"], clock=lambda: self.t
        )
        self.oms = OrderManagement(self.broker, self.journal, clock=lambda: self.t)
        self.broker.set_event_handler(self.oms.on_broker_event)
        self.tick(100.0)

    def tick(self, px: float) -> None:
        self.t += 1.0
        self.broker.on_tick(Tick("AAPL", self.t, px - 0.01, px + 0.01, px, 0))

    def send(self, **kw: object) -> Order:
        args: dict[str, object] = {"strategy_id": "s", "instrument": AAPL, "side": Side.BUY}
        args.update(kw)
        return self.oms.create_order(Signal(**args))  # type: ignore[arg-type]

    def status(self, oid: str) -> OrderStatus:
        return self.oms.orders[oid].status


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path / "journal.sqlite")


# ------------------------------------------------------------------------------ the model


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"order_type": OrderType.TRAIL}, "TRAIL needs a trail amount or a trail percent"),
        (
            {
                "order_type": OrderType.TRAIL,
                "options": OrderOptions(trail_amount=1, trail_percent=1),
            },
            "TRAIL needs a trail amount or a trail percent",
        ),
        (
            {"order_type": OrderType.TRAIL, "options": OrderOptions(trail_percent=120)},
            "trail percent must be < 100",
        ),
        ({"options": OrderOptions(trail_amount=1.0)}, "MKT takes no trail distance"),
        ({"tif": TimeInForce.GTD}, "GTD needs a good-till time"),
        ({"options": OrderOptions(good_till=T0)}, "needs time in force GTD, not DAY"),
        ({"options": OrderOptions(algo="Twap")}, "algo must be one of Adaptive"),
        (
            {
                "order_type": OrderType.STOP,
                "stop_price": 90.0,
                "options": OrderOptions(algo="Adaptive"),
            },
            "Adaptive algo takes MKT or LMT orders only",
        ),
        ({"options": OrderOptions(algo="Adaptive", algo_priority="Fast")}, "algo priority"),
        ({"take_profit": 90.0, "stop_loss": 95.0}, "take-profit 90 must be above its stop-loss"),
        ({"take_profit": -1.0}, "take-profit must be > 0"),
    ],
)
def test_bad_order_terms_are_refused_with_the_reason(kw: dict[str, object], words: str) -> None:
    with pytest.raises(OrderError, match=words):
        Signal("s", AAPL, Side.BUY, 10, **kw)  # type: ignore[arg-type]


def test_order_options_survive_the_journal_round_trip() -> None:
    o = Order(
        "X-1",
        AAPL,
        Side.SELL,
        5,
        OrderType.TRAIL,
        stop_price=97.5,
        tif=TimeInForce.GTD,
        options=OrderOptions(trail_percent=2.5, good_till=T0 + 60, outside_rth=True),
        parent_id="X-0",
        oca_group="OCA-X-0",
    )
    d = o.to_dict()
    assert d["opts"] == {"trail_percent": 2.5, "good_till": T0 + 60, "outside_rth": True}
    assert Order.from_dict(d) == o
    plain = Order("X-2", AAPL, Side.BUY, 1)
    assert "opts" not in plain.to_dict() and Order.from_dict(plain.to_dict()) == plain


def test_trail_level_ratchets_one_way() -> None:
    assert trail_level(False, None, 105.0, 99.0, 2.0, None) == 103.0
    assert trail_level(False, 103.0, 101.0, 99.0, 2.0, None) == 103.0  # never falls
    assert trail_level(False, 103.0, 110.0, 100.0, None, 10.0) == pytest.approx(103.0)
    assert trail_level(False, 103.0, 120.0, 100.0, None, 10.0) == pytest.approx(108.0)
    assert trail_level(True, None, 105.0, 95.0, 2.0, None) == 97.0
    assert trail_level(True, 97.0, 105.0, 99.0, 2.0, None) == 97.0  # never rises


def test_a_trailing_stop_without_a_level_only_takes_one() -> None:
    o = Order("T", AAPL, Side.SELL, 1, OrderType.TRAIL, options=OrderOptions(trail_amount=1))
    assert match_order(o, MarketUpdate(T0, 100, 100, 50, 60)) is None
    armed = Order("T", AAPL, Side.SELL, 1, OrderType.TRAIL, stop_price=99.0, options=o.options)
    d = match_order(armed, MarketUpdate(T0, 100, 100, 90, 95))
    assert d is not None and (d.quantity, d.price) == (1, 99.0)


# --------------------------------------------------------------------------- the paper venue


def test_bracket_exits_wait_for_the_entry_then_one_cancels_the_other(desk: Desk) -> None:
    parent = desk.send(
        quantity=10, order_type=OrderType.LIMIT, limit_price=99.0, take_profit=105.0, stop_loss=95.0
    )
    tp, sl = desk.oms.children(parent.client_order_id)
    assert (tp.order_type, tp.limit_price, tp.side, tp.quantity) == (
        OrderType.LIMIT,
        105.0,
        Side.SELL,
        10,
    )
    assert (sl.order_type, sl.stop_price) == (OrderType.STOP, 95.0)
    assert tp.oca_group == sl.oca_group == f"OCA-{parent.client_order_id}"
    assert parent.oca_group == ""  # the entry is not in the group: its fill releases them
    assert tp.parent_id == sl.parent_id == parent.client_order_id
    # Before the entry fills, a price through the stop does nothing.
    desk.tick(94.0)  # the entry (buy limit 99) fills here at the open, 94
    assert desk.status(parent.client_order_id) is OrderStatus.FILLED
    assert desk.status(sl.client_order_id) is OrderStatus.SUBMITTED  # released, not yet hit
    desk.tick(106.0)
    assert desk.status(tp.client_order_id) is OrderStatus.FILLED
    assert desk.status(sl.client_order_id) is OrderStatus.CANCELLED
    assert "OCA" in desk.oms.orders[sl.client_order_id].reason
    assert desk.oms.position("AAPL") == 0


def test_cancelling_the_entry_cancels_its_exits(desk: Desk) -> None:
    parent = desk.send(
        quantity=10, order_type=OrderType.LIMIT, limit_price=90.0, take_profit=105.0, stop_loss=85.0
    )
    desk.tick(96.0)
    desk.tick(80.0)  # the held stop-loss would have triggered had it been working
    _tp, sl = desk.oms.children(parent.client_order_id)
    assert desk.status(sl.client_order_id) is OrderStatus.SUBMITTED
    assert desk.oms.position("AAPL") == 10  # the entry filled at 80: exits are live now
    parent2 = desk.send(
        quantity=5, order_type=OrderType.LIMIT, limit_price=50.0, take_profit=90.0, stop_loss=40.0
    )
    desk.oms.cancel_order(parent2.client_order_id)
    assert all(
        desk.status(c.client_order_id) is OrderStatus.CANCELLED
        for c in desk.oms.children(parent2.client_order_id)
    )


def test_when_one_update_reaches_both_exits_the_stop_wins(desk: Desk) -> None:
    parent = desk.send(quantity=10, take_profit=101.0, stop_loss=99.0)
    desk.tick(100.0)
    assert desk.status(parent.client_order_id) is OrderStatus.FILLED
    tp, sl = desk.oms.children(parent.client_order_id)
    desk.broker.on_market("AAPL", MarketUpdate(desk.t + 1, 100.0, 102.0, 98.0, 100.0))
    assert desk.status(sl.client_order_id) is OrderStatus.FILLED
    assert desk.status(tp.client_order_id) is OrderStatus.CANCELLED


def test_trailing_stop_follows_the_high_and_sells_on_the_pullback(desk: Desk) -> None:
    desk.send(quantity=10)
    desk.tick(100.0)
    o = desk.send(
        side=Side.SELL,
        quantity=10,
        order_type=OrderType.TRAIL,
        options=OrderOptions(trail_amount=2.0),
    )
    live = desk.broker.orders[o.client_order_id]
    assert live.stop_price == 98.0  # armed from the last price
    for px in (101.0, 104.0, 103.0):
        desk.tick(px)
    assert desk.broker.orders[o.client_order_id].stop_price == 102.0
    # The owner is told where the stop stands, and the journal holds each level it was told.
    assert desk.oms.orders[o.client_order_id].stop_price == 102.0
    told = [
        x.stop_price
        for _, kind, x in desk.journal.order_history(o.client_order_id)
        if kind == "modified"
    ]
    assert told == [99.0, 102.0]  # 98 -> 99 (the 101 tick) -> 102 (the 104 tick); 103: no move
    desk.tick(101.5)
    assert desk.status(o.client_order_id) is OrderStatus.FILLED
    fills = desk.oms.fills_by_order[o.client_order_id]
    assert [f.price for f in fills] == [101.49]  # gapped through 102: the bid, as a stop does


def test_a_trailing_stop_resumes_from_its_level_after_a_restart(tmp_path: Path) -> None:
    """A restart puts the trailing stop back at the level it had reached, not re-armed from
    the price then (which, after a dip, would leave the position less protected)."""
    d = Desk(tmp_path / "j.sqlite")
    d.send(quantity=10)
    d.tick(100.0)
    o = d.send(
        side=Side.SELL,
        quantity=10,
        order_type=OrderType.TRAIL,
        options=OrderOptions(trail_amount=2.0),
    )
    for px in (101.0, 106.0):
        d.tick(px)
    assert d.oms.orders[o.client_order_id].stop_price == 104.0
    d.journal.close()
    again = Journal(tmp_path / "j.sqlite")
    back = again.last_order(o.client_order_id)
    assert back is not None
    assert back.stop_price == 104.0 and back.order_type is OrderType.TRAIL
    fresh = PaperBroker(PaperBrokerConfig(cash=1_000_000.0), symbols=["AAPL"], clock=lambda: d.t)
    fresh.restore([], [back])
    fresh.on_tick(Tick("AAPL", d.t + 1, 103.49, 103.51, 103.5, 0))  # below 104: it sells
    assert o.client_order_id not in fresh.orders
    again.close()


def test_ioc_fills_what_the_next_price_allows_and_cancels_the_rest(desk: Desk) -> None:
    o = desk.send(quantity=5, order_type=OrderType.LIMIT, limit_price=99.0, tif=TimeInForce.IOC)
    desk.tick(100.0)  # not marketable: cancelled, not left working
    assert desk.status(o.client_order_id) is OrderStatus.CANCELLED
    assert "IOC" in desk.oms.orders[o.client_order_id].reason
    o2 = desk.send(quantity=5, order_type=OrderType.LIMIT, limit_price=101.0, tif=TimeInForce.IOC)
    desk.tick(100.0)
    assert desk.status(o2.client_order_id) is OrderStatus.FILLED


def test_gtd_order_expires_at_its_time(desk: Desk) -> None:
    o = desk.send(
        quantity=5,
        order_type=OrderType.LIMIT,
        limit_price=90.0,
        tif=TimeInForce.GTD,
        options=OrderOptions(good_till=desk.t + 3),
    )
    desk.tick(100.0)
    assert desk.status(o.client_order_id) is OrderStatus.SUBMITTED
    desk.tick(100.0)
    desk.tick(100.0)
    assert desk.status(o.client_order_id) is OrderStatus.CANCELLED
    assert "GTD: expired" in desk.oms.orders[o.client_order_id].reason


def test_a_restart_keeps_bracket_exits_held(tmp_path: Path) -> None:
    d = Desk(tmp_path / "j.sqlite")
    parent = d.send(
        quantity=10, order_type=OrderType.LIMIT, limit_price=90.0, take_profit=105.0, stop_loss=85.0
    )
    open_orders = [o for o in d.oms.orders.values() if o.is_live]
    fresh = PaperBroker(PaperBrokerConfig(cash=1_000_000.0), symbols=["AAPL"], clock=lambda: d.t)
    fresh.restore([], open_orders)
    assert set(fresh.orders) == {parent.client_order_id}
    fresh.on_tick(Tick("AAPL", d.t + 1, 79.99, 80.01, 80.0, 0))
    assert set(fresh.orders) == {c.client_order_id for c in d.oms.children(parent.client_order_id)}


def test_operator_bracket_and_trail_through_the_engine_command(
    tmp_path: Path, make_config: Any, fake_clock: Any
) -> None:
    """The ticket's and the control shell's path: a NewOrder command with the new terms."""
    cfg = make_config(
        market={"symbols": ["AAPL"], "bar_seconds": 1.0, "stale_after": 10.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        risk={"max_orders_per_second": 1000.0},
        strategies=[],
    )
    rig = Rig(cfg, fake_clock, tmp_path / "journal.sqlite")
    try:
        rig.ticks(1, symbols=("AAPL",))
        res = rig.command(
            C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=10, take_profit=110.0, stop_loss=95.0)
        )
        assert res.ok and "with take-profit" in res.message and "stop-loss" in res.message
        rig.ticks(1, symbols=("AAPL",))
        assert rig.engine.oms.position("AAPL") == 10
        exits = [o for o in rig.engine.oms.orders.values() if o.parent_id]
        assert sorted(o.order_type.value for o in exits if o.is_live) == ["LMT", "STP"]
        res = rig.command(
            C.NewOrder(
                symbol="AAPL",
                side=Side.SELL,
                quantity=10,
                order_type=OrderType.TRAIL,
                options=OrderOptions(trail_percent=1.0),
            )
        )
        assert res.ok, res.message
        bad = rig.command(
            C.NewOrder(symbol="AAPL", side=Side.SELL, quantity=1, tif=TimeInForce.GTD)
        )
        assert not bad.ok and "GTD needs a good-till time" in bad.message
    finally:
        rig.close()


# ------------------------------------------------------------------------- backtests


class BracketEveryTen(StrategyInterface):
    """Buys 10 at market every tenth bar while flat, with a +/-3% bracket."""

    name: ClassVar[str] = "bracket_every_ten"
    uses_brackets: ClassVar[bool] = True

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        return signal_frame(bars.index, math.nan)

    def on_bar(self, bar: Bar) -> float:
        self.n = getattr(self, "n", 0) + 1
        return 1.0 if self.n % 10 == 0 else math.nan

    def execute(self, signals: pd.DataFrame | float, ctx: StrategyContext) -> list[Signal]:
        if ctx.position or math.isnan(float(signals)):  # type: ignore[arg-type]
            return []
        px = ctx.price
        return [
            Signal(
                self.strategy_id,
                Stock(ctx.symbol),
                Side.BUY,
                10,
                take_profit=round(px * 1.03, 2),
                stop_loss=round(px * 0.97, 2),
                reason="entry",
            )
        ]


def test_backtest_brackets_fill_like_the_paper_venue(tmp_path: Path) -> None:
    from fbterm.backtest.backtester import CustomBacktester
    from fbterm.data.simulated import synth_bars

    bars = synth_bars(300, seed=11)
    res = CustomBacktester(
        bars, BracketEveryTen(), cash=100_000.0, symbol="AAPL", sizing="fixed", mode="replay"
    ).run_backtest()
    bt = [
        (int(r.bar), float(r.quantity), round(float(r.price), 6), str(r.reason))
        for r in res.fills.itertuples()
    ]
    assert {r for *_, r in bt} >= {"entry", "take-profit", "stop-loss"}
    assert res.position is not None and res.position.abs().max() == 10  # never doubled

    # The same bars through the paper venue: the entry sent at the bar the backtest entered.
    desk = Desk(tmp_path / "paper.sqlite")
    entries = {b for b, q, _, r in bt if r == "entry"}
    paper: list[tuple[int, float, float, str]] = []
    seen: set[str] = set()
    for i, (ts, row) in enumerate(bars.iterrows()):
        if i in entries:
            px = float(row["open"])
            desk.send(quantity=10, take_profit=round(px * 1.03, 2), stop_loss=round(px * 0.97, 2))
        u = MarketUpdate(ts.timestamp(), row["open"], row["high"], row["low"], row["close"], 0.0)
        desk.broker.on_market("AAPL", u)
        for f in desk.oms.fills:
            if f.fill_id not in seen:
                seen.add(f.fill_id)
                reason = desk.oms.orders[f.client_order_id].reason or "entry"
                paper.append((i, f.signed_quantity, round(f.price, 6), reason))

    # Same fills, bar by bar (within one bar the two list an exit and a new entry in either order).
    def by_bar(rows: list[tuple[int, float, float, str]]) -> list[tuple[int, float, float, str]]:
        return sorted(rows, key=lambda r: (r[0], r[3]))

    assert len(paper) == len(bt) > 6
    assert by_bar(paper) == by_bar(bt)
