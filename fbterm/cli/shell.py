"""The operator shell: ``fbterm status|orders|positions|halt|resume|flatten|order|cancel``.

Each command talks to the running engine over its owner-only control socket (the config's
``control.socket``, or ``--socket``), for operators and scripts over SSH. A command that acts
(halt, resume, flatten, order, cancel) goes through the engine's command queue like a key in
the console, and prints the engine's own answer: the order's id and status, or the reason it
was refused. A command that only reads (status, orders, positions) reads the journal when no
engine runs, and says so.

Exit codes: 0 done; 1 the socket failed (timeout, busy); 2 a usage or config error; 3 the
engine refused (:data:`EXIT_REFUSED`); 4 no engine is running (:data:`EXIT_NO_ENGINE`).
``--json`` prints the documented shapes of :mod:`fbterm.ops.shell`.

Import-light like every cli module: the control client, the journal and the model are
imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fbterm.cli import shell_text
from fbterm.cli.common import Subparsers, resolve_config
from fbterm.cli.errors import (
    EXIT_ERROR,
    EXIT_NO_ENGINE,
    EXIT_OK,
    EXIT_REFUSED,
    CLIError,
)

NO_ENGINE_HINT = "start one with 'fbterm run --headless' (or the console)"


def register(sub: Subparsers) -> None:
    """Add the shell's commands to the ``fbterm`` parser."""
    p = _parser(sub, "status", "the running engine's state (or the journal's, with none running)")
    p.set_defaults(handler=cmd_status)

    p = _parser(sub, "orders", "working orders (or, with --all, recent orders of every status)")
    p.add_argument("--all", action="store_true", help="orders of every status, not only working")
    p.add_argument(
        "-n", "--limit", type=_count, default=50, metavar="N", help="the newest N (default 50)"
    )
    p.set_defaults(handler=cmd_orders)

    p = _parser(sub, "positions", "open positions (marked to market when an engine runs)")
    p.set_defaults(handler=cmd_positions)

    p = _parser(sub, "halt", "halt trading: no new orders until 'fbterm resume'")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (logged and shown)")
    p.set_defaults(handler=cmd_halt)

    p = _parser(sub, "resume", "resume trading after a halt or reduce-only")
    p.set_defaults(handler=cmd_resume)

    p = _parser(sub, "flatten", "cancel every working order and close every position")
    p.set_defaults(handler=cmd_flatten)

    p = _parser(sub, "order", "send an order (market, or --limit / --stop)")
    p.add_argument("side", type=str.lower, choices=("buy", "sell"), help="buy or sell")
    p.add_argument(
        "symbol", type=str.upper, help='a traded symbol, or an option: "AAPL 20261218 C200"'
    )
    p.add_argument("quantity", type=_quantity, help="shares or contracts (whole units)")
    p.add_argument("--limit", type=_price, metavar="P", help="limit price (a limit order)")
    p.add_argument(
        "--stop", type=_price, metavar="P", help="stop price (with --limit: a stop-limit)"
    )
    p.add_argument(
        "--strategy",
        default="manual",
        metavar="ID",
        help="book it to this strategy (default manual)",
    )
    p.add_argument(
        "--tif", type=str.upper, choices=("DAY", "GTC"), default="DAY", help="time in force"
    )
    p.set_defaults(handler=cmd_order)

    p = _parser(sub, "cancel", "cancel a working order by id, or every working order with --all")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="the order id (FB-000123)")
    target.add_argument("--all", action="store_true", help="cancel every working order")
    p.set_defaults(handler=cmd_cancel)


def _parser(sub: Subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--config", metavar="PATH", help="config file (names the socket and journal)")
    p.add_argument("--socket", metavar="PATH", help="control socket (default: from the config)")
    p.add_argument("--journal", metavar="PATH", help="journal (default: from the config)")
    p.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the engine's answer (default 30)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (the documented shapes)")
    return p


# ----------------------------------------------------------------- argument types


def _number(text: str) -> float:
    # float() takes "nan", "inf" and "1e400"; none of them is a quantity or a price.
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def _quantity(text: str) -> float:
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _price(text: str) -> float:
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _positive(text: str) -> float:
    v = _number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


# ----------------------------------------------------------------- talking to the engine


class _Target:
    """Where the engine listens and where its journal is, from the config and the options."""

    def __init__(self, args: argparse.Namespace) -> None:
        cfg = resolve_config(args)
        self.socket = Path(args.socket).expanduser() if args.socket else cfg.control_socket_path
        self.journal = cfg.journal_path
        self.timeout: float = args.timeout

    def ask(self, cmd: str, **request: Any) -> Any | None:
        """The engine's answer, or None when no engine is running on the socket."""
        from fbterm.control import ControlError, NoEngine, send_request

        try:
            return send_request(self.socket, cmd, timeout=self.timeout + 5.0, **request)
        except NoEngine:
            return None
        except ControlError as e:
            raise CLIError(str(e), EXIT_ERROR) from None

    def no_engine(self, what: str) -> CLIError:
        return CLIError(
            f"{what}: no engine running (nothing listens on {self.socket}); {NO_ENGINE_HINT}",
            EXIT_NO_ENGINE,
        )

    def read_journal(self) -> Any:
        from fbterm.journal import JournalError
        from fbterm.journal_files import read_journal

        try:
            return read_journal(self.journal)
        except JournalError as e:
            raise CLIError(f"no engine running, and {e}", EXIT_NO_ENGINE) from None


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: Callable[[], str]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(text())


# ----------------------------------------------------------------- reading


def cmd_status(args: argparse.Namespace) -> int:
    from fbterm.ops.shell import envelope

    t = _Target(args)
    s = t.ask("status")
    if s is not None:
        doc = envelope(
            "engine",
            s.get("journal") or str(t.journal),
            running=True,
            pid=s.get("pid"),
            trading_state=s.get("trading_state"),
            halt_reason=s.get("halt_reason"),
            mode=s.get("mode"),
            broker=s.get("broker"),
            account=s.get("account"),
            connection=s.get("connection"),
            account_values=s.get("account_values"),
            orders=None,
            open_orders=len(s.get("open_orders", ())),
            positions=len(s.get("positions", ())),
            fills=s.get("fills"),
            ticks_processed=s.get("ticks_processed"),
            strategies=s.get("strategies", []),
            last_event_ts=None,
        )
    else:
        state = t.read_journal()
        from fbterm.ops.shell import positions_from_journal

        last = max(
            [o.updated_ts for o in state.orders.values()] + [f.ts for f in state.fills],
            default=None,
        )
        doc = envelope(
            "journal",
            str(t.journal),
            running=False,
            pid=None,
            trading_state=None,
            halt_reason=None,
            mode=None,
            broker=None,
            account=None,
            connection=None,
            account_values=None,
            orders=len(state.orders),
            open_orders=sum(1 for o in state.orders.values() if o.is_live),
            positions=len(positions_from_journal(state.fills)),
            fills=len(state.fills),
            ticks_processed=None,
            strategies=[],
            last_event_ts=last,
        )
    _emit(args, doc, lambda: shell_text.status(doc))
    return EXIT_OK


def cmd_orders(args: argparse.Namespace) -> int:
    from fbterm.ops.shell import envelope, order_json, select_orders

    t = _Target(args)
    res = t.ask("orders", all=bool(args.all), limit=args.limit)
    if res is not None:
        doc = envelope("engine", str(t.journal), orders=res["orders"])
    else:
        state = t.read_journal()
        chosen = select_orders(state.orders.values(), include_done=args.all, limit=args.limit)
        doc = envelope("journal", str(t.journal), orders=[order_json(o) for o in chosen])
    _emit(args, doc, lambda: shell_text.orders(doc, include_done=args.all))
    return EXIT_OK


def cmd_positions(args: argparse.Namespace) -> int:
    from fbterm.ops.shell import envelope, positions_from_journal, positions_from_summary

    t = _Target(args)
    res = t.ask("positions")
    if res is not None:
        doc = envelope(
            "engine",
            str(t.journal),
            positions=positions_from_summary(res),
            account_values=res.get("account_values"),
        )
    else:
        state = t.read_journal()
        doc = envelope(
            "journal",
            str(t.journal),
            positions=positions_from_journal(state.fills),
            account_values=None,
        )
    _emit(args, doc, lambda: shell_text.positions(doc))
    return EXIT_OK


# ----------------------------------------------------------------- acting


def _execute(args: argparse.Namespace, what: str, **request: Any) -> int:
    """Run one command on the engine and print its answer; the exit code says how it went."""
    t = _Target(args)
    res = t.ask("execute", wait=args.timeout, **request)
    if res is None:
        raise t.no_engine(what)
    doc = {"schema": 1, "source": "engine", "journal": str(t.journal), **res}
    _emit(args, doc, lambda: shell_text.result(doc))
    return EXIT_OK if res.get("ok") else EXIT_REFUSED


def cmd_halt(args: argparse.Namespace) -> int:
    return _execute(args, "halt", command="halt", reason=args.reason)


def cmd_resume(args: argparse.Namespace) -> int:
    return _execute(args, "resume", command="resume")


def cmd_flatten(args: argparse.Namespace) -> int:
    return _execute(args, "flatten", command="flatten")


def cmd_cancel(args: argparse.Namespace) -> int:
    if args.all:
        return _execute(args, "cancel", command="cancel_all")
    return _execute(args, "cancel", command="cancel", order_id=args.id)


def cmd_order(args: argparse.Namespace) -> int:
    from fbterm.model import OrderError, OrderType, instrument_from_key, validate_order_fields

    # Refused here what no venue would take, so a typo costs no round trip: the engine checks
    # the same rule again (and everything that needs its state: symbols, strategies, risk).
    try:
        inst = instrument_from_key(args.symbol)
    except ValueError as e:
        raise CLIError(
            f'order: {args.symbol!r} is not a symbol or an option contract like "AAPL 20261218 C200" ({e})'
        ) from None
    otype = (
        OrderType.STOP_LIMIT
        if args.limit is not None and args.stop is not None
        else OrderType.LIMIT
        if args.limit is not None
        else OrderType.STOP
        if args.stop is not None
        else OrderType.MARKET
    )
    try:
        validate_order_fields("", args.quantity, otype, args.limit, args.stop, instrument=inst)
    except OrderError as e:
        raise CLIError(str(e)) from None
    return _execute(
        args,
        "order",
        command="order",
        side=args.side,
        symbol=inst.key,
        quantity=args.quantity,
        limit=args.limit,
        stop=args.stop,
        strategy=args.strategy,
        tif=args.tif,
    )
