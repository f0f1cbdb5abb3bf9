"""``fbterm backtest``: one backtest or a parameter sweep from a CSV of bars.

Import-light: ``register`` only builds the parser; the handler imports pandas and the
backtester when it runs, so ``fbterm --help`` stays fast.

Backtest, strategy and data errors are the user's input (a bad file, an unknown parameter), so
they become one-line usage errors here; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fbterm.cli.common import Subparsers
from fbterm.cli.errors import EXIT_OK, EXIT_USAGE, CLIError, first_line_error

if TYPE_CHECKING:
    from fbterm.config import StrategyRiskConfig


def register(subparsers: Subparsers) -> None:
    """Add backtest to the ``fbterm`` parser."""
    from fbterm.backtest.conventions import HELP

    p = subparsers.add_parser(
        "backtest",
        help="backtest a strategy on a CSV of bars (or sweep its parameters)",
        description="Backtest a strategy on historical bars. Signals at bar t fill at bar t+1's "
        "open; commission as a fraction of value (or 'ib' per share), charged on entry and exit.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE.csv",
        help="bars CSV (any layout DataStorage loads); with --config, a folder of SYMBOL.csv",
    )
    p.add_argument(
        "--strategy", default="sma_cross", help="built-in name or package.module:ClassName"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameter (repeatable)",
    )
    p.add_argument("--cash", type=float, default=10_000.0, help="starting cash (default 10000)")
    p.add_argument(
        "--commission", default="0.0", help="fraction of traded value (0.002) or 'ib' (default 0)"
    )
    p.add_argument("--sizing", default="all_in", choices=("fixed", "cash", "fraction", "all_in"))
    p.add_argument(
        "--size",
        type=float,
        default=None,
        metavar="VALUE",
        help="sizing value: units (fixed), currency (cash), share of equity (fraction)",
    )
    p.add_argument(
        "--mode",
        default="fast",
        choices=("fast", "replay"),
        help="fast: analyze once (default); replay: bar by bar as live",
    )
    p.add_argument(
        "--on-bad-rows",
        choices=("error", "drop", "repair"),
        default="error",
        dest="on_bad_rows",
        help="bad CSV rows: refuse the file (default), drop them, or repair what can be",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--plot", action="store_true", help="draw equity, price/trades and returns in the terminal"
    )
    p.add_argument(
        "--out", metavar="DIR", help="write trades.csv, equity.csv, fills.csv, report.html there"
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=START:STOP[:STEP]",
        help="sweep a parameter (repeatable; the grid runs on all cores)",
    )
    p.add_argument("--rank", default="sharpe", help="sweep: metric to rank by (default sharpe)")
    p.add_argument(
        "--workers", type=int, default=None, help="sweep: processes (default: all cores)"
    )
    p.add_argument(
        "--cluster", metavar="tcp://HOST:8786", help="sweep: run the grid on a Dask cluster"
    )
    # Research (sweeps, walk-forward, portfolios): one block, options and handling in research.py.
    from fbterm.cli import research

    research.add_arguments(p)
    _add_conventions_options(p)
    p.set_defaults(handler=run)


def _add_conventions_options(p: argparse.ArgumentParser) -> None:
    """Stops with units, the file's clock, the calendar and which statistics (issue 15)."""
    g = p.add_argument_group("stops, time and statistics (see conventions below)")
    amount = "5 or 5%% (percent of entry), 2.5pt (price points per unit), $300 (money)"
    g.add_argument("--stop-loss", dest="stop_loss", metavar="AMOUNT", help=f"stop-loss: {amount}")
    g.add_argument(
        "--take-profit", dest="take_profit", metavar="AMOUNT", help=f"take-profit: {amount}"
    )
    g.add_argument(
        "--trailing-stop",
        dest="trailing_stop",
        metavar="AMOUNT",
        help="trailing stop from the best price since entry: 3%% or 1.5pt",
    )
    g.add_argument(
        "--timezone",
        metavar="ZONE",
        help="zone of timestamps without one, e.g. UTC (default: config's market.timezone)",
    )
    g.add_argument(
        "--calendar",
        metavar="NAME",
        help="exchange calendar for intraday days, e.g. XNYS, 24/7 (default: config's "
        "market.calendar)",
    )
    g.add_argument(
        "--adjust", action="store_true", help="use the Adj Close column (splits, dividends)"
    )
    g.add_argument(
        "--stats",
        choices=("fbterm", "backtesting"),
        default="fbterm",
        help="statistics' definitions: fbterm's (default) or backtesting.py 0.6.6's",
    )


class _Bar:
    """A one-line progress bar, drawn only when stdout is a terminal and the run is long."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.last = -1

    def __call__(self, frac: float) -> None:
        if not self.enabled or time.monotonic() - self.t0 < 0.5:
            return
        pct = int(frac * 100)
        if pct == self.last:
            return
        self.last = pct
        width = 30
        done = int(width * frac)
        sys.stderr.write(f"\r{self.label} [{'#' * done}{'.' * (width - done)}] {pct:3d}%")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.last >= 0:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def _params(items: list[str]) -> dict[str, str]:
    """--param NAME=VALUE pairs, values left as text: the strategy converts and checks them."""
    out: dict[str, str] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise CLIError(f"--param {it!r}: expected NAME=VALUE", EXIT_USAGE)
        out[k.strip()] = v.strip()
    return out


def run(args: argparse.Namespace) -> int:
    """``fbterm backtest``: one run or a sweep, with the user's input errors made one line."""
    try:
        return _run(args)
    except CLIError:
        raise
    except Exception as e:
        from fbterm.backtest.inputs import BacktestError
        from fbterm.strategies.base import StrategyError

        if isinstance(e, BacktestError | StrategyError):
            raise first_line_error(e) from None
        from fbterm.data.bars import DataError

        if isinstance(e, DataError):
            raise CLIError(str(e).splitlines()[0], EXIT_USAGE) from None
        raise


def _run(args: argparse.Namespace) -> int:
    """The work of ``run``: validate the options, then sweep or run once and report."""
    from fbterm.backtest.backtester import CustomBacktester
    from fbterm.backtest.inputs import make_commission, make_sizing
    from fbterm.backtest.jobs import load_bars_report
    from fbterm.backtest.metrics import METRIC_LABELS, metrics_to_jsonable
    from fbterm.strategies import create_strategy, load_strategy_class

    opts = _check_options(args)
    params = _params(args.param)
    load_strategy_class(args.strategy)
    commission = make_commission(args.commission)
    sizing = make_sizing(args.sizing, args.size)
    tty = sys.stdout.isatty()
    notes: list[str] = []
    from fbterm.cli import research

    if research.handles(args):
        return research.run(args, params)

    bars, report = load_bars_report(
        args.data, args.on_bad_rows, timezone=opts.timezone, adj_close=args.adjust
    )
    notes += [report.layout, *report.notes] if report.layout else report.notes
    strat = create_strategy(args.strategy, None, params)
    risk = opts.risk
    from pathlib import Path

    bar = _Bar("backtest", tty and args.mode == "replay")
    try:
        bt = CustomBacktester(
            bars,
            strat,
            cash=args.cash,
            commission=commission,
            sizing=sizing,
            symbol=Path(args.data).stem.upper() or "SYM",
            risk=risk,
            mode=args.mode,
            progress=bar,
            # Durations on the market's wall clock; backtesting.py's days are the file's own.
            timezone=opts.timezone if args.stats == "fbterm" else report.clock,
            calendar=opts.calendar,
            stats=args.stats,
        )
        res = bt.run_backtest()
    finally:
        bar.close()
    m = res.metrics
    if res.fills["reason"].eq("liquidation").any():
        at = res.fills.loc[res.fills["reason"].eq("liquidation"), "time"].iloc[0]
        notes.append(f"equity reached 0 at the close of {at}: every position was closed there")
    if args.stats == "backtesting":
        notes.append("statistics by backtesting.py 0.6.6's definitions (--stats backtesting)")
    if args.json:
        doc = {
            "strategy": res.strategy,
            "params": res.params,
            "mode": res.mode,
            "stats": args.stats,
            "notes": notes,
            **metrics_to_jsonable(m),
        }
        print(json.dumps(doc, default=str))
    else:
        width = max(len(v) for v in METRIC_LABELS.values())
        print(
            f"{res.strategy} {' '.join(f'{k}={v}' for k, v in res.params.items())} on {args.data}"
        )
        for note in notes:
            print(f"note: {note}")
        for k, v in m.items():
            print(f"{METRIC_LABELS.get(str(k), str(k)):<{width}}  {_fmt(v)}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res.trades.to_csv(out / "trades.csv", index=False)
        res.equity.to_frame().assign(position=res.position).to_csv(
            out / "equity.csv", index_label="ts"
        )
        res.fills.to_csv(out / "fills.csv", index=False)
    if args.plot or args.out:
        from fbterm.backtest.analysis import PerformanceAnalysis

        PerformanceAnalysis(res).visualize_results(
            terminal=args.plot and not args.json, out_dir=args.out
        )
    return EXIT_OK


@dataclass(frozen=True)
class _Options:
    """The options checked against each other and the config: what the run uses."""

    timezone: str
    calendar: str
    default_clock: bool  # New York, as the sweep workers read the file by default
    risk: StrategyRiskConfig | None


def _check_options(args: argparse.Namespace) -> _Options:
    """Every option checked before any work: one line naming the option and the reason."""
    import math

    from fbterm.cli.common import config_path, load_config_file

    def bad(msg: str) -> CLIError:
        return CLIError(msg, EXIT_USAGE)

    if not (math.isfinite(args.cash) and args.cash > 0):
        raise bad(f"--cash must be a number > 0, got {args.cash:g}")
    if args.size is not None:
        if args.sizing == "all_in":
            raise bad("--size does not apply to --sizing all_in (it spends all the equity)")
        if not (math.isfinite(args.size) and args.size > 0):
            raise bad(f"--size must be a number > 0, got {args.size:g}")
    if args.workers is not None and args.workers < 1:
        raise bad(f"--workers must be >= 1, got {args.workers}")
    if args.sweep:
        for flag, given in (
            ("--stop-loss", args.stop_loss), ("--take-profit", args.take_profit),
            ("--trailing-stop", args.trailing_stop), ("--plot", args.plot),
            ("--mode replay", args.mode == "replay"),
            ("--stats backtesting", args.stats == "backtesting"),
        ):  # fmt: skip
            if given:
                raise bad(f"{flag} does not apply to --sweep (a sweep ranks plain runs)")
    cfg = load_config_file(config_path(args.config))
    tz = args.timezone or cfg.market.timezone
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise bad(f"--timezone {tz!r}: unknown time zone (e.g. UTC, America/New_York)") from None
    cal = args.calendar or cfg.market.calendar
    if args.calendar:
        from fbterm.sessions import CalendarError, check_calendar

        try:
            check_calendar(cal)
        except CalendarError as e:
            raise bad(f"--calendar: {e}") from None
    return _Options(tz, cal, tz == "America/New_York", _stops(args))


def _stops(args: argparse.Namespace) -> StrategyRiskConfig | None:
    """--stop-loss / --take-profit / --trailing-stop as a checked StrategyRiskConfig."""
    from fbterm.config import ConfigError, StrategyRiskConfig, section_from_dict
    from fbterm.risk.stops import parse_amount

    given: dict[str, float] = {}
    flags: dict[str, str] = {}
    for name, flag, text in (
        ("stop_loss", "--stop-loss", args.stop_loss),
        ("take_profit", "--take-profit", args.take_profit),
        ("trailing_stop", "--trailing-stop", args.trailing_stop),
    ):
        if text is None:
            continue
        try:
            value, unit = parse_amount(text)
        except ValueError as e:
            raise CLIError(f"{flag} {text}: {e}", EXIT_USAGE) from None
        if name == "trailing_stop" and unit == "money":
            raise CLIError(f"{flag} {text}: a trailing stop is 3% or 1.5pt", EXIT_USAGE)
        if not value > 0:
            raise CLIError(
                f"{flag} {text}: must be > 0 (leave the option out for no {name.replace('_', '-')})",
                EXIT_USAGE,
            )
        given[f"{name}_{unit}"] = value
        flags[f"{name}_{unit}"] = f"{flag} {text}"
    if not given:
        return None
    try:
        return section_from_dict(StrategyRiskConfig, given, "options")
    except ConfigError as e:
        # "options: stop_loss_pct: must be < 100, got 150" -> "--stop-loss 150: must be < 100 ..."
        _, key, reason = [*str(e).split(": ", 2), "", ""][:3]
        unit = " (percent of the entry price)" if key.endswith("_pct") else ""
        raise CLIError(f"{flags.get(key, key)}: {reason}{unit}", EXIT_USAGE) from None


def _fmt(v: Any) -> str:
    """A metric for the table: floats to 4 places, a missing value (NaN, NaT) as a dash."""
    import math

    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.4f}"
    return "—" if str(v) == "NaT" else str(v)
