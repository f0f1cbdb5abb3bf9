"""Exit codes and the one error type every ``fbterm`` command raises.

This is the bottom of the ``fbterm.cli`` package: every other cli module imports it and it
imports nothing of fbterm, so a command can fail cleanly without knowing who prints the
failure. Only :func:`fbterm.cli.dispatch.main` turns a :class:`CLIError` into output and an exit
code; commands raise, they never print errors or call ``sys.exit`` themselves.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
"""The command was fine but the work failed (venue unreachable, file unwritable, alert failed)."""
EXIT_USAGE = 2
"""The command line or the config is wrong; argparse uses 2 for the same reason."""
EXIT_REFUSED = 3
"""The running engine answered and refused (the risk gate, an unknown order, already halted)."""
EXIT_NO_ENGINE = 4
"""A command that needs a running engine found none on the control socket."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports a process killed by SIGINT (128 + 2)."""


class CLIError(Exception):
    """An error to print as one line (no traceback) with an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def first_line_error(e: Exception, code: int = EXIT_USAGE) -> CLIError:
    """``e`` as a one-line CLIError: its first line, or its type when it has no message.

    Library errors (bad CSV rows, unknown bar sizes) can carry detail over several lines; the
    command line shows the headline only.
    """
    text = str(e)
    return CLIError(text.splitlines()[0] if text else type(e).__name__, code)
