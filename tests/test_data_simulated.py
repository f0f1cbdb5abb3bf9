"""The simulated market: determinism, quote sanity, regimes, Black-Scholes, synthetic bars."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from fbterm.config import SimulatedMarketConfig
from fbterm.data.bars import validate_bars
from fbterm.data.simulated import (
    TRADING_SECONDS_PER_YEAR,
    SimulatedMarket,
    monthly_expiries,
    synth_bars,
)
from fbterm.model import Option, Right
from fbterm.pricing import bs_delta, bs_price

SYMS = ["AAPL", "MSFT", "SPY"]
T0 = 1_700_000_000.0


def run(m: SimulatedMarket, steps: int) -> list[tuple]:
    return [tuple(dataclasses.astuple(t) for t in m.next_ticks()) for _ in range(steps)]


def test_deterministic_for_a_seed_and_symbol_order() -> None:
    cfg = SimulatedMarketConfig(seed=42, prices={"AAPL": 190.0})
    a = run(SimulatedMarket(SYMS, cfg, T0), 3000)  # crosses a random-number block
    b = run(SimulatedMarket(SYMS, cfg, T0), 3000)
    assert a == b
    c = run(SimulatedMarket(SYMS, dataclasses.replace(cfg, seed=43), T0), 3000)
    assert a != c
    assert a[0][0][0] == "AAPL" and abs(a[0][0][4] - 190.0) < 5


def test_ticks_are_sane_and_time_advances() -> None:
    cfg = SimulatedMarketConfig(seed=1, ticks_per_second=4, time_scale=60, spread_bps=5)
    m = SimulatedMarket(SYMS, cfg, T0)
    assert m.ts == T0 and m.last("SPY").ts == T0
    for step in range(1, 2001):
        ticks = m.next_ticks()
        assert [t.symbol for t in ticks] == SYMS
        for t in ticks:
            assert t.ts == T0 + step * 15.0
            assert 0 < t.bid <= t.last <= t.ask and t.last in (t.bid, t.ask)
            assert t.ask - t.bid < t.mid * 0.01 and t.volume >= 1
    assert m.ts == T0 + 2000 * 15.0
    assert m.last("MSFT") is ticks[1]
    with pytest.raises(KeyError, match="not in the simulated market"):
        m.last("TSLA")


def test_volatility_matches_config_without_jumps_or_regimes() -> None:
    cfg = SimulatedMarketConfig(seed=3, volatility=0.4, regime_switch_prob=0.0, jump_intensity=0.0,
                                ticks_per_second=1, time_scale=60)  # fmt: skip
    m = SimulatedMarket(["X"], cfg, T0)
    mids = []
    for _ in range(20_000):
        m.next_ticks()
        mids.append(m.mid("X"))
    r = np.diff(np.log(mids))
    expected = 0.4 * math.sqrt(60 / TRADING_SECONDS_PER_YEAR)
    assert abs(r.std() / expected - 1) < 0.03
    assert m.regime("X") == "calm"


def test_regimes_switch_and_stress_widens_spreads() -> None:
    calm = SimulatedMarket(["X"], SimulatedMarketConfig(seed=5, regime_switch_prob=0.0), T0)
    flip = SimulatedMarket(["X"], SimulatedMarketConfig(seed=5, regime_switch_prob=1.0), T0)
    seen = set()
    for _ in range(4):
        calm.next_ticks()
        flip.next_ticks()
        seen.add(flip.regime("X"))
        assert calm.regime("X") == "calm"
    assert seen == {"calm", "stressed"}
    cfg = SimulatedMarketConfig(seed=5, spread_bps=50, regime_switch_prob=1.0)
    m = SimulatedMarket(["X"], cfg, T0)
    spreads = {"calm": [], "stressed": []}
    for _ in range(200):
        t = m.next_ticks()[0]
        spreads[m.regime("X")].append((t.ask - t.bid) / t.mid)
    assert np.mean(spreads["stressed"]) > 2 * np.mean(spreads["calm"])


def test_jumps_fatten_the_tails() -> None:
    base = dict(seed=9, regime_switch_prob=0.0, volatility=0.2)
    plain = SimulatedMarket(["X"], SimulatedMarketConfig(**base, jump_intensity=0.0), T0)
    jumpy = SimulatedMarket(
        ["X"], SimulatedMarketConfig(**base, jump_intensity=0.05, jump_std=0.05), T0
    )
    rp, rj = [], []
    for _ in range(4000):
        plain.next_ticks()
        jumpy.next_ticks()
        rp.append(plain.mid("X"))
        rj.append(jumpy.mid("X"))
    assert np.abs(np.diff(np.log(rj))).max() > 10 * np.abs(np.diff(np.log(rp))).max()


# ---------------------------------------------------------------------------- option quotes


def test_option_chain_and_quotes() -> None:
    m = SimulatedMarket(["AAPL"], SimulatedMarketConfig(seed=2, prices={"AAPL": 187.3}), T0)
    chain = m.option_chain("AAPL", expiries=3, strikes=7)
    assert len(chain) == 3 * 7 * 2
    today = dt.datetime.fromtimestamp(T0, dt.UTC).date()
    expiries = sorted({q.instrument.expiry for q in chain})
    assert expiries == monthly_expiries(today, 3)
    assert all(e.weekday() == 4 and 15 <= e.day <= 21 for e in expiries)
    strikes = sorted({q.instrument.strike for q in chain})
    assert strikes == [170.0, 175.0, 180.0, 185.0, 190.0, 195.0, 200.0]
    assert [q.instrument.right for q in chain[:2]] == [Right.CALL, Right.PUT]
    for q in chain:
        assert 0 <= q.bid <= q.ask and q.underlying_price == m.mid("AAPL") and q.ts == m.ts
        if q.instrument.right is Right.CALL:
            assert 0 <= q.delta <= 1
        else:
            assert -1 <= q.delta <= 0
    opt = Option("AAPL", Right.CALL, 185.0, expiries[0])
    q = m.option_quote(opt)
    close = dt.datetime.combine(expiries[0], dt.time(16), tzinfo=ZoneInfo("America/New_York"))
    t = (close.timestamp() - T0) / (365 * 86400)
    theo = bs_price(Right.CALL, m.mid("AAPL"), 185.0, t, q.iv, m.cfg.risk_free_rate)
    assert q.bid <= theo <= q.ask
    assert q.delta == pytest.approx(
        bs_delta("C", m.mid("AAPL"), 185.0, t, q.iv, m.cfg.risk_free_rate)
    )
    assert q.iv == pytest.approx(m.volatility("AAPL"), rel=0.01)  # at the money: the regime's vol
    with pytest.raises(KeyError):
        m.option_quote(Option("TSLA", Right.CALL, 100.0, expiries[0]))


# ---------------------------------------------------------------------------- synth_bars


@pytest.mark.parametrize("bar_size", ["1m", "5m", "1h", "1d", "1w"])
def test_synth_bars_are_valid_and_deterministic(bar_size: str) -> None:
    df = synth_bars(2000, bar_size=bar_size, seed=7, start_price=50.0)
    assert validate_bars(df, "synth") is not None and len(df) == 2000
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df["volume"] > 0).all()
    pd.testing.assert_frame_equal(df, synth_bars(2000, bar_size=bar_size, seed=7, start_price=50.0))
    assert not df.equals(synth_bars(2000, bar_size=bar_size, seed=8, start_price=50.0))
    if bar_size == "1d":
        assert (df.index.day_of_week < 5).all()
    if bar_size == "1w":
        assert (df.index.day_of_week == 0).all()


def test_synth_bars_volatility_and_limits() -> None:
    df = synth_bars(20_000, seed=1, volatility=0.25)
    r = np.log(df["close"]).diff().dropna()
    assert r.std() * math.sqrt(252) == pytest.approx(0.25, rel=0.05)
    assert synth_bars(0).empty
    with pytest.raises(ValueError, match="run past"):
        synth_bars(1_000_000, bar_size="1d")
    with pytest.raises(ValueError, match="unknown bar size"):
        synth_bars(10, bar_size="fortnight")
