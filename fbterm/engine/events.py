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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fbterm.execution.brokers.base import BrokerMessage, ConnectionEvent, ConnectionState
from fbterm.execution.orders import OrderManagement
from fbterm.model import Fill, Order, OrderStatus, TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.snapshot import LogLine
from fbterm.strategies.executor import StrategyExecutor, StrategySlot

if TYPE_CHECKING:
    from fbterm.ops.diagnostics import Diagnostics


class ActivityLog:
    """The engine's voice: recent lines for the console, the activity log and alerts behind it.

    Neither the activity log nor an alert channel may ever stop trading, so their failures are
    swallowed here (a failing activity log is said once, in the console's log pane).
    """

    def __init__(self, diagnostics: Diagnostics | None, clock: Callable[[], float]) -> None:
        self.diagnostics = diagnostics
        self.clock = clock
        self.lines: deque[LogLine] = deque(maxlen=500)
        self._seq = 0
        self._failed = False

    def log(self, level: str, kind: str, message: str, **fields: Any) -> None:
        """A line for the console's log pane and the activity log (JSON lines)."""
        self._seq += 1
        self.lines.append(LogLine(self._seq, self.clock(), level, kind, message))
        self.activity(kind, message, level=level, **fields)

    def activity(self, kind: str, message: str, *, level: str = "info", **fields: Any) -> None:
        """A line for the activity log only (order events: the pane would repeat the fills)."""
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
        if self.diagnostics is not None:
            with contextlib.suppress(Exception):
                self.diagnostics.send_alert(severity, title, body, key=key)


@dataclass(slots=True)
class VenueLink:
    """The venue connection as the engine last heard of it (every snapshot shows it)."""

    state: ConnectionState = ConnectionState.DISCONNECTED
    message: str = ""


class OrderEvents:
    """Order-manager events (orders, fills, venue messages, connection changes) turned into
    log lines and alerts, plus the per-strategy fill counts the snapshot shows.

    ``stopping`` says whether the engine is shutting down: a disconnect then is ours, not news.
    """

    def __init__(
        self,
        activity: ActivityLog,
        link: VenueLink,
        fills: Iterable[Fill],
        *,
        stopping: Callable[[], bool],
    ) -> None:
        self.activity = activity
        self.link = link
        self.stopping = stopping
        self.fills_by_strategy: dict[str, int] = {}
        for f in fills:  # the journal's, restored before any event arrives
            self.fills_by_strategy[f.strategy_id] = self.fills_by_strategy.get(f.strategy_id, 0) + 1

    def on_event(self, kind: str, obj: object) -> None:
        """The order manager's listener: ``kind`` is order / fill / message / connection."""
        if kind == "fill":
            self._fill(cast(Fill, obj))
        elif kind == "order":
            self._order(cast(Order, obj))
        elif kind == "message":
            m = cast(BrokerMessage, obj)
            text = f"[{m.code}] {m.message}" if m.code else m.message
            level = {"critical": "error"}.get(m.level, m.level)
            self.activity.log(
                level if level in ("info", "warning", "error") else "warning", "broker", text
            )
            if m.level == "critical":  # a margin call or a liquidation: the operator must know
                self.activity.alert("critical", "Venue", text, key=f"venue:{m.message[:24]}")
        elif kind == "connection":
            self._connection(cast(ConnectionEvent, obj))

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
        )

    def _connection(self, c: ConnectionEvent) -> None:
        self.link.state = c.state
        self.link.message = c.message
        stopping = self.stopping()
        fine = c.state in (ConnectionState.CONNECTED, ConnectionState.READ_ONLY) or stopping
        self.activity.log(
            "info" if fine else "error", "broker", f"connection {c.state.value}: {c.message}"
        )
        if c.state is ConnectionState.DISCONNECTED and not stopping:
            self.activity.alert(
                "error", "Broker disconnected", c.message or "connection lost", key="disconnect"
            )

    def on_strategy_error(self, slot: StrategySlot, e: BaseException) -> None:
        """The executor stopped a strategy that raised: the operator must hear of it."""
        self.activity.alert(
            "error", f"Strategy {slot.name} stopped", slot.error, key=f"strategy:{slot.name}"
        )


def cancel_all(oms: OrderManagement, activity: ActivityLog, why: str) -> int:
    """Cancel every open order not already being cancelled; returns how many were asked.

    One refusal must not leave the rest working, so each failure is logged and the sweep goes on.
    """
    n = 0
    for o in list(oms.open.values()):
        if o.status is OrderStatus.PENDING_CANCEL:
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
                n = cancel_all(self.oms, self.activity, "halt")
                if n:
                    log("warning", "risk", f"cancelled {n} open orders on halt")
        elif state is TradingState.REDUCING:
            log("warning", "risk", f"REDUCE-ONLY: {reason}")
        else:
            log("info", "risk", "trading resumed (ACTIVE)")
