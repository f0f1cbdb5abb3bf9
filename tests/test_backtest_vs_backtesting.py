"""Every statistic of ``--stats backtesting`` equals backtesting.py 0.6.6's own, on data the
test makes: random walks with crashes, gaps (missing bars) and flat stretches; long/short and
long-only; all-in, fraction and fixed sizing; commission; stop-loss and take-profit in percent
and in price points; an account wiped out by a short squeeze. Fills and trades match too, on
both backtest paths.

The strategy on both sides is a script of target changes (NaN between them), so the only thing
compared is how each backtester turns the same decisions into fills, equity and statistics.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy  # a dev dependency (pyproject): never skipped

from fbterm.backtest.backtester import CustomBacktester
from fbterm.config import StrategyRiskConfig
from fbterm.model import Bar
from fbterm.strategies.base import Sizing, StrategyInterface, signal_frame

# backtesting.py's label -> our key
KEYS = {
    "Start": "start", "End": "end", "Duration": "duration",
    "Exposure Time [%]": "exposure_pct", "Equity Final [$]": "equity_final",
    "Equity Peak [$]": "equity_peak", "Commissions [$]": "commissions", "Return [%]": "return_pct",
    "Buy & Hold Return [%]": "buy_hold_return_pct", "Return (Ann.) [%]": "return_ann_pct",
    "Volatility (Ann.) [%]": "volatility_ann_pct", "CAGR [%]": "cagr_pct",
    "Sharpe Ratio": "sharpe", "Sortino Ratio": "sortino", "Calmar Ratio": "calmar",
    "Alpha [%]": "alpha_pct", "Beta": "beta", "Max. Drawdown [%]": "max_drawdown_pct",
    "Avg. Drawdown [%]": "avg_drawdown_pct", "Max. Drawdown Duration": "max_drawdown_duration",
    "Avg. Drawdown Duration": "avg_drawdown_duration", "# Trades": "trades",
    "Win Rate [%]": "win_rate_pct", "Best Trade [%]": "best_trade_pct",
    "Worst Trade [%]": "worst_trade_pct", "Avg. Trade [%]": "avg_trade_pct",
    "Max. Trade Duration": "max_trade_duration", "Avg. Trade Duration": "avg_trade_duration",
    "Profit Factor": "profit_factor", "Expectancy [%]": "expectancy_pct", "SQN": "sqn",
    "Kelly Criterion": "kelly",
}  # fmt: skip


# ------------------------------------------------------------------------------ the data


def make_bars(
    seed: int,
    n: int = 700,
    *,
    freq: str = "B",
    crashes: int = 3,
    flats: int = 3,
    gaps: int = 4,
    start: str = "2021-01-04",
    tz: str = "UTC",
) -> pd.DataFrame:
    """A random walk with crashes (-25% opening gaps), flat stretches (open = high = low =
    close for a while) and gaps (runs of missing bars)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0002, 0.015, n)
    gap = np.zeros(n)
    gap[rng.choice(np.arange(20, n), crashes, replace=False)] = np.log(0.75)
    c = np.round(100 * np.exp(np.cumsum(r + gap)), 4)
    o = np.round(np.r_[c[0], c[:-1]] * np.exp(gap + rng.normal(0, 0.002, n)), 4)
    hi = np.round(np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.006, n))), 4)
    lo = np.round(np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.006, n))), 4)
    for s in rng.choice(np.arange(10, n - 20), flats, replace=False):
        k = int(rng.integers(5, 15))
        o[s : s + k] = hi[s : s + k] = lo[s : s + k] = c[s : s + k] = c[s - 1]
    idx = pd.date_range(start, periods=n, freq=freq, tz=tz)
    df = pd.DataFrame({"open": o, "high": hi, "low": lo, "close": c, "volume": 1e6}, index=idx)
    keep = np.ones(n, dtype=bool)
    for s in rng.choice(np.arange(30, n - 30), gaps, replace=False):
        keep[s : s + int(rng.integers(2, 8))] = False
    return df[keep].tz_convert("UTC")


def make_targets(
    bars: pd.DataFrame, seed: int, *, long_only: bool = False, calm_entries: float | None = None
) -> np.ndarray:
    """Target changes every 5-30 bars (NaN in between; bar 0 never, as backtesting.py does not
    trade on it). ``calm_entries``: only change where the next open gaps less than that (a
    stop set from the next open then passes backtesting.py's SL < price < TP check)."""
    rng = np.random.default_rng(seed + 1000)
    n = len(bars)
    t = np.full(n, np.nan)
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    choices = [0.0, 1.0] if long_only else [-1.0, 0.0, 1.0]
    i, last = 1, 0.0
    while i < n - 1:
        if calm_entries is None or abs(o[i + 1] / c[i] - 1) < calm_entries:
            nxt = float(rng.choice([x for x in choices if x != last]))
            t[i], last = nxt, nxt
        i += int(rng.integers(5, 30))
    return t


class Scripted(StrategyInterface):
    """Targets from a script, for both paths (``analyze`` for fast, ``on_bar`` for replay)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.k = 0
        super().__init__()

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        return signal_frame(bars.index, self.targets[: len(bars)])

    def reset(self) -> None:
        super().reset()
        self.k = 0

    def on_bar(self, bar: Bar) -> float:
        self.k += 1
        return float(self.targets[self.k - 1])


@dataclass
class Run:
    sizing: Sizing
    commission: float = 0.0
    sl_pct: float | None = None
    tp_pct: float | None = None
    sl_points: float | None = None
    tp_points: float | None = None


def reference(bars: pd.DataFrame, targets: np.ndarray, run: Run, tz: str = "UTC") -> pd.Series:
    """backtesting.py on the same bars and decisions (its index: the file's naive clock)."""
    data = bars.rename(columns=str.capitalize)
    data.index = data.index.tz_convert(tz).tz_localize(None)
    opens = data["Open"].to_numpy()

    class Script(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            t = targets[i]
            if t != t:
                return
            if self.position:
                self.position.close()
            if t == 0:
                return
            kw: dict[str, Any] = {}
            if run.sizing.mode == "fraction":
                kw["size"] = run.sizing.value
            elif run.sizing.mode == "fixed":
                kw["size"] = int(run.sizing.value)
            # Levels from the next open: the price the entry will fill at (the test knows it).
            entry, sign = opens[i + 1], 1.0 if t > 0 else -1.0
            if run.sl_pct is not None:
                kw["sl"] = entry - sign * entry * run.sl_pct / 100
            if run.sl_points is not None:
                kw["sl"] = entry - sign * run.sl_points
            if run.tp_pct is not None:
                kw["tp"] = entry + sign * entry * run.tp_pct / 100
            if run.tp_points is not None:
                kw["tp"] = entry + sign * run.tp_points
            (self.buy if t > 0 else self.sell)(**kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backtest(data, Script, cash=10_000, commission=run.commission).run()


def ours(bars, targets, run: Run, mode: str, tz: str = "UTC"):
    risk = None
    if any(v is not None for v in (run.sl_pct, run.tp_pct, run.sl_points, run.tp_points)):
        risk = StrategyRiskConfig(
            stop_loss_pct=run.sl_pct, take_profit_pct=run.tp_pct,
            stop_loss_points=run.sl_points, take_profit_points=run.tp_points,
        )  # fmt: skip
    return CustomBacktester(
        bars, Scripted(targets), cash=10_000, commission=run.commission, sizing=run.sizing,
        risk=risk, mode=mode, stats="backtesting", timezone=tz,
    ).run_backtest()  # fmt: skip


def same(a: Any, b: Any) -> bool:
    missing = a is None or a is pd.NaT or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or b is pd.NaT or (isinstance(b, float) and math.isnan(b))
    if missing or b_missing:
        return bool(missing and b_missing)
    if isinstance(a, pd.Timestamp):
        return a == b
    if isinstance(a, pd.Timedelta):
        return a == b
    if isinstance(a, float) and math.isinf(a):
        return a == b
    return bool(a == pytest.approx(b, rel=1e-7, abs=1e-9))


def check(bars, targets, run: Run, tz: str = "UTC", min_trades: int = 5) -> None:
    ref = reference(bars, targets, run, tz)
    rt = ref["_trades"]
    assert len(rt) >= min_trades
    for mode in ("fast", "replay"):
        res = ours(bars, targets, run, mode, tz)
        t, m = res.trades, res.metrics
        assert len(t) == len(rt), mode
        np.testing.assert_array_equal(t["entry_bar"], rt["EntryBar"])
        np.testing.assert_array_equal(t["exit_bar"], rt["ExitBar"])
        np.testing.assert_array_equal(t["size"], rt["Size"])
        np.testing.assert_allclose(t["entry_price"], rt["EntryPrice"], rtol=1e-12)
        np.testing.assert_allclose(t["exit_price"], rt["ExitPrice"], rtol=1e-12)
        np.testing.assert_allclose(t["pnl"], rt["PnL"], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(t["return_pct"], rt["ReturnPct"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            res.equity.to_numpy(), ref["_equity_curve"]["Equity"].to_numpy(), rtol=1e-9, atol=1e-6
        )
        wrong = []
        for label, key in KEYS.items():
            want = ref.get(label, 0.0 if label == "Commissions [$]" else None)
            got = m[key]
            if label in ("Start", "End"):
                got = got.tz_convert(tz).tz_localize(None)
            if not same(got, want):
                wrong.append(f"{label}: ours {got!r}, backtesting.py {want!r}")
        assert not wrong, f"{mode}: " + "; ".join(wrong)


# ----------------------------------------------------------------------------- the runs


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_long_short_all_in_with_commission(seed: int) -> None:
    bars = make_bars(seed)
    check(bars, make_targets(bars, seed), Run(Sizing("all_in"), commission=0.002))


@pytest.mark.parametrize("seed", [5, 6])
def test_long_only_fraction(seed: int) -> None:
    bars = make_bars(seed)
    check(bars, make_targets(bars, seed, long_only=True), Run(Sizing("fraction", 0.5), 0.001))


@pytest.mark.parametrize("seed", [7, 8])
def test_fixed_size_including_orders_the_margin_refuses(seed: int) -> None:
    bars = make_bars(seed, crashes=6)
    # 110 shares at ~100 is more than the account once it has lost a little: some entries do
    # not fit, and both refuse them (a reversal still closes the old position).
    run = Run(Sizing("fixed", 110), commission=0.001)
    targets = make_targets(bars, seed)
    assert len(ours(bars, targets, run, "fast").rejected) >= 1
    check(bars, targets, run)


def test_hourly_around_the_clock_buckets_by_the_files_days() -> None:
    bars = make_bars(11, n=2000, freq="h", gaps=8)
    check(bars, make_targets(bars, 11), Run(Sizing("all_in"), commission=0.0005))


def test_hourly_new_york_session_across_daylight_saving() -> None:
    # 10:00..15:00 New York every weekday through both DST changes: the file's clock is New
    # York's, so backtesting.py sees those wall-clock hours and buckets by New York dates.
    days = pd.bdate_range("2023-01-02", "2023-12-29")
    local = [d + pd.Timedelta(hours=h) for d in days for h in range(10, 16)]
    idx = pd.DatetimeIndex(local).tz_localize("America/New_York")
    raw = make_bars(12, n=len(idx), freq="h", gaps=0)
    raw.index = idx.tz_convert("UTC")
    tz = "America/New_York"
    check(raw, make_targets(raw, 12), Run(Sizing("all_in"), commission=0.001), tz=tz)


@pytest.mark.parametrize(
    "run",
    [
        Run(Sizing("all_in"), 0.001, sl_pct=3.0, tp_pct=6.0),
        Run(Sizing("fraction", 0.8), 0.0, sl_pct=2.0),
        Run(Sizing("all_in"), 0.002, sl_points=2.5, tp_points=4.0),
        Run(Sizing("fixed", 40), 0.001, tp_pct=3.0),
    ],
)
def test_stops(run: Run) -> None:
    bars = make_bars(21, crashes=5)
    targets = make_targets(bars, 21, calm_entries=0.01)
    bt = ours(bars, targets, run, "fast")
    assert bt.fills["reason"].isin(["stop", "take-profit"]).sum() >= 3
    check(bars, targets, run)


def test_account_wiped_out_by_a_short_squeeze_ends_at_zero() -> None:
    bars = make_bars(31, crashes=0)
    k = len(bars) // 2
    bars.iloc[k:, :4] *= 3.0  # the price triples overnight
    targets = np.full(len(bars), np.nan)
    targets[k - 20] = -1.0  # short before the squeeze, all in
    targets[5] = 1.0
    res = ours(bars, targets, Run(Sizing("all_in"), 0.001), "fast")
    assert res.equity.iloc[-1] == 0.0 and res.metrics["max_drawdown_pct"] == -100.0
    assert res.fills["reason"].iloc[-1] == "liquidation"
    assert res.fills["bar"].iloc[-1] == k and res.fills["price"].iloc[-1] == bars["close"].iloc[k]
    check(bars, targets, Run(Sizing("all_in"), 0.001), min_trades=2)
    # the fbterm definitions see the same curve: no positive Sharpe from negative equity
    fb = CustomBacktester(bars, Scripted(targets), cash=10_000, commission=0.001).run_backtest()
    assert fb.metrics["equity_final"] == 0.0 and not fb.metrics["sharpe"] > 0
