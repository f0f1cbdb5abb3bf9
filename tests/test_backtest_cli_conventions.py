"""`fbterm backtest`'s conventions: stated in --help, every option checked with a one-line
reason, and --stats backtesting equal to backtesting.py run on the same CSV by its user."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbterm.backtest.conventions import STATISTICS, statistics_table
from fbterm.backtest.metrics import METRIC_LABELS
from fbterm.cli import main
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("data")
    p = d / "syn.csv"
    DataStorage(d).save_to_csv(synth_bars(400, seed=4), p)
    return str(p)


def test_help_has_the_conventions_section() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fbterm", "backtest", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    out = r.stdout
    assert "conventions (the README" in out
    for word in ("fills", "costs", "sizing", "margin", "stops", "time", "returns", "stats"):
        assert f"\n  {word} " in out, word
    for opt in ("--timezone", "--calendar", "--adjust", "--stats", "--stop-loss AMOUNT"):
        assert opt in out
    assert "2.5pt (price points per unit)" in out and "$300" in out


def test_every_statistic_is_defined() -> None:
    defined = {k for k, _, _ in STATISTICS}
    shown = set(METRIC_LABELS) - {"start", "end", "duration", "bars", "equity_start",
                                  "equity_final", "equity_peak"}  # fmt: skip
    # the rest are each the same definition as a neighbour (worst/best, avg/max durations)
    same_as = {"worst_trade_pct", "avg_drawdown_duration", "avg_trade_duration"}
    assert shown - same_as <= defined
    assert statistics_table().count("\n") == len(STATISTICS) + 1


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--stop-loss", "-5"], "--stop-loss -5: must be > 0"),
        (["--stop-loss", "0"], "--stop-loss 0: must be > 0"),
        (["--stop-loss", "150"], "--stop-loss 150: must be < 100, got 150"),
        (["--trailing-stop", "100%"], "--trailing-stop 100%: must be < 100"),
        (["--take-profit", "abc"], "--take-profit abc: expected an amount like 5 or 5%"),
        (["--trailing-stop", "$50"], "a trailing stop is 3% or 1.5pt"),
        (["--timezone", "Nowhere/City"], "--timezone 'Nowhere/City': unknown time zone"),
        (["--calendar", "XYZW"], "--calendar: unknown exchange calendar 'XYZW'"),
        (["--cash", "0"], "--cash must be a number > 0"),
        (["--cash", "inf"], "--cash must be a number > 0"),
        (["--sizing", "fraction", "--size", "-1"], "--size must be a number > 0"),
        (["--size", "3"], "--size does not apply to --sizing all_in"),
        (["--sweep", "fast=3:5", "--plot"], "--plot does not apply to --sweep"),
        (["--sweep", "fast=3:5", "--stats", "backtesting"], "does not apply to --sweep"),
        (["--adjust"], "no Adj Close column"),
        (["--workers", "0", "--sweep", "fast=3:5"], "--workers must be >= 1"),
        (["--stats", "empyrical"], "invalid choice"),
    ],
)
def test_bad_options_are_one_line_exit_2(csv, capsys, args, msg) -> None:
    with pytest.raises(SystemExit) if "invalid choice" in msg else _no_exit():
        rc = main(["backtest", "--data", csv, *args])
        assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


class _no_exit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_stops_in_three_units_run(csv, capsys) -> None:
    for stop in ("4", "4%", "3pt", "$400"):
        assert main(["backtest", "--data", csv, "--stop-loss", stop, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["trades"] > 0


def test_open_trade_commission_is_its_own_row(csv, capsys) -> None:
    assert main(["backtest", "--data", csv, "--commission", "0.002", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["commissions_open"] > 0  # sma_cross is always in the market at the end
    assert main(["backtest", "--data", csv, "--commission", "0.002", "--json", "--stats",
                 "backtesting"]) == 0  # fmt: skip
    bt = json.loads(capsys.readouterr().out)
    assert bt["commissions"] == pytest.approx(doc["commissions"] - doc["commissions_open"])


def test_stats_backtesting_equals_backtesting_py_on_the_users_csv(tmp_path: Path, capsys) -> None:
    """A user with a naive hourly New York CSV runs both tools; every number agrees."""
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    days = pd.bdate_range("2023-02-01", "2023-12-15")
    local = pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in days for h in range(10, 16)])
    rng = np.random.default_rng(8)
    c = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.006, len(local)))), 4)
    o = np.r_[c[0], c[:-1]]
    df = pd.DataFrame({"Date": local.strftime("%Y-%m-%d %H:%M:%S"), "Open": o,
                       "High": np.maximum(o, c) + 0.05, "Low": np.minimum(o, c) - 0.05,
                       "Close": c, "Volume": 1000})  # fmt: skip
    p = tmp_path / "ny.csv"
    df.to_csv(p, index=False)

    def sma(v, n):
        return pd.Series(v).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self):
            self.a = self.I(sma, self.data.Close, 10)
            self.b = self.I(sma, self.data.Close, 30)

        def next(self):
            if crossover(self.a, self.b):
                self.position.close()
                self.buy()
            elif crossover(self.b, self.a):
                self.position.close()
                self.sell()

    data = pd.read_csv(p, index_col=0, parse_dates=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Backtest(data, SmaCross, cash=10_000, commission=0.001).run()
    assert main(["backtest", "--data", str(p), "--param", "fast=10", "--param", "slow=30",
                 "--commission", "0.001", "--timezone", "America/New_York", "--stats",
                 "backtesting", "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["trades"] == ref["# Trades"] > 10
    for label, key in (
        ("Return (Ann.) [%]", "return_ann_pct"), ("Volatility (Ann.) [%]", "volatility_ann_pct"),
        ("Sharpe Ratio", "sharpe"), ("Sortino Ratio", "sortino"), ("Calmar Ratio", "calmar"),
        ("Exposure Time [%]", "exposure_pct"), ("Profit Factor", "profit_factor"),
        ("Commissions [$]", "commissions"), ("CAGR [%]", "cagr_pct"), ("Beta", "beta"),
        ("Equity Final [$]", "equity_final"), ("SQN", "sqn"), ("Kelly Criterion", "kelly"),
    ):  # fmt: skip
        assert doc[key] == pytest.approx(ref[label], rel=1e-6), label
    for label, key in (
        ("Max. Drawdown Duration", "max_drawdown_duration_s"),
        ("Avg. Trade Duration", "avg_trade_duration_s"),
        ("Max. Trade Duration", "max_trade_duration_s"),
    ):
        assert doc[key] == ref[label].total_seconds(), label
