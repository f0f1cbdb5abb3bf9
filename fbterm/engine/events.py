"""What the engine tells people: its log, alerts, and what order events and risk changes mean.

Everything the engine reports goes through one :class:`ActivityLog`: the recent lines feed the
console's log pane, every line also goes to the activity log (JSON lines), and alerts go out
through the configured channels. :class:`OrderEvents` turns what the order manager hears from
the venue into those lines and alerts; :class:`RiskGate` and :class:`RiskReaction` are the two
ways the engine meets the risk manager (the pre-trade check, and what a change of trading state
sets off). All of it runs on the engine thread.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from fbterm.execution.brokers.base import EXTERNAL, BrokerMessage, ConnectionState
from fbterm.execution.orders import OrderManagement
from fbterm.model import Fill, Order, OrderStatus, TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.snapshot import AlertLine, ConnectionChange, LogLine
from fbterm.strategies.executor import StrategyExecutor, StrategySlot

if TYPE_CHECKING:
    from fbterm.ops.diagnostics import Diagnostics


Gate = Callable[[Callable[[], None]], None]


def _now(fn: Callable[[], None]) -> None:
    fn()


class ActivityLog:
    """The engine's voice: recent lines for the console, the activity log and alerts behind it.

    Neither the activity log nor an alert channel may ever stop trading, so their failures are
    swallowed here (a failing activity log is said once, in the console's log pane).

    Commit, then tell: every line and alert passes ``gate`` (the journal's ``after_commit``),
    which holds it until the transaction that records what it says has committed, and drops
    it if that never happens. :meth:`fatal` is the one line that bypasses it.
    """

    def __init__(
        self, diagnostics: Diagnostics | None, clock: Callable[[], float], gate: Gate = _now
    ) -> None:
        self.diagnostics = diagnostics
        self.clock = clock
        self.gate = gate
        self.lines: deque[LogLine] = deque(maxlen=500)
        self.alerts: deque[AlertLine] = deque(maxlen=50)  # what the summary lists
        self._seq = 0
        self._failed = False

    def log(self, level: str, kind: str, message: str, **fields: Any) -> None:
        """A line for the console's log pane and the activity log (JSON lines)."""
        ts = self.clock()
        self.gate(lambda: self._log(ts, level, kind, message, fields))

    def _log(self, ts: float, level: str, kind: str, message: str, fields: dict[str, Any]) -> None:
        self._seq += 1
        self.lines.append(LogLine(self._seq, ts, level, kind, message))
        self._activity(kind, message, level, fields)

    def activity(self, kind: str, message: str, *, level: str = "info", **fields: Any) -> None:
        """A line for the activity log only (order events: the pane would repeat the fills)."""
        self.gate(lambda: self._activity(kind, message, level, fields))

    def fatal(self, message: str, *, title: str, key: str) -> None:
        """The line that ends the engine, said even though the journal can no longer commit."""
        self._log(self.clock(), "error", "engine", message, {})
        if self.diagnostics is not None:
            with contextlib.suppress(Exception):
                self.diagnostics.send_alert("critical", title, message, key=key)

    def _activity(self, kind: str, message: str, level: str, fields: dict[str, Any]) -> None:
        if self.diagnostics is None:
            return
        try:
            self.diagnostics.log_activity(kind, message, level=level, **fields)
        except Exception as e:  # the log must never stop trading; say so once
            if not self._failed:
                self._failed = True
                self.lines.append(
                    LogLine(
                        self._seq,
                        self.clock(),
                        "error",
                        "engine",
                        f"activity log write failed: {e}",
                    )
                )

    def alert(self, severity: str, title: str, body: str, *, key: str) -> None:
        self.gate(lambda: self._alert(severity, title, body, key))

    def _alert(self, severity: str, title: str, body: str, key: str) -> None:
        self.alerts.append(AlertLine(self.clock(), severity, title, body))
        if self.diagnostics is not None:
            with contextlib.suppress(Exception):
                self.diagnostics.send_alert(severity, title, body, key=key)


@dataclass(slots=True)
class VenueLink:
    """The venue connection as the engine last heard of it (every snapshot shows it)."""

    state: ConnectionState = ConnectionState.DISCONNECTED
    message: str = ""
    since: float = 0.0
    history: deque[ConnectionChange] = field(default_factory=lambda: deque(maxlen=20))


class OrderEvents:
    """Order-manager events (orders, fills, venue messages) turned into log lines and alerts,
    plus the per-strategy fill counts the snapshot shows. Connection changes are
    :class:`fbterm.engine.venue.ConnectionWatch`'s."""

    def __init__(self, activity: ActivityLog, fill_counts: Mapping[str, int]) -> None:
        self.activity = activity
        # The journal's counts, restored before any event arrives.
        self.fills_by_strategy: dict[str, int] = dict(fill_counts)

    def on_event(self, kind: str, obj: object) -> None:
        """The order manager's listener: see :meth:`OrderManagement.subscribe` for the kinds."""
        if kind == "fill":
            self._fill(cast(Fill, obj))
        elif kind == "order":
            self._order(cast(Order, obj))
        elif kind == "venue-ended":
            o = cast(Order, obj)
            self.activity.alert(
                "warning",
                "Order ended by the venue",
                f"{o.client_order_id} {o.side.value} {o.quantity:g} {o.symbol} ({o.strategy_id}), "
                f"filled {o.filled_quantity:g}: {o.reason or 'no reason given'}",
                key=f"venue-ended:{o.client_order_id}",
            )
        elif kind == "adjustment":
            f = cast(Fill, obj)
            self.fills_by_strategy[f.strategy_id] = self.fills_by_strategy.get(f.strategy_id, 0) + 1
            self.activity.log(
                "warning",
                "reconcile",
                f"{f.strategy_id}: booked {f.side.value} {f.quantity:g} {f.instrument.key} "
                f"@ {f.price:,.4g} to match the venue's position",
                **f.to_dict(),
            )
        elif kind == "message":
            m = cast(BrokerMessage, obj)
            # "critical" is a margin call or a liquidation: logged as an error, alerted always.
            level = {"critical": "error"}.get(m.level, m.level)
            level = level if level in ("info", "warning", "error") else "warning"
            text = f"[{m.code}] {m.message}" if m.code else m.message
            self.activity.log(level, "broker", text)
            if m.level == "critical":
                self.activity.alert("critical", "Venue", text, key=f"venue:{m.message[:24]}")
            elif m.alert:
                about = f" on order {m.client_order_id}" if m.client_order_id else ""
                self.activity.alert(
                    "error" if level == "error" else "warning",
                    f"Venue message{about}",
                    text,
                    key=f"venue:{m.code}:{m.client_order_id or ''}",
                )

    def _fill(self, f: Fill) -> None:
        self.fills_by_strategy[f.strategy_id] = self.fills_by_strategy.get(f.strategy_id, 0) + 1
        self.activity.log(
            "info",
            "fill",
            f"{f.strategy_id}: {f.side.value} {f.quantity:g} {f.instrument.key} "
            f"@ {f.price:,.4g} (comm {f.commission:.2f})",
            **f.to_dict(),
        )

    def _order(self, o: Order) -> None:
        if o.status is OrderStatus.REJECTED:
            self.activity.alert(
                "warning",
                "Order rejected",
                f"{o.client_order_id} {o.side.value} {o.quantity:g} "
                f"{o.symbol} ({o.strategy_id}): {o.reason}",
                key=f"reject:{o.strategy_id}:{o.reason[:30]}",
            )
        # Every order event goes to the activity log (not the pane: fills already say it).
        self.activity.activity(
            "order",
            f"{o.client_order_id} {o.status.value}" + (f": {o.reason}" if o.reason else ""),
            order_id=o.client_order_id,
            status=o.status.value,
            reason=o.reason,
            strategy=o.strategy_id,
            symbol=o.symbol,
            side=o.side.value,
            qty=o.quantity,
            filled=o.filled_quantity,
            order_type=o.order_type.value,
            lmt=o.limit_price,
            stp=o.stop_price,
            broker_id=o.broker_order_id,
            perm_id=o.broker_perm_id,
        )

    def on_strategy_error(self, slot: StrategySlot, e: BaseException) -> None:
        """The executor stopped a strategy that raised: the operator must hear of it."""
        self.activity.alert(
            "error", f"Strategy {slot.name} stopped", slot.error, key=f"strategy:{slot.name}"
        )


def cancel_all(
    oms: OrderManagement, activity: ActivityLog, why: str, *, external: bool = True
) -> int:
    """Cancel every open order not already being cancelled; returns how many were asked.

    ``external`` False leaves the orders fbterm did not place alone (a halt stops fbterm, not
    the person trading in TWS). One refusal must not leave the rest working, so each failure
    is logged and the sweep goes on.
    """
    n = 0
    for o in list(oms.open.values()):
        if o.status is OrderStatus.PENDING_CANCEL or (not external and o.strategy_id == EXTERNAL):
            continue
        try:
            oms.cancel_order(o.client_order_id)
            n += 1
        except Exception as e:
            activity.log("error", "order", f"cancel {o.client_order_id} ({why}) failed: {e}")
    return n


class RiskGate:
    """The order manager's pre-trade check, with the one exception the operator gets.

    Getting flat is what a halt is for: while :meth:`operator_exit` is open, the operator's
    closing orders pass the gate in any trading state (they can only shrink positions).
    """

    def __init__(self, risk: PortfolioLevelRisk) -> None:
        self.risk = risk
        self._operator_exit = False

    def check(self, order: Order) -> str | None:
        return self.risk.check_order(order, operator=self._operator_exit)

    @contextlib.contextmanager
    def operator_exit(self) -> Iterator[None]:
        self._operator_exit = True
        try:
            yield
        finally:
            self._operator_exit = False


class RiskReaction:
    """What a change of trading state sets off: strategies held or released, the log, an alert,
    and (if configured) every open order cancelled on a halt."""

    def __init__(
        self,
        executor: StrategyExecutor,
        oms: OrderManagement,
        activity: ActivityLog,
        *,
        cancel_orders_on_halt: bool,
    ) -> None:
        self.executor = executor
        self.oms = oms
        self.activity = activity
        self.cancel_orders_on_halt = cancel_orders_on_halt

    def __call__(self, state: TradingState, reason: str) -> None:
        self.executor.set_halted(state is TradingState.HALTED)
        log = self.activity.log
        if state is TradingState.HALTED:
            log("error", "risk", f"TRADING HALTED: {reason}")
            self.activity.alert(
                "critical",
                "Trading halted",
                f"fbterm halted trading: {reason}",
                key=f"halt:{reason[:40]}",
            )
            if self.cancel_orders_on_halt:
                n = cancel_all(self.oms, self.activity, "halt", external=False)
                if n:
                    log("warning", "risk", f"cancelled {n} open orders on halt")
        elif state is TradingState.REDUCING:
            log("warning", "risk", f"REDUCE-ONLY: {reason}")
        else:
            # Orders refused while held are not retried by themselves: each strategy acts on
            # its next target even if it repeats the last one.
            self.executor.forget_targets()
            log("info", "risk", "trading resumed (ACTIVE)")
