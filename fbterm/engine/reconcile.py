"""Continuous reconciliation: the engine's book against a remote venue's own answers.

The venue is the truth; the journal is its cache. At start, after every reconnect and every
``broker.ib.reconcile_interval`` seconds the engine asks the venue (:class:`VenueBook`) and
resolves every difference by rule, never by dropping it:

* an execution the journal lacks is recorded (a fill missed during an outage);
* an order the venue works and the journal does not know is adopted and shown: another
  client's, a manual TWS order, ours from another journal (foreign ones belong to the
  ``external`` book, read-only unless this connection may cancel them);
* an order the journal holds open and the venue no longer works is closed with the venue's
  reason (its completed orders) or "not working at the venue";
* a position the fills do not explain (bought before fbterm, or by hand) is booked to the
  ``external`` book, which risk limits and flatten count. A position difference must be seen
  twice in a row (asked again at once) before it is booked: a fill in flight is not one.

Every difference is logged, alerted, and kept for the console and the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from fbterm.engine.events import ActivityLog
from fbterm.execution.brokers.base import (
    EXTERNAL,
    Broker,
    BrokerOrder,
    ConnectionState,
    OrderStatusEvent,
    RemoteVenue,
    VenueBook,
)
from fbterm.execution.orders import OrderManagement
from fbterm.model import (
    Fill,
    IllegalTransition,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from fbterm.snapshot import ReconcileView

_SYNC_RETRY = 5.0  # seconds between re-sync attempts when no timer is configured

# Differences that mean fbterm's book was wrong (an error), not news it had not heard yet.
_SERIOUS = frozenset({"position", "missed-fill", "order-closed", "order-working"})


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str  # position / missed-fill / order-closed / order-working / foreign-order / ...
    subject: str  # an order id or an instrument key
    text: str  # what differed and what was done about it


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    trigger: str  # start / reconnect / IB 1101 / IB 1102 / timer
    ts: float
    differences: tuple[Difference, ...] = ()
    venue_open: int = 0
    foreign_open: int = 0
    error: str = ""

    @property
    def clean(self) -> bool:
        return not self.differences and not self.error


class Reconciler:
    """Runs reconciliations one at a time on the engine loop (``request`` from anywhere on
    it, ``loop`` for the timer) and keeps what the console shows."""

    def __init__(
        self,
        venue: RemoteVenue,
        broker: Broker,
        oms: OrderManagement,
        activity: ActivityLog,
        clock: Callable[[], float],
        *,
        interval: float,
    ) -> None:
        self.venue = venue
        self.broker = broker
        self.oms = oms
        self.activity = activity
        self.clock = clock
        self.interval = interval
        self.runs = 0
        self.last: ReconcileReport | None = None
        self.history: deque[ReconcileReport] = deque(maxlen=20)
        self.found: deque[tuple[float, str]] = deque(maxlen=20)  # recent differences, any run
        self.venue_orders: dict[str, BrokerOrder] = {}  # the venue's open orders, last asked
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[ReconcileReport]] = set()

    # -- scheduling ----------------------------------------------------------------------------
    def request(self, trigger: str) -> None:
        """Reconcile soon (after any run in progress)."""
        task = asyncio.get_running_loop().create_task(self.run(trigger))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def loop(self) -> None:
        """Every ``interval`` seconds while the venue answers; with no interval, only to end
        a re-sync that failed (orders stay refused until one succeeds)."""
        while True:
            await asyncio.sleep(self.interval if self.interval > 0 else _SYNC_RETRY)
            state = self.broker.connection_state
            if self.interval > 0 and not state.is_down:
                await self.run("timer")
            elif state is ConnectionState.SYNCING:
                await self.run("retry")

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- one reconciliation --------------------------------------------------------------------
    async def run(self, trigger: str) -> ReconcileReport:
        async with self._lock:
            report = await self._run(trigger)
        self.runs += 1
        self.last = report
        self.history.append(report)
        self.found.extend((report.ts, d.text) for d in report.differences)
        self._tell(report)
        if not report.error and self.broker.connection_state is ConnectionState.SYNCING:
            self.venue.end_sync()
        return report

    async def _run(self, trigger: str) -> ReconcileReport:
        asked_at = self.clock()
        try:
            book = await self.venue.fetch_book()
            diffs, positions = self._apply(book, asked_at)
            if positions:
                # Ask again at once: a difference that is still there, unchanged, is real.
                asked_at = self.clock()
                book = await self.venue.fetch_book()
                more, again = self._apply(book, asked_at)
                diffs += more
                diffs += self._book_positions(
                    {k: d for k, d in again.items() if abs(positions.get(k, 0.0) - d) < 1e-9},
                    book,
                )
                diffs += [
                    Difference(
                        "position-moving",
                        k,
                        f"{k}: changed while checked ({d:+g}); checked again next time",
                    )
                    for k, d in again.items()
                    if abs(positions.get(k, 0.0) - d) >= 1e-9
                ]
        except Exception as e:  # a failed question is reported; the next run asks again
            return ReconcileReport(trigger, self.clock(), error=f"{type(e).__name__}: {e}")
        foreign = [b for b in book.open_orders if b.foreign]
        self.venue_orders = {b.client_order_id or b.broker_order_id: b for b in book.open_orders}
        return ReconcileReport(
            trigger, self.clock(), tuple(diffs), len(book.open_orders), len(foreign)
        )

    def _apply(self, book: VenueBook, asked_at: float) -> tuple[list[Difference], dict[str, float]]:
        """Everything but booking positions; returns the position differences left over."""
        diffs = self._adopt_orders(book)
        diffs += self._missed_fills(book)
        diffs += self._our_orders(book, asked_at)
        return diffs, self._position_differences(book)

    def _adopt_orders(self, book: VenueBook) -> list[Difference]:
        """Orders at the venue the journal does not know: adopted (their fills follow)."""
        oms, out = self.oms, []
        unseen = {fe.fill.fill_id: fe for fe in book.fills if not oms.knows_fill(fe.fill.fill_id)}
        with_fills = {fe.fill.client_order_id for fe in book.fills}
        candidates = [(b, True) for b in book.open_orders] + [
            (c, False) for c in book.completed_orders if c.client_order_id in with_fills
        ]
        for b, working in candidates:
            coid = b.client_order_id
            if coid is None or coid in oms.orders:
                continue
            # Fills still to be recorded will add themselves; start from what they do not.
            pending = sum(
                fe.fill.quantity for fe in unseen.values() if fe.fill.client_order_id == coid
            )
            try:
                order = order_from_venue(b, max(b.filled - pending, 0.0), self.clock())
            except (OrderError, ValueError) as e:
                text = f"{coid} at the venue cannot be shown: {e}"
                out.append(Difference("order-unshown", coid, text))
                continue
            oms.adopt_order(order)
            if b.foreign:
                what = f"placed by {b.owner}" + ("" if b.cancellable else ", read-only here")
                kind = "foreign-order"
            else:
                what = "fbterm's reference but not in this journal"
                kind = "unknown-order"
            state = "working" if working else f"ended ({b.reason or b.status.value})"
            out.append(
                Difference(
                    kind,
                    coid,
                    f"{coid}: {b.side} {b.quantity:g} {b.instrument.key} {b.order_type.value} "
                    f"{state} at the venue, {what}: adopted into the {order.strategy_id} book",
                )
            )
        return out

    def _missed_fills(self, book: VenueBook) -> list[Difference]:
        out = []
        for fe in book.fills:
            f = fe.fill
            if self.oms.knows_fill(f.fill_id):
                continue
            self.oms.on_broker_event(fe)
            out.append(
                Difference(
                    # Another client's fills reach us only by asking: news, not a miss.
                    "foreign-fill" if f.strategy_id == EXTERNAL else "missed-fill",
                    f.client_order_id,
                    f"execution {f.fill_id} ({f.side.value} {f.quantity:g} {f.instrument.key} "
                    f"@ {f.price:g}, order {f.client_order_id}) was not in the journal: recorded",
                )
            )
        return out

    def _our_orders(self, book: VenueBook, asked_at: float) -> list[Difference]:
        """The journal's view of each order against the venue's; the venue wins."""
        oms, out = self.oms, []
        working = {b.client_order_id: b for b in book.open_orders if b.client_order_id}
        done = {b.client_order_id: b for b in book.completed_orders if b.client_order_id}
        for coid, b in working.items():
            o = oms.orders.get(coid)
            if o is None:
                continue
            if o.status.is_terminal:
                out.append(
                    Difference(
                        "order-working",
                        coid,
                        f"{coid} is {o.status.value} in the journal but the venue still works it "
                        f"({b.status.value}, {b.filled:g} of {b.quantity:g} filled): cancel it at the venue",
                    )
                )
                continue
            new_ids = (b.broker_order_id and b.broker_order_id != o.broker_order_id) or (
                b.perm_id and b.perm_id != o.broker_perm_id
            )
            if o.status is OrderStatus.PENDING_SUBMIT or new_ids:
                # Acknowledged at the venue (the acknowledgement itself was missed), or the
                # venue's ids are news to the journal.
                status = (
                    OrderStatus.SUBMITTED if o.status is OrderStatus.PENDING_SUBMIT else o.status
                )
                oms.on_broker_event(
                    OrderStatusEvent(
                        coid, status, "", b.broker_order_id, self.clock(), b.perm_id or None
                    )
                )
        for o in list(oms.open.values()):
            coid = o.client_order_id
            if coid in working or coid in book.unsent or o.created_ts >= asked_at:
                continue  # working, not sent yet, or newer than the question
            if o.remaining <= 1e-9:
                continue
            ended = done.get(coid)
            if ended is not None:
                why = f"the venue ended it: {ended.reason or ended.status.value}"
                rejected = ended.status is OrderStatus.REJECTED
            else:
                why = "not working at the venue (not among its open or completed orders)"
                rejected = o.status is OrderStatus.PENDING_SUBMIT
            final = (
                OrderStatus.REJECTED
                if rejected and not o.filled_quantity
                else OrderStatus.CANCELLED
            )
            try:
                oms.close_locally(coid, final, why)
            except IllegalTransition:
                oms.close_locally(coid, OrderStatus.CANCELLED, why)
            out.append(
                Difference(
                    "order-closed",
                    coid,
                    f"{coid} was {o.status.value} in the journal; {why}: closed {final.value}",
                )
            )
        return out

    def _position_differences(self, book: VenueBook) -> dict[str, float]:
        venue = {p.instrument.key: p.quantity for p in book.positions}
        ours = {k: p.quantity for k, p in self.oms.positions.items() if not p.is_flat}
        return {
            k: venue.get(k, 0.0) - ours.get(k, 0.0)
            for k in sorted(set(venue) | set(ours))
            if abs(venue.get(k, 0.0) - ours.get(k, 0.0)) > 1e-9
        }

    def _book_positions(self, diffs: dict[str, float], book: VenueBook) -> list[Difference]:
        """Book what the venue holds beyond our fills to the ``external`` strategy."""
        out = []
        venue = {p.instrument.key: p for p in book.positions}
        for key, d in diffs.items():
            vp = venue.get(key)
            ours = self.oms.positions.get(key)
            inst = vp.instrument if vp is not None else ours.instrument if ours else None
            if inst is None:
                continue
            price = (
                vp.avg_cost if vp is not None and vp.avg_cost else (ours.avg_cost if ours else 0.0)
            )
            now = self.clock()
            fill = Fill(
                fill_id=f"adopt:{key}:{now:.3f}",
                client_order_id=f"adopted:{key}",
                instrument=inst,
                side=Side.BUY if d > 0 else Side.SELL,
                quantity=abs(d),
                price=price,
                commission=0.0,
                ts=now,
                strategy_id=EXTERNAL,
            )
            if self.oms.record_adjustment(fill):
                had = ours.quantity if ours else 0.0
                out.append(
                    Difference(
                        "position",
                        key,
                        f"{key}: fbterm held {had:g}, the venue {had + d:g}: {d:+g} booked to the "
                        f"{EXTERNAL} book at {price:,.2f}",
                    )
                )
        return out

    # -- telling ------------------------------------------------------------------------------
    def _tell(self, r: ReconcileReport) -> None:
        log = self.activity.log
        if r.error:
            log("error", "reconcile", f"reconciliation ({r.trigger}) failed: {r.error}")
            self.activity.alert(
                "error", "Reconciliation failed", f"{r.trigger}: {r.error}", key="reconcile-failed"
            )
            return
        for d in r.differences:
            log("warning", "reconcile", d.text)
        log(
            "info" if r.clean else "warning",
            "reconcile",
            f"reconciled with the venue ({r.trigger}): {r.venue_open} open orders there "
            f"({r.foreign_open} not fbterm's), {len(r.differences)} differences",
        )
        if r.differences:
            serious = any(d.kind in _SERIOUS for d in r.differences)
            self.activity.alert(
                "error" if serious else "warning",
                f"Reconciliation: {len(r.differences)} difference(s) with the venue",
                "\n".join(d.text for d in r.differences),
                key=f"reconcile:{r.ts:.0f}",
            )

    def view(self) -> ReconcileView | None:
        last = self.last
        if last is None:
            return None
        notes = tuple(
            (coid, b.owner + ("" if b.cancellable else ", read-only"))
            for coid, b in self.venue_orders.items()
            if b.foreign or not b.cancellable
        )
        return ReconcileView(
            runs=self.runs,
            last_ts=last.ts,
            last_trigger=last.trigger,
            clean=last.clean,
            error=last.error,
            differences=tuple(f"{_clock(ts)} {text}" for ts, text in self.found),
            differences_ts=self.found[-1][0] if self.found else 0.0,
            venue_open_orders=last.venue_open,
            order_notes=notes,
        )


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def order_from_venue(b: BrokerOrder, filled: float, ts: float) -> Order:
    """An order the venue works, as a journal order (its kind of order kept where fbterm has
    one; anything else shown as a market order, with the venue's type in the reason)."""
    qty = max(b.quantity, filled)
    why = f"adopted from the venue: placed by {b.owner}" + ("" if b.cancellable else " (read-only)")
    plain = Order(
        client_order_id=b.client_order_id or f"IB-{b.perm_id or b.broker_order_id}",
        instrument=b.instrument,
        side=Side.BUY if b.side == "BUY" else Side.SELL,  # IB's SSHORT/SLONG: sell/buy
        quantity=qty,
        order_type=OrderType.MARKET,
        tif=TimeInForce.DAY if b.tif == "DAY" else TimeInForce.GTC,
        strategy_id=b.strategy_id or EXTERNAL,
        status=OrderStatus.PARTIALLY_FILLED if filled > 1e-9 else OrderStatus.SUBMITTED,
        filled_quantity=min(filled, qty),
        created_ts=ts,
        updated_ts=ts,
        broker_order_id=b.broker_order_id,
        reason=f"{why}; its type is not one fbterm knows",
        submitted_ts=ts,
        broker_perm_id=b.perm_id or None,
    )
    limits = (OrderType.LIMIT, OrderType.STOP_LIMIT)
    stops = (OrderType.STOP, OrderType.STOP_LIMIT)
    try:
        return dataclasses.replace(
            plain,
            order_type=b.order_type,
            limit_price=b.limit_price if b.order_type in limits else None,
            stop_price=b.stop_price if b.order_type in stops else None,
            reason=why,
        )
    except OrderError:
        return plain
