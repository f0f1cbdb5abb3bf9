"""`fbterm backtest` at scale: a real sweep process killed mid-run resumes without redoing
finished work and ends with the uninterrupted table; walk-forward and out-of-sample; the
heatmap in text, plotext and HTML; the sweep on a Dask LocalCluster with 1 and 2 workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from waiting import wait_until

from fbterm.backtest.heatmap import heatmap, heatmap_svg, heatmap_text, swept_axes, terminal_heatmap
from fbterm.backtest.jobs import sweep_grid
from fbterm.backtest.sweep import SweepSpec, run_grid
from fbterm.backtest.sweepkernel import SWEEP_KEYS
from fbterm.backtest.walkforward import oos_window, parse_split, walk_forward, windows
from fbterm.cli import main
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    p = d / "hourly.csv"
    DataStorage(d).save_to_csv(synth_bars(30_000, bar_size="1h", seed=5), p)
    return p


def _sweep_cmd(csv: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fbterm",
        "backtest",
        "--data",
        str(csv),
        "--strategy",
        "mean_reversion",
        "--sweep",
        "window=5:54",
        "--sweep",
        "entry_z=0.5:2.4:0.1",
        "--commission",
        "0.001",
        "--workers",
        "1",
        "--quiet",
        "--json",
        "--out",
        str(out),
    ]


def _wait_for(cond, deadline: float = 120.0) -> None:
    wait_until(cond, "the sweep's progress", deadline)


def test_killed_sweep_resumes_where_it_stopped(csv, tmp_path) -> None:
    out = tmp_path / "sweep"
    parts = out / "sweep-parts"
    proc = subprocess.Popen(_sweep_cmd(csv, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: parts.is_dir() and any(p.suffix != ".tmp" for p in parts.iterdir()))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts.glob("part-*[!p]")}
    assert 0 < len(first) < 4  # 1000 points in tasks of 250: killed part-way
    assert not (out / "sweep.csv").exists()

    rerun = subprocess.run(_sweep_cmd(csv, out), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts.glob("part-*[!p]")}
    assert len(after) == 4
    for name, stamp in first.items():
        assert after[name] == stamp  # finished tasks were not run again

    whole = tmp_path / "whole"
    straight = subprocess.run(_sweep_cmd(csv, whole), capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    resumed = json.loads(rerun.stdout)["results"]
    uninterrupted = json.loads(straight.stdout)["results"]
    assert resumed == uninterrupted
    assert len(resumed) == 1000
    a = pd.read_csv(out / "sweep.csv")
    b = pd.read_csv(whole / "sweep.csv")
    pd.testing.assert_frame_equal(a, b)


def test_sweep_cli_heatmap_and_report(csv, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    rc = main(
        [
            "backtest",
            "--data",
            str(csv),
            "--sweep",
            "fast=5:20:5",
            "--sweep",
            "slow=30:60:10",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # stderr is not a terminal here: no progress bar
    text = captured.out
    assert "sharpe by fast × slow" in text
    assert (out / "sweep.csv").exists() or (out / "sweep.parquet").exists()
    html = (out / "report.html").read_text()
    assert html.count("<rect") == 16 and "sharpe by fast × slow" in html
    assert "sharpe by fast" in (out / "heatmap.txt").read_text()


def test_progress_bar_with_eta(capsys) -> None:
    from fbterm.cli.research import Progress

    bar = Progress("sweep", enabled=True)
    bar(250, 1000)  # resumed: a quarter was already done
    bar.drawn = 0.0
    bar.t0 -= 10.0  # ten seconds in
    bar(500, 1000)
    bar.close()
    err = capsys.readouterr().err
    assert "sweep 500/1,000" in err and " 50%" in err
    # 250 points in 10 s, 500 to go: 20 s left (the resumed quarter does not count as speed).
    assert "0:20 left" in err
    quiet = Progress("sweep", enabled=False)
    quiet(1, 2)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_heatmap_pictures() -> None:
    table = pd.DataFrame(
        [
            {"fast": f, "slow": s, "z": 1.0, "sharpe": f / s if f != 10 else np.nan}
            for f in (5, 10, 15)
            for s in (30, 40)
            for _ in range(1)
        ]
    )
    axes = swept_axes(table, SWEEP_KEYS)
    assert axes == ["fast", "slow"]
    hm = heatmap(table, "sharpe", axes=axes)
    assert hm.z.shape == (2, 3) and np.isnan(hm.z[:, 1]).all()
    assert hm.z[0, 0] == pytest.approx(5 / 30)
    txt = heatmap_text(hm)
    assert "0.17" in txt and "·" in txt
    assert "█" in txt  # the best cell is the darkest
    svg = heatmap_svg(hm)
    assert svg.count("<rect") == 6
    drawn = terminal_heatmap(hm, width=60, height=15)
    assert "sharpe by fast × slow" in drawn
    with pytest.raises(ValueError, match="two parameters"):
        heatmap(table[table["slow"] == 30], "sharpe", axes=["fast"])


def test_walk_forward_windows_and_parse() -> None:
    idx = pd.date_range("2020-01-01", periods=1000, freq="h", tz="UTC")
    assert parse_split("500:100", idx) == (500, 100)
    assert parse_split("10D:2D", idx) == (240, 48)
    with pytest.raises(ValueError, match="TRAIN:TEST"):
        parse_split("500", idx)
    rolling = windows(1000, 500, 200, anchored=False)
    assert [(w.train, w.test) for w in rolling] == [
        ((0, 500), (500, 700)),
        ((200, 700), (700, 900)),
        ((400, 900), (900, 1000)),
    ]
    anchored = windows(1000, 500, 200, anchored=True)
    assert [w.train for w in anchored] == [(0, 500), (0, 700), (0, 900)]
    assert [(w.train, w.test) for w in oos_window(1000, 0.25)] == [((0, 750), (750, 1000))]
    with pytest.raises(ValueError):
        oos_window(1000, 1.5)


def test_walk_forward_picks_on_train_and_trades_the_test(csv) -> None:
    from fbterm.backtest.backtester import CustomBacktester
    from fbterm.backtest.jobs import load_bars
    from fbterm.strategies import create_strategy

    bars = load_bars(csv).iloc[:12_000]
    spec = SweepSpec("sma_cross", sweep_grid(["fast=5:15:5", "slow=30:50:10"]), commission=0.001)
    wins = windows(len(bars), 6000, 2000, anchored=False)
    res = walk_forward(spec, bars, wins, workers=1)
    assert len(res.windows) == 3
    for w, row in zip(wins, res.windows.itertuples(index=False), strict=True):
        train = run_grid(spec, bars.iloc[w.train[0] : w.train[1]], workers=1)
        assert (row.fast, row.slow) == (train.iloc[0]["fast"], train.iloc[0]["slow"])
    # The stitched equity covers exactly the test windows and chains them.
    assert res.equity.index[0] == bars.index[6000] and res.equity.index[-1] == bars.index[-1]
    assert len(res.equity) == 6000
    first = res.windows.iloc[0]
    strat = create_strategy("sma_cross", None, {"fast": int(first.fast), "slow": int(first.slow)})
    lead = strat.warmup()
    solo = CustomBacktester(
        bars.iloc[6000 - lead : 8000], strat, cash=10_000, commission=0.001
    ).run_backtest()
    assert res.equity.iloc[1999] == pytest.approx(solo.equity.iloc[-1])
    assert res.metrics["equity_final"] == pytest.approx(res.equity.iloc[-1])
    # The out-of-sample Sharpe buckets these round-the-clock hours by XNYS session, as the
    # sweep's own ranking does, not by UTC day.
    from fbterm.backtest.metrics import periodic_returns
    from fbterm.stats import sharpe_ratio

    eq0 = res.equity.iloc[:2000]
    by_session = sharpe_ratio(*periodic_returns(eq0, "XNYS"))
    assert first.oos_sharpe == pytest.approx(by_session)
    assert first.oos_sharpe != pytest.approx(sharpe_ratio(*periodic_returns(eq0)))
    assert set(res.stability["param"]) == {"fast", "slow"}
    assert (res.stability["share_pct"] > 0).all()


def test_walk_forward_and_oos_cli(csv, tmp_path, capsys) -> None:
    base = [
        "backtest",
        "--data",
        str(csv),
        "--sweep",
        "fast=5:15:5",
        "--sweep",
        "slow=30:50:10",
        "--quiet",
    ]
    assert main([*base, "--walk-forward", "10000:5000", "--anchored", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "walk-forward (anchored)" in text and "parameter stability" in text
    assert "out of sample (stitched)" in text
    assert len(pd.read_csv(tmp_path / "windows.csv")) == 4
    assert main([*base, "--oos", "0.3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["windows"]) == 1 and "sharpe" in doc["oos"]
    assert main(["backtest", "--data", str(csv), "--walk-forward", "10:5"]) == 2
    assert "--sweep" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_on_dask_local_cluster_with_one_and_two_workers(csv) -> None:
    import distributed  # a declared test dependency: missing means a broken install

    from fbterm.backtest.jobs import load_bars

    bars = load_bars(csv)
    spec = SweepSpec("sma_cross", sweep_grid(["fast=5:25:5", "slow=30:70:10"]), commission=0.001)
    local = run_grid(spec, bars, workers=1)
    for n in (1, 2):
        with distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            seen: list[int] = []
            table = run_grid(
                spec,
                bars,
                workers=4,  # tasks per worker: the grid is cut into several tasks
                cluster=cluster.scheduler_address,
                progress=lambda d, t, seen=seen: seen.append(d),
            )
            with distributed.Client(cluster.scheduler_address) as client:
                assert len(client.scheduler_info()["workers"]) == n
        pd.testing.assert_frame_equal(table, local)
        assert seen[-1] == len(spec.grid) and len(seen) > 2


def test_env_has_no_textual_in_backtest(csv) -> None:
    # The research modules stay below the console: importing them pulls in no textual.
    code = (
        "import sys, fbterm.backtest.sweep, fbterm.backtest.walkforward, "
        "fbterm.backtest.portfolio, fbterm.backtest.heatmap, fbterm.cli.research; "
        "print('textual' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    assert out.stdout.strip() == "False", out.stderr
