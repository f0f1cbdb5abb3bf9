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
from typing import Any

from fbterm.cli.common import Subparsers
from fbterm.cli.errors import EXIT_OK, EXIT_USAGE, CLIError, first_line_error


def register(subparsers: Subparsers) -> None:
    """Add backtest to the ``fbterm`` parser."""
    p = subparsers.add_parser(
        "backtest",
        help="backtest a strategy on a CSV of bars (or sweep its parameters)",
        description="Backtest a strategy on historical bars. Signals at bar t fill at bar t+1's "
        "open; commission as a fraction of value (or 'ib' per share), charged on entry and exit.",
    )
    p.add_argument(
        "--data", required=True, metavar="FILE.csv", help="bars CSV (any layout DataStorage loads)"
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
    p.add_argument(
        "--stop-loss", type=float, dest="stop_loss", metavar="PCT", help="stop-loss, %% from entry"
    )
    p.add_argument(
        "--take-profit",
        type=float,
        dest="take_profit",
        metavar="PCT",
        help="take-profit, %% from entry",
    )
    p.add_argument(
        "--trailing-stop", type=float, dest="trailing_stop", metavar="PCT", help="trailing stop, %%"
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
    p.set_defaults(handler=run)


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
    from fbterm.backtest.jobs import load_bars, run_sweep, sweep_grid
    from fbterm.backtest.metrics import METRIC_LABELS, metrics_to_jsonable
    from fbterm.config import StrategyRiskConfig
    from fbterm.strategies import create_strategy, load_strategy_class

    if not (args.cash > 0):
        raise CLIError(f"--cash must be > 0, got {args.cash:g}", EXIT_USAGE)
    params = _params(args.param)
    load_strategy_class(args.strategy)
    commission = make_commission(args.commission)
    sizing = make_sizing(args.sizing, args.size)
    tty = sys.stdout.isatty()
    if args.sweep:
        if args.cluster and not args.cluster.startswith(
            ("tcp://", "tls://", "inproc://", "ucx://")
        ):
            raise CLIError(
                f"--cluster {args.cluster!r}: expected an address like tcp://host:8786",
                EXIT_USAGE,
            )
        grid = sweep_grid(args.sweep, params)
        bar = _Bar(f"sweep {len(grid)} runs", tty)
        try:
            # Bad rows dropped or repaired once here; the workers then share the clean frame.
            data = (
                args.data if args.on_bad_rows == "error" else load_bars(args.data, args.on_bad_rows)
            )
            table = run_sweep(
                data,
                args.strategy,
                grid,
                cash=args.cash,
                commission=args.commission,
                sizing=args.sizing,
                workers=args.workers,
                cluster=args.cluster,
                progress=bar,
                rank_by=args.rank,
            )
        finally:
            bar.close()
        if args.out:
            from pathlib import Path

            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            table.to_csv(out / "sweep.csv", index=False)
        if args.json:
            print(
                json.dumps(
                    {
                        "strategy": args.strategy,
                        "rank_by": args.rank,
                        "results": json.loads(table.to_json(orient="records")),
                    }
                )
            )
        else:
            import pandas as pd

            shown = table
            if "error" in table:
                failed = table[table["error"].notna()]
                shown = table[table["error"].isna()].drop(columns="error")
                if len(failed):
                    reasons = sorted(set(failed["error"].astype(str)))
                    print(
                        f"{len(failed)} of {len(table)} combinations skipped: {reasons[0]}"
                        + (f" (and {len(reasons) - 1} other reasons)" if len(reasons) > 1 else "")
                    )
            with pd.option_context(
                "display.max_rows",
                200,
                "display.width",
                200,
                "display.float_format",
                "{:,.4f}".format,
            ):
                print(shown.head(50).to_string(index=False))
        return EXIT_OK

    bars = load_bars(args.data, args.on_bad_rows)
    strat = create_strategy(args.strategy, None, params)
    risk = None
    if args.stop_loss or args.take_profit or args.trailing_stop:
        risk = StrategyRiskConfig(
            stop_loss_pct=args.stop_loss,
            take_profit_pct=args.take_profit,
            trailing_stop_pct=args.trailing_stop,
        )
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
        )
        res = bt.run_backtest()
    finally:
        bar.close()
    m = res.metrics
    if args.json:
        doc = {
            "strategy": res.strategy,
            "params": res.params,
            "mode": res.mode,
            **metrics_to_jsonable(m),
        }
        print(json.dumps(doc, default=str))
    else:
        width = max(len(v) for v in METRIC_LABELS.values())
        print(
            f"{res.strategy} {' '.join(f'{k}={v}' for k, v in res.params.items())} on {args.data}"
        )
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


def _fmt(v: Any) -> str:
    """A metric for the table: floats to 4 places, a missing value (NaN, NaT) as a dash."""
    import math

    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.4f}"
    return "—" if str(v) == "NaT" else str(v)
