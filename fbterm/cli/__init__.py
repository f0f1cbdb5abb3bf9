"""The ``fbterm`` command line (the console script is ``fbterm.cli:main``).

Layout, bottom up: ``errors`` (CLIError, exit codes), ``common`` (shared options, finding the
config), one module per command group (``run``, ``data``, ``backtest``, ``ops``), each with a
``register(subparsers)``, and ``dispatch`` (parser, dispatch, error reporting), which alone
imports the command modules; none of them imports ``dispatch``, so there is no cycle. (It is
not called ``main``: the package re-exports the function ``main``, which would hide a
submodule of that name from ``import fbterm.cli.main as m`` and from monkeypatch targets.)

This package is the composition root, the only code that ties the engine, the console and the
tools together, so nothing else in fbterm imports it (``python -m fbterm`` only calls ``main``).
"""

from __future__ import annotations

from fbterm.cli.dispatch import main

__all__ = ["main"]
