"""What a config asks of the machine, checked before the engine starts (and by ``check-config``).

The config module checks the file's values (and ``check_strategies`` the strategies); this
checks what they point at: the journal can be created or is a journal, the CSV market data
exists and parses for every traded symbol, and the control socket path is one we may serve.
Each failure is one line naming the key (``config.toml: journal.path: ...``), so ``fbterm run``
never gets as far as a traceback or a run with no data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fbterm.cli.errors import EXIT_USAGE, CLIError

if TYPE_CHECKING:
    from fbterm.config import Config


def preflight(cfg: Config) -> None:
    """Raise CLIError (one line, exit 2) for the first thing that would stop a start."""
    check_journal(cfg)
    check_socket(cfg)
    if cfg.market.source == "csv":
        check_csv_source(cfg)


def _fail(cfg: Config, key: str, reason: str) -> CLIError:
    return CLIError(f"{cfg.source}: {key}: {reason}", EXIT_USAGE)


def check_journal(cfg: Config) -> None:
    from fbterm.journal import JournalError
    from fbterm.journal_files import check_journal_path

    try:
        check_journal_path(cfg.journal_path)
    except JournalError as e:
        raise _fail(cfg, "journal.path", str(e)) from None


def check_socket(cfg: Config) -> None:
    from fbterm.control import ControlError, check_socket_path

    try:
        check_socket_path(cfg.control_socket_path)
    except ControlError as e:
        raise _fail(cfg, "control.socket", str(e)) from None


def check_csv_source(cfg: Config) -> None:
    """The file (or folder) exists and holds parseable bars for every traded symbol."""
    from pathlib import Path

    import pandas as pd

    from fbterm.data.bars import DataError
    from fbterm.data.retrieval import CSVSource

    key = "market.csv.path"
    path = Path(cfg.market.csv.path).expanduser()
    if not path.exists():
        raise _fail(cfg, key, f"{path} does not exist")
    try:
        src = CSVSource(
            path,
            cfg.market.csv.speed,
            on_bad_rows=cfg.data.on_bad_rows,  # type: ignore[arg-type]
            timezone=cfg.market.timezone,
        )
        start = pd.Timestamp("1900-01-01", tz="UTC")
        end = pd.Timestamp("2200-01-01", tz="UTC")
        for sym in cfg.market.symbols:
            bars = src.fetch_bars(sym, start, end, src.bar_size)
            if not len(bars):
                raise _fail(cfg, key, f"{path} holds no {sym} bars")
    except (DataError, OSError, ValueError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise _fail(cfg, key, text) from None
