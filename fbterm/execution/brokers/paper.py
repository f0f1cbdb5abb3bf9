"""PaperBroker: the embedded default venue.

It keeps its own account (cash, positions, working orders) like a real broker would, fills
orders with the pure fill model in :mod:`fbterm.execution.brokers.fills` against the market updates the
engine hands it, and answers through the same events as Interactive Brokers. Market orders fill
at the *next* update after they arrive, never at a price the strategy already saw.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import (
    BrokerError,
    BrokerMessage,
    BrokerOrder,
    BrokerPosition,
    ConnectionState,
    EventHandler,
    FillEvent,
    MarginImpact,
    ModifyAckEvent,
    OrderStatusEvent,
)
from fbterm.execution.brokers.fills import (
    MarketUpdate,
    match_order,
    oca_after_fill,
    oca_rank,
    trail_level,
)
from fbterm.execution.costs import CommissionModel, commission_from_config
from fbterm.execution.margin import MarginRule, MarginStatus
from fbterm.model import (
    AccountDetails,
    Fill,
    Instrument,
    Option,
    OptionQuote,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Tick,
    TimeInForce,
)

OptionPricer = Callable[[Option], OptionQuote | None]


class PaperBroker:
    """A simulated broker. Not thread-safe: call it from the engine thread.

    It is the :class:`~fbterm.execution.brokers.base.SimulatedVenue`: it answers inside
    ``execute_order``, fills on the market updates the engine hands to :meth:`on_market`, and
    is rebuilt from the journal by :meth:`restore` at a restart.

    Margin follows :mod:`fbterm.execution.margin`, the backtest's rule: once per market time
    step (its first update) the account is checked; below the initial requirement it is in a margin call (said once, new
    risk refused by buying power), at or below the maintenance requirement every position is
    liquidated at its last price by the venue's own orders (``LIQ-...``), attributed to the
    strategies that held them, after the venue says why.
    """

    name = "paper"

    def __init__(
        self,
        cfg: PaperBrokerConfig | None = None,
        *,
        symbols: Iterable[str] | None = None,
        commission: CommissionModel | None = None,
        participation: float | None = -1.0,
        option_pricer: OptionPricer | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.cfg = cfg or PaperBrokerConfig()
        self.commission = commission or commission_from_config(self.cfg)
        self.participation = self.cfg.participation if participation == -1.0 else participation
        self.symbols = set(symbols) if symbols is not None else None
        self.option_pricer = option_pricer
        self.clock = clock
        self.cash = self.cfg.cash
        self.account = self.cfg.account
        self.positions: dict[str, Position] = {}
        self._open: dict[str, Position] = {}  # the non-flat subset of positions
        self.orders: dict[str, Order] = {}
        self.last: dict[str, MarketUpdate] = {}
        self._by_underlying: dict[str, set[str]] = {}
        self._handler: EventHandler = lambda ev: None
        # Execution ids must stay unique across restarts (the journal de-duplicates fills by
        # id), so they carry this session's start time.
        self._session = f"{int(time.time() * 1000):x}"
        self._fill_ids = itertools.count(1)
        self._broker_ids = itertools.count(1)
        # Value each working order holds back from buying power, kept incrementally so a book
        # of thousands of resting orders costs O(1) per new order.
        self._reserved: dict[str, float] = {}
        self._reserved_total = 0.0
        # Bracket children waiting for their parent to fill (parent id -> children).
        self._held: dict[str, list[Order]] = {}
        self.margin = MarginRule(self.cfg.leverage, self.cfg.maintenance_margin)
        self.margin_status = MarginStatus.OK
        self._margin_ts = -1.0
        # Quantity per (strategy, instrument): a liquidation closes each strategy's own part.
        self._strategy_qty: dict[tuple[str, str], float] = {}
        self._liq_ids = itertools.count(1)

    # -- port plumbing -------------------------------------------------------------------
    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    @property
    def connection_state(self) -> ConnectionState:
        return ConnectionState.CONNECTED

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    # -- orders --------------------------------------------------------------------------
    def execute_order(self, order: Order) -> None:
        now = self.clock()
        reason = self._refuse(order)
        if reason:
            self._handler(
                OrderStatusEvent(order.client_order_id, OrderStatus.REJECTED, reason, ts=now)
            )
            return
        bid = f"P-{self._session}-{next(self._broker_ids)}"
        live = order.transition(
            OrderStatus.SUBMITTED, ts=now, broker_order_id=bid, submitted_ts=now
        )
        if live.parent_id is not None and live.parent_id in self.orders:
            self._held.setdefault(live.parent_id, []).append(live)
        else:
            self._put(self._armed(live))
        self._handler(
            OrderStatusEvent(
                order.client_order_id, OrderStatus.SUBMITTED, broker_order_id=bid, ts=now
            )
        )

    def _put(self, order: Order) -> None:
        oid = order.client_order_id
        self.orders[oid] = order
        self._by_underlying.setdefault(order.instrument.underlying, set()).add(oid)
        px = order.reference_price() or self._mark(order.instrument) or 0.0
        value = order.remaining * px * order.multiplier
        self._reserved_total += value - self._reserved.get(oid, 0.0)
        self._reserved[oid] = value

    def _drop(self, oid: str) -> Order | None:
        order = self.orders.pop(oid, None)
        if order is not None:
            self._by_underlying.get(order.instrument.underlying, set()).discard(oid)
        self._reserved_total -= self._reserved.pop(oid, 0.0)
        if not self.orders:
            self._reserved_total = 0.0  # no drift from float sums when the book empties
        return order

    def cancel_order(self, order: Order) -> None:
        oid = order.client_order_id
        live = self._drop(oid)
        if live is None and not self._unhold(oid):
            raise BrokerError(f"order {oid} is not working at the paper broker")
        self._close(oid, OrderStatus.CANCELLED, "cancelled by request", self.clock())
        # A bracket's exits go with its entry, as at IB.
        for child in self._held.pop(oid, []):
            self._close(child.client_order_id, OrderStatus.CANCELLED, f"parent {oid} cancelled")

    def _close(self, oid: str, status: OrderStatus, reason: str, ts: float | None = None) -> None:
        self._handler(OrderStatusEvent(oid, status, reason, ts=self.clock() if ts is None else ts))

    def _unhold(self, oid: str) -> bool:
        for parent, children in self._held.items():
            for c in children:
                if c.client_order_id == oid:
                    children.remove(c)
                    if not children:
                        del self._held[parent]
                    return True
        return False

    # -- order types beyond the fill rule --------------------------------------------------
    def _armed(self, order: Order) -> Order:
        """A trailing stop takes its first level from the last price known, if any."""
        if order.order_type is not OrderType.TRAIL or order.stop_price is not None:
            return order
        u = self.last.get(order.instrument.key)
        return self._trailed(order, u) if u is not None else order

    def _trailed(self, order: Order, u: MarketUpdate) -> Order:
        o = order.options
        level = trail_level(
            order.side is Side.BUY,
            order.stop_price,
            u.high,
            u.low,
            o.trail_amount,
            o.trail_percent,
        )
        if level == order.stop_price:
            return order
        return dataclasses.replace(order, stop_price=level)

    def _after_update(self, order: Order, u: MarketUpdate) -> None:
        """What an update does to a working order besides filling it: a trailing stop
        ratchets, an IOC order's unfilled rest is cancelled."""
        oid = order.client_order_id
        current = self.orders.get(oid)
        if current is None:
            return
        if current.tif is TimeInForce.IOC:
            self._drop(oid)
            self._close(oid, OrderStatus.CANCELLED, "IOC: unfilled remainder cancelled", u.ts)
            self._cancel_children(oid)
        elif current.order_type is OrderType.TRAIL:
            trailed = self._trailed(current, u)
            if trailed is not current:
                self._put(trailed)

    def _expired(self, order: Order, ts: float) -> bool:
        good_till = order.options.good_till
        if order.tif is not TimeInForce.GTD or good_till is None or ts < good_till:
            return False
        self._drop(order.client_order_id)
        self._close(order.client_order_id, OrderStatus.CANCELLED, "GTD: expired", ts)
        self._cancel_children(order.client_order_id)
        return True

    def _cancel_children(self, parent_id: str) -> None:
        for child in self._held.pop(parent_id, []):
            self._close(child.client_order_id, OrderStatus.CANCELLED, f"parent {parent_id} ended")

    def _after_fill(self, order: Order, fill: Fill) -> None:
        """Brackets: a filled entry releases its exits; a fill in an OCA group reduces the
        group's other orders by as much (and cancels those it leaves with nothing)."""
        oid = order.client_order_id
        if oid not in self.orders:  # completely filled
            for child in self._held.pop(oid, []):
                self._put(self._armed(child))
        if not order.oca_group:
            return
        for other in list(self.orders.values()) + [c for cs in self._held.values() for c in cs]:
            if other.oca_group != order.oca_group or other.client_order_id == oid:
                continue
            reduced = oca_after_fill(other, fill.quantity)
            if reduced is None:
                if self._drop(other.client_order_id) is None:
                    self._unhold(other.client_order_id)
                self._close(
                    other.client_order_id,
                    OrderStatus.CANCELLED,
                    f"OCA: {oid} filled",
                    fill.ts,
                )
            else:
                if other.client_order_id in self.orders:
                    self._put(reduced)
                else:
                    self._unhold(other.client_order_id)
                    self._held.setdefault(other.parent_id or "", []).append(reduced)
                self._handler(
                    ModifyAckEvent(
                        other.client_order_id,
                        reduced.quantity,
                        other.order_type,
                        other.limit_price,
                        other.stop_price,
                        ts=fill.ts,
                    )
                )

    def modify_order(self, order: Order) -> None:
        live = self.orders.get(order.client_order_id)
        if live is None:
            raise BrokerError(f"order {order.client_order_id} is not working at the paper broker")
        if order.quantity <= live.filled_quantity:
            raise BrokerError(
                f"order {order.client_order_id}: quantity {order.quantity:g} not above filled"
            )
        self._put(
            live.modified(
                quantity=order.quantity,
                order_type=order.order_type,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
            )
        )
        self._handler(
            ModifyAckEvent(
                order.client_order_id,
                order.quantity,
                order.order_type,
                order.limit_price,
                order.stop_price,
                ts=self.clock(),
            )
        )

    def _refuse(self, order: Order) -> str:
        inst = order.instrument
        if self.symbols is not None and inst.underlying not in self.symbols:
            return f"unknown symbol {inst.underlying!r}: not traded by the paper broker"
        if order.quantity <= 0 or not math.isfinite(order.quantity):
            return f"quantity must be > 0, got {order.quantity:g}"
        if order.client_order_id in self.orders:
            return f"duplicate order id {order.client_order_id}"
        if isinstance(inst, Option) and self.option_pricer is None:
            return f"no option quotes for {inst.key}"
        price = order.reference_price() or self._mark(inst)
        if price is None:
            return ""  # no price yet: it waits for the first update, and is checked when it fills
        current = self.positions.get(inst.key)
        q0 = current.quantity if current else 0.0
        q1 = q0 + order.signed_quantity
        if abs(q1) <= abs(q0) and q0 * q1 >= 0:
            return ""  # it only reduces a position: always allowed
        # The margin rule, with working orders' value already spoken for.
        net, gross = self._marked_positions()
        mark = self._mark(inst)
        own = abs(q0) * (mark if mark is not None else price) * inst.multiplier
        signed = order.signed_quantity
        equity = self.cash + net
        other = gross - own + self._reserved_total
        if self.margin.admit(q0, signed, price, 0.0, equity, other, inst.multiplier) != signed:
            added = (abs(q1) - abs(q0) if q0 * q1 >= 0 else abs(q1)) * price * inst.multiplier
            kept = abs(q0) * price * inst.multiplier if q0 * q1 >= 0 else 0.0
            available = self.margin.buying_power(equity, other + kept)
            return (
                f"insufficient buying power: order adds {added:,.2f} > available {available:,.2f}"
            )
        return ""

    # -- market data ---------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> list[Fill]:
        return self.on_market(tick.symbol, MarketUpdate.from_tick(tick))

    def on_market(self, key: str, u: MarketUpdate) -> list[Fill]:
        """Match working orders on ``key`` (and options on it) against update ``u``, then
        judge the account's margin at the new prices."""
        self.last[key] = u
        fills = self._match(key, u)
        if self._open and u.ts != self._margin_ts:
            # Once per market time step, at its first update: marking every position costs
            # O(positions), and a step of many symbols shares one timestamp.
            self._margin_ts = u.ts
            fills += self.check_margin(u.ts)
        return fills

    def _match(self, key: str, u: MarketUpdate) -> list[Fill]:
        ids = self._by_underlying.get(key)
        if not ids:
            return []
        fills: list[Fill] = []
        # Within an OCA group the protective stop is matched first: when one update reaches
        # both exits of a bracket, the loss is the outcome assumed (as in backtests).
        for oid in sorted(ids, key=self._match_rank):
            order = self.orders.get(oid)
            if order is None:
                ids.discard(oid)
                continue
            if self._expired(order, u.ts):
                continue
            inst = order.instrument
            if inst.key == key:
                update: MarketUpdate | None = u
            elif isinstance(inst, Option):
                update = self._option_update(inst, u)
                if update is not None:
                    self.last[inst.key] = update
            else:
                update = None  # another stock keyed under this one: not this update's to fill
            if update is None:
                continue
            f = self._try_fill(order, update)
            if f is not None:
                fills.append(f)
                self._after_fill(order, f)
            self._after_update(order, update)
        return fills

    def _match_rank(self, oid: str) -> int:
        o = self.orders.get(oid)
        return 1 if o is None else oca_rank(o)

    def check_margin(self, ts: float) -> list[Fill]:
        """Judge the account by the margin rule at the current marks; liquidate when due.

        Called after every market update; returns the liquidation fills (usually none)."""
        if not self._open:
            self.margin_status = MarginStatus.OK
            return []
        net, gross = self._marked_positions()
        equity = self.cash + net
        status = self.margin.status(equity, gross)
        before, self.margin_status = self.margin_status, status
        if status is MarginStatus.OK or (status is before is MarginStatus.CALL):
            return []
        why = self.margin.describe(equity, gross)
        if status is MarginStatus.CALL:
            self._handler(
                BrokerMessage(
                    0, f"margin call: {why}; only orders that reduce risk are accepted",
                    level="critical", ts=ts,
                )
            )  # fmt: skip
            return []
        self._handler(
            BrokerMessage(
                0, f"margin liquidation: {why}; closing {len(self._open)} position(s) at market",
                level="critical", ts=ts,
            )
        )  # fmt: skip
        return self._liquidate(ts)

    def _liquidate(self, ts: float) -> list[Fill]:
        """Cancel every working order, then close every strategy's positions at the marks."""
        for oid in list(self.orders):
            self._drop(oid)
            self._handler(
                OrderStatusEvent(oid, OrderStatus.CANCELLED, "cancelled: margin liquidation", ts=ts)
            )
        fills: list[Fill] = []
        for (sid, key), qty in list(self._strategy_qty.items()):
            pos = self.positions.get(key)
            if abs(qty) < 1e-9 or pos is None:
                continue
            inst = pos.instrument
            mark = self._mark(inst)
            px = pos.avg_cost if mark is None else mark
            side = Side.SELL if qty > 0 else Side.BUY
            n = next(self._liq_ids)
            fill = Fill(
                fill_id=f"PF-{self._session}-L{n}",
                client_order_id=f"LIQ-{self._session}-{n}",
                instrument=inst,
                side=side,
                quantity=abs(qty),
                price=px,
                commission=self.commission(abs(qty), px, inst.multiplier),
                ts=ts,
                strategy_id=sid,
            )
            self._book(fill)
            self._handler(FillEvent(fill))
            fills.append(fill)
        self.margin_status = MarginStatus.OK if not self._open else MarginStatus.LIQUIDATE
        return fills

    def _option_update(self, opt: Option, u: MarketUpdate) -> MarketUpdate | None:
        q = self.option_pricer(opt) if self.option_pricer else None
        if q is None:
            return None
        mid = q.mid
        return MarketUpdate(u.ts, mid, mid, mid, mid, 0.0, q.bid, q.ask)

    def _try_fill(self, order: Order, u: MarketUpdate) -> Fill | None:
        d = match_order(order, u, participation=self.participation, whole_units=True)
        if d is None:
            return None
        if d.quantity <= 0:
            if d.triggered and not order.triggered:
                self._put(order.transition(order.status, triggered=True))
            return None
        inst = order.instrument
        qty = d.quantity
        commission = self.commission(qty, d.price, inst.multiplier)
        # Buying power is checked again at fill time (a market order sent before any price was
        # known must not put the account beyond its limits), by the margin rule the backtest
        # uses: the part that closes a position fills, a part that adds too much risk does not.
        admitted = self._admitted(order.side.sign * qty, d.price, inst, commission / qty)
        cut = admitted < qty - 1e-9
        if cut:
            if admitted <= 1e-9:
                self._cancel_at_fill(order, u.ts)
                return None
            qty = admitted
            commission = self.commission(qty, d.price, inst.multiplier)
        fill = Fill(
            fill_id=f"PF-{self._session}-{next(self._fill_ids)}",
            client_order_id=order.client_order_id,
            instrument=inst,
            side=order.side,
            quantity=qty,
            price=d.price,
            commission=commission,
            ts=u.ts,
            strategy_id=order.strategy_id,
        )
        updated = order.with_fill(qty, d.price, ts=fill.ts)
        if d.triggered and not updated.triggered and updated.is_live:  # a filled order is final
            updated = updated.transition(updated.status, triggered=True)
        if updated.is_live and not cut:
            self._put(updated)
        else:
            self._drop(order.client_order_id)
        self._book(fill)
        self._handler(FillEvent(fill))
        if cut and updated.is_live:
            self._cancel_at_fill(order, u.ts)
        return fill

    def _cancel_at_fill(self, order: Order, ts: float) -> None:
        self._drop(order.client_order_id)
        self._handler(
            OrderStatusEvent(
                order.client_order_id,
                OrderStatus.CANCELLED,
                "cancelled: insufficient buying power at fill",
                ts=ts,
            )
        )

    def _admitted(
        self, signed: float, price: float, inst: Instrument, fee_per_unit: float
    ) -> float:
        """How much of a fill of ``signed`` units the margin rule lets through (unsigned)."""
        current = self.positions.get(inst.key)
        q0 = current.quantity if current else 0.0
        if q0 and (q0 > 0) != (signed > 0) and abs(signed) <= abs(q0):
            return abs(signed)  # it only reduces a position: always allowed
        net, gross = self._marked_positions()
        mark = self._mark(inst)
        own = abs(q0) * (mark if mark is not None else price) * inst.multiplier
        ok = self.margin.admit(
            q0, signed, price, fee_per_unit, self.cash + net, gross - own, inst.multiplier
        )
        return abs(ok)

    def _book(self, fill: Fill) -> None:
        key = fill.instrument.key
        held = (fill.strategy_id, key)
        q = self._strategy_qty.get(held, 0.0) + fill.signed_quantity
        if abs(q) < 1e-9:
            self._strategy_qty.pop(held, None)
        else:
            self._strategy_qty[held] = q
        pos = self.positions.get(key) or Position(fill.instrument)
        new = self.positions[key] = pos.apply_fill(fill)
        if new.is_flat:
            self._open.pop(key, None)
        else:
            self._open[key] = new
        self.cash -= (
            fill.signed_quantity * fill.price * fill.instrument.multiplier + fill.commission
        )

    # -- account -------------------------------------------------------------------------
    def _mark(self, inst: Instrument) -> float | None:
        u = self.last.get(inst.key)
        if u is not None:
            return u.close
        if isinstance(inst, Option) and self.option_pricer is not None:
            q = self.option_pricer(inst)
            return q.mid if q else None
        return None

    def _marked_positions(self) -> tuple[float, float]:
        net = gross = 0.0
        for pos in self._open.values():  # buying power is checked per order: skip flat books
            mark = self._mark(pos.instrument)
            px = pos.avg_cost if mark is None else mark
            v = pos.quantity * px * pos.multiplier
            net += v
            gross += abs(v)
        return net, gross

    def equity(self) -> float:
        net, _ = self._marked_positions()
        return self.cash + net

    def _free_equity(self) -> float:
        net, gross = self._marked_positions()  # once: marking options prices each of them
        return self.margin.buying_power(self.cash + net, gross)

    def buying_power(self) -> float:
        """Equity x leverage, less what positions and working orders that add risk use."""
        return max(self._free_equity() - self._reserved_total, 0.0)

    def what_if(
        self, instrument: Instrument, side: Side, quantity: float, price: float
    ) -> MarginImpact:
        """The margin an order would use if it filled at ``price`` (Reg T: gross / leverage),
        by the same marks and buying-power rule the account itself uses."""
        net, gross = self._marked_positions()
        pos = self._open.get(instrument.key)
        q0 = pos.quantity if pos else 0.0
        # After the fill the account marks the whole position at the market, as it does now;
        # the order's own price only stands in when there is no mark yet.
        mark = self._mark(instrument)
        px = price if mark is None else mark
        mult = instrument.multiplier
        gross_after = gross - abs(q0 * px * mult) + abs((q0 + side.sign * quantity) * px * mult)
        lev = self.cfg.leverage
        free_after = (self.cash + net) * lev - gross_after
        return MarginImpact(
            venue=self.name,
            margin_before=gross / lev,
            margin_after=gross_after / lev,
            buying_power_after=max(free_after - self._reserved_total, 0.0),
            note=f"paper: gross / leverage {lev:g}",
        )

    def query_open_orders(self) -> list[BrokerOrder]:
        return [
            BrokerOrder(
                client_order_id=o.client_order_id,
                broker_order_id=o.broker_order_id or "",
                instrument=o.instrument,
                side=o.side.value,
                quantity=o.quantity,
                filled=o.filled_quantity,
                order_type=o.order_type,
                limit_price=o.limit_price,
                stop_price=o.stop_price,
                status=o.status,
                strategy_id=o.strategy_id,
            )
            for o in self.orders.values()
        ]

    def query_positions(self) -> list[BrokerPosition]:
        out = []
        for p in self.positions.values():
            if not p.is_flat:
                out.append(
                    BrokerPosition(
                        p.instrument, p.quantity, p.avg_cost, self.account, self._mark(p.instrument)
                    )
                )
        return out

    def query_account_details(self) -> AccountDetails:
        net, gross = self._marked_positions()
        equity = self.cash + net
        realized = sum(p.realized_pnl for p in self.positions.values())
        unrealized = sum(
            p.unrealized_pnl(self._mark(p.instrument)) for p in self.positions.values()
        )
        return AccountDetails(
            account=self.account,
            cash=self.cash,
            equity=equity,
            buying_power=self.buying_power(),
            margin_used=self.margin.initial_requirement(gross),
            maintenance_margin=self.margin.maintenance_requirement(gross),
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            ts=self.clock(),
        )

    # -- restart -------------------------------------------------------------------------
    def restore(self, fills: Iterable[Fill], open_orders: Iterable[Order]) -> None:
        """Rebuild the paper account from the journal so a restart keeps its positions."""
        for f in fills:
            self._book(f)
        orders = list(open_orders)
        working = {o.client_order_id for o in orders if o.filled_quantity < o.quantity}
        for o in orders:
            if o.status is OrderStatus.PENDING_SUBMIT:
                continue
            if o.parent_id is not None and o.parent_id in working:
                self._held.setdefault(o.parent_id, []).append(o)
                continue
            live = (
                o
                if o.status is not OrderStatus.PENDING_CANCEL
                else o.transition(
                    OrderStatus.PARTIALLY_FILLED if o.filled_quantity else OrderStatus.SUBMITTED
                )
            )
            self._put(live)
