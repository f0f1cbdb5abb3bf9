"""The operator's commands, one handler each, looked up by command type.

A handler gets the :class:`Desk` (what commands act on) and its command, and answers
``(ok, message)``: the message is the sentence the operator reads in the log pane. Raising an
order or state error is also an answer (the engine turns it into a failed result); nothing a
handler does can stop the engine. A new command is a class in :mod:`fbterm.commands`, a
handler here, and one line in :data:`HANDLERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fbterm.commands import (
    CancelAll,
    CancelOrder,
    Command,
    FlattenAll,
    Halt,
    KillSwitch,
    ModifyOrder,
    NewOrder,
    PauseStrategy,
    Rebalance,
    ReduceOnly,
    Resume,
    ResumeStrategy,
    Stop,
    UpdateStrategy,
    WhatIf,
)
from fbterm.config import Config
from fbterm.engine.events import ActivityLog, RiskGate, cancel_all
from fbterm.engine.housekeeping import rebalance
from fbterm.engine.market import MarketState
from fbterm.engine.strategies import StrategyHost
from fbterm.execution.brokers.base import MarginPreview
from fbterm.execution.orders import OrderManagement
from fbterm.model import (
    OrderStatus,
    OrderType,
    Side,
    Signal,
    TimeInForce,
    TradingState,
    instrument_from_key,
)
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.ops.diagnostics import Diagnostics

Outcome = tuple[bool, str]


@dataclass(frozen=True, slots=True)
class Desk:
    """Everything a command may act on (engine thread only).

    ``stop`` asks the engine's main loop to end.
    """

    config: Config
    symbols: Sequence[str]
    risk: PortfolioLevelRisk
    gate: RiskGate
    oms: OrderManagement
    executor: StrategyExecutor
    market: MarketState
    strategies: StrategyHost
    activity: ActivityLog
    diagnostics: Diagnostics | None
    clock: Callable[[], float]
    stop: Callable[[], None]


def _working(desk: Desk) -> int:
    return sum(1 for o in desk.oms.open.values() if o.status is not OrderStatus.PENDING_CANCEL)


def handle_halt(desk: Desk, cmd: Halt) -> Outcome:
    before = _working(desk)
    if desk.risk.halt_trading(f"{cmd.reason}"):
        # The halt reaction cancels working orders when risk.cancel_orders_on_halt is set:
        # the operator must read that here, not find it out from an empty orders pane.
        if desk.config.risk.cancel_orders_on_halt:
            orders = f"{before - _working(desk)} working orders cancelled"
        else:
            orders = f"{before} working orders kept (risk.cancel_orders_on_halt = false)"
        return True, f"halt: trading HALTED ({cmd.reason}); {orders}"
    return False, "halt: already halted"


def handle_reduce_only(desk: Desk, cmd: ReduceOnly) -> Outcome:
    if desk.risk.reduce_only(cmd.reason):
        return True, "reduce-only: only orders that shrink positions pass"
    return False, f"reduce-only: trading is {desk.risk.state.value}"


def handle_resume(desk: Desk, cmd: Resume) -> Outcome:
    if desk.risk.resume():
        return True, "resume: trading ACTIVE"
    return False, "resume: trading is already ACTIVE"


def handle_new_order(desk: Desk, cmd: NewOrder) -> Outcome:
    sym = cmd.symbol.strip().upper() if " " not in cmd.symbol.strip() else cmd.symbol.strip()
    inst = instrument_from_key(sym)
    if inst.underlying not in desk.symbols:
        return (
            False,
            f"new order: unknown symbol {inst.underlying!r} (trading {', '.join(desk.symbols)})",
        )
    sig = Signal(
        cmd.strategy_id,
        inst,
        cmd.side,
        cmd.quantity,
        cmd.order_type,
        cmd.limit_price,
        cmd.stop_price,
        cmd.tif,
        signal_price=desk.market.mark(inst.key),
        ts=desk.clock(),
        reason="operator",
    )
    o = desk.oms.create_order(sig)
    desc = f"{o.client_order_id} {o.side.value} {o.quantity:g} {o.symbol} {o.order_type.value}"
    if o.status is OrderStatus.REJECTED:
        return False, f"new order {desc} rejected: {o.reason}"
    return True, f"new order {desc}: {o.status.value}"


def handle_cancel_order(desk: Desk, cmd: CancelOrder) -> Outcome:
    o = desk.oms.cancel_order(cmd.client_order_id)
    return True, f"cancel {o.client_order_id}: {o.status.value}"


def handle_cancel_all(desk: Desk, cmd: CancelAll) -> Outcome:
    n = cancel_all(desk.oms, desk.activity, "operator")
    return True, f"cancel all: {n} orders cancelled"


def handle_modify_order(desk: Desk, cmd: ModifyOrder) -> Outcome:
    o = desk.oms.modify_order(
        cmd.client_order_id,
        quantity=cmd.quantity,
        order_type=cmd.order_type,
        limit_price=cmd.limit_price,
        stop_price=cmd.stop_price,
    )
    terms = f"{o.quantity:g} {o.order_type.value}"
    if o.limit_price is not None:
        terms += f" lmt {o.limit_price:g}"
    if o.stop_price is not None:
        terms += f" stp {o.stop_price:g}"
    return True, f"modify {o.client_order_id}: {terms}"


def _flatten(
    desk: Desk,
    order_type: OrderType,
    offset_pct: float,
    symbol: str | None,
    strategy: str | None,
    source: str,
) -> tuple[list[str], int, int, list[str]]:
    """Pause, cancel, close: the strategies in scope are paused first (else they trade straight
    back in on the next bar), then their working orders in scope are cancelled, then each
    position in scope gets a closing order. Returns (paused, cancelled, sent, refused)."""

    def in_scope(sid: str, key: str) -> bool:
        return (symbol is None or key == symbol) and (strategy is None or sid == strategy)

    books = [
        (sid, key, p)
        for (sid, key), p in list(desk.oms.strategy_positions.items())
        if not p.is_flat and in_scope(sid, key)
    ]
    orders = [o for o in list(desk.oms.open.values()) if in_scope(o.strategy_id, o.symbol)]
    owners = {sid for sid, _, _ in books} | {o.strategy_id for o in orders}
    if strategy is not None:
        owners.add(strategy)
    paused = sorted(s for s in owners if s in desk.executor.slots)
    for name in paused:
        handle_pause_strategy(desk, PauseStrategy(name=name, source=source))
    if symbol is None and strategy is None:
        cancelled = cancel_all(desk.oms, desk.activity, "flatten")
    else:
        cancelled = 0
        for o in orders:
            if o.status is OrderStatus.PENDING_CANCEL:
                continue
            try:
                desk.oms.cancel_order(o.client_order_id)
                cancelled += 1
            except Exception as e:  # one refusal must not leave the rest working
                desk.activity.log(
                    "error", "order", f"cancel {o.client_order_id} (flatten) failed: {e}"
                )
    sent, refused = 0, []
    for sid, key, p in books:
        side = Side.SELL if p.quantity > 0 else Side.BUY
        last = desk.market.mark(key)
        kw: dict[str, Any] = {}
        if order_type is OrderType.LIMIT:
            if last is None:
                refused.append(f"{key}: no price for a limit")
                continue
            off = offset_pct / 100
            kw["limit_price"] = round(last * (1 - off if side is Side.SELL else 1 + off), 2)
        sig = Signal(
            sid,
            p.instrument,
            side,
            abs(p.quantity),
            order_type,
            tif=TimeInForce.DAY,
            signal_price=last,
            ts=desk.clock(),
            reason="flatten",
            **kw,
        )
        with desk.gate.operator_exit():
            o = desk.oms.create_order(sig)
        slot = desk.executor.slots.get(sid)
        if slot is not None:
            slot.instance(p.instrument.underlying).forget_target(p.instrument.underlying)
        if o.status is OrderStatus.REJECTED:
            refused.append(f"{key}: {o.reason}")
        else:
            sent += 1
    return paused, cancelled, sent, refused


def handle_flatten_all(desk: Desk, cmd: FlattenAll) -> Outcome:
    scope = f" {cmd.symbol}" if cmd.symbol else f" {cmd.strategy}" if cmd.strategy else " all"
    paused, cancelled, sent, refused = _flatten(
        desk, cmd.order_type, cmd.limit_offset_pct, cmd.symbol, cmd.strategy, cmd.source
    )
    msg = f"flatten{scope}: {sent} closing orders sent, {cancelled} orders cancelled"
    msg += f"; paused {', '.join(paused)}" if paused else "; no strategy to pause"
    if refused:
        msg += f"; {len(refused)} refused ({'; '.join(refused)})"
    return not refused, msg


def handle_kill_switch(desk: Desk, cmd: KillSwitch) -> Outcome:
    """Everything stops trading, nothing is left working, every position is closed."""
    for name in list(desk.executor.slots):
        handle_pause_strategy(desk, PauseStrategy(name=name, source=cmd.source))
    _, cancelled, sent, refused = _flatten(desk, OrderType.MARKET, 0.0, None, None, cmd.source)
    n = len(desk.executor.slots)
    msg = (
        f"kill switch ({cmd.reason}): {n} strategies paused, {cancelled} orders cancelled, "
        f"{sent} closing orders sent"
    )
    if refused:
        msg += f"; {len(refused)} refused ({'; '.join(refused)})"
    desk.activity.alert("critical", "Kill switch", msg, key="kill-switch")
    return not refused, msg


def handle_what_if(desk: Desk, cmd: WhatIf) -> Outcome:
    inst = instrument_from_key(cmd.symbol)
    price = cmd.limit_price or cmd.stop_price or desk.market.mark(inst.key)
    if price is None:
        return False, f"what-if: no price for {inst.key} yet"
    venue = desk.oms.broker
    if not isinstance(venue, MarginPreview):
        return True, f"what-if: {venue.name} gives no margin preview"
    return True, venue.what_if(inst, cmd.side, cmd.quantity, price).describe()


def handle_pause_strategy(desk: Desk, cmd: PauseStrategy) -> Outcome:
    desk.executor.pause_strategy(cmd.name)
    return True, f"strategy {cmd.name} paused"


def handle_resume_strategy(desk: Desk, cmd: ResumeStrategy) -> Outcome:
    if desk.risk.state is TradingState.HALTED:
        return False, f"strategy {cmd.name}: trading is HALTED; resume trading first"
    desk.executor.resume_strategy(cmd.name)
    return True, f"strategy {cmd.name} running"


def handle_update_strategy(desk: Desk, cmd: UpdateStrategy) -> Outcome:
    from fbterm.ops.updates import UpdatesManagement

    res = UpdatesManagement(desk.diagnostics).apply_update(
        desk.strategies,
        strategy=cmd.name,
        params=dict(cmd.params) or None,
        code=cmd.cls,
    )
    return bool(res.ok), res.message


def handle_rebalance(desk: Desk, cmd: Rebalance) -> Outcome:
    return rebalance(desk.executor, desk.config)


def handle_stop(desk: Desk, cmd: Stop) -> Outcome:
    desk.stop()
    return True, "stopping"


HANDLERS: dict[type[Any], Callable[[Desk, Any], Outcome]] = {
    Halt: handle_halt,
    ReduceOnly: handle_reduce_only,
    Resume: handle_resume,
    NewOrder: handle_new_order,
    CancelOrder: handle_cancel_order,
    CancelAll: handle_cancel_all,
    ModifyOrder: handle_modify_order,
    FlattenAll: handle_flatten_all,
    KillSwitch: handle_kill_switch,
    WhatIf: handle_what_if,
    PauseStrategy: handle_pause_strategy,
    ResumeStrategy: handle_resume_strategy,
    UpdateStrategy: handle_update_strategy,
    Rebalance: handle_rebalance,
    Stop: handle_stop,
}


class CommandHandlers:
    """Runs each command through its handler (engine thread only)."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def handle(self, cmd: Command) -> Outcome:
        handler = HANDLERS.get(type(cmd))
        if handler is None:
            return False, f"unknown command {type(cmd).__name__}"
        return handler(self.desk, cmd)
