"""Margin and Kelly, one rule each: the paper venue's margin call and liquidation follow the
margin rule the backtest closes out by; orders beyond buying power are cut to their closing
part at both; the engine's half-Kelly rebalance is fed returns, not equity levels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fbterm.backtest.backtester import CustomBacktester
from fbterm.config import PaperBrokerConfig, StrategyRiskConfig, load_config
from fbterm.engine.housekeeping import rebalance
from fbterm.execution.brokers.base import BrokerMessage, OrderStatusEvent
from fbterm.execution.brokers.fills import MarketUpdate
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.margin import CASH_ACCOUNT, MarginRule, MarginStatus
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import OrderStatus, OrderType, Side, Signal, Stock
from fbterm.stats import returns_net_of_flows
from fbterm.strategies.base import Sizing

T0 = 1_700_000_000.0


def update(px: float, k: int) -> MarketUpdate:
    return MarketUpdate(T0 + k, px, px, px, px, 1e9)


@pytest.fixture
def venue(tmp_path: Path):
    cfg = PaperBrokerConfig(
        cash=10_000.0, leverage=2.0, maintenance_margin=0.25, commission="percent",
        commission_fraction=0.0,
    )  # fmt: skip
    broker = PaperBroker(cfg, symbols=["X", "Y"], participation=None)
    journal = Journal(tmp_path / "j.sqlite")
    oms = OrderManagement(broker, journal)
    events: list[object] = []
    seen = broker._handler
    broker.set_event_handler(lambda ev: (events.append(ev), seen(ev)))
    yield broker, oms, events
    journal.close()


def buy(oms: OrderManagement, strategy: str, sym: str, qty: float) -> None:
    sig = Signal(strategy, Stock(sym), Side.BUY, qty, OrderType.MARKET, signal_price=100.0)
    oms.create_order(sig)


def test_rule_thresholds() -> None:
    rule = MarginRule(leverage=2.0, maintenance=0.25)
    assert rule.status(10_000, 20_000) is MarginStatus.OK  # fully levered: exactly the initial
    assert rule.status(9_999, 20_000) is MarginStatus.CALL
    assert rule.status(5_000, 20_000) is MarginStatus.LIQUIDATE  # = 25% of gross
    assert CASH_ACCOUNT.status(0.0, 1.0) is MarginStatus.LIQUIDATE  # the backtest's: equity 0
    assert CASH_ACCOUNT.status(0.01, 1e9) is MarginStatus.CALL
    with pytest.raises(ValueError, match="1 / leverage"):
        MarginRule(leverage=4.0, maintenance=0.25)
    # admit: a reversal that does not fit keeps its closing part, a pure add is refused whole
    assert rule.admit(100, -300, 10.0, 0.0, equity=500, gross_other=0.0) == -100
    assert rule.admit(0, 200, 10.0, 0.0, equity=1_000) == 200  # 2,000 = buying power
    assert rule.admit(0, 201, 10.0, 0.0, equity=1_000) == 0


def test_paper_margin_call_once_then_liquidation_per_strategy(venue) -> None:
    broker, oms, events = venue
    broker.on_market("X", update(100.0, 0))
    broker.on_market("Y", update(100.0, 0))
    buy(oms, "a", "X", 120)
    buy(oms, "b", "X", 80)  # 20,000 of stock on 10,000 of equity: leverage 2
    broker.on_market("X", update(100.0, 1))
    assert oms.position("X", "a") == 120 and oms.position("X", "b") == 80
    assert broker.margin_status is MarginStatus.OK
    broker.on_market("X", update(99.0, 2))  # equity 9,800 < initial 9,900: a margin call
    broker.on_market("X", update(98.0, 3))
    calls = [e for e in events if isinstance(e, BrokerMessage) and "margin call" in e.message]
    assert len(calls) == 1 and calls[0].level == "critical"
    assert "equity 9,800.00" in calls[0].message
    # New risk is refused while in the call (no buying power); reducing is fine.
    assert broker.buying_power() == 0.0
    # 66.67: equity 3,333 = maintenance 25% x 13,333 -> liquidation, at the update's price
    before = len(oms.fills)
    broker.on_market("X", update(66.6, 4))
    liq = [f for f in oms.fills[before:]]
    assert {(f.strategy_id, f.side, f.quantity, f.price) for f in liq} == {
        ("a", Side.SELL, 120, 66.6),
        ("b", Side.SELL, 80, 66.6),
    }
    assert all(f.client_order_id.startswith("LIQ-") for f in liq)
    msgs = [e for e in events if isinstance(e, BrokerMessage) and "liquidation" in e.message]
    assert len(msgs) == 1 and "maintenance 3,330.00 (25%)" in msgs[0].message
    assert oms.position("X", "a") == 0 and oms.position("X", "b") == 0
    assert broker.query_positions() == [] and broker.margin_status is MarginStatus.OK
    assert broker.cash == pytest.approx(10_000 - 200 * (100 - 66.6))


def test_paper_orders_beyond_buying_power_refused_or_cut_to_their_closing_part(venue) -> None:
    broker, oms, events = venue
    broker.on_market("X", update(100.0, 0))
    sell = Signal("a", Stock("X"), Side.SELL, 100, OrderType.MARKET, signal_price=100.0)
    oms.create_order(sell)
    broker.on_market("X", update(100.0, 1))
    assert oms.position("X", "a") == -100
    # to long 250 needs 25,000 > 2 x 10,000: refused when sent (the rule, as a broker would)
    big = oms.create_order(Signal("a", Stock("X"), Side.BUY, 350, OrderType.MARKET))
    assert big.status is OrderStatus.REJECTED and "insufficient buying power" in big.reason
    # to long 200 fits when sent, but the price gaps to 120 before it fills: equity 8,000
    # buys 16,000 < 24,000, so only the 100 that close the short fill
    oms.create_order(Signal("a", Stock("X"), Side.BUY, 300, OrderType.MARKET))
    broker.on_market("X", update(120.0, 2))
    assert oms.position("X", "a") == 0
    cut = [e for e in events if isinstance(e, OrderStatusEvent) and "at fill" in e.reason]
    assert len(cut) == 1 and oms.fills[-1].quantity == 100


def test_backtest_closes_out_at_zero_like_the_rule_says() -> None:
    import pandas as pd

    from fbterm.strategies.base import StrategyInterface, signal_frame

    class ShortAt(StrategyInterface):
        name = "short_at"

        def analyze(self, bars):
            # by time, so the replay path's windowed on_bar agrees
            t = np.where(bars.index == pd.Timestamp("2024-01-02", tz="UTC"), -1.0, np.nan)
            return signal_frame(bars.index, t)

    px = np.array([100.0, 100, 100, 150, 210, 260, 40, 30])
    idx = pd.date_range("2024-01-01", periods=len(px), freq="D", tz="UTC")
    df = pd.DataFrame({"open": px, "high": px, "low": px, "close": px, "volume": 1.0}, index=idx)
    for mode in ("fast", "replay"):
        res = CustomBacktester(df, ShortAt(), cash=10_000, mode=mode).run_backtest()
        # short 99 at 100 (all in): at 210 equity is 10,000 - 99 x 110 < 0 -> closed at 210
        assert len(res.fills) == 2 and res.fills["reason"].iloc[-1] == "liquidation"
        assert res.fills["price"].iloc[-1] == 210.0 and res.fills["bar"].iloc[-1] == 4
        assert res.equity.iloc[4:].tolist() == [0.0] * 4  # the crash back to 30 comes too late
        assert res.metrics["max_drawdown_pct"] == -100.0


def test_engine_rebalance_is_fed_returns_not_equity_levels(tmp_path: Path) -> None:
    from fbterm.execution.brokers.paper import PaperBroker
    from fbterm.strategies import create_strategy
    from fbterm.strategies.executor import StrategyExecutor

    cfg = load_config(None)
    oms = OrderManagement(PaperBroker(), None)
    ex = StrategyExecutor(oms)
    for name in ("loser", "winner"):
        ex.add_strategy(name, create_strategy("sma_cross", name, {}), ["AAPL"], 100_000.0)
    rng = np.random.default_rng(1)
    # The loser drifts down steadily; its equity levels (~1e5) would look like huge positive
    # "returns" to a Kelly fed levels, and it would get the cap.
    for name, drift in (("loser", -0.002), ("winner", 0.003)):
        eq = 100_000 * np.cumprod(1 + rng.normal(drift, 0.01, 200))
        ex.slots[name].history = [(float(i), float(v), 100_000.0) for i, v in enumerate(eq)]
    ok, msg = rebalance(ex, cfg)
    assert ok and "rebalance (half Kelly)" in msg
    assert ex.slots["loser"].capital == 0.0  # no edge: no capital
    assert 0 < ex.slots["winner"].capital <= cfg.metrics.kelly_cap * 200_000 + 1e-6
    # a capital move is not a return
    r = returns_net_of_flows([100.0, 110.0, 210.0, 231.0], [100.0, 100.0, 200.0, 200.0])
    assert r == pytest.approx([0.1, 0.0, 0.1])
    assert math.isnan(returns_net_of_flows([0.0, 1.0], [0.0, 0.0])[0])


def test_retired_stop_keys_are_refused_naming_the_replacement(make_config) -> None:
    from fbterm.config import ConfigError

    with pytest.raises(ConfigError) as e:
        make_config(
            strategies=[{"name": "s", "class": "sma_cross", "symbols": ["AAPL"],
                         "risk": {"stop_loss_abs": 5.0}}]
        )  # fmt: skip
    msg = str(e.value)
    assert "strategies[0].risk.stop_loss_abs: no longer accepted" in msg
    assert "stop_loss_money" in msg and "stop_loss_points" in msg
    with pytest.raises(ConfigError, match="take_profit_money"):
        make_config(
            strategies=[{"name": "s", "class": "sma_cross", "risk": {"take_profit_abs": 5.0}}]
        )
    cfg = make_config(
        strategies=[{"name": "s", "class": "sma_cross", "symbols": ["AAPL"],
                     "risk": {"stop_loss_money": 500.0, "take_profit_points": 2.0,
                              "trailing_stop_points": 1.5}}]
    )  # fmt: skip
    assert cfg.strategies[0].risk == StrategyRiskConfig(
        stop_loss_money=500.0, take_profit_points=2.0, trailing_stop_points=1.5
    )
    with pytest.raises(
        ConfigError, match=r"broker\.paper\.maintenance_margin: must be < 1 / leverage"
    ):
        make_config(broker={"paper": {"leverage": 4.0, "maintenance_margin": 0.3}})


def test_same_money_stop_live_and_in_the_backtest() -> None:
    """$500 on 100 shares is 5.00 a share in both places now (it was $5 live, $500 tested)."""
    import pandas as pd

    from fbterm.model import Fill, Position
    from fbterm.risk.strategy import StrategyLevelRisk
    from fbterm.strategies.base import StrategyInterface, signal_frame

    risk = StrategyRiskConfig(stop_loss_money=500.0)
    pos = Position(Stock("X")).apply_fill(Fill("f", "o", Stock("X"), Side.BUY, 100, 100.0, 0.0, T0))
    live = StrategyLevelRisk("s", risk)
    assert live.on_price(pos, 95.01) is None
    assert live.on_price(pos, 95.0) is not None

    class LongAt(StrategyInterface):
        name = "long_at"

        def analyze(self, bars):
            t = np.full(len(bars), np.nan)
            t[0] = 1.0
            return signal_frame(bars.index, t)

    px = np.array([100.0, 100.0, 99.0, 97.0, 96.0, 95.2, 93.0])
    idx = pd.date_range("2024-01-01", periods=len(px), freq="D", tz="UTC")
    df = pd.DataFrame(
        {"open": px, "high": px + 0.5, "low": px - 0.5, "close": px, "volume": 1.0}, index=idx
    )
    res = CustomBacktester(df, LongAt(), sizing=Sizing("fixed", 100), risk=risk).run_backtest()
    assert res.fills["reason"].tolist() == ["", "stop"]
    assert res.fills["price"].iloc[1] == 95.0 and res.trades["pnl"].iloc[0] == -500.0
