"""The ``fbterm`` parser, dispatch, and the one place errors become output and exit codes.

Start-up must stay fast (``fbterm --help`` well under a second), so the command modules this
imports hold only their parsers; each handler imports what it needs when it runs.

Imports in the package point one way, so there is no cycle: this module imports every command
module (run, data, backtest, ops, shell); they import ``common`` and ``errors``; ``common`` imports
``errors``; and only the package's ``__init__`` imports this module. A new command group is a
module with a ``register(subparsers)``, added to ``_COMMAND_GROUPS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fbterm import __version__
from fbterm.cli import backtest, data, ops, run, shell
from fbterm.cli.common import Handler, Subparsers, add_broker_options
from fbterm.cli.errors import EXIT_INTERRUPTED, EXIT_OK, CLIError

# In this order in ``fbterm --help``.
_COMMAND_GROUPS: tuple[Callable[[Subparsers], None], ...] = (
    run.register,
    data.register,
    backtest.register,
    ops.register,
    shell.register,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. With no command, the top-level broker options configure the
    console, which is why they are on the main parser as well as on ``run``."""
    parser = argparse.ArgumentParser(
        prog="fbterm",
        description="Fahrenheit Black trading console. With no command, starts the console "
        "(paper broker and simulated market unless configured otherwise).",
    )
    parser.add_argument("--version", action="version", version=f"fbterm {__version__}")
    add_broker_options(parser)
    parser.add_argument("--theme", help="console theme (dark, light, high-contrast)")
    parser.add_argument(
        "--ascii",
        action="store_true",
        default=None,
        help="console in monochrome 7-bit ASCII (auto for TERM=dumb and NO_COLOR)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMAND_GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fbterm`` command; returns the process exit code.

    Commands raise :class:`CLIError` for anything the user can fix; it is printed here as one
    ``fbterm: ...`` line on stderr. Ctrl-C is not a crash (130), and a closed pipe
    (``fbterm log | head``) is not an error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    try:
        if handler is None:
            return run.run_console(args)
        return int(handler(args) or EXIT_OK)
    except CLIError as e:
        from fbterm.redact import redact_text

        # Errors quote what they refuse, and that may be a URL with a token in it.
        print(f"fbterm: {redact_text(str(e))}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("fbterm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
