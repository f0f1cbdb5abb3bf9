"""``fbterm data synth|show|clean|list``. Import-light: pandas is imported inside the handlers.

These commands read the config only for defaults (data dir, time zone, cleaning policy), so
they load it as written: the broker overrides of ``run`` do not apply here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from fbterm.cli.common import Subparsers, config_path, load_config_file
from fbterm.cli.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CLIError, first_line_error

if TYPE_CHECKING:
    import pandas as pd

    from fbterm.config import Config
    from fbterm.data.csvparse import BadRows, LoadReport
    from fbterm.data.processing import GapPolicy


def register(sub: Subparsers) -> None:
    """Add data and its actions (synth, show, clean, list) to the ``fbterm`` parser."""
    p = sub.add_parser("data", help="make, inspect, clean and list bar files")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = dsub.add_parser("synth", help="write synthetic bars (seeded GBM) to a CSV file")
    s.add_argument("--symbol", default="SYN")
    s.add_argument(
        "--bars", type=int, default=1000, metavar="N", help="number of bars (default 1000)"
    )
    s.add_argument(
        "--bar-size", default="1d", dest="bar_size", help="1m, 5m, 1h, 1d, 1w... (default 1d)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--start", default="2020-01-01", help="first bar (default 2020-01-01, UTC)")
    s.add_argument("--price", type=float, default=100.0, help="starting price (default 100)")
    s.add_argument("--volatility", type=float, default=0.3, help="annualised (default 0.3)")
    s.add_argument(
        "--out",
        metavar="FILE.csv",
        help="output file (default: the data dir's <SYMBOL>/<bar size>.csv)",
    )
    s.add_argument("--data-dir", dest="data_dir", help="data directory (default: from config)")
    s.set_defaults(handler=cmd_synth)

    s = dsub.add_parser("show", help="summarise a bar file: rows, range, gaps, bad rows")
    s.add_argument("path", metavar="FILE.csv")
    s.add_argument(
        "--timezone", help="zone of timestamps without one (default: config's market.timezone)"
    )
    s.add_argument(
        "--bar-size", dest="bar_size", help="expected bar size (default: the most common spacing)"
    )
    s.add_argument("--session", help="exchange calendar for gaps, e.g. XNYS")
    s.add_argument(
        "--head", type=int, default=3, metavar="N", help="show the first and last N bars"
    )
    s.set_defaults(handler=cmd_show)

    s = dsub.add_parser("clean", help="load, clean and write bars")
    s.add_argument("inp", metavar="IN.csv")
    s.add_argument("out", metavar="OUT.csv")
    s.add_argument(
        "--on-bad-rows",
        dest="on_bad_rows",
        choices=("error", "drop", "repair"),
        help="what to do with bad rows (default: config's data.on_bad_rows)",
    )
    s.add_argument(
        "--gap-policy",
        dest="gap_policy",
        choices=("keep", "drop", "ffill"),
        help="default: config's data.gap_policy",
    )
    s.add_argument(
        "--outlier-sigma",
        dest="outlier_sigma",
        type=float,
        help="flag moves beyond this many robust std devs (default: config)",
    )
    s.add_argument("--session", help="keep only regular hours of this exchange calendar, e.g. XNYS")
    s.add_argument("--bar-size", dest="bar_size", help="expected bar size for gap filling")
    s.add_argument("--resample", metavar="BAR_SIZE", help="write coarser bars, e.g. 1h or 1d")
    s.add_argument("--timezone", help="zone of timestamps without one (default: config)")
    s.add_argument(
        "--adj-close",
        dest="adj_close",
        action="store_true",
        help="scale prices by Adj Close / Close",
    )
    s.set_defaults(handler=cmd_clean)

    s = dsub.add_parser("list", help="list stored bar files")
    s.add_argument("--data-dir", dest="data_dir", help="data directory (default: from config)")
    s.set_defaults(handler=cmd_list)

    for action in dsub.choices.values():
        action.add_argument("--config", metavar="PATH", help="config file (default: ./config.toml)")


def _config(args: argparse.Namespace) -> Config:
    """The config named by --config (or ./config.toml, or the defaults), without overrides."""
    return load_config_file(config_path(getattr(args, "config", None)))


def cmd_synth(args: argparse.Namespace) -> int:
    """Write seeded synthetic bars: reproducible data for trying strategies and backtests."""
    from fbterm.data.simulated import synth_bars
    from fbterm.data.storage import DataStorage

    cfg = _config(args)
    if args.bars < 1:
        raise CLIError(f"--bars must be >= 1, got {args.bars}")
    try:
        df = synth_bars(
            args.bars, bar_size=args.bar_size, seed=args.seed, start_price=args.price,
            start=args.start, symbol=args.symbol, volatility=args.volatility,
        )  # fmt: skip
    except ValueError as e:
        raise first_line_error(e) from None
    # A file the user names gets no binary cache beside it; the data dir does.
    storage = DataStorage(args.data_dir or cfg.data_dir, cfg.market.timezone, cache=not args.out)
    try:
        out = Path(args.out) if args.out else storage.path_for(args.symbol, args.bar_size)
        storage.save_to_csv(df, out)
    except OSError as e:
        raise CLIError(f"{args.out}: cannot write: {e.strerror}", EXIT_ERROR) from None
    except ValueError as e:
        raise first_line_error(e) from None
    print(
        f"wrote {len(df):,} {args.bar_size} bars of {args.symbol} to {out} "
        f"({df.index[0]:%Y-%m-%d %H:%M} .. {df.index[-1]:%Y-%m-%d %H:%M} UTC)"
    )
    return EXIT_OK


def _load(
    path: str, on_bad_rows: BadRows, tz: str, adj_close: bool = False
) -> tuple[pd.DataFrame, LoadReport]:
    """Bars and the report of their bad rows, with a bad file as a one-line usage error."""
    from fbterm.data.bars import DataError
    from fbterm.data.storage import DataStorage

    # No binary cache for one-off files: the CLI should leave nothing behind next to them.
    storage = DataStorage(Path(path).parent, tz, cache=False)
    try:
        return storage.load_from_csv(
            path,
            on_bad_rows=on_bad_rows,
            report=True,
            adj_close=adj_close,
        )
    except DataError as e:
        raise CLIError(str(e), EXIT_USAGE) from None


def cmd_show(args: argparse.Namespace) -> int:
    """Summarise a bar file (range, gaps, outliers, bad rows) without changing it."""
    from fbterm.data.processing import find_gaps, infer_bar_step, outlier_mask

    cfg = _config(args)
    tz = args.timezone or cfg.market.timezone
    df, rep = _load(args.path, "drop", tz)
    w = sys.stdout.write
    w(f"{args.path}\n")
    w(f"  rows      {len(df):,} good of {rep.rows_read:,} read\n")
    if not len(df):
        w("  range     (empty)\n")
    else:
        step = infer_bar_step(cast("pd.DatetimeIndex", df.index))  # bars are time-indexed
        w(f"  range     {df.index[0]} .. {df.index[-1]}\n")
        w(f"  bar step  {step if step is not None else '-'}\n")
        try:
            gaps = find_gaps(df, args.bar_size, timezone=tz, session=args.session)
        except ValueError as e:
            raise first_line_error(e) from None
        missing = int(gaps["missing"].sum()) if len(gaps) else 0
        w(f"  gaps      {len(gaps):,} ({missing:,} missing bars)\n")
        for g in gaps.head(5).itertuples():
            w(f"            {g.start} -> {g.end}: {g.missing} missing\n")
        out = outlier_mask(df["close"], cfg.data.outlier_sigma)
        w(f"  outliers  {int(out.sum()):,} (moves beyond {cfg.data.outlier_sigma:g} robust sd)\n")
        w(
            f"  close     first {df['close'].iloc[0]:g}, last {df['close'].iloc[-1]:g}, "
            f"min {df['low'].min():g}, max {df['high'].max():g}\n"
        )
    w(f"  bad rows  {rep.bad_rows:,}{': ' + rep.summary() if rep.bad_rows else ''}\n")
    for ex in rep.examples[:10]:
        w(f"            {ex}\n")
    if rep.sorted:
        w("  note      rows were not in time order\n")
    if rep.layout:
        w(f"  layout    {rep.layout}\n")
    for note in rep.notes:
        w(f"  clock     {note}\n")
    if len(df) and args.head > 0:
        import pandas as pd

        with pd.option_context("display.width", 120, "display.max_columns", 10):
            w("\n" + df.head(args.head).to_string() + "\n")
            if len(df) > args.head:
                w("...\n" + df.tail(args.head).to_string(header=False, index_names=False) + "\n")
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    """Load, clean (and optionally resample) bars into a new file; the input is left alone."""
    from fbterm.data.bars import DataError
    from fbterm.data.processing import clean_data, resample_bars
    from fbterm.data.storage import DataStorage

    cfg = _config(args)
    tz = args.timezone or cfg.market.timezone
    # argparse and the config both check these against the same choices.
    on_bad_rows = cast("BadRows", args.on_bad_rows or cfg.data.on_bad_rows)
    gap_policy = cast("GapPolicy", args.gap_policy or cfg.data.gap_policy)
    df, rep = _load(args.inp, on_bad_rows, tz, args.adj_close)
    try:
        cleaned, crep = clean_data(
            df, gap_policy=gap_policy,
            outlier_sigma=args.outlier_sigma or cfg.data.outlier_sigma, session=args.session,
            bar_size=args.bar_size, timezone=tz, report=True,
        )  # fmt: skip
        if args.resample:
            cleaned = resample_bars(cleaned, args.resample, timezone=tz)
        DataStorage(Path(args.out).parent, tz, cache=False).save_to_csv(cleaned, args.out)
    except DataError as e:
        raise CLIError(str(e), EXIT_USAGE) from None
    except ValueError as e:
        raise first_line_error(e) from None
    except OSError as e:
        raise CLIError(f"{args.out}: cannot write: {e.strerror}", EXIT_ERROR) from None
    print(f"{args.inp}: {rep.rows_read:,} rows read; bad rows: {rep.summary()}")
    if rep.layout:
        print(f"layout: {rep.layout}")
    for note in rep.notes:
        print(f"clock: {note}")
    print(f"cleaning: {crep.summary()}")
    if len(crep.outliers):
        shown = ", ".join(str(t) for t in crep.outliers[:5])
        print(f"outliers flagged (kept): {shown}{' ...' if len(crep.outliers) > 5 else ''}")
    print(f"wrote {len(cleaned):,} bars to {args.out}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """List the bar files stored under the data dir, with their rows and time range."""
    from fbterm.data.bars import DataError
    from fbterm.data.storage import DataStorage

    cfg = _config(args)
    storage = DataStorage(args.data_dir or cfg.data_dir, cfg.market.timezone)
    try:
        items = storage.list()
    except DataError as e:
        raise CLIError(str(e), EXIT_USAGE) from None
    if not items:
        print(f"no bar files under {storage.data_dir}")
        return EXIT_OK
    print(f"{storage.data_dir}")
    print(f"  {'SYMBOL':<12} {'BAR':>4} {'ROWS':>10}  {'START':<25} {'END':<25}")
    for it in items:
        start = str(it.start) if it.start is not None else "-"
        end = str(it.end) if it.end is not None else "-"
        print(f"  {it.symbol:<12} {it.bar_size:>4} {it.rows:>10,}  {start:<25} {end:<25}")
    return EXIT_OK
