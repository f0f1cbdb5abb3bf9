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

Import-light like every cli module: the control client and the journal are imported inside
the handlers (the order model, plain dataclasses, is not heavy).
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
from fbterm.model.order_terms import order_type_for, parse_order_terms
from fbterm.model.orders import OrderError, TimeInForce

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

    p = _parser(
        sub,
        "order",
        "send an order: market, or --limit / --stop / --trail, with optional bracket exits "
        "(--tp, --sl) and terms (--tif, --gtd, --outside-rth, --algo)",
    )
    p.add_argument("side", type=str.lower, choices=("buy", "sell"), help="buy or sell")
    p.add_argument(
        "symbol",
        type=str.upper,
        help='AAPL, an option "AAPL 20261218 C200", a future "ES 20261218 FUT" or EUR/USD',
    )
    p.add_argument(
        "quantity", type=_quantity, help="shares, contracts, or units of a pair's base currency"
    )
    p.add_argument("--limit", type=_price, metavar="P", help="limit price (a limit order)")
    p.add_argument(
        "--stop",
        type=_price,
        metavar="P",
        help="stop price (with --limit: a stop-limit; with --trail: the first trail level)",
    )
    p.add_argument(
        "--strategy",
        default="manual",
        metavar="ID",
        help="book it to this strategy (default manual)",
    )
    p.add_argument(
        "--tif",
        type=str.upper,
        choices=[t.value for t in TimeInForce],
        help="time in force (default DAY; GTD needs --gtd)",
    )
    terms = p.add_argument_group(
        "terms", "the order ticket's Terms, as flags or as one --terms text; see README"
    )
    terms.add_argument("--tp", metavar="P", help="bracket: take-profit limit price")
    terms.add_argument("--sl", metavar="P", help="bracket: stop-loss stop price")
    terms.add_argument(
        "--trail", metavar="D", help="a trailing stop this far behind: an amount, or 2%% of price"
    )
    terms.add_argument(
        "--gtd", metavar="WHEN", help="good till this time (2026-12-01T16:00, UTC unless an offset)"
    )
    terms.add_argument(
        "--outside-rth", action="store_true", help="may trigger and fill outside regular hours"
    )
    terms.add_argument(
        "--algo", metavar="NAME", help="IB's Adaptive algo: adaptive or adaptive:patient|urgent"
    )
    terms.add_argument(
        "--terms", default="", metavar="TEXT", help='the ticket\'s syntax: "tp=210 sl=185 tif=IOC"'
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
    from fbterm.model import Side, Signal, instrument_from_key
    from fbterm.model.instruments import KEY_HELP

    # Refused here what no venue would take, so a typo costs no round trip: the engine checks
    # the same rules again (and everything that needs its state: symbols, strategies, risk).
    try:
        inst = instrument_from_key(args.symbol)
    except ValueError as e:
        raise CLIError(f"order: {args.symbol!r} is not {KEY_HELP}: {e}") from None
    text = _terms_text(args)
    try:
        terms = parse_order_terms(text)
        tif = _tif(args.tif, terms.tif)
        otype = order_type_for(args.limit, args.stop, trailing=terms.trailing)
        Signal(
            args.strategy,
            inst,
            Side(args.side.upper()),
            args.quantity,
            otype,
            args.limit,
            args.stop,
            tif,
            options=terms.options,
            take_profit=terms.take_profit,
            stop_loss=terms.stop_loss,
        )
    except OrderError as e:
        raise CLIError(str(e) if str(e).startswith("order") else f"order: {e}") from None
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
        tif=tif.value,
        terms=text,
    )


def _terms_text(args: argparse.Namespace) -> str:
    """The flags as one line of the ticket's terms, so one parser reads both."""
    parts = [args.terms.strip()] if args.terms.strip() else []
    for flag in ("tp", "sl", "trail", "gtd", "algo"):
        value = getattr(args, flag)
        if value is not None:
            if not value.strip() or " " in value.strip():
                raise CLIError(f"order: --{flag} needs one value, got {value!r}")
            parts.append(f"{flag}={value.strip()}")
    if args.outside_rth:
        parts.append("outside-rth")
    return " ".join(parts)


def _tif(flag: str | None, from_terms: TimeInForce | None) -> TimeInForce:
    if flag is not None and from_terms is not None and TimeInForce(flag) is not from_terms:
        raise OrderError(f"--tif {flag} contradicts the terms, which make it {from_terms.value}")
    return from_terms or TimeInForce(flag or "DAY")
