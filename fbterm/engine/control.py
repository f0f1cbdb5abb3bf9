"""The engine's side of the local control socket: ``fbterm update`` and the operator shell.

Requests arrive on the socket server's connection threads; every one that touches trading
state is handed to the engine thread (through ``call``, ``snapshot`` or the command queue),
never run where it arrives. A command the operator gives (``fbterm halt``, ``fbterm order``)
goes through the same queue as the console's keys, and the answer is the engine's own
:class:`~fbterm.commands.CommandResult`: what it did, or why it refused.

Requests:

* ``status``: the snapshot summary, plus ``pid`` and ``journal``;
* ``orders`` ``{all: bool, limit: int}``: working orders, or every recent one;
* ``positions``: open positions, marked;
* ``execute`` ``{command: halt|resume|flatten|cancel|cancel_all|order, ..., wait}``: run
  one operator command and answer its result; an order takes ``side``, ``symbol``,
  ``quantity``, ``limit``, ``stop``, ``tif``, ``strategy`` and ``terms`` (the ticket's
  syntax: ``"tp=210 sl=185 trail=2% gtd=... outside-rth algo=adaptive"``);
* ``command`` ``{name}``: queue a command without waiting (kept for older clients);
* ``update``: a hot update (:mod:`fbterm.ops.updates`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.commands import (
    CancelAll,
    CancelOrder,
    Command,
    CommandResults,
    FlattenAll,
    Halt,
    KillSwitch,
    NewOrder,
    Rebalance,
    ReduceOnly,
    Resume,
)
from fbterm.engine.events import ActivityLog
from fbterm.engine.publisher import summary_dict
from fbterm.engine.strategies import StrategyHost
from fbterm.execution.orders import OrderManagement
from fbterm.model import OrderError, Side, TimeInForce
from fbterm.model.order_terms import order_type_for, parse_order_terms
from fbterm.ops.shell import order_json, select_orders
from fbterm.snapshot import EngineSnapshot

if TYPE_CHECKING:
    from fbterm.control import ControlServer
    from fbterm.ops.diagnostics import Diagnostics

# The commands the socket accepts by name: the ones that need no arguments.
SIMPLE_COMMANDS: dict[str, Callable[..., Command]] = {
    "halt": Halt,
    "reduce": ReduceOnly,
    "resume": Resume,
    "cancel_all": CancelAll,
    "flatten": FlattenAll,
    "kill": KillSwitch,
    "rebalance": Rebalance,
}

DEFAULT_WAIT = 30.0
MAX_LIMIT = 10_000


class RequestError(ValueError):
    """A request the socket cannot turn into a command (a wrong or missing argument)."""


def serve_control(
    path: Path | str,
    *,
    diagnostics: Diagnostics | None,
    strategies: StrategyHost,
    call: Callable[..., Any],
    snapshot: Callable[[], EngineSnapshot],
    submit: Callable[[Command], int],
    results: CommandResults,
    activity: ActivityLog,
    oms: OrderManagement | None = None,
    journal_path: Path | None = None,
) -> ControlServer | None:
    """Serve the control socket at ``path``; None (and a warning) when it cannot be served.

    ``call(fn, timeout=...)`` runs ``fn`` on the engine thread, ``snapshot()`` takes one there,
    ``submit`` queues a command and ``results`` is where its answer arrives.
    """
    from fbterm.control import ControlError, ControlServer
    from fbterm.ops.updates import UpdatesManagement

    updates = UpdatesManagement(diagnostics)
    journal = str(journal_path) if journal_path is not None else ""

    def update(req: dict[str, Any]) -> Any:
        return call(lambda: updates.handle_request(strategies, req), timeout=60)

    def status(req: dict[str, Any]) -> Any:
        return {**summary_dict(snapshot()), "pid": os.getpid(), "journal": journal}

    def orders(req: dict[str, Any]) -> Any:
        include_done = _flag(req, "all")
        limit = _int(req, "limit", 50, 0, MAX_LIMIT)
        if oms is None or not include_done:
            working = snapshot().open_orders
            chosen = select_orders(working, include_done=False, limit=limit)
            return {"orders": [order_json(o) for o in chosen]}
        book = oms
        chosen = call(lambda: select_orders(book.orders.values(), include_done=True, limit=limit))
        return {"orders": [order_json(o) for o in chosen]}

    def positions(req: dict[str, Any]) -> Any:
        s = summary_dict(snapshot())
        return {"positions": s["positions"], "account_values": s["account_values"]}

    def execute(req: dict[str, Any]) -> Any:
        cmd = command_from_request(req)
        wait = _number(req, "wait", None, 0.1, 600.0) or DEFAULT_WAIT
        results.expect(cmd.command_id)
        submit(cmd)
        res = results.wait(cmd.command_id, wait)
        if res is None:
            raise TimeoutError(
                f"the engine did not answer command {cmd.command_id} within {wait:g}s; "
                "it stays queued and runs when the engine gets to it"
            )
        return {
            "command": req.get("command"),
            "command_id": res.command_id,
            "ok": res.ok,
            "message": res.message,
            "orders": [order_json(o) for o in res.orders],
        }

    def command(req: dict[str, Any]) -> Any:
        name = str(req.get("name", ""))
        if name not in SIMPLE_COMMANDS:
            raise ValueError(f"unknown command {name!r} (known: {', '.join(SIMPLE_COMMANDS)})")
        return {"command_id": submit(SIMPLE_COMMANDS[name](source="control"))}

    server = ControlServer(
        path,
        {
            "update": update,
            "status": status,
            "orders": orders,
            "positions": positions,
            "execute": execute,
            "command": command,
        },
    )
    try:
        server.start()
    except (ControlError, OSError) as e:
        activity.log("warning", "engine", f"control socket not served: {e}")
        return None
    return server


# ------------------------------------------------------------------ requests -> commands


def command_from_request(req: dict[str, Any]) -> Command:
    """The operator command an ``execute`` request asks for; RequestError names what is wrong.

    Types are checked strictly (a script's ``"quantity": true`` is refused, not read as 1):
    what the engine then refuses (an unknown symbol, a fractional share, the risk gate) comes
    back as a failed result instead.
    """
    name = req.get("command")
    src = "control"
    if name == "halt":
        return Halt(source=src, reason=_text(req, "reason", "").strip() or "operator")
    if name == "resume":
        return Resume(source=src)
    if name == "flatten":
        return FlattenAll(source=src)
    if name == "cancel_all":
        return CancelAll(source=src)
    if name == "cancel":
        # "id" is the request's own id (the socket's protocol); the order's is "order_id".
        oid = _text(req, "order_id", "").strip()
        if not oid:
            raise RequestError("cancel needs order_id, the id of an order")
        return CancelOrder(source=src, client_order_id=oid)
    if name == "order":
        return _new_order(req, src)
    known = "halt, resume, flatten, cancel, cancel_all, order"
    raise RequestError(f"unknown command {name!r} (known: {known})")


def _new_order(req: dict[str, Any], src: str) -> NewOrder:
    side_text = _text(req, "side", "").upper()
    if side_text not in ("BUY", "SELL"):
        raise RequestError(f"side must be buy or sell, got {req.get('side')!r}")
    symbol = _text(req, "symbol", "").strip()
    if not symbol:
        raise RequestError("an order needs a symbol")
    qty = _number(req, "quantity", None, 0.0, math.inf)
    if qty is None:
        raise RequestError("an order needs a quantity")
    limit = _number(req, "limit", None, 0.0, math.inf)
    stop = _number(req, "stop", None, 0.0, math.inf)
    try:
        # The ticket's terms, read by the ticket's parser: one syntax for brackets, trailing
        # stops, IOC/GTD, outside-RTH and the Adaptive algo wherever an order is typed.
        terms = parse_order_terms(_text(req, "terms", ""))
    except OrderError as e:
        raise RequestError(str(e)) from None
    tif_text = _text(req, "tif", "DAY").upper()
    if tif_text not in (t.value for t in TimeInForce):
        names = ", ".join(t.value for t in TimeInForce)
        raise RequestError(f"tif must be one of {names}, got {req.get('tif')!r}")
    tif = TimeInForce(tif_text)
    if terms.tif is not None and "tif" in req and terms.tif is not tif:
        raise RequestError(
            f"tif {tif.value} contradicts the terms, which make it {terms.tif.value}"
        )
    return NewOrder(
        source=src,
        symbol=symbol,
        side=Side(side_text),
        quantity=qty,
        order_type=order_type_for(limit, stop, trailing=terms.trailing),
        limit_price=limit,
        stop_price=stop,
        tif=terms.tif or tif,
        strategy_id=_text(req, "strategy", "manual") or "manual",
        options=terms.options,
        take_profit=terms.take_profit,
        stop_loss=terms.stop_loss,
    )


def _text(req: dict[str, Any], key: str, default: str) -> str:
    v = req.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise RequestError(f"{key} must be text, got {v!r}")
    return v


def _flag(req: dict[str, Any], key: str) -> bool:
    v = req.get(key, False)
    if not isinstance(v, bool):
        raise RequestError(f"{key} must be true or false, got {v!r}")
    return v


def _number(
    req: dict[str, Any], key: str, default: float | None, low: float, high: float
) -> float | None:
    """A number in (low, high]; bool is not a number, and neither is nan or infinity."""
    v = req.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RequestError(f"{key} must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x) or not low < x <= high:
        raise RequestError(f"{key} must be a number > {low:g}, got {v!r}")
    return x


def _int(req: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    v = req.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise RequestError(f"{key} must be a whole number from {low} to {high}, got {v!r}")
    return v
