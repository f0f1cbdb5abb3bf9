"""Backtest benchmark: SMA 10/20 crossover on 10k, 100k and 1M synthetic 1-minute bars.

fbterm's fast path and replay path, backtesting.py and (when importable) vectorbt on the same
bars in the same run; then the whole ``fbterm backtest`` command on a 1M-bar CSV against
backtesting.py's whole process (CSV load included), and peak memory of each.

    python bench/backtest_bench.py [--sizes 10000,100000,1000000] [--skip-replay-above N]

Sweeps (``--sweeps``): whole processes, wall and CPU time, peak memory of the process tree
(workers included, sampled every 20 ms):

* a 10x10 grid of SMA windows over a 1M-bar hourly CSV: ``fbterm backtest --sweep`` against
  vectorbt's broadcast ``Portfolio.from_signals`` over the same 100 columns (its Sharpe
  ratios computed, as fbterm ranks by Sharpe); ``--vectorbt-python`` names an interpreter
  that has vectorbt when the project's venv does not;
* 10,000 parameter sets over 100k bars;
* the 10,000 sets on a Dask LocalCluster with 1 and 2 worker processes (scaling ratio).

    python bench/backtest_bench.py --sweeps [--vectorbt-python /path/to/python]

Commission 0 so the all-in reversal system keeps trading to the end (the most trades, the
hardest case for a per-trade loop). Times are the best of ``--repeat`` runs in process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from fbterm.backtest.backtester import CustomBacktester
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage
from fbterm.strategies import create_strategy

FAST, SLOW = 10, 20


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_fbterm(bars: pd.DataFrame, mode: str):
    strat = create_strategy("sma_cross", None, {"fast": FAST, "slow": SLOW})
    return CustomBacktester(
        bars, strat, cash=10_000, commission=0.0, sizing="all_in", mode=mode
    ).run_backtest()


def run_backtesting(bars: pd.DataFrame):
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    def sma(v, n):
        return pd.Series(v).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self):
            self.a = self.I(sma, self.data.Close, FAST)
            self.b = self.I(sma, self.data.Close, SLOW)

        def next(self):
            if crossover(self.a, self.b):
                self.position.close()
                self.buy()
            elif crossover(self.b, self.a):
                self.position.close()
                self.sell()

    data = bars.rename(columns=str.capitalize)
    data.index = data.index.tz_localize(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Backtest(data, SmaCross, cash=10_000, commission=0.0).run()


def run_vectorbt(bars: pd.DataFrame):
    import vectorbt as vbt

    close = bars["close"]
    f = vbt.MA.run(close, FAST).ma
    s = vbt.MA.run(close, SLOW).ma
    entries = (f > s) & (f.shift(1) < s.shift(1))
    exits = (f < s) & (f.shift(1) > s.shift(1))
    return vbt.Portfolio.from_signals(
        close,
        entries,
        exits,
        short_entries=exits,
        short_exits=entries,
        price=bars["open"].shift(-1),
        init_cash=10_000,
    )


BT_SCRIPT = """
import sys, time, warnings, resource
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
def sma(v, n): return pd.Series(v).rolling(n).mean()
class SmaCross(Strategy):
    def init(self):
        self.a = self.I(sma, self.data.Close, 10); self.b = self.I(sma, self.data.Close, 20)
    def next(self):
        if crossover(self.a, self.b): self.position.close(); self.buy()
        elif crossover(self.b, self.a): self.position.close(); self.sell()
df = pd.read_csv(sys.argv[1], index_col=0, parse_dates=True)
df.columns = [c.capitalize() for c in df.columns]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    st = Backtest(df, SmaCross, cash=10_000, commission=0.0).run()
print(st["# Trades"], st["Equity Final [$]"], file=sys.stderr)
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""

FB_SCRIPT = """
import sys, resource, io, contextlib
from fbterm.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["backtest", "--data", sys.argv[1], "--param", "fast=10", "--param", "slow=20",
               "--cash", "10000", "--commission", "0", "--sizing", "all_in", "--json"])
print(buf.getvalue().strip(), file=sys.stderr)
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""


def whole_process(script: str, csv: Path) -> tuple[float, float, str]:
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", script, str(csv)], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t
    return wall, int(p.stdout.strip().splitlines()[-1]) / 1024.0, p.stderr.strip()[:200]


VBT_GRID_SCRIPT = """
import sys, time, warnings
import pandas as pd
import vectorbt as vbt
df = pd.read_csv(sys.argv[1], index_col=0, parse_dates=True)
fast = list(range(5, 55, 5)); slow = list(range(60, 260, 20))
fw = [a for a in fast for b in slow]; sw = [b for a in fast for b in slow]
close = df["close"]
f = vbt.MA.run(close, fw, short_name="fast").ma
s = vbt.MA.run(close, sw, short_name="slow").ma
f.columns = s.columns = pd.MultiIndex.from_arrays([fw, sw], names=["fast", "slow"])
entries = (f > s) & (f.shift(1) < s.shift(1))
exits = (f < s) & (f.shift(1) > s.shift(1))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pf = vbt.Portfolio.from_signals(close, entries, exits, short_entries=exits, short_exits=entries,
        price=df["open"].shift(-1).to_numpy()[:, None], init_cash=10_000, fees=0.0, freq="1h")
    best = pf.sharpe_ratio().sort_values(ascending=False).head(1)
print(best.to_dict(), file=sys.stderr)
"""


def tree_run(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s of the whole tree, peak summed RSS MB of the tree, stderr tail): the
    process and everything it starts, sampled every 20 ms."""
    import os
    import resource

    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    peak = 0
    while p.poll() is None:
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    stat = fh.read().rsplit(")", 1)[1].split()
                if int(stat[2]) != p.pid:  # process group = the session we started
                    continue
                with open(f"/proc/{pid}/statm") as fh:
                    total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                continue
        peak = max(peak, total)
        time.sleep(0.02)
    wall = time.perf_counter() - t
    err = p.stderr.read() if p.stderr else ""
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode:
        what = "killed (out of memory?)" if p.returncode == -9 else f"exit {p.returncode}"
        raise RuntimeError(f"{cmd[0]} {what}: {err.strip()[-500:]}")
    return wall, cpu, peak / 2**20, err.strip()[-300:]


def fb_sweep_cmd(
    csv: Path, *sweeps: str, workers: int | None = None, cluster: str = ""
) -> list[str]:
    cmd = [sys.executable, "-m", "fbterm", "backtest", "--data", str(csv), "--quiet", "--json"]
    for s in sweeps:
        cmd += ["--sweep", s]
    if workers:
        cmd += ["--workers", str(workers)]
    if cluster:
        cmd += ["--cluster", cluster]
    return cmd


def sweeps(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as d:
        big = Path(d) / "hourly_1m.csv"
        mid = Path(d) / "hourly_100k.csv"
        store = DataStorage(d)
        store.save_to_csv(synth_bars(1_000_000, bar_size="1h", seed=42), big)
        store.save_to_csv(synth_bars(100_000, bar_size="1h", seed=42), mid)
        store.load_from_csv(big)  # the binary cache, as a second run of a user's file has
        store.load_from_csv(mid)
        parts = set(args.sweep_parts.split(","))
        grid = ("fast=5:50:5", "slow=60:240:20")
        if "grid" in parts:
            grid_vs_vectorbt(args, big, grid)
        if "big" in parts:
            print(
                "\n10,000 parameter sets (fast 2..101 x slow 110..1100) over 100,000 hourly bars:"
            )
            big_grid = ("fast=2:101", "slow=110:1100:10")
            wall, cpu, mb, _ = tree_run(fb_sweep_cmd(mid, *big_grid))
            print(
                f"  fbterm, all cores        {wall:7.2f} s wall  {cpu:7.2f} s CPU  peak {mb:7.0f} MB"
            )
        if "dask" in parts:
            dask_scaling(mid)


def grid_vs_vectorbt(args: argparse.Namespace, big: Path, grid: tuple[str, ...]) -> None:
    print("10x10 SMA grid (100 sets) over 1,000,000 hourly bars, whole process:")
    rows = []
    for label, cmd in (
        ("fbterm, all cores", fb_sweep_cmd(big, *grid)),
        ("fbterm, 1 process", fb_sweep_cmd(big, *grid, workers=1)),
    ):
        wall, cpu, mb, _ = tree_run(cmd)
        rows.append((label, wall, cpu, mb))
    vbt = None
    try:
        vbt = tree_run([args.vectorbt_python, "-c", VBT_GRID_SCRIPT, str(big)])
        rows.append(("vectorbt from_signals", vbt[0], vbt[1], vbt[2]))
    except RuntimeError as e:
        print(f"  vectorbt: could not run: {e}")
    for label, wall, cpu, mb in rows:
        print(f"  {label:<24} {wall:7.2f} s wall  {cpu:7.2f} s CPU  peak {mb:7.0f} MB")
    if vbt is not None:
        print(
            f"  ratio vectorbt / fbterm: {vbt[0] / rows[0][1]:.1f}x wall (all cores), "
            f"{vbt[0] / rows[1][1]:.1f}x wall (1 process), {vbt[1] / rows[1][2]:.1f}x CPU"
        )


def dask_scaling(mid: Path) -> None:
    try:
        import distributed
    except ImportError:
        print("dask: not installed, scaling skipped")
        return
    print("\nDask LocalCluster, the 10,000 sets over 100,000 bars, whole fbterm process:")
    times = {}
    for n in (1, 2):
        with distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            cmd = fb_sweep_cmd(
                mid, "fast=2:101", "slow=110:1100:10", cluster=cluster.scheduler_address
            )
            tree_run(cmd)  # the workers import fbterm once
            times[n] = tree_run(cmd)[0]
        print(f"  {n} worker process(es): {times[n]:6.2f} s")
    print(f"  scaling 1 -> 2 workers: {times[1] / times[2]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-backtesting-above", type=int, default=10_000_000)
    ap.add_argument("--sweeps", action="store_true", help="run the sweep benchmarks instead")
    ap.add_argument("--vectorbt-python", default=sys.executable, metavar="PYTHON")
    ap.add_argument(
        "--sweep-parts", default="grid,big,dask", help="which sweep benchmarks (grid,big,dask)"
    )
    args = ap.parse_args()
    if args.sweeps:
        sweeps(args)
        return
    try:
        import vectorbt  # noqa: F401

        have_vbt = True
    except ImportError:
        have_vbt = False
    try:
        import backtesting  # noqa: F401

        have_bt = True
    except ImportError:
        have_bt = False
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        bars = synth_bars(n, bar_size="1min", seed=42)
        run_fbterm(bars, "fast")  # warm imports and caches
        t_fast, r_fast = best_of(lambda b=bars: run_fbterm(b, "fast"), args.repeat)
        t_rep, r_rep = best_of(lambda b=bars: run_fbterm(b, "replay"), 1)
        assert r_fast.trades.equals(r_rep.trades), "fast and replay disagree"
        row = {
            "bars": n,
            "trades": len(r_fast.trades),
            "fast_bars_s": n / t_fast,
            "replay_bars_s": n / t_rep,
        }
        if have_bt and n <= args.skip_backtesting_above:
            t_bt, st = best_of(lambda b=bars: run_backtesting(b), 1)
            assert st["# Trades"] == len(r_fast.trades), "backtesting.py disagrees"
            row["backtesting_bars_s"] = n / t_bt
        if have_vbt:
            run_vectorbt(bars.iloc[:1000])  # numba compile outside the timing
            t_vbt, _ = best_of(lambda b=bars: run_vectorbt(b), args.repeat)
            row["vectorbt_bars_s"] = n / t_vbt
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows).set_index("bars")
    if "backtesting_bars_s" in table:
        table["fast/backtesting"] = table["fast_bars_s"] / table["backtesting_bars_s"]
        table["replay/backtesting"] = table["replay_bars_s"] / table["backtesting_bars_s"]
    if "vectorbt_bars_s" in table:
        table["fast/vectorbt"] = table["fast_bars_s"] / table["vectorbt_bars_s"]
    with pd.option_context("display.width", 200, "display.float_format", "{:,.1f}".format):
        print(table.to_string())
    if not have_vbt:
        print("vectorbt: not installed, skipped (pip install vectorbt to compare)")

    n = max(int(x) for x in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "bars.csv"
        DataStorage(d, cache=False).save_to_csv(synth_bars(n, bar_size="1min", seed=42), csv)
        cold = whole_process(FB_SCRIPT, csv)
        warm = whole_process(FB_SCRIPT, csv)
        print(f"\nwhole command on {n:,} bars (CSV):")
        print(
            f"  fbterm backtest, first run (parses CSV, writes cache): {cold[0]:6.2f} s  peak {cold[1]:6.0f} MB"
        )
        print(
            f"  fbterm backtest, cached:                               {warm[0]:6.2f} s  peak {warm[1]:6.0f} MB"
        )
        if have_bt:
            bt = whole_process(BT_SCRIPT, csv)
            print(
                f"  backtesting.py whole process (pandas read_csv):        {bt[0]:6.2f} s  peak {bt[1]:6.0f} MB"
            )
            print(f"  ratio (cached): {bt[0] / warm[0]:.1f}x, (first run): {bt[0] / cold[0]:.1f}x")


if __name__ == "__main__":
    main()
