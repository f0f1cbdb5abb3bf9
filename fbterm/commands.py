"""What the engine accepts: typed operator commands, and the result each one earns.

Every sender (the console, the control socket, tests) builds a :data:`Command` and hands it to
the engine's thread-safe queue; the engine thread alone acts on it. Each command carries an id
so its :class:`CommandResult` can be matched to it when it comes back inside a snapshot, or
waited for (:class:`CommandResults`, what the control socket does for ``fbterm halt``). This
module sits at the bottom of the layering (it imports only :mod:`fbterm.model`) so the console
can speak to the engine without importing any of it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from fbterm.model import Order, OrderOptions, OrderType, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The engine's answer to one command: whether it did it, and a sentence saying what.

    ``orders`` are the orders the command created or acted on, as they stood when it was done
    (a new order's id and status, or the risk gate's reason in a rejected one's ``reason``).
    """

    command_id: int
    ok: bool
    message: str
    ts: float = 0.0
    orders: tuple[Order, ...] = ()


class CommandResults:
    """The engine's recent answers, and a way for another thread to wait for one.

    The engine thread appends; snapshots iterate over the recent ones; a sender that must
    report the outcome (the control socket) calls :meth:`wait` with the command's id. Answers
    someone waits for are kept until collected, however many others arrive meanwhile.
    """

    def __init__(self, keep: int = 50) -> None:
        self._recent: deque[CommandResult] = deque(maxlen=keep)
        self._cond = threading.Condition()
        self._waiting: dict[int, CommandResult | None] = {}

    def expect(self, command_id: int) -> None:
        """Keep the answer to ``command_id`` for :meth:`wait` (call before submitting)."""
        with self._cond:
            self._waiting.setdefault(command_id, None)

    def append(self, result: CommandResult) -> None:
        with self._cond:
            self._recent.append(result)
            if result.command_id in self._waiting:
                self._waiting[result.command_id] = result
                self._cond.notify_all()

    def wait(self, command_id: int, timeout: float) -> CommandResult | None:
        """The answer to ``command_id``, or None if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            found = self._waiting.get(command_id) or next(
                (r for r in self._recent if r.command_id == command_id), None
            )
            self._waiting.setdefault(command_id, found)
            while found is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                found = self._waiting.get(command_id)
            self._waiting.pop(command_id, None)
            return found

    def __iter__(self) -> Iterator[CommandResult]:
        with self._cond:
            return iter(tuple(self._recent))

    def __len__(self) -> int:
        with self._cond:
            return len(self._recent)


_ids = itertools.count(1)


def _next_id() -> int:
    return next(_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cmd:
    command_id: int = field(default_factory=_next_id)
    source: str = "ui"


@dataclass(frozen=True, slots=True, kw_only=True)
class Halt(_Cmd):
    reason: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReduceOnly(_Cmd):
    reason: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(_Cmd):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder(_Cmd):
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    tif: TimeInForce = TimeInForce.DAY
    strategy_id: str = "manual"
    options: OrderOptions = field(default_factory=OrderOptions)  # trail, GTD time, RTH, algo
    take_profit: float | None = None  # with stop_loss: a bracket
    stop_loss: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(_Cmd):
    client_order_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAll(_Cmd):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyOrder(_Cmd):
    client_order_id: str
    quantity: float | None = None
    order_type: OrderType | None = None
    limit_price: float | None = None
    stop_price: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlattenAll(_Cmd):
    """Close positions: all of them, or only one symbol's, or only one strategy's.

    The strategies whose positions it closes are paused, so they do not trade straight back in.
    """

    order_type: OrderType = OrderType.MARKET
    limit_offset_pct: float = 0.1  # limit orders: this far through the last price
    symbol: str | None = None  # only this instrument (its key, e.g. "AAPL")
    strategy: str | None = None  # only this strategy's book


@dataclass(frozen=True, slots=True, kw_only=True)
class KillSwitch(_Cmd):
    """Pause every strategy, cancel every open order, flatten every position at market."""

    reason: str = "operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatIf(_Cmd):
    """Ask the venue what an order would do to margin; nothing is sent. The answer is the
    result's message."""

    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseStrategy(_Cmd):
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeStrategy(_Cmd):
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateStrategy(_Cmd):
    name: str
    params: dict[str, object] = field(default_factory=dict)
    cls: str | None = None  # new code: "package.module:Class" or a built-in name


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebalance(_Cmd):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop(_Cmd):
    pass


Command = (
    Halt
    | ReduceOnly
    | Resume
    | NewOrder
    | CancelOrder
    | CancelAll
    | ModifyOrder
    | FlattenAll
    | KillSwitch
    | WhatIf
    | PauseStrategy
    | ResumeStrategy
    | UpdateStrategy
    | Rebalance
    | Stop
)

__all__ = [
    "CancelAll",
    "CancelOrder",
    "Command",
    "CommandResult",
    "CommandResults",
    "FlattenAll",
    "Halt",
    "KillSwitch",
    "ModifyOrder",
    "NewOrder",
    "PauseStrategy",
    "Rebalance",
    "ReduceOnly",
    "Resume",
    "ResumeStrategy",
    "Stop",
    "UpdateStrategy",
    "WhatIf",
]
