"""Engine benchmark: 4 strategies on 20 symbols of simulated ticks through Engine.on_ticks.

    python bench/engine_bench.py [--rounds 5000] [--bar-seconds 5] [--tick-seconds 1] [--profile]

The simulated market's ticks are generated up front (the market's own cost is not the
engine's); the engine runs with the paper broker and the SQLite journal on, without pacing,
on this thread. Measured: ticks processed per second, and the latency from a tick's arrival
to the order it caused being submitted (``Engine.tick_latencies``: ticks that created orders).

Target (issue 4): >= 50,000 ticks/s and p99 < 2 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from fbterm.config import config_from_dict
from fbterm.data.simulated import SimulatedMarket
from fbterm.engine import Engine
from fbterm.journal import Journal

SYMBOLS = [
    "AAPL",
    "MSFT",
    "SPY",
    "NVDA",
    "AMZN",
    "GOOG",
    "META",
    "TSLA",
    "JPM",
    "XOM",
    "UNH",
    "V",
    "PG",
    "HD",
    "KO",
    "PEP",
    "COST",
    "WMT",
    "BAC",
    "DIS",
]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(int(len(s) * p), len(s) - 1)] if s else float("nan")


def build(tmp: Path, bar_seconds: float, tick_seconds: float) -> tuple[Engine, SimulatedMarket]:
    cfg = config_from_dict(
        {
            "market": {
                "symbols": SYMBOLS,
                "bar_seconds": bar_seconds,
                "stale_after": 3600.0,
                "simulated": {
                    "ticks_per_second": 60.0 / tick_seconds,
                    "time_scale": 60.0,
                    "seed": 11,
                },
            },
            "journal": {"path": str(tmp / "journal.sqlite")},
            "log": {
                "path": str(tmp / "activity.jsonl")
            },  # the engine's activity log stays on: a real cost
            "broker": {"paper": {"cash": 50_000_000.0}},
            "risk": {
                "max_orders_per_second": 1e6,
                "max_order_value": 1e7,
                "max_position_value": 1e8,
                "max_strategy_position_value": 1e8,
                "max_gross_exposure": 1e10,
                "max_position_qty": 1e7,
                "max_drawdown_pct": 100.0,
                "daily_loss_limit": 1e9,
            },
            "strategies": [
                {
                    "name": "sma",
                    "class": "sma_cross",
                    "symbols": SYMBOLS,
                    "capital": 2_000_000,
                    "params": {"fast": 3, "slow": 8},
                },
                {
                    "name": "meanrev",
                    "class": "mean_reversion",
                    "symbols": SYMBOLS,
                    "capital": 2_000_000,
                    "params": {"window": 10, "entry_z": 1.0},
                },
                {
                    "name": "breakout",
                    "class": "breakout",
                    "symbols": SYMBOLS,
                    "capital": 2_000_000,
                    "params": {"window": 10},
                },
                {
                    "name": "covered",
                    "class": "covered_call",
                    "symbols": SYMBOLS,
                    "capital": 2_000_000,
                },
            ],
        }
    )
    market = SimulatedMarket(SYMBOLS, cfg.market.simulated)
    engine = Engine(cfg, market=market, journal=Journal(cfg.journal_path), pace=False)
    engine.warm_up()
    return engine, market


def run(
    rounds: int, bar_seconds: float, tick_seconds: float, profile: bool = False
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="fbterm-bench-") as d:
        os.environ["FBTERM_HOME"] = d  # reports and data stay out of the user's home
        engine, market = build(Path(d), bar_seconds, tick_seconds)
        batches = [market.next_ticks() for _ in range(rounds)]
        engine.tick_latencies.clear()
        engine.tick_latencies = type(engine.tick_latencies)(maxlen=None)  # keep every sample
        n0, o0, f0 = engine.ticks_processed, len(engine.oms.orders), len(engine.oms.fills)
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        t0 = time.perf_counter()
        for b in batches:
            engine.on_ticks(b)
        elapsed = time.perf_counter() - t0
        if prof:
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        ticks = engine.ticks_processed - n0
        lat = list(engine.tick_latencies)
        orders = len(engine.oms.orders) - o0
        rejected = sum(
            1 for o in list(engine.oms.orders.values())[o0:] if o.status.value == "Rejected"
        )
        out = {
            "ticks": ticks,
            "seconds": elapsed,
            "ticks_per_s": ticks / elapsed,
            "orders": orders,
            "rejected": rejected,
            "fills": len(engine.oms.fills) - f0,
            "p50_ms": pct(lat, 0.5) * 1e3,
            "p99_ms": pct(lat, 0.99) * 1e3,
            "max_ms": max(lat, default=0) * 1e3,
            "samples": len(lat),
            "errors": sum(1 for s in engine.executor.slots.values() if s.error),
        }
        engine.stop()
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5000, help="ticks per symbol")
    ap.add_argument("--bar-seconds", type=float, default=5.0)
    ap.add_argument(
        "--tick-seconds", type=float, default=1.0, help="simulated seconds between ticks"
    )
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.rounds, args.bar_seconds, args.tick_seconds, args.profile)
    print(
        f"engine bench: 4 strategies x {len(SYMBOLS)} symbols, {r['ticks']:,} ticks "
        f"(a {args.bar_seconds:g} s bar every {args.bar_seconds / args.tick_seconds:g} ticks per symbol), "
        f"paper broker + journal, Python {sys.version.split()[0]}"
    )
    print(f"  throughput          : {r['ticks_per_s']:,.0f} ticks/s ({r['seconds']:.2f} s)")
    print(
        f"  tick -> order sent  : p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  max {r['max_ms']:.1f} ms "
        f"({r['samples']:,} ticks that sent orders)"
    )
    print(
        f"  orders {r['orders']:,} (rejected {r['rejected']:,}), fills {r['fills']:,}, strategies in error {r['errors']}"
    )
    ok = r["ticks_per_s"] >= 50_000 and r["p99_ms"] < 2.0
    print(f"  target >= 50,000 ticks/s and p99 < 2 ms: {'MET' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
