"""Asset classes: keys that parse back, contract terms, the futures roll, money with multipliers,
and the paper venue trading futures and forex."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import FillEvent
from fbterm.execution.brokers.fills import MarketUpdate
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.model import (
    Fill,
    Forex,
    Future,
    Option,
    Order,
    Position,
    Right,
    Side,
    Stock,
    allows_fractional,
    instrument_from_key,
    quantity_error,
)
from fbterm.model.instruments import front_month, round_to_tick
from fbterm.model.instruments.future import contracts, roll_schedule
from fbterm.strategies.base import Sizing

ES = Future("ES", dt.date(2025, 12, 19))
EURUSD = Forex("EUR", "USD")


@pytest.mark.parametrize(
    ("key", "cls", "mult", "tick", "ccy", "exch"),
    [
        ("AAPL", Stock, 1, 0.01, "USD", "SMART"),
        ("BRK.B", Stock, 1, 0.01, "USD", "SMART"),
        ("AAPL 20250117 C150", Option, 100, 0.01, "USD", "SMART"),
        ("SPX 20250117 P5000 x10", Option, 10, 0.01, "USD", "SMART"),
        ("ES 20251219 FUT", Future, 50, 0.25, "USD", "CME"),
        ("MES 20251219 FUT", Future, 5, 0.25, "USD", "CME"),
        ("CL 20251119 FUT", Future, 1000, 0.01, "USD", "NYMEX"),
        ("ES FUT", Future, 50, 0.25, "USD", "CME"),
        ("XYZ 20251219 FUT x25 @EUREX", Future, 25, 0.01, "USD", "EUREX"),
        ("EUR/USD", Forex, 1, 0.00005, "USD", "IDEALPRO"),
        ("USD/JPY", Forex, 1, 0.005, "JPY", "IDEALPRO"),
    ],
)
def test_every_key_parses_back_to_the_same_instrument_with_its_terms(
    key: str, cls: type, mult: int, tick: float, ccy: str, exch: str
) -> None:
    inst = instrument_from_key(key)
    assert isinstance(inst, cls)
    assert inst.key == key
    assert instrument_from_key(inst.key) == inst
    assert (inst.multiplier, inst.tick_size, inst.currency, inst.exchange) == (
        mult,
        tick,
        ccy,
        exch,
    )
    assert inst.lot_size == 1.0 and not allows_fractional(inst)


def test_short_forms_resolve_to_the_canonical_key() -> None:
    assert instrument_from_key("es 202512 fut") == ES  # the month, by the root's expiry rule
    assert instrument_from_key("eur/usd") == EURUSD
    assert instrument_from_key("ES 20251219 FUT x5").multiplier == 5  # a key says what differs


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "not an instrument key"),
        ("A B", "not an instrument key"),
        ("ZZ 20251219 FUT", "unknown futures root 'ZZ'"),
        ("ZZ 202512 FUT x5 @CME", "full last trade date"),
        ("EUR/EUR", "two currencies"),
    ],
)
def test_bad_keys_say_what_is_wrong(key: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        instrument_from_key(key)


def test_quantities_are_whole_lots_and_prices_snap_to_the_tick() -> None:
    assert quantity_error(ES, 2) is None
    assert "lots of 1" in (quantity_error(ES, 1.5) or "")
    assert quantity_error(EURUSD, 25_000) is None
    assert round_to_tick(5000.13, ES.tick_size) == 5000.25
    assert round_to_tick(5000.12, ES.tick_size) == 5000.0
    assert round_to_tick(1.085432, EURUSD.tick_size) == pytest.approx(1.08545)
    assert round_to_tick(110.0 + 3 / 64 + 0.001, 1 / 64) == 110.0 + 3 / 64


def test_front_month_rolls_days_before_expiry_and_the_schedule_covers_the_range() -> None:
    assert [f.expiry for f in contracts("ES", dt.date(2025, 1, 1), dt.date(2025, 1, 1))][:4] == [
        dt.date(2025, 3, 21),
        dt.date(2025, 6, 20),
        dt.date(2025, 9, 19),
        dt.date(2025, 12, 19),
    ]
    assert front_month("ES", dt.date(2025, 12, 1)) == ES
    # Five business days before the 19 Dec expiry the series holds March.
    assert front_month("ES", dt.date(2025, 12, 12)).expiry == dt.date(2026, 3, 20)
    sched = roll_schedule("ES", dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert [f.expiry.month for f, _, _ in sched if f.expiry] == [3, 6, 9, 12, 3]
    for (_, _, end), (_, start, _) in itertools.pairwise(sched):
        assert start == end + dt.timedelta(days=1)  # no gaps, no overlaps
    assert sched[0][1] == dt.date(2025, 1, 1) and sched[-1][2] == dt.date(2025, 12, 31)
    with pytest.raises(ValueError, match="no listing calendar"):
        front_month("XYZ", dt.date(2025, 1, 1))


def test_future_position_money_uses_the_multiplier_and_the_average_price_does_not() -> None:
    pos = Position(ES)
    pos = pos.apply_fill(Fill("f1", "o1", ES, Side.BUY, 2, 5000.0, commission=4.0))
    pos = pos.apply_fill(Fill("f2", "o2", ES, Side.BUY, 2, 5010.0, commission=4.0))
    assert pos.avg_cost == pytest.approx(5005.0)
    assert pos.market_value(5020.0) == pytest.approx(4 * 5020.0 * 50)
    assert pos.unrealized_pnl(5020.0) == pytest.approx(15.0 * 4 * 50)
    pos = pos.apply_fill(Fill("f3", "o3", ES, Side.SELL, 4, 5015.0, commission=8.0))
    assert pos.is_flat and pos.realized_pnl == pytest.approx(10.0 * 4 * 50 - 16.0)


def test_forex_position_is_sized_in_base_and_valued_in_quote() -> None:
    pos = Position(EURUSD).apply_fill(Fill("f1", "o1", EURUSD, Side.BUY, 100_000, 1.0850))
    assert pos.market_value(1.0860) == pytest.approx(108_600.0)  # USD
    assert pos.unrealized_pnl(1.0860) == pytest.approx(100.0)  # a pip on 100k is $10


def test_orders_and_fills_of_new_asset_classes_survive_the_journal_round_trip() -> None:
    o = Order("F-1", ES, Side.SELL, 3)
    assert Order.from_dict(o.to_dict()) == o
    f = Fill("x", "F-1", EURUSD, Side.BUY, 25_000, 1.08)
    assert Fill.from_dict(f.to_dict()) == f
    assert f.value == pytest.approx(27_000.0)


def _paper(symbols: list[str]) -> tuple[PaperBroker, list[object]]:
    events: list[object] = []
    b = PaperBroker(PaperBrokerConfig(cash=1_000_000.0), symbols=symbols, clock=lambda: 1.0)
    b.set_event_handler(events.append)
    return b, events


def test_paper_venue_fills_a_future_and_charges_margin_with_the_multiplier() -> None:
    b, events = _paper([ES.key])
    b.on_market(ES.key, MarketUpdate(1.0, 5000.0, 5000.0, 5000.0, 5000.0, 0.0))
    b.execute_order(Order("F-1", ES, Side.BUY, 2))
    fills = b.on_market(ES.key, MarketUpdate(2.0, 5001.0, 5002.0, 5000.0, 5001.0, 0.0))
    assert [(f.instrument, f.quantity) for f in fills] == [(ES, 2)]
    (pos,) = [p for p in b.positions.values() if not p.is_flat]
    assert pos.avg_cost == pytest.approx(fills[0].price)
    assert b.equity() == pytest.approx(1_000_000.0 - fills[0].commission)
    # 2 contracts at 5001 are 500k of notional: a third and fourth would exceed the cash.
    b.execute_order(Order("F-2", ES, Side.BUY, 8))
    assert any("insufficient buying power" in str(e) for e in events)


def test_paper_venue_trades_forex_in_base_units() -> None:
    b, _ = _paper([EURUSD.key])
    b.on_market(EURUSD.key, MarketUpdate(1.0, 1.08, 1.08, 1.08, 1.08, 0.0))
    b.execute_order(Order("X-1", EURUSD, Side.BUY, 100_000))
    (f,) = b.on_market(EURUSD.key, MarketUpdate(2.0, 1.081, 1.081, 1.081, 1.081, 0.0))
    assert f.instrument == EURUSD and f.quantity == 100_000
    assert f.value == pytest.approx(100_000 * f.price)
    assert not [e for e in _ if isinstance(e, FillEvent) and e.fill.instrument != EURUSD]


def test_option_on_a_right_string_from_a_journal_row() -> None:
    opt = Option("AAPL", "c", 150.0, dt.date(2025, 1, 17))  # type: ignore[arg-type]
    assert opt.right is Right.CALL and opt.key == "AAPL 20250117 C150"


@pytest.mark.parametrize("mode", ["fast", "replay"])
def test_backtest_of_a_continuous_future_sizes_and_books_with_the_multiplier(mode: str) -> None:
    from fbterm.backtest.backtester import CustomBacktester
    from fbterm.data.simulated import synth_bars
    from fbterm.strategies import create_strategy

    bars = synth_bars(400, seed=3)
    strat = create_strategy("sma_cross", None, {"fast": 5, "slow": 12})
    res = CustomBacktester(
        bars, strat, cash=1_000_000.0, symbol="ES FUT", sizing=Sizing("fixed", 2), mode=mode
    ).run_backtest()
    assert len(res.fills) > 3
    assert set(res.fills["quantity"].abs()) <= {2.0, 4.0}  # contracts, not shares
    # Equity moves 50 dollars per point per contract held.
    held = res.position.shift(1).fillna(0.0).to_numpy()
    moves = res.bars["close"].diff().fillna(0.0).to_numpy()
    flat_bars = (held == 0) & (res.position.to_numpy() == 0)
    d_eq = res.equity.diff().fillna(0.0).to_numpy()
    assert np.allclose(d_eq[flat_bars], 0.0)
    steady = (held != 0) & (res.position.to_numpy() == held)
    assert steady.any()
    assert np.allclose(d_eq[steady], (held * moves * 50)[steady])


def test_fast_and_replay_agree_on_a_future() -> None:
    from fbterm.backtest.backtester import CustomBacktester
    from fbterm.data.simulated import synth_bars
    from fbterm.strategies import create_strategy

    bars = synth_bars(600, seed=4)
    out = [
        CustomBacktester(
            bars,
            create_strategy("sma_cross", None, {"fast": 5, "slow": 12}),
            cash=2_000_000.0,
            symbol="MES 20251219 FUT",
            commission="ib",
            sizing="fraction",
            mode=mode,
        ).run_backtest()
        for mode in ("fast", "replay")
    ]
    np.testing.assert_allclose(out[0].equity.to_numpy(), out[1].equity.to_numpy())
    first = out[0].fills.iloc[0]
    # The whole equity buys contracts worth price x 5 each, not shares.
    assert 0.95 * 2_000_000.0 < abs(first["quantity"]) * first["price"] * 5 <= 2_000_000.0
