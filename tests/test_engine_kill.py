"""The operator's emergency commands on the engine: the kill switch, a scoped flatten that
keeps the strategies it closes from trading straight back in, what a halt says about working
orders, and the venue's what-if. Driven tick by tick on the test's thread (see test_engine)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import pytest
import test_engine
from test_engine import Rig, Scripted

from fbterm import commands as C
from fbterm.model import Bar, OrderType, Side, StrategyState, TradingState
from fbterm.strategies.base import StrategyInterface, signal_frame

pytestmark = pytest.mark.timeout(120)

# The engine tests' rig fixtures (an engine on a fake clock, fed tick by tick), shared.
config = test_engine.config
make_rig = test_engine.make_rig
rig = test_engine.rig


class AlwaysLong(StrategyInterface):
    """Wants to be long on every bar: anything that lets it trade puts the position back."""

    name: ClassVar[str] = "always_long"
    reenter_on_repeat: ClassVar[bool] = True

    def analyze(self, bars):  # type: ignore[no-untyped-def]
        return signal_frame(bars.index, 1.0)

    def on_bar(self, bar: Bar) -> float:
        return 1.0


def held(r: Rig) -> dict[tuple[str, str], float]:
    return {k: p.quantity for k, p in r.engine.oms.strategy_positions.items() if not p.is_flat}


def state(r: Rig, name: str) -> StrategyState:
    return r.engine.executor.slots[name].state


def test_kill_switch_pauses_cancels_flattens_and_nothing_trades_back(rig: Rig) -> None:
    rig.add("a", AlwaysLong(), units=10)
    rig.add("m", AlwaysLong(), units=3, symbols=("MSFT",))
    rig.ticks(4)
    assert held(rig) == {("a", "AAPL"): 10, ("m", "MSFT"): 3}
    working = rig.command(
        C.NewOrder(
            symbol="MSFT", side=Side.BUY, quantity=1, order_type=OrderType.LIMIT, limit_price=49.0
        )
    )
    assert working.ok
    res = rig.command(C.KillSwitch())
    assert res.ok, res.message
    assert res.message == (
        "kill switch (operator): 2 strategies paused, 1 orders cancelled, 2 closing orders sent"
    )
    rig.ticks(2)
    assert held(rig) == {}
    assert rig.engine.oms.open == {}
    assert state(rig, "a") is StrategyState.PAUSED and state(rig, "m") is StrategyState.PAUSED
    # Bars keep closing and the strategies keep wanting to be long: nothing re-enters.
    n_orders = len(rig.engine.oms.orders)
    rig.ticks(20)
    assert held(rig) == {} and len(rig.engine.oms.orders) == n_orders
    assert rig.engine.risk.state is TradingState.ACTIVE  # the kill switch does not halt


def test_flatten_one_symbol_pauses_its_holders_only(rig: Rig) -> None:
    rig.add("a", AlwaysLong(), units=10)
    rig.add("m", AlwaysLong(), units=3, symbols=("MSFT",))
    rig.ticks(4)
    res = rig.command(C.FlattenAll(symbol="AAPL"))
    assert res.ok and res.message == (
        "flatten AAPL: 1 closing orders sent, 0 orders cancelled; paused a"
    )
    rig.ticks(20)
    # Without the pause, a would have bought its 10 AAPL back on the next bar.
    assert held(rig) == {("m", "MSFT"): 3}
    assert state(rig, "a") is StrategyState.PAUSED and state(rig, "m") is StrategyState.RUNNING


def test_flatten_one_strategy_leaves_the_others(rig: Rig) -> None:
    rig.add("a", AlwaysLong(), units=10)
    rig.add("b", Scripted([-1]), units=7)
    rig.ticks(4)
    assert held(rig) == {("a", "AAPL"): 10, ("b", "AAPL"): -7}
    res = rig.command(C.FlattenAll(strategy="b"))
    assert res.ok and res.message.endswith("; paused b"), res.message
    rig.ticks(10)
    assert held(rig) == {("a", "AAPL"): 10}
    assert state(rig, "b") is StrategyState.PAUSED and state(rig, "a") is StrategyState.RUNNING


def test_flatten_of_a_manual_position_pauses_nothing(rig: Rig) -> None:
    rig.ticks(1)
    assert rig.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=5)).ok
    rig.ticks(1)
    res = rig.command(C.FlattenAll())
    assert res.ok and res.message.endswith("; no strategy to pause"), res.message


@pytest.mark.parametrize("cancel", [True, False])
def test_halt_says_what_happened_to_working_orders(
    make_rig: Callable[..., Rig],
    cancel: bool,
) -> None:
    r = make_rig(cancel_orders_on_halt=cancel)
    try:
        r.ticks(1)
        for px in (98.0, 97.0):
            assert r.command(
                C.NewOrder(
                    symbol="AAPL",
                    side=Side.BUY,
                    quantity=1,
                    order_type=OrderType.LIMIT,
                    limit_price=px,
                )
            ).ok
        res = r.command(C.Halt())
        if cancel:
            assert res.message == "halt: trading HALTED (operator); 2 working orders cancelled"
            assert r.engine.oms.open == {}
        else:
            assert res.message == (
                "halt: trading HALTED (operator); 2 working orders kept "
                "(risk.cancel_orders_on_halt = false)"
            )
            assert len(r.engine.oms.open) == 2
    finally:
        r.close()


def test_what_if_asks_the_paper_venue_and_sends_nothing(rig: Rig) -> None:
    rig.ticks(1)
    before = len(rig.engine.oms.orders)
    res = rig.command(
        C.WhatIf(
            symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.LIMIT, limit_price=98.0
        )
    )
    # 10 more AAPL, marked at the market (100) as the account marks it: 1,000 of new gross
    # exposure at leverage 2 is 500 of initial margin (not 490 from the limit price).
    assert res.ok and res.message.startswith("what-if (paper): initial margin +500 -> 500;")
    assert "(paper: gross / leverage 2)" in res.message
    assert len(rig.engine.oms.orders) == before
    res = rig.command(C.WhatIf(symbol="AAPL", side=Side.SELL, quantity=4))
    assert res.ok and "initial margin +200 -> 200" in res.message  # at the last price, 100
    assert not math.isnan(rig.engine.risk.equity)
