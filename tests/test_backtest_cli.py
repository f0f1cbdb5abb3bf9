"""`fbterm backtest`: table, JSON, --out, --plot, sweeps (processes and a Dask LocalCluster),
bad input as one line and exit 2, and run_backtest_job for the console."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fbterm.backtest.analysis import PerformanceAnalysis, draw_equity, draw_price_trades
from fbterm.backtest.jobs import parse_sweep, run_backtest_job, run_sweep, sweep_grid
from fbterm.cli import main
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("data")
    p = d / "syn.csv"
    DataStorage(d).save_to_csv(synth_bars(800, seed=9), p)
    return str(p)


def test_json_keys_and_out_files(csv, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(
        [
            "backtest",
            "--data",
            csv,
            "--strategy",
            "sma_cross",
            "--param",
            "fast=10",
            "--param",
            "slow=20",
            "--cash",
            "10000",
            "--commission",
            "0.002",
            "--sizing",
            "all_in",
            "--json",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    for key in (
        "return_pct",
        "buy_hold_return_pct",
        "max_drawdown_pct",
        "sharpe",
        "sortino",
        "trades",
        "win_rate_pct",
        "equity_final",
        "exposure_pct",
        "cagr_pct",
        "calmar",
        "sqn",
        "profit_factor",
        "commissions",
        "max_drawdown_duration_s",
    ):
        assert key in doc
    assert doc["params"] == {"fast": 10, "slow": 20}
    trades = pd.read_csv(out / "trades.csv")
    assert len(trades) == doc["trades"] > 0
    eq = pd.read_csv(out / "equity.csv")
    assert len(eq) == 800 and eq["equity"].iloc[-1] == pytest.approx(doc["equity_final"])
    html = (out / "report.html").read_text()
    assert (
        "<svg" in html
        and "Max. Drawdown" in html
        and "http" not in html.replace("http://www.w3.org/2000/svg", "")
    )


def test_table_and_plot(csv, capsys) -> None:
    assert main(["backtest", "--data", csv, "--plot", "--mode", "replay"]) == 0
    out = capsys.readouterr().out
    assert "Sharpe Ratio" in out and "# Trades" in out and "Price and trades" in out


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--strategy", "nope"], "unknown strategy 'nope'"),
        (["--param", "fast=abc"], "expected int"),
        (["--param", "speed=3"], "speed: unknown"),
        (["--param", "slow=5000"], "window longer than the data"),
        (["--strategy", "fbterm.nothing_here:X"], "not found"),
        (["--commission", "lots"], "commission"),
        (["--sweep", "fast=9:1"], "STOP >= START"),
    ],
)
def test_bad_input_is_one_line_exit_2(csv, capsys, args, msg) -> None:
    rc = main(["backtest", "--data", csv, *args])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err and err.count("\n") == 1


def test_unloadable_csv(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,open,high,low,close,volume\n2024-01-01,1,2,0.5,x,10\n")
    for path in (str(bad), str(tmp_path / "missing.csv")):
        assert main(["backtest", "--data", path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fbterm: ") and err.count("\n") == 1


def test_strategy_raising_is_one_line(tmp_path, monkeypatch, csv, capsys) -> None:
    (tmp_path / "boomstrat.py").write_text(
        "from fbterm.strategies.base import StrategyInterface\n"
        "class Boom(StrategyInterface):\n"
        "    name = 'boom'\n"
        "    def analyze(self, bars):\n"
        "        raise RuntimeError('no signal today')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["backtest", "--data", csv, "--strategy", "boomstrat:Boom"]) == 2
    assert "boom raised RuntimeError: no signal today" in capsys.readouterr().err


def test_sweep_grid_and_processes(csv, capsys) -> None:
    assert parse_sweep("fast=5:30:5") == ("fast", [5, 10, 15, 20, 25, 30])
    assert parse_sweep("entry_z=1:2:0.5") == ("entry_z", [1.0, 1.5, 2.0])
    grid = sweep_grid(["fast=5:15:5", "slow=20:30:10"])
    assert len(grid) == 6 and {"fast": 5, "slow": 20} in grid
    rc = main(
        [
            "backtest",
            "--data",
            csv,
            "--sweep",
            "fast=5:15:5",
            "--sweep",
            "slow=20:30:10",
            "--json",
            "--workers",
            "2",
            "--rank",
            "return_pct",
        ]
    )
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert len(rows) == 6
    rets = [r["return_pct"] for r in rows]
    assert rets == sorted(rets, reverse=True)
    # each row is what a single run gives
    best = rows[0]
    single = run_backtest_job(csv, "sma_cross", {"fast": best["fast"], "slow": best["slow"]})
    assert single.metrics["return_pct"] == pytest.approx(best["return_pct"])


def test_sweep_on_dask_local_cluster(csv) -> None:
    import distributed  # a declared test dependency: missing must fail, not skip

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        table = run_sweep(
            csv,
            "sma_cross",
            sweep_grid(["fast=5:10:5", "slow=20:30:10"]),
            cluster=cluster.scheduler_address,
        )
    local = run_sweep(csv, "sma_cross", sweep_grid(["fast=5:10:5", "slow=20:30:10"]), workers=1)
    pd.testing.assert_frame_equal(
        table.sort_values(["fast", "slow"]).reset_index(drop=True),
        local.sort_values(["fast", "slow"]).reset_index(drop=True),
    )


def test_run_backtest_job_progress_and_charts(csv) -> None:
    seen: list[float] = []
    res = run_backtest_job(
        csv, "mean_reversion", {"window": 15}, 10_000, 0.001, "all_in", seen.append, mode="replay"
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert {"return_pct", "sharpe"} <= set(res.metrics.index)
    assert len(res.equity) == 800 and list(res.trades.columns)[:3] == [
        "instrument",
        "size",
        "entry_bar",
    ]
    import plotext as plt

    plt.clear_figure()
    draw_equity(plt, res)
    draw_price_trades(plt, res)
    assert "Price and trades" in plt.build()
    plt.clear_figure()
    text = PerformanceAnalysis(res).terminal_charts(width=100, height=40)
    assert "Equity" in text and "Trade returns" in text
