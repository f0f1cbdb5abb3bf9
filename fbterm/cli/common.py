"""What several ``fbterm`` commands share: the broker options and finding the config.

Import-light like every cli module (``fbterm --help`` imports them all): fbterm.config is
imported inside the functions, when a command actually needs a config.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from fbterm.cli.errors import CLIError

if TYPE_CHECKING:
    from fbterm.config import Config

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``register(subparsers)`` receives: the ``fbterm`` parser's sub-command table."""

Handler: TypeAlias = Callable[[argparse.Namespace], int]
"""A sub-command: parsed arguments in, exit code out (failures are raised as CLIError)."""


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
        help="refuse every new order, modification and cancel (any venue; IB connects read-only)",
    )
    g.add_argument("--journal", metavar="PATH", help="journal database (overrides config)")


def config_path(explicit: str | None) -> str | None:
    """The config file to read: the one named, else ./config.toml if there is one, else None
    (built-in defaults). One rule for every command, so they all read the same file."""
    if explicit is None and Path("config.toml").is_file():
        return "config.toml"
    return explicit


def load_config_file(path: str | None) -> Config:
    """``load_config`` with a bad file reported as a one-line usage error, not a traceback."""
    from fbterm.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        raise CLIError(str(e)) from None


def resolve_config(args: argparse.Namespace) -> Config:
    """Config from --config (or ./config.toml), with command-line overrides applied."""
    from fbterm.config import ConfigError, with_overrides

    cfg = load_config_file(
        config_path(getattr(args, "config", None) or getattr(args, "path", None))
    )
    try:
        cfg = with_overrides(
            cfg,
            **{
                "broker.kind": getattr(args, "broker", None),
                "broker.ib.host": getattr(args, "host", None),
                "broker.ib.port": getattr(args, "port", None),
                "broker.ib.client_id": getattr(args, "client_id", None),
                "broker.ib.account": getattr(args, "account", None),
                "broker.read_only": getattr(args, "read_only", None),
                "journal.path": getattr(args, "journal", None),
                "ui.theme": getattr(args, "theme", None),
                "ui.ascii": "on" if getattr(args, "ascii", None) else None,
            },
        )
        if (
            cfg.broker.kind == "ib"
            and getattr(args, "broker", None) == "ib"
            and cfg.market.source == "simulated"
        ):
            # Asking for IB on the command line means IB's market data too.
            cfg = with_overrides(cfg, **{"market.source": "ib"})
    except ConfigError as e:
        raise CLIError(str(e)) from None
    return cfg
