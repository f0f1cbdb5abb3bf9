"""Orders benchmark: OrderManagement -> PaperBroker with the SQLite journal on.

    python bench/orders_bench.py [--orders 100000] [--batch 1000] [--fill-every 100] [--profile]

Three runs, each on a fresh journal file (WAL, synchronous=NORMAL, the default):

* single: ``create_order`` one by one; each order and its acknowledgement commit together
  (one transaction per order). Latency is create_order -> acknowledged (the call returns once
  the venue acknowledged and the journal committed), per order, p50/p99.
* single + fills: the same, with a market update every ``--fill-every`` orders so the working
  orders fill (each fill journaled in its own transaction), alternating buys and sells.
* batched: ``OrderQueue.enqueue_order`` then ``OrderQueue.submit_all`` in batches of ``--batch``
  (one transaction per batch); latency is per batch and per order in the batch.

Target (issue 2): >= 20,000 orders/s journaled, p99 < 1 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement, OrderQueue
from fbterm.journal import Journal
from fbterm.model import OrderStatus, Side, Signal, Stock, Tick

SYMBOLS = ["AAPL", "MSFT", "SPY", "NVDA"]


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(int(len(s) * p), len(s) - 1)] if s else float("nan")


def setup(path: Path) -> tuple[OrderManagement, PaperBroker, Journal]:
    j = Journal(path)
    broker = PaperBroker(PaperBrokerConfig(cash=1e12), symbols=SYMBOLS, participation=None)
    oms = OrderManagement(broker, j)
    for s in SYMBOLS:  # a price, so buying power is checked against something
        broker.on_tick(Tick(s, time.time(), 99.99, 100.01, 100.0, 0.0))
    return oms, broker, j


def signals(n: int) -> list[Signal]:
    insts = [Stock(s) for s in SYMBOLS]
    return [
        Signal(
            "bench", insts[i % len(insts)], Side.BUY if (i // 4) % 2 == 0 else Side.SELL, 1 + i % 5
        )
        for i in range(n)
    ]


def run_single(path: Path, n: int, fill_every: int) -> dict[str, float]:
    oms, broker, j = setup(path)
    sigs = signals(n)
    lat: list[float] = []
    clock = time.perf_counter
    px = 100.0
    t_start = clock()
    for i, sig in enumerate(sigs, 1):
        t0 = clock()
        o = oms.create_order(sig)
        lat.append(clock() - t0)
        if o.status is not OrderStatus.SUBMITTED:
            raise SystemExit(f"order {o.client_order_id} not acknowledged: {o.status} {o.reason}")
        if fill_every and i % fill_every == 0:
            px = 100.0 + (i % 1000) / 1000
            now = time.time()
            for s in SYMBOLS:
                broker.on_tick(Tick(s, now, px - 0.01, px + 0.01, px, 0.0))
    elapsed = clock() - t_start
    fills = len(oms.fills)
    acks = oms.ack_latencies
    j.close()
    return {
        "orders": n,
        "seconds": elapsed,
        "orders_per_s": n / elapsed,
        "fills": fills,
        "p50_ms": pct(lat, 0.5) * 1e3,
        "p99_ms": pct(lat, 0.99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "ack_p50_ms": pct(acks, 0.5) * 1e3,
        "ack_p99_ms": pct(acks, 0.99) * 1e3,
    }


def run_batched(path: Path, n: int, batch: int) -> dict[str, float]:
    oms, _broker, j = setup(path)
    q = OrderQueue(maxsize=batch)
    sigs = signals(n)
    per_batch: list[float] = []
    clock = time.perf_counter
    t_start = clock()
    for k in range(0, n, batch):
        for s in sigs[k : k + batch]:
            q.enqueue_order(s)
        t0 = clock()
        out = q.submit_all(oms, max_items=batch)
        per_batch.append(clock() - t0)
        if len(out) != min(batch, n - k):
            raise SystemExit("submit_all lost orders")
    elapsed = clock() - t_start
    j.close()
    per_order = [b / batch for b in per_batch]
    return {
        "orders": n,
        "seconds": elapsed,
        "orders_per_s": n / elapsed,
        "batch_p50_ms": pct(per_batch, 0.5) * 1e3,
        "batch_p99_ms": pct(per_batch, 0.99) * 1e3,
        "per_order_p50_ms": pct(per_order, 0.5) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--fill-every", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="cProfile the single-order run")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fbterm-bench-") as d:
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            run_single(Path(d) / "p.sqlite", min(args.orders, 20_000), args.fill_every)
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
            return 0
        single = run_single(Path(d) / "a.sqlite", args.orders, 0)
        filled = run_single(Path(d) / "b.sqlite", args.orders, args.fill_every)
        batched = run_batched(Path(d) / "c.sqlite", args.orders, args.batch)
    print(
        f"orders bench: {args.orders:,} orders, journal on (WAL, synchronous=NORMAL), Python {sys.version.split()[0]}"
    )
    print(
        f"  single, one commit per order : {single['orders_per_s']:>10,.0f} orders/s   "
        f"create->ack p50 {single['p50_ms']:.3f} ms  p99 {single['p99_ms']:.3f} ms  max {single['max_ms']:.1f} ms"
    )
    print(
        f"  single + fills every {args.fill_every:<4}    : {filled['orders_per_s']:>10,.0f} orders/s   "
        f"create->ack p50 {filled['p50_ms']:.3f} ms  p99 {filled['p99_ms']:.3f} ms  "
        f"({filled['fills']:,.0f} fills journaled)"
    )
    print(
        f"  batched submit_all x{args.batch:<6}  : {batched['orders_per_s']:>10,.0f} orders/s   "
        f"batch p50 {batched['batch_p50_ms']:.2f} ms  p99 {batched['batch_p99_ms']:.2f} ms  "
        f"(per order {batched['per_order_p50_ms'] * 1e3:.1f} us)"
    )
    ok = single["orders_per_s"] >= 20_000 and single["p99_ms"] < 1.0
    print(f"  target >= 20,000 orders/s and p99 < 1 ms (single): {'MET' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
