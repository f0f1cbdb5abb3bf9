"""Round trip through IB's wire protocol on loopback: ``execute_order()`` -> fill event.

Starts the TWS-protocol test server in its own thread, connects a ``BrokerIntegration`` (the
real ib_async client underneath) and sends market orders one at a time, timing each from the
call until the broker hands the fill event to the engine's handler. Then it sends a burst to
measure throughput. The request throttle is off here: with it on (IB's 50 msg/s) the figure
would be the throttle, not the code.

    python bench/ib_bench.py [--orders 10000] [--burst 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from fbterm.config import IBConfig
from fbterm.execution.brokers.base import FillEvent
from fbterm.execution.brokers.ib import BrokerIntegration
from fbterm.model import Order, Side, Stock
from fbterm.testing.ibserver import IBTestServer


async def bench(port: int, n: int, burst: int) -> tuple[list[float], float]:
    broker = BrokerIntegration(IBConfig(port=port, client_id=1), throttle=False)
    waiting: dict[str, asyncio.Future[float]] = {}
    filled = 0
    all_done: asyncio.Future[None] | None = None

    def on_event(ev: object) -> None:
        nonlocal filled
        if isinstance(ev, FillEvent):
            fut = waiting.pop(ev.fill.client_order_id, None)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())
            filled += 1
            if all_done is not None and filled >= burst and not all_done.done():
                all_done.set_result(None)

    broker.set_event_handler(on_event)
    await broker.start()
    loop = asyncio.get_running_loop()
    inst = Stock("AAPL")
    latencies: list[float] = []
    for i in range(n):
        coid = f"lat{i}"
        fut: asyncio.Future[float] = loop.create_future()
        waiting[coid] = fut
        t0 = time.perf_counter()
        broker.execute_order(
            Order(coid, inst, Side.BUY if i % 2 else Side.SELL, 1, strategy_id="bench")
        )
        t1 = await asyncio.wait_for(fut, 10)
        latencies.append(t1 - t0)
    filled = 0
    all_done = loop.create_future()
    t0 = time.perf_counter()
    for i in range(burst):
        broker.execute_order(
            Order(f"burst{i}", inst, Side.BUY if i % 2 else Side.SELL, 1, strategy_id="bench")
        )
    await asyncio.wait_for(all_done, 120)
    rate = burst / (time.perf_counter() - t0)
    await broker.stop()
    return latencies, rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--burst", type=int, default=2_000)
    args = p.parse_args()
    with IBTestServer(market_fill_price=100.0, connect_messages=False) as srv:
        lat, rate = asyncio.run(bench(srv.port, args.orders, args.burst))
    q = statistics.quantiles(lat, n=100)
    ms = 1e3
    print(f"IB loopback round trip, execute_order() -> FillEvent, {len(lat)} orders (sequential):")
    print(
        f"  p50 {q[49] * ms:.3f} ms   p99 {q[98] * ms:.3f} ms   mean {statistics.fmean(lat) * ms:.3f} ms"
        f"   max {max(lat) * ms:.3f} ms"
    )
    print(f"  sequential: {len(lat) / sum(lat):,.0f} orders/s")
    print(f"  burst of {args.burst} (pipelined, throttle off): {rate:,.0f} orders/s")


if __name__ == "__main__":
    main()
