"""The ``fbterm`` command.

Start-up must stay fast (``fbterm --help`` well under a second), so this module imports only
the standard library; each sub-command imports what it needs when it runs. Sub-commands live
next to the code they drive and register themselves through ``register(subparsers)`` functions
listed in ``_REGISTRARS``, each in a module that is itself import-light.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fbterm import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

# module:function pairs; each adds its sub-commands to the parser.
_REGISTRARS = (
    "fbterm.cli_core:register",
    "fbterm.data.cli:register",
    "fbterm.backtest.cli:register",
    "fbterm.ops_cli:register",
)


class CLIError(Exception):
    """An error to print as one line (no traceback) with an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def add_broker_options(p: argparse.ArgumentParser) -> None:
    """Options that pick and reach the venue; shared by the console and ``run``."""
    g = p.add_argument_group("broker")
    g.add_argument(
        "--config", metavar="PATH", help="config file (default: ./config.toml if present)"
    )
    g.add_argument("--broker", choices=("paper", "ib"), help="execution venue (overrides config)")
    g.add_argument("--host", help="IB Gateway/TWS host")
    g.add_argument(
        "--port", type=int, help="IB Gateway/TWS port (4002 paper gateway, 7497 TWS paper)"
    )
    g.add_argument("--client-id", type=int, dest="client_id", help="IB API client id")
    g.add_argument("--account", help="IB account id")
    g.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        dest="read_only",
        help="connect without order permissions",
    )
    g.add_argument("--journal", metavar="PATH", help="journal database (overrides config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbterm",
        description="Fahrenheit Black trading console. With no command, starts the console "
        "(paper broker and simulated market unless configured otherwise).",
    )
    parser.add_argument("--version", action="version", version=f"fbterm {__version__}")
    add_broker_options(parser)
    parser.add_argument("--theme", help="console theme (dark, light, high-contrast)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for spec in _REGISTRARS:
        mod_name, func = spec.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                continue  # a part of fbterm not built yet
            raise
        getattr(mod, func)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    try:
        if handler is None:
            from fbterm.cli_core import run_console

            return run_console(args)
        return int(handler(args) or 0)
    except CLIError as e:
        print(f"fbterm: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("fbterm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
