"""--plot and --out never crash: 50 seeded random backtests (no trades, one trade, flat
equity, tiny and huge prices, take-profits that all land on one level, wiped-out accounts)
drawn in the terminal and written as reports, and the histogram case that broke plotext."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbterm.backtest.analysis import PerformanceAnalysis, histogram
from fbterm.backtest.backtester import CustomBacktester
from fbterm.cli import main
from fbterm.config import StrategyRiskConfig
from fbterm.data.storage import DataStorage
from fbterm.model import Bar
from fbterm.strategies.base import Sizing, StrategyInterface, signal_frame


class Scripted(StrategyInterface):
    name = "scripted"

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


def random_run(seed: int):
    """One small random backtest; the seed picks the shape of the case."""
    rng = np.random.default_rng(seed)
    kind = seed % 6
    n = int(rng.integers(2, 300))
    freq = str(rng.choice(["D", "h", "min"]))
    scale = float(10.0 ** rng.integers(-4, 7))
    idx = pd.date_range("2022-01-03", periods=n, freq=freq, tz="UTC")
    if kind == 0:  # flat prices: flat equity whatever happens
        c = np.full(n, scale)
    else:
        c = scale * np.exp(np.cumsum(rng.normal(0, 0.02 * (1 + kind), n)))
    o = np.r_[c[0], c[:-1]]
    df = pd.DataFrame(
        {"open": o, "high": np.maximum(o, c) * 1.01, "low": np.minimum(o, c) * 0.99,
         "close": c, "volume": 1e6},
        index=idx,
    )  # fmt: skip
    t = np.full(n, np.nan)
    if kind == 1 and n > 3:  # exactly one trade
        t[1], t[n - 2] = 1.0, 0.0
    elif kind >= 2:
        k = int(rng.integers(1, max(2, n // 3)))
        at = rng.choice(np.arange(n), size=min(k, n), replace=False)
        t[at] = rng.choice([-1.0, 0.0, 1.0], size=len(at))
    risk = None
    if kind == 3:  # take-profits all on one level: returns equal to the last bit
        risk = StrategyRiskConfig(take_profit_pct=1.0, stop_loss_pct=1.0)
    elif kind == 4:
        risk = StrategyRiskConfig(trailing_stop_pct=2.0, take_profit_points=scale * 0.03)
    sizing = [Sizing("all_in"), Sizing("fraction", 0.5), Sizing("fixed", 3)][seed % 3]
    return CustomBacktester(
        df, Scripted(t), cash=float(rng.choice([100.0, 10_000.0, 1e9])),
        commission=float(rng.choice([0.0, 0.001, 0.05])), sizing=sizing, risk=risk,
        mode="replay" if seed % 7 == 0 else "fast",
    ).run_backtest()  # fmt: skip


def test_fifty_random_runs_draw_and_write_reports(tmp_path: Path) -> None:
    kinds = {"no trades": 0, "one trade": 0, "flat equity": 0, "many": 0}
    for seed in range(50):
        res = random_run(seed)
        nt = len(res.trades)
        kinds["no trades" if nt == 0 else "one trade" if nt == 1 else "many"] += 1
        kinds["flat equity"] += int(res.equity.nunique() == 1)
        pa = PerformanceAnalysis(res)
        text = pa.terminal_charts(width=100, height=45)
        assert "Trade returns %" in text and "Equity" in text
        out = tmp_path / f"run{seed}"
        files = pa.visualize_results(terminal=False, out_dir=out)
        assert {p.name for p in files} >= {"charts.txt", "report.html"}
        html = (out / "report.html").read_text()
        assert html.rstrip().endswith("</html>") and "nan" not in html.split("<h2>Metrics")[0]
    assert all(v > 0 for v in kinds.values()), kinds


def test_histogram_of_values_a_rounding_error_apart() -> None:
    # The values plotext's own hist indexes past its last bin with (IndexError).
    top = 1.8883065004224502
    r = np.array([-0.46674961687980204, float(np.nextafter(top, -np.inf)), top])
    centres, counts, width = histogram(r, 30)
    assert counts.sum() == 3 and len(centres) == 30 and width > 0
    one = histogram(np.array([2.5, 2.5, 2.5 + 1e-15]))
    assert one[1].tolist() == [3] and len(histogram(np.zeros(0))[0]) == 0


@pytest.mark.parametrize("seed", [3, 6, 10])
def test_cli_plot_and_out_on_random_runs(seed: int, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    c = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))  # EURUSD-like hourly
    idx = pd.date_range("2023-03-01", periods=n, freq="h", tz="UTC")
    o = np.r_[c[0], c[:-1]]
    df = pd.DataFrame(
        {"open": o, "high": np.maximum(o, c) * 1.001, "low": np.minimum(o, c) * 0.999,
         "close": c, "volume": 1000.0}, index=idx,
    )  # fmt: skip
    csv = tmp_path / "eurusd.csv"
    DataStorage(tmp_path).save_to_csv(df, csv)
    out = tmp_path / "out"
    rc = main(
        ["backtest", "--data", str(csv), "--param", "fast=3", "--param", "slow=8", "--plot",
         "--out", str(out), "--take-profit", "0.2%", "--stop-loss", "0.2%", "--timezone", "UTC"]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "Trade returns %" in text and (out / "report.html").is_file()
    assert math.isfinite(float(pd.read_csv(out / "equity.csv")["equity"].iloc[-1]))
