"""Memory per fill: a long paper run on the engine thread, RSS sampled as fills accumulate.

    python bench/memory_bench.py [--fills 20000] [--every 2000]

A busy paper config (1 s bars, short windows, wide limits) runs unpaced on the real engine
thread with the journal and activity log on; at every ``--every`` fills the process's resident
set (``/proc/self/statm``) is printed, after a ``gc.collect()``. The slope between the first
and the last sample is the memory each fill costs for good (issue 12: it was ~2.4 KB).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

from fbterm.config import config_from_dict
from fbterm.engine import Engine


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fills_of(e: Engine) -> int:
    total = getattr(e.oms, "fills_total", None)
    return int(total) if total is not None else len(e.oms.fills)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fills", type=int, default=20_000)
    ap.add_argument("--every", type=int, default=2_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FBTERM_HOME"] = tmp  # reports and data stay out of the user's home
        cfg = config_from_dict(
            {
                "market": {"symbols": ["AAPL", "MSFT", "SPY", "NVDA"], "bar_seconds": 1.0},
                "risk": {
                    "max_orders_per_second": 1e6,
                    "max_order_value": 1e9,
                    "max_position_value": 1e9,
                    "max_strategy_position_value": 1e9,
                    "max_gross_exposure": 1e10,
                    "daily_loss_limit": 1e9,
                    "max_drawdown_pct": 99.0,
                },
                "journal": {"path": str(Path(tmp) / "journal.sqlite")},
                "log": {"path": str(Path(tmp) / "activity.jsonl")},
                "control": {"socket": str(Path(tmp) / "c.sock")},
                "strategies": [
                    {"name": "sma", "class": "sma_cross", "params": {"fast": 2, "slow": 3}},
                    {
                        "name": "mr",
                        "class": "mean_reversion",
                        "params": {"window": 5, "entry_z": 0.3},
                    },
                ],
            },
            "<bench>",
        )
        e = Engine(cfg, pace=False)
        e.start()
        samples: list[tuple[int, int]] = []
        t0 = time.monotonic()
        try:
            target = a.every
            while target <= a.fills:
                last, seen_at = fills_of(e), time.monotonic()
                while fills_of(e) < target:
                    time.sleep(0.05)
                    if fills_of(e) != last:
                        last, seen_at = fills_of(e), time.monotonic()
                    elif time.monotonic() - seen_at > 20:  # trading stopped (a risk limit)
                        print(
                            f"no new fills for 20 s at {last:,}: {e.risk.state.value} "
                            f"{e.risk.reason}",
                            flush=True,
                        )
                        target = a.fills + 1
                        break
                if target > a.fills:
                    break
                n = e.call(lambda: (gc.collect(), fills_of(e))[1], timeout=60)
                samples.append((n, rss_bytes()))
                took = time.monotonic() - t0
                print(f"fills {n:>7,}  rss {samples[-1][1] / 2**20:8.1f} MiB  t {took:6.1f} s")
                target += a.every
        finally:
            e.stop()
        (n0, r0), (n1, r1) = samples[0], samples[-1]
        per = (r1 - r0) / max(n1 - n0, 1)
        print(
            f"{n1 - n0:,} fills in {time.monotonic() - t0:.0f} s: rss "
            f"{r0 / 2**20:.1f} -> {r1 / 2**20:.1f} MiB, {per:,.0f} bytes per fill"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
