"""PaperBroker: the embedded default venue.

It keeps its own account (cash, positions, working orders) like a real broker would, fills
orders with the pure fill model in :mod:`fbterm.execution.brokers.fills` against the market updates the
engine hands it, and answers through the same events as Interactive Brokers. Market orders fill
at the *next* update after they arrive, never at a price the strategy already saw.

This module is the venue's port and its matching: taking, changing and cancelling orders, fills
on market updates, and margin enforcement (a call, a liquidation). The account's books (cash,
positions, marks, the margin rule) are :mod:`.paper_account`'s; the working orders and what
brackets, OCA groups, trailing stops, IOC and GTD do to them are :mod:`.paper_orders`'.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import (
    BrokerError,
    BrokerEvent,
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
from fbterm.execution.brokers.fills import MarketUpdate, match_order
from fbterm.execution.brokers.paper_account import OptionPricer, PaperAccount
from fbterm.execution.brokers.paper_orders import WorkingOrders
from fbterm.execution.costs import CommissionModel, commission_from_config
from fbterm.execution.margin import MarginRule, MarginStatus
from fbterm.model import (
    AccountDetails,
    Fill,
    Instrument,
    Option,
    Order,
    OrderStatus,
    Position,
    Side,
    Tick,
)

__all__ = ["OptionPricer", "PaperBroker"]


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
        self.clock = clock
        self.account = self.cfg.account
        self.holdings = PaperAccount(self.cfg, option_pricer)
        self._handler: EventHandler = lambda ev: None
        # The book's events go to whichever handler is set (set_event_handler replaces it).
        self.working = WorkingOrders(self._emit, clock, self.holdings.mark, self.holdings.last)
        # Execution ids must stay unique across restarts (the journal de-duplicates fills by
        # id), so they carry this session's start time.
        self._session = f"{int(time.time() * 1000):x}"
        self._fill_ids = itertools.count(1)
        self._broker_ids = itertools.count(1)
        self.margin_status = MarginStatus.OK
        self._margin_ts = -1.0
        self._liq_ids = itertools.count(1)

    # -- the account's and the book's state, as the venue shows it --------------------------
    @property
    def cash(self) -> float:
        return self.holdings.cash

    @property
    def positions(self) -> dict[str, Position]:
        return self.holdings.positions

    @property
    def last(self) -> dict[str, MarketUpdate]:
        return self.holdings.last

    @property
    def margin(self) -> MarginRule:
        return self.holdings.margin

    @property
    def option_pricer(self) -> OptionPricer | None:
        return self.holdings.option_pricer

    @property
    def orders(self) -> dict[str, Order]:
        return self.working.orders

    # -- port plumbing -------------------------------------------------------------------
    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    def _emit(self, ev: BrokerEvent) -> None:
        self._handler(ev)

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
        if live.parent_id is not None and live.parent_id in self.working.orders:
            self.working.hold(live.parent_id, live)
        else:
            self.working.put(self.working.armed(live))
        self._handler(
            OrderStatusEvent(
                order.client_order_id, OrderStatus.SUBMITTED, broker_order_id=bid, ts=now
            )
        )

    def cancel_order(self, order: Order) -> None:
        oid = order.client_order_id
        live = self.working.drop(oid)
        if live is None and not self.working.unhold(oid):
            raise BrokerError(f"order {oid} is not working at the paper broker")
        self.working.close(oid, OrderStatus.CANCELLED, "cancelled by request", self.clock())
        # A bracket's exits go with its entry, as at IB.
        for child in self.working.held.pop(oid, []):
            self.working.close(
                child.client_order_id, OrderStatus.CANCELLED, f"parent {oid} cancelled"
            )

    def modify_order(self, order: Order) -> None:
        live = self.working.orders.get(order.client_order_id)
        if live is None:
            raise BrokerError(f"order {order.client_order_id} is not working at the paper broker")
        if order.quantity <= live.filled_quantity:
            raise BrokerError(
                f"order {order.client_order_id}: quantity {order.quantity:g} not above filled"
            )
        self.working.put(
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
        if order.client_order_id in self.working.orders:
            return f"duplicate order id {order.client_order_id}"
        if isinstance(inst, Option) and self.holdings.option_pricer is None:
            return f"no option quotes for {inst.key}"
        price = order.reference_price() or self.holdings.mark(inst)
        if price is None:
            return ""  # no price yet: it waits for the first update, and is checked when it fills
        return self.holdings.margin_refusal(order, price, self.working.reserved_total)

    # -- market data ---------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> list[Fill]:
        return self.on_market(tick.symbol, MarketUpdate.from_tick(tick))

    def on_market(self, key: str, u: MarketUpdate) -> list[Fill]:
        """Match working orders on ``key`` (and options on it) against update ``u``, then
        judge the account's margin at the new prices."""
        self.holdings.last[key] = u
        fills = self._match(key, u)
        if self.holdings.open and u.ts != self._margin_ts:
            # Once per market time step, at its first update: marking every position costs
            # O(positions), and a step of many symbols shares one timestamp.
            self._margin_ts = u.ts
            fills += self.check_margin(u.ts)
        return fills

    def _match(self, key: str, u: MarketUpdate) -> list[Fill]:
        ids = self.working.by_underlying.get(key)
        if not ids:
            return []
        fills: list[Fill] = []
        # Within an OCA group the protective stop is matched first: when one update reaches
        # both exits of a bracket, the loss is the outcome assumed (as in backtests).
        for oid in sorted(ids, key=self.working.match_rank):
            order = self.working.orders.get(oid)
            if order is None:
                ids.discard(oid)
                continue
            if self.working.expired(order, u.ts):
                continue
            inst = order.instrument
            if inst.key == key:
                update: MarketUpdate | None = u
            elif isinstance(inst, Option):
                update = self._option_update(inst, u)
                if update is not None:
                    self.holdings.last[inst.key] = update
            else:
                update = None  # another stock keyed under this one: not this update's to fill
            if update is None:
                continue
            f = self._try_fill(order, update)
            if f is not None:
                fills.append(f)
                self.working.after_fill(order, f)
            self.working.after_update(order, update)
        return fills

    def check_margin(self, ts: float) -> list[Fill]:
        """Judge the account by the margin rule at the current marks; liquidate when due.

        Called after every market update; returns the liquidation fills (usually none)."""
        if not self.holdings.open:
            self.margin_status = MarginStatus.OK
            return []
        net, gross = self.holdings.marked_positions()
        equity = self.holdings.cash + net
        status = self.holdings.margin.status(equity, gross)
        before, self.margin_status = self.margin_status, status
        if status is MarginStatus.OK or (status is before is MarginStatus.CALL):
            return []
        why = self.holdings.margin.describe(equity, gross)
        if status is MarginStatus.CALL:
            self._handler(
                BrokerMessage(
                    0, f"margin call: {why}; only orders that reduce risk are accepted",
                    level="critical", ts=ts,
                )
            )  # fmt: skip
            return []
        n = len(self.holdings.open)
        self._handler(
            BrokerMessage(
                0, f"margin liquidation: {why}; closing {n} position(s) at market",
                level="critical", ts=ts,
            )
        )  # fmt: skip
        return self._liquidate(ts)

    def _liquidate(self, ts: float) -> list[Fill]:
        """Cancel every working order, then close every strategy's positions at the marks."""
        for oid in list(self.working.orders):
            self.working.drop(oid)
            self._handler(
                OrderStatusEvent(oid, OrderStatus.CANCELLED, "cancelled: margin liquidation", ts=ts)
            )
        fills: list[Fill] = []
        for (sid, key), qty in list(self.holdings.strategy_qty.items()):
            pos = self.holdings.positions.get(key)
            if abs(qty) < 1e-9 or pos is None:
                continue
            inst = pos.instrument
            mark = self.holdings.mark(inst)
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
            self.holdings.book(fill)
            self._handler(FillEvent(fill))
            fills.append(fill)
        self.margin_status = MarginStatus.OK if not self.holdings.open else MarginStatus.LIQUIDATE
        return fills

    def _option_update(self, opt: Option, u: MarketUpdate) -> MarketUpdate | None:
        q = self.holdings.option_pricer(opt) if self.holdings.option_pricer else None
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
                self.working.put(order.transition(order.status, triggered=True))
            return None
        inst = order.instrument
        qty = d.quantity
        commission = self.commission(qty, d.price, inst.multiplier)
        # Buying power is checked again at fill time (a market order sent before any price was
        # known must not put the account beyond its limits), by the margin rule the backtest
        # uses: the part that closes a position fills, a part that adds too much risk does not.
        admitted = self.holdings.admitted(order.side.sign * qty, d.price, inst, commission / qty)
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
            self.working.put(updated)
        else:
            self.working.drop(order.client_order_id)
        self.holdings.book(fill)
        self._handler(FillEvent(fill))
        if cut and updated.is_live:
            self._cancel_at_fill(order, u.ts)
        return fill

    def _cancel_at_fill(self, order: Order, ts: float) -> None:
        self.working.drop(order.client_order_id)
        self._handler(
            OrderStatusEvent(
                order.client_order_id,
                OrderStatus.CANCELLED,
                "cancelled: insufficient buying power at fill",
                ts=ts,
            )
        )

    # -- account -------------------------------------------------------------------------
    def equity(self) -> float:
        return self.holdings.equity()

    def buying_power(self) -> float:
        """Equity x leverage, less what positions and working orders that add risk use."""
        return max(self.holdings.free_equity() - self.working.reserved_total, 0.0)

    def what_if(
        self, instrument: Instrument, side: Side, quantity: float, price: float
    ) -> MarginImpact:
        """The margin an order would use if it filled at ``price`` (Reg T: gross / leverage),
        by the same marks and buying-power rule the account itself uses."""
        return self.holdings.what_if(
            instrument, side, quantity, price, reserved=self.working.reserved_total, venue=self.name
        )

    def query_open_orders(self) -> list[BrokerOrder]:
        return self.working.open_orders()

    def query_positions(self) -> list[BrokerPosition]:
        return self.holdings.broker_positions(self.account)

    def query_account_details(self) -> AccountDetails:
        net, gross = self.holdings.marked_positions()
        equity = self.holdings.cash + net
        realized = sum(p.realized_pnl for p in self.holdings.positions.values())
        unrealized = sum(
            p.unrealized_pnl(self.holdings.mark(p.instrument))
            for p in self.holdings.positions.values()
        )
        return AccountDetails(
            account=self.account,
            cash=self.holdings.cash,
            equity=equity,
            buying_power=self.buying_power(),
            margin_used=self.holdings.margin.initial_requirement(gross),
            maintenance_margin=self.holdings.margin.maintenance_requirement(gross),
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            ts=self.clock(),
        )

    # -- restart -------------------------------------------------------------------------
    def restore(self, fills: Iterable[Fill], open_orders: Iterable[Order]) -> None:
        """Rebuild the paper account from the journal so a restart keeps its positions."""
        for f in fills:
            self.holdings.book(f)
        self.working.restore(open_orders)
