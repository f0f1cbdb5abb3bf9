"""What happens once, between connecting to the venue and trading: reconciliation, warm-up.

Reconciliation compares the journal with the venue and reports every difference, so a restart
never hides a lost order or a position nobody expected: the in-process paper venue here, a
remote one (IB) through :mod:`fbterm.engine.reconcile`. Warm-up on the simulated market gives
strategies history at once; live history arrives in the background (:mod:`fbterm.engine.warmup`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from fbterm.engine.events import ActivityLog
from fbterm.engine.market import MarketState
from fbterm.engine.reconcile import Reconciler
from fbterm.execution.brokers.base import Broker, SimulatedVenue
from fbterm.execution.orders import OrderManagement
from fbterm.model import IllegalTransition, OrderStatus, TimeInForce, instrument_from_key
from fbterm.sessions import trading_day
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
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
        # Every fill, streamed from the journal: memory keeps only the recent ones.
        venue.restore(
            oms.journal.iter_fills() if oms.journal is not None else oms.fills,
            [o for o in restored_open if o.status is not OrderStatus.PENDING_SUBMIT],
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
        for cid in sorted(c for c in venue_open if oms.lookup(c) is None):
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
    n_orders, n_fills = oms.orders_total, oms.fills_total
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


async def prepare_remote(reconciler: Reconciler, symbols: list[str], activity: ActivityLog) -> None:
    """A venue outside this process at start: contracts qualified before the first order
    (kept in the journal), then the first reconciliation, which ends the venue's SYNCING
    state when it succeeds (until then no order goes out; the timer tries again)."""
    try:
        problems = await reconciler.venue.qualify([instrument_from_key(s) for s in symbols])
    except Exception as e:  # qualified again before each order; never a reason not to start
        problems = [f"contracts not qualified at start: {type(e).__name__}: {e}"]
    for p in problems:
        activity.log("warning", "broker", p)
    await reconciler.run("start")
