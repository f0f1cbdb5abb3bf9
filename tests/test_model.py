"""The domain model: instrument keys, the order state machine, fills and positions."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from fbterm.model import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Fill,
    IllegalTransition,
    Option,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Position,
    Right,
    Side,
    Signal,
    Stock,
    instrument_from_key,
    positions_from_fills,
)

S = OrderStatus


def mk(status: S = S.SUBMITTED, qty: float = 100, **kw) -> Order:
    o = Order("O-1", Stock("AAPL"), Side.BUY, qty, created_ts=1.0, updated_ts=1.0, **kw)
    return o if status is S.PENDING_SUBMIT else _force(o, status)


def _force(o: Order, status: S) -> Order:
    # Reach ``status`` through legal moves only.
    path = {
        S.SUBMITTED: [S.SUBMITTED],
        S.PARTIALLY_FILLED: [S.SUBMITTED],
        S.PENDING_CANCEL: [S.SUBMITTED, S.PENDING_CANCEL],
        S.FILLED: [S.SUBMITTED],
        S.CANCELLED: [S.SUBMITTED, S.CANCELLED],
        S.REJECTED: [S.REJECTED],
    }[status]
    for st in path:
        o = o.transition(st, ts=2.0)
    if status is S.PARTIALLY_FILLED:
        o = o.with_fill(40, 10.0, ts=3.0)
    if status is S.FILLED:
        o = o.with_fill(o.quantity, 10.0, ts=3.0)
    assert o.status is status
    return o


# --------------------------------------------------------------------------- instruments


def test_instrument_keys_round_trip():
    opt = Option("AAPL", Right.CALL, 187.5, dt.date(2025, 1, 17))
    assert opt.key == "AAPL 20250117 C187.5"
    assert instrument_from_key(opt.key) == opt
    assert instrument_from_key(" msft ") == Stock("MSFT")
    assert Option("SPY", "p", 500.0, dt.date(2025, 3, 21)).right is Right.PUT
    assert opt.multiplier == 100 and Stock("X").multiplier == 1
    for bad in ("", "TWO WORDS"):
        with pytest.raises(ValueError):
            instrument_from_key(bad)
    with pytest.raises(ValueError, match="strike"):
        Option("AAPL", Right.CALL, 0.0, dt.date(2025, 1, 17))


# -------------------------------------------------------------------------- state machine


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(list(S), list(S))))
def test_every_transition_is_either_allowed_or_refused_without_change(src, dst):
    o = mk(src)
    before = o.to_dict()
    if dst in TRANSITIONS[src]:
        new = o.transition(dst, ts=9.0)
        assert new.status is dst and new.updated_ts == 9.0
    else:
        with pytest.raises(IllegalTransition) as ei:
            o.transition(dst, ts=9.0)
        assert ei.value.current is src and ei.value.requested is dst
        assert f"{src.value} -> {dst.value}" in str(ei.value)
    assert o.to_dict() == before  # immutable: the old value never changes


def test_terminal_states_are_final():
    assert frozenset({S.FILLED, S.CANCELLED, S.REJECTED}) == TERMINAL_STATUSES
    for st in TERMINAL_STATUSES:
        assert TRANSITIONS[st] == frozenset()
        with pytest.raises(IllegalTransition, match="already final"):
            mk(st).transition(S.SUBMITTED)
    assert not any(S.PENDING_SUBMIT in allowed for allowed in TRANSITIONS.values())


def test_fills_move_the_status_and_the_average_price():
    o = mk(S.SUBMITTED)
    o = o.with_fill(30, 10.0, ts=5.0)
    assert (o.status, o.filled_quantity, o.remaining) == (S.PARTIALLY_FILLED, 30, 70)
    o = o.with_fill(70, 20.0)
    assert o.status is S.FILLED and o.avg_fill_price == pytest.approx((30 * 10 + 70 * 20) / 100)
    with pytest.raises(OrderError, match="exceeds remaining"):
        mk(S.SUBMITTED).with_fill(101, 1.0)
    with pytest.raises(OrderError, match="must be > 0"):
        mk(S.SUBMITTED).with_fill(0, 1.0)
    with pytest.raises(IllegalTransition):
        mk(S.CANCELLED).with_fill(1, 1.0)
    # A partial fill racing a cancel request keeps the order pending cancel.
    pc = mk(S.PENDING_CANCEL).with_fill(10, 1.0)
    assert pc.status is S.PENDING_CANCEL and pc.filled_quantity == 10
    assert mk(S.PENDING_CANCEL).with_fill(100, 1.0).status is S.FILLED


def test_modify_rules():
    o = mk(S.SUBMITTED, order_type=OrderType.LIMIT, limit_price=10.0)
    m = o.modified(quantity=150, limit_price=11.0, ts=7.0)
    assert (m.quantity, m.limit_price, m.revision, m.status) == (150, 11.0, 1, S.SUBMITTED)
    assert o.quantity == 100 and o.revision == 0
    to_mkt = o.modified(order_type=OrderType.MARKET)
    assert to_mkt.limit_price is None and to_mkt.order_type is OrderType.MARKET
    with pytest.raises(OrderError, match="needs a stop price"):
        o.modified(order_type=OrderType.STOP)
    stp = o.modified(order_type=OrderType.STOP_LIMIT, stop_price=9.5)
    assert (stp.limit_price, stp.stop_price) == (10.0, 9.5)
    part = mk(S.PARTIALLY_FILLED)  # 40 filled
    with pytest.raises(OrderError, match="must exceed filled 40"):
        part.modified(quantity=40)
    assert part.modified(quantity=41).quantity == 41
    for st in (S.PENDING_CANCEL, S.FILLED, S.CANCELLED, S.REJECTED):
        with pytest.raises(IllegalTransition, match="only a working order"):
            mk(st).modified(quantity=5)
    with pytest.raises(OrderError, match="quantity must be > 0"):
        o.modified(quantity=-1)


@pytest.mark.parametrize(
    ("typ", "lmt", "stp", "msg"),
    [
        (OrderType.LIMIT, None, None, "needs a limit price"),
        (OrderType.LIMIT, -1.0, None, "needs a limit price"),
        (OrderType.STOP, None, None, "needs a stop price"),
        (OrderType.STOP_LIMIT, 10.0, None, "needs a stop price"),
        (OrderType.MARKET, 10.0, None, "takes no limit price"),
        (OrderType.LIMIT, 10.0, 9.0, "takes no stop price"),
        (OrderType.LIMIT, float("inf"), None, "needs a limit price"),
    ],
)
def test_malformed_orders_and_signals_are_refused(typ, lmt, stp, msg):
    with pytest.raises(OrderError, match=msg):
        Order("X", Stock("A"), Side.BUY, 1, typ, limit_price=lmt, stop_price=stp)
    with pytest.raises(OrderError, match=msg):
        Signal("s", Stock("A"), Side.BUY, 1, typ, limit_price=lmt, stop_price=stp)


def test_order_and_fill_serialise_losslessly():
    opt = Option("AAPL", Right.PUT, 150.0, dt.date(2026, 6, 19))
    o = Order(
        "O-9",
        opt,
        Side.SELL,
        3,
        OrderType.STOP_LIMIT,
        limit_price=1.5,
        stop_price=1.6,
        strategy_id="cc",
        signal_price=1.55,
        created_ts=1.0,
    ).transition(S.SUBMITTED, broker_order_id="B7")
    o = o.with_fill(1, 1.5)
    assert Order.from_dict(o.to_dict()) == o
    f = Fill("F1", "O-9", opt, Side.SELL, 1, 1.5, 0.65, 3.0, "cc")
    assert Fill.from_dict(f.to_dict()) == f
    assert f.value == pytest.approx(150.0) and f.signed_quantity == -1


# ---------------------------------------------------------------------------- positions


def fill(side: Side, qty: float, px: float, comm: float = 0.0, inst=None, sid: str = "s") -> Fill:
    return Fill(f"F{px}{qty}{side}", "O", inst or Stock("AAPL"), side, qty, px, comm, 1.0, sid)


def test_position_average_cost_realised_pnl_and_reversal_by_hand():
    p = Position(Stock("AAPL"))
    p = p.apply_fill(fill(Side.BUY, 100, 10.0, 1.0))
    p = p.apply_fill(fill(Side.BUY, 100, 12.0, 1.0))
    assert (p.quantity, p.avg_cost) == (200, 11.0)
    assert p.realized_pnl == pytest.approx(-2.0) and p.commissions == 2.0
    p = p.apply_fill(fill(Side.SELL, 50, 15.0, 1.0))  # realise (15-11)*50 = 200
    assert (p.quantity, p.avg_cost) == (150, 11.0)
    assert p.realized_pnl == pytest.approx(200 - 3.0)
    assert p.unrealized_pnl(13.0) == pytest.approx(300.0)
    p = p.apply_fill(fill(Side.SELL, 200, 9.0, 1.0))  # close 150 at a 2 loss, open 50 short at 9
    assert (p.quantity, p.avg_cost) == (-50, 9.0)
    assert p.realized_pnl == pytest.approx(200 - 300 - 4.0)
    assert p.unrealized_pnl(8.0) == pytest.approx(50.0)
    p = p.apply_fill(fill(Side.BUY, 50, 10.0))
    assert p.is_flat and p.avg_cost == 0.0 and p.opened_ts is None
    assert p.realized_pnl == pytest.approx(200 - 300 - 4.0 - 50)


def test_option_position_respects_the_multiplier():
    opt = Option("AAPL", Right.CALL, 200.0, dt.date(2026, 1, 16))
    p = Position(opt).apply_fill(fill(Side.SELL, 2, 3.0, 1.3, inst=opt))
    assert p.market_value(2.0) == pytest.approx(-400.0)
    assert p.unrealized_pnl(2.0) == pytest.approx(200.0)
    p = p.apply_fill(fill(Side.BUY, 2, 1.0, 1.3, inst=opt))
    assert p.is_flat and p.realized_pnl == pytest.approx((3.0 - 1.0) * 2 * 100 - 2.6)


def test_positions_from_fills_by_account_and_by_strategy():
    fs = [
        fill(Side.BUY, 10, 100.0, sid="a"),
        fill(Side.SELL, 4, 101.0, sid="b"),
        fill(Side.BUY, 1, 50.0, inst=Stock("MSFT"), sid="a"),
    ]
    acct = positions_from_fills(fs)
    assert acct["AAPL"].quantity == 6 and acct["MSFT"].quantity == 1
    by = positions_from_fills(fs, by_strategy=True)
    assert by[("a", "AAPL")].quantity == 10 and by[("b", "AAPL")].quantity == -4
    assert by[("b", "AAPL")].strategy_id == "b"
