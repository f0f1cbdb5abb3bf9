"""Data-module benchmark: load, clean and indicators on a 1,000,000-row CSV.

    /work/venv/bin/python bench/data_bench.py [--rows N] [--repeat R]

Targets (issue 3): load + clean < 2 s, indicators < 0.5 s, load within 1.5x of a plain
``pandas.read_csv`` of the same file. Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fbterm.data import indicators as ind
from fbterm.data.processing import clean_data
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, r = args.rows, args.repeat

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.csv"
        t_synth, df = best(lambda: synth_bars(n, bar_size="1m", seed=1), 1)
        cold = DataStorage(tmp, cache=False)
        t_save, _ = best(lambda: cold.save_to_csv(df, path), 1)
        size_mb = path.stat().st_size / 1e6

        t_plain, _ = best(lambda: pd.read_csv(path), r)
        t_plain_dates, _ = best(lambda: pd.read_csv(path, index_col=0, parse_dates=True), 1)
        t_load, bars = best(lambda: cold.load_from_csv(path), r)
        assert bars.equals(df)

        warm = DataStorage(tmp, cache=True)
        warm.load_from_csv(path)  # writes the cache
        t_cached, cached = best(lambda: warm.load_from_csv(path), r)
        assert cached.equals(df)

        t_clean, (cleaned, rep) = best(lambda: clean_data(bars, report=True), r)

        def indicators() -> None:
            ind.sma(cleaned["close"], 20)
            ind.ema(cleaned["close"], 20)
            ind.rsi(cleaned["close"], 14)
            ind.atr(cleaned, 14)

        t_ind, _ = best(indicators, r)
        parts = {
            name: best(fn, r)[0]
            for name, fn in (
                ("sma_20", lambda: ind.sma(cleaned["close"], 20)),
                ("ema_20", lambda: ind.ema(cleaned["close"], 20)),
                ("rsi_14", lambda: ind.rsi(cleaned["close"], 14)),
                ("atr_14", lambda: ind.atr(cleaned, 14)),
            )
        }

    ratio = t_load / t_plain
    print(f"rows {n:,}  csv {size_mb:.1f} MB  (best of {r})")
    print(f"  synth_bars                 {t_synth:7.3f} s")
    print(f"  save_to_csv (atomic)       {t_save:7.3f} s")
    print(f"  pandas.read_csv            {t_plain:7.3f} s   (timestamps left as text)")
    print(f"  read_csv parse_dates       {t_plain_dates:7.3f} s   (index_col=0, parse_dates=True)")
    print(
        f"  load_from_csv (no cache)   {t_load:7.3f} s   {ratio:.2f}x plain read_csv  [target <= 1.5x]"
    )
    print(f"  load_from_csv (cached)     {t_cached:7.3f} s")
    print(f"  clean_data                 {t_clean:7.3f} s   ({rep.summary()})")
    print(f"  load + clean               {t_load + t_clean:7.3f} s   [target < 2 s]")
    print(f"  SMA+EMA+RSI+ATR            {t_ind:7.3f} s   [target < 0.5 s]")
    print("    " + "  ".join(f"{k} {v * 1000:.0f} ms" for k, v in parts.items()))


if __name__ == "__main__":
    main()
