"""Operator sub-commands: ``fbterm log``, ``fbterm update``, ``fbterm alert-test``.

Import-light on purpose (``fbterm --help`` imports every command module): only argparse here,
the real work (fbterm.ops, fbterm.control) is imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.cli.common import Subparsers, resolve_config
from fbterm.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CLIError

if TYPE_CHECKING:
    from fbterm.ops.activity import ActivityEntry

LEVELS = ("debug", "info", "warning", "error")


def register(sub: Subparsers) -> None:
    """Add log, update and alert-test to the ``fbterm`` parser."""
    p = sub.add_parser(
        "log", help="show the activity log (commands, orders, alerts, strategy changes)"
    )
    p.add_argument(
        "--config", metavar="PATH", default=argparse.SUPPRESS, help="config file (finds the log)"
    )
    p.add_argument(
        "--file", metavar="PATH", help="read this log file instead of the configured one"
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new entries (Ctrl-C stops)"
    )
    p.add_argument("--level", choices=LEVELS, help="only entries at this level or above")
    p.add_argument(
        "--kind",
        action="append",
        metavar="K",
        help="only entries of this kind (order, alert, command, strategy, update, ...); repeatable",
    )
    p.add_argument(
        "-n",
        "--tail",
        type=int,
        default=50,
        metavar="N",
        help="show the last N matching entries first (default 50; 0 for none)",
    )
    p.add_argument(
        "--all", action="store_true", help="show every matching entry, not just the tail"
    )
    p.add_argument("--json", action="store_true", help="print raw JSON lines")
    p.set_defaults(handler=cmd_log)

    p = sub.add_parser(
        "update", help="hot-update a strategy or the strategies config of a running fbterm"
    )
    p.add_argument("--strategy", metavar="NAME", help="strategy to update")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help='new parameter value (TOML syntax: 5, 1.2, true, "text"); repeatable',
    )
    p.add_argument(
        "--code", metavar="MODULE:CLASS", help="re-load the strategy's code from this class"
    )
    p.add_argument(
        "--config",
        dest="update_config",
        metavar="PATH",
        help="apply the [[strategies]] of this config file",
    )
    p.add_argument("--socket", metavar="PATH", help="control socket (default: from the config)")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the engine (default 60)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_update)

    p = sub.add_parser("alert-test", help="send a test alert through every enabled channel, now")
    p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file")
    p.add_argument("--severity", choices=("info", "warning", "error", "critical"), default="info")
    p.add_argument("--message", default="This is a test alert from fbterm.", help="alert body")
    p.set_defaults(handler=cmd_alert_test)


# ----------------------------------------------------------------------------------- log


def cmd_log(args: argparse.Namespace) -> int:
    """Print the activity log, filtered; with --follow, keep printing as the engine writes."""
    from fbterm.ops.activity import follow_activity_log, read_activity_log

    path = Path(args.file) if args.file else resolve_config(args).activity_log_path
    if args.tail < 0:
        raise CLIError("--tail must be >= 0")
    if not path.exists() and not args.follow:
        raise CLIError(f"no activity log at {path}", EXIT_ERROR)

    def show(entry: ActivityEntry) -> None:
        sys.stdout.write((entry.to_json() if args.json else entry.format()) + "\n")

    entries = read_activity_log(
        path, level=args.level, kinds=args.kind, tail=None if args.all else args.tail
    )
    for e in entries:
        show(e)
    sys.stdout.flush()
    if args.follow:
        try:
            for e in follow_activity_log(path, level=args.level, kinds=args.kind):
                show(e)
                sys.stdout.flush()
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK


# -------------------------------------------------------------------------------- update


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v`` with v in TOML syntax; a bare word that isn't TOML is taken as a string."""
    import tomllib

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CLIError(f"--param wants KEY=VALUE, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _socket_path(args: argparse.Namespace) -> Path:
    """The running engine's control socket: --socket, else the one its config names."""
    if args.socket:
        return Path(args.socket).expanduser()
    if getattr(args, "config", None) is None and args.update_config:
        # The config being applied is the running instance's config: it names the socket too.
        args = argparse.Namespace(**{**vars(args), "config": args.update_config})
    return resolve_config(args).control_socket_path


def cmd_update(args: argparse.Namespace) -> int:
    """Ask a running engine, over its control socket, to swap a strategy's params or code (or
    apply a config's strategies). The file is validated here first so a typo fails at once."""
    import json

    from fbterm.control import ControlError, send_request

    if args.update_config and (args.strategy or args.param or args.code):
        raise CLIError("give either --config or --strategy (with --param/--code), not both")
    if not args.update_config and not args.strategy:
        raise CLIError(
            "nothing to update: give --strategy NAME (with --param/--code) or --config PATH"
        )
    if args.strategy and not (args.param or args.code):
        raise CLIError("--strategy needs --param K=V and/or --code MODULE:CLASS")
    if args.code is not None and ":" not in args.code:
        raise CLIError(f"--code must be 'package.module:ClassName', got {args.code!r}")
    request: dict[str, Any] = {}
    if args.update_config:
        cfg_path = Path(args.update_config).expanduser()
        if not cfg_path.is_file():
            raise CLIError(f"{cfg_path}: file not found")
        from fbterm.config import ConfigError, load_config

        try:
            load_config(cfg_path)  # refuse a broken file here, with the file's own message
        except ConfigError as e:
            raise CLIError(str(e)) from None
        request["config"] = str(cfg_path.resolve())
    else:
        request["strategy"] = args.strategy
        request["params"] = dict(parse_param(p) for p in args.param)
        if args.code:
            request["code"] = args.code
    sock = _socket_path(args)
    try:
        result = send_request(sock, "update", timeout=args.timeout, **request)
    except ControlError as e:
        raise CLIError(str(e), EXIT_ERROR) from None
    if args.json:
        print(json.dumps(result, indent=2))
    elif result.get("ok"):
        print(result.get("message", "updated"))
    if not result.get("ok"):
        if args.json:
            return EXIT_ERROR
        raise CLIError(result.get("message", "update failed"), EXIT_ERROR)
    return EXIT_OK


# ---------------------------------------------------------------------------- alert-test


def cmd_alert_test(args: argparse.Namespace) -> int:
    """Send one alert through every enabled channel now, so an operator learns a channel is
    misconfigured before a real alert needs it."""
    import tempfile

    from fbterm.ops.diagnostics import Diagnostics

    cfg = resolve_config(args)
    # A scratch outbox and log: a failed test must not be retried later by the running engine,
    # and this process must not rotate the engine's activity log under it.
    with tempfile.TemporaryDirectory(prefix="fbterm-alert-test-") as tmp:
        diag = Diagnostics(
            cfg.alerts, Path(tmp) / "activity.jsonl", Path(tmp) / "outbox.sqlite", start=False
        )
        try:
            if not diag.channels:
                raise CLIError(
                    "no alert channel is enabled: set alerts.email.enabled or alerts.sms.enabled",
                    EXIT_USAGE,
                )
            results = diag.deliver_now(args.severity, "test alert", args.message)
        finally:
            diag.close(flush=False)
    if not results:
        raise CLIError(
            "alert channels are enabled but have no recipients/URL configured", EXIT_USAGE
        )
    failed = 0
    for dest, err in results.items():
        if err is None:
            print(f"ok      {dest}")
        else:
            failed += 1
            print(f"FAILED  {dest}: {err}")
    return EXIT_ERROR if failed else EXIT_OK
