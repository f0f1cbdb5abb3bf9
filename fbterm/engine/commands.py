"""The operator's commands, one handler each, looked up by command type.

A handler gets the :class:`Desk` (what commands act on) and its command, and answers an
:class:`Outcome`: the message is the sentence the operator reads
in the log pane, and the orders are the ones it created or acted on, as they stood when it was
done (what ``fbterm order --json`` reports). Raising an order or state error is also an answer
(the engine turns it into a failed result); nothing a handler does can stop the engine. A new command is a class in :mod:`fbterm.commands`, a
handler here, and one line in :data:`HANDLERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import queue
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fbterm.commands import (
    CancelAll,
    CancelOrder,
    Command,
    CommandResult,
    CommandResults,
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
from fbterm.execution.brokers.base import MarginPreview, RemoteVenue
from fbterm.execution.orders import OrderManagement, UnknownOrder
from fbterm.journal import Journal, JournalWriteError
from fbterm.model import (
    IllegalTransition,
    Instrument,
    MarginImpact,
    Option,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    TimeInForce,
    TradingState,
    instrument_from_key,
)
from fbterm.model.instruments import (
    KEY_HELP,
)
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.ops.diagnostics import Diagnostics


class Outcome(tuple[bool, str]):
    """A handler's answer: ``(ok, message)`` (it unpacks as that pair), plus ``orders``."""

    orders: tuple[Order, ...]

    def __new__(cls, ok: bool, message: str, orders: tuple[Order, ...] = ()) -> Outcome:
        self = super().__new__(cls, (ok, message))
        self.orders = orders
        return self

    @property
    def ok(self) -> bool:
        return self[0]

    @property
    def message(self) -> str:
        return self[1]


# The strategy id of an operator's own orders (the ticket, ``fbterm order``).
MANUAL = "manual"


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
        return Outcome(True, f"halt: trading HALTED ({cmd.reason}); {orders}")
    return Outcome(False, "halt: already halted")


def handle_reduce_only(desk: Desk, cmd: ReduceOnly) -> Outcome:
    if desk.risk.reduce_only(cmd.reason):
        return Outcome(True, "reduce-only: only orders that shrink positions pass")
    return Outcome(False, f"reduce-only: trading is {desk.risk.state.value}")


def handle_resume(desk: Desk, cmd: Resume) -> Outcome:
    if desk.risk.resume():
        return Outcome(True, "resume: trading ACTIVE")
    return Outcome(False, "resume: trading is already ACTIVE")


def handle_new_order(desk: Desk, cmd: NewOrder) -> Outcome:
    sym = cmd.symbol.strip().upper() if " " not in cmd.symbol.strip() else cmd.symbol.strip()
    try:
        inst = instrument_from_key(sym)
    except ValueError as e:
        return Outcome(False, f"new order: {sym!r} is not {KEY_HELP}: {e}")
    if inst.underlying not in desk.symbols:
        return Outcome(
            False,
            f"new order: unknown symbol {inst.underlying!r} (trading {', '.join(desk.symbols)})",
        )
    if cmd.strategy_id != MANUAL and cmd.strategy_id not in desk.executor.slots:
        known = ", ".join([MANUAL, *desk.executor.slots])
        return Outcome(False, f"new order: unknown strategy {cmd.strategy_id!r} (known: {known})")
    if isinstance(inst, Option):
        problem = _option_problem(desk, inst)
        if problem:
            return Outcome(False, f"new order {inst.key}: {problem}")
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
    # Only a remote venue previews margin asynchronously before the order goes out; the
    # paper venue's what_if is the console's synchronous preview (handle_what_if).
    remote = isinstance(desk.oms.broker, RemoteVenue)
    what_if = getattr(desk.oms.broker, "what_if", None) if remote else None
    if what_if is not None and desk.config.risk.max_margin_pct > 0:
        # The broker previews margin asynchronously: the order is created (or refused) when
        # the answer arrives, and the outcome goes to the activity log.
        asyncio.get_running_loop().create_task(_after_what_if(desk, sig, what_if))
        desc = f"{sig.side.value} {sig.quantity:g} {inst.key} {sig.order_type.value}"
        return Outcome(True, f"new order {desc}: checking margin at the broker (what-if)")
    return _send_new_order(desk, sig)


def _send_new_order(desk: Desk, sig: Signal) -> Outcome:
    o = desk.oms.create_order(sig)
    desc = f"{o.client_order_id} {o.side.value} {o.quantity:g} {o.symbol} {o.order_type.value}"
    if o.status is OrderStatus.REJECTED:
        return Outcome(False, f"new order {desc} rejected: {o.reason}", (o,))
    exits = desk.oms.children(o.client_order_id)
    if exits:
        desc += " with " + ", ".join(f"{c.reason} {c.client_order_id}" for c in exits)
    return Outcome(True, f"new order {desc}: {o.status.value}", (o, *exits))


def _option_problem(desk: Desk, opt: Option) -> str:
    """Why an operator may not trade this option contract ('' when it may).

    Expired means past its last trading day on the market's own clock (a simulated market
    keeps its own time). Where there is a chain to check against, a contract outside it that
    we do not hold is unknown; with no chain (live data) the venue is the judge.
    """
    simulated = desk.market.simulated
    now = simulated.ts if simulated is not None else desk.clock()
    from fbterm.pricing import EXCHANGE_TZ

    today = dt.datetime.fromtimestamp(now, EXCHANGE_TZ).date()
    if opt.expiry < today:
        return f"the contract expired on {opt.expiry:%Y-%m-%d}"
    if simulated is not None and not _held_or_working(desk, opt):
        chain = desk.market.option_chain(opt.underlying)
        if chain and all(q.instrument.key != opt.key for q in chain):
            expiries = sorted({q.instrument.expiry for q in chain})
            listed = ", ".join(f"{e:%Y%m%d}" for e in expiries)
            return f"unknown contract: not in the {opt.underlying} option chain (expiries {listed})"
    return ""


def _held_or_working(desk: Desk, inst: Instrument) -> bool:
    pos = desk.oms.positions.get(inst.key)
    if pos is not None and not pos.is_flat:
        return True
    return any(o.symbol == inst.key for o in desk.oms.open.values())


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
    return Outcome(True, f"cancel {o.client_order_id}: {o.status.value}", (o,))


def handle_cancel_all(desk: Desk, cmd: CancelAll) -> Outcome:
    working = [o.client_order_id for o in desk.oms.open.values()]
    n = cancel_all(desk.oms, desk.activity, "operator")
    return Outcome(
        True, f"cancel all: {n} orders cancelled", tuple(desk.oms.orders[i] for i in working)
    )


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
    return Outcome(True, f"modify {o.client_order_id}: {terms}", (o,))


def _flatten(
    desk: Desk,
    order_type: OrderType,
    offset_pct: float,
    symbol: str | None,
    strategy: str | None,
    source: str,
) -> tuple[list[str], int, int, list[str], list[Order]]:
    """Pause, cancel, close: the strategies in scope are paused first (else they trade straight
    back in on the next bar), then their working orders in scope are cancelled, then each
    position in scope gets a closing order. Returns (paused, cancelled, sent, refused, closing orders)."""

    def in_scope(sid: str, key: str) -> bool:
        return (symbol is None or key == symbol) and (strategy is None or sid == strategy)

    books = [
        (sid, key, p)
        for (sid, key), p in list(desk.oms.strategy_positions.items())
        if not p.is_flat and in_scope(sid, key)
    ]
    working = [o for o in list(desk.oms.open.values()) if in_scope(o.strategy_id, o.symbol)]
    owners = {sid for sid, _, _ in books} | {o.strategy_id for o in working}
    if strategy is not None:
        owners.add(strategy)
    paused = sorted(s for s in owners if s in desk.executor.slots)
    for name in paused:
        handle_pause_strategy(desk, PauseStrategy(name=name, source=source))
    if symbol is None and strategy is None:
        cancelled = cancel_all(desk.oms, desk.activity, "flatten")
    else:
        cancelled = 0
        for o in working:
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
    orders: list[Order] = []
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
        orders.append(o)
        slot = desk.executor.slots.get(sid)
        if slot is not None:
            slot.instance(p.instrument.underlying).forget_target(p.instrument.underlying)
        if o.status is OrderStatus.REJECTED:
            refused.append(f"{key}: {o.reason}")
        else:
            sent += 1
    return paused, cancelled, sent, refused, orders


def handle_flatten_all(desk: Desk, cmd: FlattenAll) -> Outcome:
    scope = f" {cmd.symbol}" if cmd.symbol else f" {cmd.strategy}" if cmd.strategy else " all"
    paused, cancelled, sent, refused, orders = _flatten(
        desk, cmd.order_type, cmd.limit_offset_pct, cmd.symbol, cmd.strategy, cmd.source
    )
    msg = f"flatten{scope}: {sent} closing orders sent, {cancelled} orders cancelled"
    msg += f"; paused {', '.join(paused)}" if paused else "; no strategy to pause"
    if refused:
        msg += f"; {len(refused)} refused ({'; '.join(refused)})"
    return Outcome(not refused, msg, tuple(orders))


def handle_kill_switch(desk: Desk, cmd: KillSwitch) -> Outcome:
    """Everything stops trading, nothing is left working, every position is closed."""
    for name in list(desk.executor.slots):
        handle_pause_strategy(desk, PauseStrategy(name=name, source=cmd.source))
    _, cancelled, sent, refused, orders = _flatten(
        desk, OrderType.MARKET, 0.0, None, None, cmd.source
    )
    n = len(desk.executor.slots)
    msg = (
        f"kill switch ({cmd.reason}): {n} strategies paused, {cancelled} orders cancelled, "
        f"{sent} closing orders sent"
    )
    if refused:
        msg += f"; {len(refused)} refused ({'; '.join(refused)})"
    desk.activity.alert("critical", "Kill switch", msg, key="kill-switch")
    return Outcome(not refused, msg, tuple(orders))


def handle_what_if(desk: Desk, cmd: WhatIf) -> Outcome:
    inst = instrument_from_key(cmd.symbol)
    price = cmd.limit_price or cmd.stop_price or desk.market.mark(inst.key)
    if price is None:
        return Outcome(False, f"what-if: no price for {inst.key} yet")
    venue = desk.oms.broker
    # A remote venue (IB) previews asynchronously, when the order itself is sent
    # (risk.max_margin_pct); this synchronous preview is the in-process venue's.
    if isinstance(venue, RemoteVenue) or not isinstance(venue, MarginPreview):
        return Outcome(True, f"what-if: {venue.name} gives no margin preview here")
    return Outcome(True, venue.what_if(inst, cmd.side, cmd.quantity, price).describe())


def handle_pause_strategy(desk: Desk, cmd: PauseStrategy) -> Outcome:
    desk.executor.pause_strategy(cmd.name)
    return Outcome(True, f"strategy {cmd.name} paused")


def handle_resume_strategy(desk: Desk, cmd: ResumeStrategy) -> Outcome:
    if desk.risk.state is TradingState.HALTED:
        return Outcome(False, f"strategy {cmd.name}: trading is HALTED; resume trading first")
    desk.executor.resume_strategy(cmd.name)
    return Outcome(True, f"strategy {cmd.name} running")


def handle_update_strategy(desk: Desk, cmd: UpdateStrategy) -> Outcome:
    from fbterm.ops.updates import UpdatesManagement

    res = UpdatesManagement(desk.diagnostics).apply_update(
        desk.strategies,
        strategy=cmd.name,
        params=dict(cmd.params) or None,
        code=cmd.cls,
    )
    return Outcome(bool(res.ok), res.message)


def handle_rebalance(desk: Desk, cmd: Rebalance) -> Outcome:
    return Outcome(*rebalance(desk.executor, desk.config))


def handle_stop(desk: Desk, cmd: Stop) -> Outcome:
    desk.stop()
    return Outcome(True, "stopping")


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
            return Outcome(False, f"unknown command {type(cmd).__name__}")
        return handler(self.desk, cmd)


# Operator commands waiting for the engine thread; beyond this a sender is told the engine is
# busy instead of queueing without bound.
COMMAND_QUEUE_SIZE = 1_000

# Commands that send, change or cancel no order: they always share one journal transaction
# with the decisions they change, so their log lines follow its commit.
ORDER_FREE: tuple[type[Any], ...] = (Resume, ReduceOnly, PauseStrategy, ResumeStrategy, Rebalance)


class CommandRunner:
    """The bounded queue of operator commands and its one consumer, the engine thread.

    ``persist`` journals the operator's decisions (:class:`OperatorStateKeeper.sync`); it runs
    after every command, before the command's log line and result, so nobody hears of a
    decision the journal does not hold.
    """

    def __init__(
        self,
        handlers: CommandHandlers,
        journal: Journal,
        results: CommandResults,
        *,
        in_process_venue: bool,
        persist: Callable[[], None],
        log: Callable[..., None],
        published: Callable[[], None],
        clock: Callable[[], float],
        size: int = COMMAND_QUEUE_SIZE,
    ) -> None:
        self.handlers = handlers
        self.journal = journal
        self.results = results
        self.in_process_venue = in_process_venue
        self.persist = persist
        self.log = log
        self.published = published
        self.clock = clock
        self.size = size
        self._queue: queue.Queue[Command] = queue.Queue(size)

    def put(self, cmd: Command) -> bool:
        """Queue ``cmd`` (any thread, never blocks); False, with its result, when full."""
        try:
            self._queue.put_nowait(cmd)
        except queue.Full:
            self.results.append(
                CommandResult(
                    cmd.command_id,
                    False,
                    f"engine busy: command queue full ({self.size} waiting); "
                    f"{type(cmd).__name__} not queued",
                    self.clock(),
                )
            )
            return False
        return True

    def drain(self) -> None:
        """Run every queued command, in order, each answered by a result and a log line."""
        while True:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                return
            # On a remote venue an order commits before it leaves; anything else shares one
            # commit with the decisions it changes.
            grouped = self.in_process_venue or isinstance(cmd, ORDER_FREE)
            try:
                with self.journal.group() if grouped else contextlib.nullcontext():
                    out = self._run(cmd)
                    ok, msg = out
                    self.log(
                        "info" if ok else "warning",
                        "command",
                        ("OK " if ok else "FAILED ") + msg,
                        command=type(cmd).__name__,
                        ok=ok,
                        source=cmd.source,
                        command_id=cmd.command_id,
                    )
            except JournalWriteError as e:  # the engine's fault handler takes it from here
                self.results.append(CommandResult(cmd.command_id, False, str(e), self.clock()))
                return
            self.results.append(CommandResult(cmd.command_id, ok, msg, self.clock(), out.orders))
            self.published()

    def _run(self, cmd: Command) -> Outcome:
        try:
            out = self.handlers.handle(cmd)
            self.persist()
        except JournalWriteError:
            raise
        except (OrderError, IllegalTransition, UnknownOrder, KeyError, ValueError) as e:
            # A plain KeyError's str() is its repr; UnknownOrder's is already a sentence.
            out = Outcome(False, str(e.args[0] if type(e) is KeyError and e.args else e))
        except Exception as e:  # a command must never kill the engine
            out = Outcome(False, f"{type(e).__name__}: {e}")
        return out
