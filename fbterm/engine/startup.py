"""What happens once, between connecting to the venue and trading: reconciliation, warm-up.

Reconciliation compares the journal with the venue and reports every difference, so a restart
never hides a lost order or a position nobody expected. Warm-up gives strategies history, so they
trade from the first live bar instead of waiting for their windows to fill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from fbterm.config import Config
from fbterm.engine.events import ActivityLog
from fbterm.engine.market import MarketState
from fbterm.execution.brokers.base import Broker, SimulatedVenue
from fbterm.execution.orders import OrderManagement
from fbterm.model import Bar, IllegalTransition, OrderStatus, TimeInForce
from fbterm.sessions import trading_day
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.data.retrieval import DataRetrieval
    from fbterm.data.simulated import SimulatedMarket


def reconcile(
    broker: Broker,
    venue: SimulatedVenue | None,
    oms: OrderManagement,
    activity: ActivityLog,
    clock: Callable[[], float],
    calendar: str = "XNYS",
) -> list[str]:
    """Compare the journal with the venue after a (re)start; report every difference.

    ``venue`` is the broker again when it is simulated in this process: it has no book of its
    own across restarts, so it is rebuilt from the journal first.
    """
    notes: list[str] = []
    if venue is not None:
        # A DAY order does not outlive its trading day; the paper venue expires it at a
        # restart the way a real venue would have at the close.
        today = trading_day(clock(), calendar)
        for o in list(oms.open.values()):
            if o.tif is TimeInForce.DAY and trading_day(o.created_ts, calendar) < today:
                with contextlib.suppress(IllegalTransition):
                    oms.close_locally(
                        o.client_order_id,
                        OrderStatus.CANCELLED,
                        "expired: DAY order from an earlier session",
                    )
                notes.append(f"{o.client_order_id}: DAY order from an earlier session expired")
    restored_open = list(oms.open.values())
    if venue is not None:
        venue.restore(
            oms.fills, [o for o in restored_open if o.status is not OrderStatus.PENDING_SUBMIT]
        )
    for o in restored_open:
        if o.status is OrderStatus.PENDING_SUBMIT:
            # Journaled but never acknowledged: the process died between journal and venue.
            msg = "lost before the venue acknowledged it (restart)"
            with contextlib.suppress(IllegalTransition):
                oms.close_locally(o.client_order_id, OrderStatus.REJECTED, msg)
            notes.append(f"{o.client_order_id}: {msg}")
    try:
        venue_open = {b.client_order_id for b in broker.query_open_orders() if b.client_order_id}
    except Exception as e:
        venue_open = None
        notes.append(f"could not query open orders: {e}")
    if venue_open is not None:
        for o in list(oms.open.values()):
            if o.client_order_id not in venue_open:
                notes.append(f"{o.client_order_id}: open in the journal, unknown to {broker.name}")
        for cid in venue_open - set(oms.orders):
            notes.append(f"{cid}: working at {broker.name}, not in the journal")
    try:
        venue_pos = {p.instrument.key: p.quantity for p in broker.query_positions()}
        ours = {k: p.quantity for k, p in oms.positions.items() if not p.is_flat}
        for key in sorted(set(venue_pos) | set(ours)):
            a, b = ours.get(key, 0.0), venue_pos.get(key, 0.0)
            if abs(a - b) > 1e-9:
                notes.append(f"position {key}: journal {a:g}, {broker.name} {b:g}")
    except Exception as e:
        notes.append(f"could not query positions: {e}")
    n_orders, n_fills = len(oms.orders), len(oms.fills)
    if n_orders or n_fills:
        activity.log(
            "info",
            "engine",
            f"journal restored: {n_orders} orders, {n_fills} fills, {len(oms.open)} open",
        )
    for n in notes:
        activity.log("warning", "reconcile", n)
    return notes


def default_warmup_bars(executor: StrategyExecutor, simulated: SimulatedMarket | None) -> int:
    """Enough simulated bars for the longest-looking strategy; none without a simulated market
    (live data warms up from history instead)."""
    if simulated is None:
        return 0
    return max((sl.strategy.warmup() for sl in executor.slots.values()), default=0) + 5


def warm_up(
    market: MarketState, executor: StrategyExecutor, symbols: list[str], bars_needed: int
) -> None:
    """Give strategies history so they trade from the first live bar (simulated market)."""
    simulated = market.simulated
    if simulated is None or bars_needed <= 0:
        return
    produced = 0
    guard = bars_needed * 200
    while produced < bars_needed and guard > 0:
        guard -= 1
        for t in simulated.next_ticks():
            bar = market.bars.on_tick(t.symbol, t.ts, t.last, t.volume)
            market.prices[t.symbol] = t.last
            if bar is not None:
                market.remember(bar)
                executor.on_bar(bar, trade=False)
                if t.symbol == symbols[0]:
                    produced += 1
    executor.forget_targets()


async def warm_up_from_history(
    retrieval: DataRetrieval | None,
    market: MarketState,
    executor: StrategyExecutor,
    cfg: Config,
    symbols: list[str],
    activity: ActivityLog,
    clock: Callable[[], float],
) -> int:
    """Live data: feed strategies recent history (through DataRetrieval, so it is cached)
    so they trade from the first live bar instead of waiting for their windows to fill.

    A failure is logged and the engine starts cold; it is never fatal.
    """
    if retrieval is None or retrieval.historical is None or not executor.slots:
        return 0
    import pandas as pd

    longest = max(sl.strategy.warmup() for sl in executor.slots.values())
    bars_wanted = 2 * longest + 5
    secs = cfg.market.bar_seconds
    bar_size = f"{int(secs)}s" if secs < 60 or secs % 60 else f"{int(secs // 60)}m"
    end = pd.Timestamp(clock(), unit="s", tz="UTC").floor(f"{int(secs)}s")
    start = end - pd.Timedelta(seconds=secs * bars_wanted)
    fed = 0
    for sym in symbols:
        try:
            df = await asyncio.wait_for(
                retrieval.afetch_historical_data(sym, start, end, bar_size),
                cfg.broker.ib.request_timeout,
            )
        except Exception as e:
            activity.log(
                "warning",
                "data",
                f"{sym}: no history to warm strategies up ({type(e).__name__}: {e})",
            )
            continue
        rows: Iterable[Any] = df.itertuples(index=False)  # pandas types the fields loosely
        for ts, row in zip(df.index, rows, strict=True):
            bar = Bar(sym, ts.timestamp(), row.open, row.high, row.low, row.close, row.volume)
            market.remember(bar)
            market.prices[sym] = bar.close
            executor.on_bar(bar, trade=False)
            fed += 1
    executor.forget_targets()
    if fed:
        activity.log("info", "data", f"strategies warmed up on {fed} historical {bar_size} bars")
    return fed
