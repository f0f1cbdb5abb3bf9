"""PaperBroker and the pure fill model: prices, triggers, gaps, partial fills, commissions, rejects."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from fbterm.config import PaperBrokerConfig, SimulatedMarketConfig
from fbterm.data.simulated import SimulatedMarket
from fbterm.execution.brokers.base import FillEvent, ModifyAckEvent, OrderStatusEvent
from fbterm.execution.brokers.fills import MarketUpdate, match_order
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.costs import FractionCommission, PerShareCommission, commission_model
from fbterm.model import (
    Option,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Right,
    Side,
    Stock,
    Tick,
)

T0 = 1_700_000_000.0


def order(
    qty: float = 100,
    side: Side = Side.BUY,
    typ: OrderType = OrderType.MARKET,
    *,
    lmt: float | None = None,
    stp: float | None = None,
    oid: str = "T-1",
    inst: Stock | Option | None = None,
) -> Order:
    return Order(
        oid,
        inst or Stock("AAPL"),
        side,
        qty,
        typ,
        limit_price=lmt,
        stop_price=stp,
        created_ts=T0,
        updated_ts=T0,
    )


def bar(
    o: float, h: float, lo: float, c: float, v: float = 0.0, ts: float = T0 + 1
) -> MarketUpdate:
    return MarketUpdate(ts, o, h, lo, c, v)


class Venue:
    """A PaperBroker plus the events it emitted."""

    def __init__(self, cash: float = 1_000_000.0, cap: float | None = None, **cfg: object):
        self.events: list[object] = []
        self.b = PaperBroker(
            PaperBrokerConfig(cash=cash, **cfg),
            symbols=["AAPL", "MSFT"],
            participation=cap,
            clock=lambda: T0,
        )
        self.b.set_event_handler(self.events.append)

    def send(self, o: Order) -> Order:
        self.b.execute_order(o)
        return o

    @property
    def fills(self):
        return [e.fill for e in self.events if isinstance(e, FillEvent)]

    def statuses(self, oid: str = "T-1") -> list[OrderStatus]:
        return [
            e.status
            for e in self.events
            if isinstance(e, OrderStatusEvent) and e.client_order_id == oid
        ]


# ------------------------------------------------------------------------- market orders


def test_market_order_fills_at_the_next_price_not_the_one_already_seen():
    v = Venue()
    v.b.on_tick(Tick("AAPL", T0 - 1, 99.9, 100.1, 100.0, 1000))  # the price the strategy saw
    v.send(order())
    assert v.statuses() == [OrderStatus.SUBMITTED]
    assert v.fills == []  # nothing fills inside execute_order
    v.b.on_tick(Tick("AAPL", T0 + 1, 101.9, 102.1, 102.0, 1000))
    (f,) = v.fills
    assert (f.quantity, f.price) == (100, 102.1)  # a buy pays the next ask
    assert v.b.positions["AAPL"].quantity == 100
    assert "T-1" not in v.b.orders


def test_market_sell_gets_the_bid_and_a_bar_fills_at_its_open():
    v = Venue()
    v.b.on_market("AAPL", bar(100, 101, 99, 100.5))
    v.send(order(10, Side.SELL))
    v.b.on_tick(Tick("AAPL", T0 + 1, 98.0, 98.2, 98.1, 1000))
    assert [f.price for f in v.fills] == [98.0]
    v.send(order(10, Side.BUY, oid="T-2"))
    v.b.on_market("AAPL", bar(97.5, 99, 97, 98.5, ts=T0 + 2))
    assert v.fills[-1].price == 97.5


def test_the_next_update_fills_a_market_order_whatever_its_timestamp():
    # "Next" is the order of arrival, not the clock: a replay of old bars (CSV, backtest)
    # carries timestamps long before the wall-clock time the order was created at.
    v = Venue()
    v.b.on_market("AAPL", bar(80, 80, 80, 80, ts=T0 - 10))
    v.send(order())
    assert v.fills == []
    v.b.on_market("AAPL", bar(90, 90, 90, 90, ts=T0 - 5))
    assert [f.price for f in v.fills] == [90]
    assert v.fills[0].ts == T0 - 5


def test_updates_on_another_symbol_do_not_fill():
    v = Venue()
    v.send(order())
    v.b.on_market("MSFT", bar(400, 401, 399, 400))
    assert v.fills == []


# ---------------------------------------------------------------------- limits and stops


@pytest.mark.parametrize(
    ("side", "limit", "update", "expected"),
    [
        (Side.BUY, 100.0, bar(101, 102, 100.5, 101), None),  # never reached
        (Side.BUY, 100.0, bar(101, 102, 99.5, 101), 100.0),  # traded through: at the limit
        (Side.BUY, 100.0, bar(98, 99, 97, 98.5), 98.0),  # gapped below: at the open (better)
        (Side.BUY, 100.0, bar(101, 102, 100.0, 101), 100.0),  # touched exactly
        (Side.SELL, 100.0, bar(99, 99.5, 98, 99), None),
        (Side.SELL, 100.0, bar(99, 100.5, 98, 99), 100.0),
        (Side.SELL, 100.0, bar(103, 104, 102, 103), 103.0),  # gapped above: at the open
    ],
)
def test_limit_crossing(side, limit, update, expected):
    d = match_order(order(side=side, typ=OrderType.LIMIT, lmt=limit), update)
    if expected is None:
        assert d is None
    else:
        assert d is not None and (d.quantity, d.price) == (100, expected)


@pytest.mark.parametrize(
    ("side", "stop", "update", "expected"),
    [
        (Side.BUY, 105.0, bar(100, 104.9, 99, 104), None),
        (Side.BUY, 105.0, bar(100, 106, 99, 104), 105.0),  # touched intrabar: at the stop
        (Side.BUY, 105.0, bar(107, 108, 106, 107), 107.0),  # gapped through: at the open
        (Side.SELL, 95.0, bar(100, 101, 95.1, 96), None),
        (Side.SELL, 95.0, bar(100, 101, 94, 96), 95.0),
        (Side.SELL, 95.0, bar(90, 92, 89, 91), 90.0),  # gap down: at the (worse) open
    ],
)
def test_stop_crossing_incl_gaps(side, stop, update, expected):
    d = match_order(order(side=side, typ=OrderType.STOP, stp=stop), update)
    if expected is None:
        assert d is None
    else:
        assert d is not None and d.triggered and (d.quantity, d.price) == (100, expected)


def test_stop_limit_triggered_but_gapped_past_the_limit_waits_then_fills():
    v = Venue()
    o = order(side=Side.SELL, typ=OrderType.STOP_LIMIT, stp=95.0, lmt=94.0)
    v.send(o)
    v.b.on_market("AAPL", bar(100, 101, 96, 97))  # not touched
    assert v.fills == [] and not v.b.orders["T-1"].triggered
    v.b.on_market("AAPL", bar(92, 93, 91, 92, ts=T0 + 2))  # gapped through stop AND limit
    assert v.fills == []
    assert v.b.orders["T-1"].triggered  # it is now a working limit order at 94
    v.b.on_market("AAPL", bar(92, 94.5, 91.5, 94, ts=T0 + 3))  # back up through the limit
    (f,) = v.fills
    assert f.price == 94.0 and f.quantity == 100


def test_stop_limit_fills_in_the_trigger_bar_when_the_limit_allows():
    d = match_order(
        order(side=Side.BUY, typ=OrderType.STOP_LIMIT, stp=105.0, lmt=106.0), bar(100, 107, 99, 106)
    )
    assert d is not None and d.triggered and d.price == 105.0
    # gap open 105.5 between stop and limit: fills at the open
    d = match_order(
        order(side=Side.BUY, typ=OrderType.STOP_LIMIT, stp=105.0, lmt=106.0),
        bar(105.5, 107, 105, 106),
    )
    assert d is not None and d.price == 105.5


# ------------------------------------------------------------------------- partial fills


def test_partial_fills_by_participation_until_complete():
    v = Venue(cap=0.25)
    v.send(order(100))
    vols = [40, 200, 39, 1000]  # caps: 10, 50, floor(9.75)=9, 250 -> the rest (31)
    for i, vol in enumerate(vols):
        v.b.on_tick(Tick("AAPL", T0 + 1 + i, 100, 100.02, 100.01, vol))
    assert [f.quantity for f in v.fills] == [10, 50, 9, 31]
    assert sum(f.quantity for f in v.fills) == 100
    assert v.b.positions["AAPL"].quantity == 100
    assert "T-1" not in v.b.orders


def test_participation_from_config_and_no_cap_without_volume():
    v = Venue(cap=-1.0, participation=0.5)  # cap -1: the broker takes the config's 0.5
    v.send(order(100))
    v.b.on_tick(Tick("AAPL", T0 + 1, 100, 100, 100, 60))
    assert [f.quantity for f in v.fills] == [30]
    assert v.b.orders["T-1"].status is OrderStatus.PARTIALLY_FILLED
    v.b.on_tick(Tick("AAPL", T0 + 2, 100, 100, 100, 0))  # no volume reported: not capped
    assert [f.quantity for f in v.fills] == [30, 70]


# ---------------------------------------------------------------------------- commissions


@pytest.mark.parametrize(
    ("qty", "price", "mult", "expected"),
    [
        (100, 50.0, 1, 1.0),  # 0.50 at 0.005/share -> the 1.00 minimum
        (1000, 50.0, 1, 5.0),  # 0.005 x 1000
        (10_000, 0.02, 1, 2.0),  # 50.00, capped at 1% of 200.00 value
        (3, 2.5, 100, 1.95),  # options: 0.65 per contract
        (1, 2.5, 100, 1.0),  # ... with the minimum
        (0, 50.0, 1, 0.0),
    ],
)
def test_per_share_commission(qty, price, mult, expected):
    assert PerShareCommission()(qty, price, mult) == pytest.approx(expected)


def test_percent_commission_and_model_factory():
    assert FractionCommission(0.001)(100, 50.0) == pytest.approx(5.0)
    assert FractionCommission(0.001)(2, 3.0, 100) == pytest.approx(0.6)
    assert isinstance(commission_model("ib"), PerShareCommission)
    assert commission_model("percent", fraction=0.002) == FractionCommission(0.002)
    with pytest.raises(ValueError, match="unknown commission model"):
        commission_model("flat")


@pytest.mark.parametrize("mode", ["per_share", "percent"])
def test_broker_charges_commission_and_books_cash(mode):
    v = Venue(cash=100_000.0, commission=mode, commission_fraction=0.0001)
    v.send(order(1000))
    v.b.on_tick(Tick("AAPL", T0 + 1, 50.0, 50.0, 50.0, 0))
    (f,) = v.fills
    assert f.commission == pytest.approx(5.0)  # 1000 x 0.005, or 0.01% of 50,000
    assert v.b.cash == pytest.approx(100_000.0 - 50_000.0 - 5.0)
    assert v.b.equity() == pytest.approx(100_000.0 - 5.0)
    acct = v.b.query_account_details()
    assert acct.realized_pnl == pytest.approx(-5.0)


# -------------------------------------------------------------------------------- rejects


def test_reject_unknown_symbol():
    v = Venue()
    v.send(order(inst=Stock("ZZZZ")))
    (ev,) = v.events
    assert ev.status is OrderStatus.REJECTED and "unknown symbol 'ZZZZ'" in ev.reason
    assert v.b.orders == {}


def test_zero_or_negative_quantity_is_refused_by_both_layers():
    for bad in (0, -5, float("nan")):
        with pytest.raises(OrderError, match="quantity must be > 0"):
            order(bad)
    # The broker must not rely on the model: an order that slipped past it (here forced with
    # object.__setattr__, since Order itself refuses) is rejected with a reason, not filled.
    o = order(10)
    object.__setattr__(o, "quantity", 0.0)
    v = Venue()
    v.send(o)
    (ev,) = v.events
    assert ev.status is OrderStatus.REJECTED and "quantity must be > 0" in ev.reason
    assert v.b.orders == {}


def test_reject_insufficient_buying_power_but_reducing_passes():
    v = Venue(cash=10_000.0, leverage=1.0)
    v.b.on_tick(Tick("AAPL", T0, 100, 100, 100, 0))
    v.send(order(101))  # 10,100 > 10,000
    assert v.statuses() == [OrderStatus.REJECTED]
    assert "insufficient buying power" in v.events[-1].reason
    v.send(order(90, oid="T-2"))
    v.b.on_tick(Tick("AAPL", T0 + 1, 100, 100, 100, 0))
    assert v.b.positions["AAPL"].quantity == 90
    # A working limit order reserves buying power: a second one that together exceeds it fails.
    v.send(order(80, Side.SELL, oid="T-3"))  # reduces the position: always accepted
    assert v.statuses("T-3") == [OrderStatus.SUBMITTED]


def test_reject_when_working_orders_reserve_the_buying_power():
    v = Venue(cash=10_000.0, leverage=1.0)
    v.b.on_tick(Tick("AAPL", T0, 100, 100, 100, 0))
    v.send(order(60, typ=OrderType.LIMIT, lmt=90.0))  # reserves 5,400
    v.send(order(60, typ=OrderType.LIMIT, lmt=90.0, oid="T-2"))  # 5,400 > 4,600 left
    assert v.statuses("T-1") == [OrderStatus.SUBMITTED]
    assert v.statuses("T-2") == [OrderStatus.REJECTED]
    v.b.cancel_order(v.b.orders["T-1"])
    v.send(order(60, typ=OrderType.LIMIT, lmt=90.0, oid="T-3"))
    assert v.statuses("T-3") == [OrderStatus.SUBMITTED]


def test_cancel_and_modify_at_the_venue():
    v = Venue()
    v.send(order(100, typ=OrderType.LIMIT, lmt=90.0))
    live = v.b.orders["T-1"]
    v.b.modify_order(live.modified(limit_price=99.0, quantity=50))
    ack = v.events[-1]
    assert isinstance(ack, ModifyAckEvent) and ack.limit_price == 99.0 and ack.quantity == 50
    v.b.on_market("AAPL", bar(100, 100, 98.5, 99))
    assert [(f.quantity, f.price) for f in v.fills] == [(50, 99.0)]
    v.send(order(10, typ=OrderType.LIMIT, lmt=50.0, oid="T-2"))
    v.b.cancel_order(v.b.orders["T-2"])
    assert v.statuses("T-2")[-1] is OrderStatus.CANCELLED
    from fbterm.execution.brokers.base import BrokerError

    with pytest.raises(BrokerError):
        v.b.cancel_order(order(oid="T-2"))


# -------------------------------------------------------------------------------- options


def test_option_order_fills_through_the_option_pricer():
    market = SimulatedMarket(["AAPL"], SimulatedMarketConfig(seed=3), start_ts=T0)
    b = PaperBroker(
        PaperBrokerConfig(cash=1_000_000.0),
        symbols=["AAPL"],
        participation=None,
        option_pricer=market.option_quote,
        clock=lambda: T0,
    )
    events: list[object] = []
    b.set_event_handler(events.append)
    expiry = dt.date.fromtimestamp(T0) + dt.timedelta(days=45)
    opt = Option("AAPL", Right.CALL, 200.0, expiry)
    b.execute_order(order(3, inst=opt))
    assert isinstance(events[-1], OrderStatusEvent) and events[-1].status is OrderStatus.SUBMITTED
    t = market.next_ticks()[0]
    b.on_tick(dataclasses.replace(t, ts=T0 + 1))
    (f,) = [e.fill for e in events if isinstance(e, FillEvent)]
    q = market.option_quote(opt)
    assert f.instrument == opt and f.quantity == 3
    assert f.price == pytest.approx(q.ask)  # a buy pays the option's ask
    assert f.commission == pytest.approx(1.95)
    assert b.cash == pytest.approx(1_000_000.0 - 3 * q.ask * 100 - 1.95)
    assert b.positions[opt.key].quantity == 3


def test_option_order_without_a_pricer_is_rejected():
    v = Venue()
    opt = Option("AAPL", Right.PUT, 150.0, dt.date(2030, 1, 18))
    v.send(order(1, inst=opt))
    assert v.events[-1].status is OrderStatus.REJECTED and "no option quotes" in v.events[-1].reason


def test_stop_that_triggers_and_fills_whole_in_one_update():
    # Regression: marking a fully filled stop as triggered raised Filled -> Filled.
    v = Venue()
    v.send(order(10, typ=OrderType.STOP, stp=105.0))
    v.b.on_market("AAPL", bar(100, 106, 99, 104))
    (f,) = v.fills
    assert (f.quantity, f.price) == (10, 105.0)
    assert v.b.positions["AAPL"].quantity == 10 and v.b.orders == {}
