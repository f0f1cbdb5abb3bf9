"""Executor behaviours the live engine relies on: per-symbol strategy state, netted intents,
no opposite working orders, and the operator's flatten through a halt with two strategies on
one symbol. Everything runs for real: engine, paper broker, SQLite journal."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pytest

from fbterm import commands as C
from fbterm.config import Config
from fbterm.engine import Engine
from fbterm.journal import Journal
from fbterm.model import Bar, OrderType, Side, Signal, Stock, Tick, TradingState
from fbterm.strategies.base import StrategyContext, StrategyInterface, signal_frame
from fbterm.strategies.executor import net_signals

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(60)


class LastClose(StrategyInterface):
    """Remembers the last close it saw: any mixing of symbols shows up at once."""

    name: ClassVar[str] = "last_close"

    def reset(self) -> None:
        super().reset()
        self.closes: list[tuple[str, float]] = []

    def check(self) -> None:
        self.reset()

    def analyze(self, bars):
        return signal_frame(bars.index, math.nan)

    def on_bar(self, bar: Bar) -> float:
        self.closes.append((bar.symbol, bar.close))
        return math.nan


class Fixed(StrategyInterface):
    """Target +1 from the first bar on (or -1 with ``short``)."""

    name: ClassVar[str] = "fixed"

    def __init__(self, strategy_id: str | None = None, short: bool = False):
        self.short = short
        super().__init__(strategy_id)

    def analyze(self, bars):
        return signal_frame(bars.index, -1.0 if self.short else 1.0)

    def on_bar(self, bar: Bar) -> float:
        return -1.0 if self.short else 1.0


@pytest.fixture
def cfg(tmp_path: Path, make_config: ConfigBuilder) -> Config:
    """AAPL and MSFT, 1 s bars, paper fills of any size at once, no order-rate limit."""
    return make_config(
        market={"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        risk={"max_orders_per_second": 1000.0},
        broker={"paper": {"participation": 1.0}},
    )


@pytest.fixture
def engine(tmp_path: Path, cfg: Config) -> Engine:
    """An engine on ``cfg``, reconciled and not started: the test feeds it ticks by hand."""
    e = Engine(cfg, journal=Journal(tmp_path / "journal.sqlite"), warmup_bars=0)
    e.reconcile()
    return e


def ticks(e: Engine, t: float, prices: dict[str, float]) -> None:
    e.on_ticks([Tick(s, t, p - 0.01, p + 0.01, p, 1e6) for s, p in prices.items()])


def test_each_symbol_gets_its_own_strategy_state(engine: Engine) -> None:
    e = engine
    slot = e.add_strategy("lc", LastClose("lc"), ["AAPL", "MSFT"], 100_000)
    for i in range(5):
        ticks(e, 1000.0 + i, {"AAPL": 100.0 + i, "MSFT": 400.0 + i})
    aapl, msft = slot.instances["AAPL"], slot.instances["MSFT"]
    assert aapl is not msft
    assert {s for s, _ in aapl.closes} == {"AAPL"}
    assert {s for s, _ in msft.closes} == {"MSFT"}
    assert len(aapl.closes) == len(msft.closes) == 4  # four bars closed per symbol


def test_close_and_reopen_intents_are_netted() -> None:
    inst = Stock("AAPL")
    close = Signal("s", inst, Side.SELL, 100)
    reopen = Signal("s", inst, Side.BUY, 100)
    assert net_signals([close, reopen]) == []
    grow = Signal("s", inst, Side.BUY, 150)
    (net,) = net_signals([close, grow])
    assert (net.side, net.quantity) == (Side.BUY, 50)
    limit = Signal("s", inst, Side.BUY, 5, OrderType.LIMIT, limit_price=99.0)
    assert net_signals([limit, close]) == [limit, close]


def test_a_partially_filled_order_is_not_sent_again(engine: Engine) -> None:
    e = engine
    e.broker.participation = 0.00002  # 20 shares of a 1e6-volume tick: fills trickle in
    e.add_strategy("fx", Fixed("fx"), ["AAPL"], 100_000)
    for i in range(6):
        ticks(e, 1000.0 + i, {"AAPL": 100.0})
    orders = [o for o in e.oms.orders.values() if o.strategy_id == "fx"]
    assert len(orders) == 1, [(o.side, o.quantity, o.status) for o in orders]
    assert orders[0].filled_quantity > 0


def test_a_turn_cancels_what_works_before_sending_the_other_way(engine: Engine) -> None:
    e = engine
    e.broker.participation = 0.00002
    strat = Fixed("fx")
    slot = e.add_strategy("fx", strat, ["AAPL"], 100_000)
    for i in range(3):
        ticks(e, 1000.0 + i, {"AAPL": 100.0})
    slot.instances["AAPL"].short = True
    for i in range(3, 5):
        ticks(e, 1000.0 + i, {"AAPL": 100.0})
    working = [o for o in e.oms.open.values() if o.strategy_id == "fx"]
    assert len({o.side for o in working}) <= 1, [(o.side, o.status) for o in working]
    first = next(o for o in e.oms.orders.values() if o.side is Side.BUY)
    assert first.status.value in ("Cancelled", "Filled")


def test_flatten_passes_a_halt_with_two_strategies_on_one_symbol(engine: Engine) -> None:
    e = engine
    e.add_strategy("long", Fixed("long"), ["AAPL"], 100_000)
    e.add_strategy("short", Fixed("short", short=True), ["AAPL"], 50_000)
    for i in range(4):
        ticks(e, 1000.0 + i, {"AAPL": 100.0})
    assert e.oms.position("AAPL", "long") > 0 > e.oms.position("AAPL", "short")
    e.risk.halt_trading("test")
    ok, msg = e.handlers.handle(C.FlattenAll())
    assert ok, msg
    ticks(e, 1010.0, {"AAPL": 100.0})
    assert e.risk.state is TradingState.HALTED
    assert e.oms.position("AAPL", "long") == 0
    assert e.oms.position("AAPL", "short") == 0
    assert e.oms.position("AAPL") == 0


def test_a_strategy_turning_inside_a_halt_sends_nothing(engine: Engine) -> None:
    e = engine
    e.add_strategy("fx", Fixed("fx"), ["AAPL"], 100_000)
    e.risk.halt_trading("test")
    n = len(e.oms.orders)
    for i in range(4):
        ticks(e, 1000.0 + i, {"AAPL": 100.0})
    assert len(e.oms.orders) == n
    ctx = StrategyContext("fx", "AAPL", 100.0, 0.0, 100_000, 0.0)
    assert Fixed("fx").execute(1.0, ctx)  # the strategy would trade; the engine held it back


def test_a_restart_expires_day_orders_from_an_earlier_session_and_keeps_gtc(
    tmp_path: Path, cfg: Config
) -> None:
    from fbterm.model import OrderStatus, TimeInForce

    day1 = 1_800_000_000.0
    e = Engine(
        cfg,
        journal=Journal(tmp_path / "journal.sqlite"),
        warmup_bars=0,
        clock=lambda: day1,
    )
    e.reconcile()
    ticks(e, day1, {"AAPL": 100.0})
    for tif in (TimeInForce.DAY, TimeInForce.GTC):
        ok, msg = e.handlers.handle(
            C.NewOrder(
                symbol="AAPL",
                side=Side.BUY,
                quantity=10,
                order_type=OrderType.LIMIT,
                limit_price=99.0,
                tif=tif,
            )
        )
        assert ok, msg
    day_id, gtc_id = sorted(e.oms.open)
    e.journal.close()

    e2 = Engine(
        cfg,
        journal=Journal(tmp_path / "journal.sqlite"),
        warmup_bars=0,
        clock=lambda: day1 + 86_400,
    )
    notes = e2.reconcile()
    assert e2.oms.orders[day_id].status is OrderStatus.CANCELLED
    assert "expired" in e2.oms.orders[day_id].reason
    assert e2.oms.orders[gtc_id].status is OrderStatus.SUBMITTED
    assert gtc_id in e2.broker.orders  # still working at the (restored) paper venue
    assert any("expired" in n for n in notes)
    e2.journal.close()


def test_ib_feeds_are_only_judged_stale_while_the_exchange_is_open(cfg: Config) -> None:
    import pandas as pd

    from fbterm.engine.housekeeping import MarketHours

    hours = MarketHours("ib")  # only the calendar logic: no broker connection needed
    ts = lambda s: pd.Timestamp(s, tz="UTC").timestamp()  # noqa: E731
    assert hours.is_open(ts("2026-11-24 15:00"))  # a Tuesday afternoon in New York
    assert not hours.is_open(ts("2026-11-24 03:00"))  # the middle of the night
    assert not hours.is_open(ts("2026-11-26 15:00"))  # Thanksgiving
    hours = MarketHours(cfg.market.source)  # the simulated market never sleeps
    assert hours.is_open(ts("2026-11-24 03:00"))


class TwoLegs(StrategyInterface):
    """Asks for two limit orders at once (limits are not netted)."""

    name: ClassVar[str] = "two_legs"

    def analyze(self, bars):
        return signal_frame(bars.index, 1.0)

    def on_bar(self, bar: Bar) -> float:
        return 1.0

    def execute(self, signals, ctx: StrategyContext) -> list[Signal]:
        if self._last_target.get(ctx.symbol) == 1.0:
            return []
        self._last_target[ctx.symbol] = 1.0
        inst = Stock(ctx.symbol)
        return [
            Signal(
                self.strategy_id, inst, Side.BUY, 1, OrderType.LIMIT, limit_price=ctx.price * 0.99
            ),
            Signal(
                self.strategy_id, inst, Side.BUY, 1, OrderType.LIMIT, limit_price=ctx.price * 0.98
            ),
        ]


def test_strategy_orders_go_through_the_order_queue_and_a_full_queue_is_reported(
    engine: Engine,
) -> None:
    from fbterm.execution.orders import OrderQueue

    e = engine
    e.executor.queue = e.queue = OrderQueue(maxsize=1)
    e.add_strategy("legs", TwoLegs("legs"), ["AAPL"], 100_000)
    for i in range(3):
        ticks(e, 1000.0 + i, {"AAPL": 100.0})
    sent = [o for o in e.oms.orders.values() if o.strategy_id == "legs"]
    assert len(sent) == 1  # the first leg went through the queue...
    assert len(e.queue) == 0  # ...which the executor drained
    assert any(
        "order queue full" in line.message and line.level == "error" for line in e.activity.lines
    )
