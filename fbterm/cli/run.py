"""``fbterm check-config``, ``fbterm strategies``, ``fbterm run`` and the console (no command).

These are the commands that build the whole engine from a config, so this is the one module
that reaches the engine's runners (``fbterm.engine.headless``) and the console (``fbterm.tui.app``);
both are imported inside the handlers, keeping ``fbterm --help`` free of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fbterm.cli.common import Subparsers, add_broker_options, resolve_config
from fbterm.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CLIError

if TYPE_CHECKING:
    from fbterm.config import Config


def register(sub: Subparsers) -> None:
    """Add check-config, strategies and run to the ``fbterm`` parser."""
    p = sub.add_parser("check-config", help="validate a config file and print the effective config")
    p.add_argument(
        "path", nargs="?", help="config file (default: ./config.toml or built-in defaults)"
    )
    p.set_defaults(handler=cmd_check_config)

    p = sub.add_parser(
        "strategies", help="list strategies and their parameters (types, defaults, bounds)"
    )
    p.add_argument(
        "spec", nargs="?", help="one strategy: a built-in name or package.module:ClassName"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_strategies)

    p = sub.add_parser("run", help="run the engine (headless with --headless)")
    add_broker_options(p)
    p.add_argument("--headless", action="store_true", help="no console: run, then print a summary")
    p.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds, > 0 (default: until Ctrl-C)",
    )
    p.add_argument(
        "--ascii",
        action="store_true",
        default=None,
        help="console in monochrome 7-bit ASCII (auto for TERM=dumb and NO_COLOR)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_run)


def positive_seconds(text: str) -> float:
    """``--duration``: a number of seconds > 0 (0 or less would mean "forever" or "never")."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return v


def check_ui_keys(cfg: Config) -> None:
    """The console's key map and confirmations, checked by the console's own rule, so a
    ``[ui.keys]`` entry the console would refuse is refused here too."""
    from fbterm.tui.keys import KeymapError, check_ui_keys

    try:
        check_ui_keys(cfg)
    except KeymapError as e:
        raise CLIError(f"{cfg.source}: {e}") from None


def check_strategies(cfg: Config) -> None:
    """Build every configured strategy once, so a bad class or parameter stops start-up with
    the key path (``config.toml: strategies[1].params.fast: ...``), not a traceback later;
    a window longer than the history the engine keeps is refused the same way."""
    from fbterm.strategies import StrategyError, create_strategy
    from fbterm.strategies.base import history_problem

    for i, sc in enumerate(cfg.strategies):
        try:
            strategy = create_strategy(sc.cls, sc.name, sc.params)
            problem = history_problem(strategy, cfg.market.history_bars)
            if problem is not None:
                name, reason = problem
                key = f"strategies[{i}].params" + (f".{name}" if name else "")
                raise CLIError(f"{cfg.source}: {key}: {reason}")
        except StrategyError as e:
            text = str(e)
            key = f"strategies[{i}].class"
            if text.startswith("parameter "):
                name = text.split(":", 1)[0].removeprefix("parameter ").removeprefix(f"{sc.name}.")
                key = f"strategies[{i}].params.{name}"
                text = text.split(":", 1)[1].strip()
            raise CLIError(f"{cfg.source}: {key}: {text}") from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print the effective config (defaults filled in) so an operator sees what will run,
    after building every strategy so a bad parameter fails here rather than at start-up."""
    from fbterm.cli.preflight import preflight
    from fbterm.config import dump_toml, to_dict
    from fbterm.redact import redact_value

    cfg = resolve_config(args)
    check_strategies(cfg)
    preflight(cfg)
    check_ui_keys(cfg)
    sys.stdout.write(f"# {cfg.source}: OK\n")
    sys.stdout.write(f"# journal: {cfg.journal_path}\n# data dir: {cfg.data_dir}\n")
    # What is printed may be pasted into a ticket: a webhook's token stays in the file.
    sys.stdout.write(dump_toml(redact_value(to_dict(cfg))))
    return EXIT_OK


def cmd_strategies(args: argparse.Namespace) -> int:
    """List strategies with their parameters: what a config's ``params`` table may contain."""
    import json

    from fbterm.strategies import STRATEGIES, StrategyError, load_strategy_class

    try:
        classes = [load_strategy_class(args.spec)] if args.spec else list(STRATEGIES.values())
    except StrategyError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(
            json.dumps(
                {
                    c.name or c.__name__: {
                        "description": c.description,
                        "params": c.describe_params(),
                    }
                    for c in classes
                },
                indent=2,
                default=str,
            )
        )
        return EXIT_OK
    for c in classes:
        doc = (
            c.description or (c.__doc__ or "").strip().splitlines()[0]
            if (c.description or c.__doc__)
            else ""
        )
        print(f"{c.name or c.__name__}: {doc}")
        for p in c.params:
            bounds = []
            if p.min is not None:
                bounds.append(f">= {p.min:g}")
            if p.max is not None:
                bounds.append(f"<= {p.max:g}")
            extra = f"  ({', '.join(bounds)})" if bounds else ""
            print(f"  {p.name:<14}{p.type.__name__:<7}default {p.default!s:<8}{p.help}{extra}")
        print()
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the engine: headless (summary at the end) or, without --headless, the console."""
    from fbterm.cli.preflight import preflight

    cfg = resolve_config(args)
    check_strategies(cfg)
    preflight(cfg)
    if not args.headless:
        return run_console(args, cfg)
    from fbterm.engine import run_headless

    with startup_failures(cfg):
        return run_headless(cfg, duration=args.duration, as_json=args.json)


def run_console(args: argparse.Namespace, cfg: Config | None = None) -> int:
    """The console; also what ``fbterm`` with no command runs. Refuses a non-terminal stdout
    (unless FBTERM_FORCE_TUI is set) instead of drawing escape codes into a pipe."""
    if cfg is None:
        from fbterm.cli.preflight import preflight

        cfg = resolve_config(args)
        check_strategies(cfg)
        preflight(cfg)
    if not sys.stdout.isatty() and not os.environ.get("FBTERM_FORCE_TUI"):
        raise CLIError(
            "the console needs a terminal; use 'fbterm run --headless' without one", EXIT_USAGE
        )
    try:
        from fbterm.tui.app import run_app
    except ModuleNotFoundError as e:  # pragma: no cover - only before the console exists
        raise CLIError(f"the console is not available: {e}", EXIT_ERROR) from None
    with startup_failures(cfg):
        return run_app(cfg)


@contextlib.contextmanager
def startup_failures(cfg: Config) -> Iterator[None]:
    """What can still stop a start after the checks (the venue, the journal, the disk, a slow
    start) as one line: ``fbterm: ...`` and exit 1, never a traceback."""
    import sqlite3

    from fbterm.engine import EngineFailed
    from fbterm.journal import JournalError

    try:
        yield
    # ConnectionError is an OSError; EngineFailed: the journal is in use by another engine or
    # a journal write failed while running.
    except (OSError, JournalError, EngineFailed, TimeoutError) as e:
        raise CLIError(str(e) or type(e).__name__, EXIT_ERROR) from None
    except sqlite3.DatabaseError as e:
        raise CLIError(f"{cfg.journal_path}: {e}", EXIT_ERROR) from None
