"""``python -m fbterm.testing.ibserver``: the test gateway standalone, for demos."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import Any

import pandas as pd

from fbterm.testing.ibserver.server import IBTestServer
from fbterm.testing.ibserver.state import synthetic_bars


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fbterm.testing.ibserver",
        description="A loopback TWS-protocol gateway for demos and tests.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4002)
    p.add_argument(
        "--account",
        action="append",
        help="a managed account (repeat for several; default DU1234567)",
    )
    p.add_argument(
        "--position",
        action="append",
        default=[],
        metavar="SYMBOL:QTY:AVG_COST",
        help="a stock position the account already holds (repeatable)",
    )
    p.add_argument(
        "--fill-price",
        type=float,
        default=None,
        help="market orders fill here (default: the symbol's last bar close)",
    )
    p.add_argument(
        "--tick-interval", type=float, default=0.25, help="seconds between streamed quotes"
    )
    p.add_argument(
        "--csv", help="bars CSV (columns ts,open,high,low,close,volume) served for every symbol"
    )
    args = p.parse_args(argv)
    accounts = args.account or ["DU1234567"]
    positions = []
    for spec in args.position:
        try:
            sym, qty, cost = spec.split(":")
            positions.append((sym, float(qty), float(cost)))
        except ValueError:
            p.error(f"--position {spec!r}: expected SYMBOL:QTY:AVG_COST")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    bars: Any = None
    if args.csv:
        bars = pd.read_csv(args.csv, index_col=0, parse_dates=True)
        bars.index = pd.DatetimeIndex(
            bars.index, tz="UTC" if bars.index.tz is None else None, name="ts"
        )
    else:
        # Two hours of 5-second bars ending now: a client asking for recent history (fbterm
        # warming its strategies up) gets some, as it would from a real gateway.
        now = pd.Timestamp.now(tz="UTC").floor("5s")
        bars = synthetic_bars(
            start=str((now - pd.Timedelta(hours=2)).tz_localize(None)), periods=1440, freq="5s"
        )
    srv = IBTestServer(
        host=args.host,
        port=args.port,
        accounts=accounts,
        market_fill_price=args.fill_price,
        tick_interval=args.tick_interval,
        bars=bars,
        positions=positions,
    )

    async def run() -> None:
        await srv.serve()
        print(
            f"IB test gateway listening on {args.host}:{srv.port} "
            f"(accounts {', '.join(accounts)}); Ctrl-C stops",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await srv.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
