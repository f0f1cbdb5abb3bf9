"""The operator's commands, one handler each, looked up by command type.

A handler gets the :class:`Desk` (what commands act on) and its command, and answers
``(ok, message)``: the message is the sentence the operator reads in the log pane. Raising an
order or state error is also an answer (the engine turns it into a failed result); nothing a
handler does can stop the engine. A new command is a class in :mod:`fbterm.commands`, a
handler here, and one line in :data:`HANDLERS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fbterm.commands import (
    CancelAll,
    CancelOrder,
    Command,
    FlattenAll,
    Halt,
    ModifyOrder,
    NewOrder,
    PauseStrategy,
    Rebalance,
    ReduceOnly,
    Resume,
    ResumeStrategy,
    Stop,
    UpdateStrategy,
)
from fbterm.config import Config
from fbterm.engine.events import ActivityLog, RiskGate, cancel_all
from fbterm.engine.housekeeping import rebalance
from fbterm.engine.market import MarketState
from fbterm.engine.strategies import StrategyHost
from fbterm.execution.orders import OrderManagement
from fbterm.model import (
    MarginImpact,
    Order,
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


def handle_halt(desk: Desk, cmd: Halt) -> Outcome:
    if desk.risk.halt_trading(f"{cmd.reason}"):
        return True, f"halt: trading HALTED ({cmd.reason})"
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
        options=cmd.options,
        take_profit=cmd.take_profit,
        stop_loss=cmd.stop_loss,
    )
    what_if = getattr(desk.oms.broker, "what_if", None)
    if what_if is not None and desk.config.risk.max_margin_pct > 0:
        # The broker previews margin asynchronously: the order is created (or refused) when
        # the answer arrives, and the outcome goes to the activity log.
        asyncio.get_running_loop().create_task(_after_what_if(desk, sig, what_if))
        desc = f"{sig.side.value} {sig.quantity:g} {inst.key} {sig.order_type.value}"
        return True, f"new order {desc}: checking margin at the broker (what-if)"
    return _send_new_order(desk, sig)


def _send_new_order(desk: Desk, sig: Signal) -> Outcome:
    o = desk.oms.create_order(sig)
    desc = f"{o.client_order_id} {o.side.value} {o.quantity:g} {o.symbol} {o.order_type.value}"
    if o.status is OrderStatus.REJECTED:
        return False, f"new order {desc} rejected: {o.reason}"
    exits = desk.oms.children(o.client_order_id)
    if exits:
        desc += " with " + ", ".join(f"{c.reason} {c.client_order_id}" for c in exits)
    return True, f"new order {desc}: {o.status.value}"


async def _after_what_if(
    desk: Desk, sig: Signal, what_if: Callable[[Order], Awaitable[MarginImpact]]
) -> None:
    desc = f"{sig.side.value} {sig.quantity:g} {sig.instrument.key} {sig.order_type.value}"
    probe = Order(
        "what-if",
        sig.instrument,
        sig.side,
        sig.quantity,
        sig.order_type,
        sig.limit_price,
        sig.stop_price,
        sig.tif,
        options=sig.options,
    )
    try:
        impact = await what_if(probe)
    except Exception as e:  # a preview that fails must not send the order unchecked
        desk.activity.log("error", "order", f"new order {desc} not sent: what-if failed: {e}")
        return
    why = desk.risk.check_margin(impact)
    if why:
        desk.activity.log("warning", "order", f"new order {desc} rejected: {why}")
        return
    ok, message = _send_new_order(desk, sig)
    desk.activity.log("info" if ok else "warning", "order", f"{message} ({impact.describe()})")


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


def handle_flatten_all(desk: Desk, cmd: FlattenAll) -> Outcome:
    cancel_all(desk.oms, desk.activity, "flatten")
    sent, rejected = 0, []
    for (sid, key), p in list(desk.oms.strategy_positions.items()):
        if p.is_flat:
            continue
        side = Side.SELL if p.quantity > 0 else Side.BUY
        last = desk.market.mark(key)
        kw: dict[str, Any] = {}
        otype = cmd.order_type
        if otype is OrderType.LIMIT:
            if last is None:
                rejected.append(f"{key}: no price for a limit")
                continue
            off = cmd.limit_offset_pct / 100
            kw["limit_price"] = round(last * (1 - off if side is Side.SELL else 1 + off), 2)
        sig = Signal(
            sid,
            p.instrument,
            side,
            abs(p.quantity),
            otype,
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
            rejected.append(f"{key}: {o.reason}")
        else:
            sent += 1
    msg = f"flatten: {sent} closing orders sent"
    if rejected:
        msg += f"; {len(rejected)} refused ({'; '.join(rejected)})"
    return not rejected, msg


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
