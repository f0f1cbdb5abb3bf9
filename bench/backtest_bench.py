"""Backtest benchmark: SMA 10/20 crossover on 10k, 100k and 1M synthetic 1-minute bars.

fbterm's fast path and replay path, backtesting.py and (when importable) vectorbt on the same
bars in the same run; then the whole ``fbterm backtest`` command on a 1M-bar CSV against
backtesting.py's whole process (CSV load included), and peak memory of each.

    python bench/backtest_bench.py [--sizes 10000,100000,1000000] [--skip-replay-above N]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-backtesting-above", type=int, default=10_000_000)
    args = ap.parse_args()
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
