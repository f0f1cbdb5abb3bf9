"""``fbterm backtest`` at scale: sweeps (with progress, stored results and resumption, a
heatmap), walk-forward and out-of-sample tests, and portfolio backtests of a config.

:func:`add_arguments` adds the options to the backtest parser and :func:`run` handles a
command that uses them; :mod:`fbterm.cli.backtest` calls both, so a single run keeps its
own code path untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.cli.errors import EXIT_OK, EXIT_USAGE, CLIError

if TYPE_CHECKING:
    import pandas as pd

    from fbterm.backtest.heatmap import Heatmap
    from fbterm.backtest.sweep import SweepSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("research: sweeps, walk-forward, portfolios")
    g.add_argument(
        "--config",
        metavar="CONFIG.toml",
        help="portfolio backtest: every configured strategy on its symbols, --data DIR holding SYMBOL.csv",
    )
    g.add_argument(
        "--walk-forward",
        dest="walk_forward",
        metavar="TRAIN:TEST",
        help="with --sweep: pick the best set on each train window, trade it on the next "
        "test window (bars, e.g. 5000:1000, or durations, e.g. 180D:30D)",
    )
    g.add_argument(
        "--anchored",
        action="store_true",
        help="walk-forward: train windows all start at the first bar (default: rolling)",
    )
    g.add_argument(
        "--oos",
        type=float,
        metavar="FRACTION",
        help="with --sweep: choose on the first 1-FRACTION of the bars, report the rest",
    )
    g.add_argument(
        "--heatmap",
        metavar="X,Y",
        help="sweep: the two parameters of the heatmap (default: the first two swept)",
    )
    g.add_argument(
        "--fresh",
        action="store_true",
        help="sweep with --out: start over instead of resuming the stored results",
    )
    g.add_argument(
        "--rebalance",
        type=float,
        metavar="SECONDS",
        help="portfolio: half-Kelly rebalance every SECONDS of market time "
        "(default: the config's metrics.rebalance_interval; 0: never)",
    )
    g.add_argument(
        "--on-halt",
        dest="on_halt",
        choices=("hold", "flatten"),
        default="hold",
        help="portfolio: after a risk halt keep the positions (as live, default) or close "
        "them at the next open as the operator would",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def handles(args: argparse.Namespace) -> bool:
    return bool(args.config or args.walk_forward or args.oos is not None or args.sweep)


class Progress:
    """A progress bar with the rate and time left, on stderr when it is a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.start: int | None = None  # points already done when this run began (resumed)
        self.drawn = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if self.start is None:
            self.start = done
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        elapsed = now - self.t0
        ran = done - self.start
        left = (total - done) * elapsed / ran if ran > 0 else float("nan")
        frac = done / total if total else 1.0
        width = 24
        fill = int(width * frac)
        eta = _duration(left) if left == left else "--:--"
        sys.stderr.write(
            f"\r{self.label} {done:,}/{total:,} [{'#' * fill}{'.' * (width - fill)}] "
            f"{frac * 100:3.0f}%  {_duration(elapsed)} elapsed, {eta} left "
        )
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _duration(s: float) -> str:
    s = max(int(s + 0.5), 0)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def run(args: argparse.Namespace, params: dict[str, str]) -> int:
    if args.config:
        from fbterm.cli.portfolio import run_portfolio

        return run_portfolio(args)
    if not args.sweep:
        raise CLIError(
            "--walk-forward and --oos need a grid: add --sweep NAME=START:STOP", EXIT_USAGE
        )
    if args.walk_forward and args.oos is not None:
        raise CLIError("--walk-forward and --oos: choose one", EXIT_USAGE)
    if args.cluster and not args.cluster.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise CLIError(
            f"--cluster {args.cluster!r}: expected an address like tcp://host:8786", EXIT_USAGE
        )
    spec, bars = _spec(args, params)
    if args.walk_forward or args.oos is not None:
        return _walk_forward(args, spec, bars)
    return _sweep(args, spec, bars)


def _spec(args: argparse.Namespace, params: dict[str, str]) -> tuple[SweepSpec, pd.DataFrame]:
    from fbterm.backtest.jobs import load_bars, sweep_grid
    from fbterm.backtest.sweep import SweepSpec
    from fbterm.strategies import create_strategy
    from fbterm.strategies.base import StrategyError

    grid = sweep_grid(args.sweep, params)
    for p in grid:  # a misspelt or mistyped parameter stops the sweep before it starts
        try:
            create_strategy(args.strategy, None, p)
        except StrategyError as e:
            if "unknown" in str(e) or "expected" in str(e):
                raise
    path = Path(args.data).expanduser().resolve()
    # The file's clock and adjustment as a single backtest reads them (--timezone, --adjust).
    timezone, adjust = getattr(args, "timezone", None), bool(getattr(args, "adjust", False))
    bars = load_bars(path, args.on_bad_rows, timezone=timezone, adj_close=adjust)
    spec = SweepSpec(
        args.strategy,
        grid,
        cash=args.cash,
        commission=args.commission,
        sizing=args.sizing,
        size=args.size,
        symbol=path.stem.upper() or "SYM",
        rank_by=args.rank,
        data=str(path),
        extra={"on_bad_rows": args.on_bad_rows, "timezone": timezone, "adjust": adjust},
    )
    return spec, bars


def _bar(args: argparse.Namespace, label: str) -> Progress:
    return Progress(label, sys.stderr.isatty() and not args.quiet)


def _sweep(args: argparse.Namespace, spec: SweepSpec, bars: pd.DataFrame) -> int:
    from fbterm.backtest.sweep import run_grid

    bar = _bar(args, "sweep")
    try:
        table = run_grid(
            spec,
            bars,
            workers=args.workers,
            cluster=args.cluster,
            progress=bar,
            out_dir=args.out,
            fresh=args.fresh,
        )
    except KeyboardInterrupt:
        bar.close()
        if args.out:
            print(
                f"sweep interrupted: the finished tasks are kept in {args.out}; "
                "run the same command again to resume",
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()
    hm = _heatmap(args, table, spec)
    if args.out:
        _sweep_files(Path(args.out), table, hm, spec)
    if args.json:
        print(
            json.dumps(
                {
                    "strategy": spec.strategy,
                    "rank_by": spec.rank_by,
                    "results": json.loads(table.to_json(orient="records")),
                }
            )
        )
        return EXIT_OK
    _print_table(table)
    if hm is not None:
        print()
        if args.plot:
            from fbterm.backtest.heatmap import terminal_heatmap

            print(terminal_heatmap(hm))
        else:
            from fbterm.backtest.heatmap import heatmap_text

            print(heatmap_text(hm))
    return EXIT_OK


def _heatmap(args: argparse.Namespace, table: pd.DataFrame, spec: SweepSpec) -> Heatmap | None:
    from fbterm.backtest.heatmap import heatmap, swept_axes
    from fbterm.backtest.sweepkernel import SWEEP_KEYS

    axes = swept_axes(table, SWEEP_KEYS)
    x = y = None
    if args.heatmap:
        x, sep, y = args.heatmap.partition(",")
        if not sep:
            raise CLIError(f"--heatmap {args.heatmap!r}: expected X,Y", EXIT_USAGE)
    elif len(axes) < 2:
        return None
    return heatmap(table, spec.rank_by, x and x.strip(), y and y.strip(), axes=axes)


def _sweep_files(out: Path, table: pd.DataFrame, hm: Heatmap | None, spec: SweepSpec) -> None:
    from fbterm.backtest.heatmap import heatmap_text, sweep_report_html

    title = f"Sweep of {spec.strategy} on {Path(spec.data).name}, ranked by {spec.rank_by}"
    (out / "report.html").write_text(sweep_report_html(table, hm, title), encoding="utf-8")
    if hm is not None:
        (out / "heatmap.txt").write_text(heatmap_text(hm) + "\n", encoding="utf-8")


def _print_table(table: pd.DataFrame, head: int = 50) -> None:
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
        "display.max_rows", 200, "display.width", 200, "display.float_format", "{:,.4f}".format
    ):
        print(shown.head(head).to_string(index=False))
    if len(shown) > head:
        print(f"({len(shown) - head:,} more rows)")


def _walk_forward(args: argparse.Namespace, spec: SweepSpec, bars: pd.DataFrame) -> int:
    import pandas as pd

    from fbterm.backtest.metrics import METRIC_LABELS, metrics_to_jsonable
    from fbterm.backtest.walkforward import oos_window, parse_split, walk_forward, windows

    if args.oos is not None:
        wins = oos_window(len(bars), args.oos)
        label = f"out-of-sample test: last {args.oos:g} of the bars"
    else:
        train, test = parse_split(args.walk_forward, bars.index)
        wins = windows(len(bars), train, test, anchored=args.anchored)
        kind = "anchored" if args.anchored else "rolling"
        label = (
            f"walk-forward ({kind}) train {train:,} bars, test {test:,} bars, {len(wins)} windows"
        )
    bar = _bar(args, "walk-forward")
    try:
        res = walk_forward(
            spec, bars, wins, workers=args.workers, cluster=args.cluster, progress=bar
        )
    finally:
        bar.close()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        res.windows.to_csv(out / "windows.csv", index=False)
        res.equity.to_frame().to_csv(out / "oos_equity.csv", index_label="ts")
        res.trades.to_csv(out / "oos_trades.csv", index=False)
        res.stability.to_csv(out / "stability.csv", index=False)
    if args.json:
        print(
            json.dumps(
                {
                    "strategy": spec.strategy,
                    "rank_by": spec.rank_by,
                    "windows": json.loads(res.windows.to_json(orient="records", date_format="iso")),
                    "stability": json.loads(res.stability.to_json(orient="records")),
                    "oos": metrics_to_jsonable(res.metrics),
                },
                default=str,
            )
        )
        return EXIT_OK
    print(f"{spec.strategy} on {Path(spec.data).name}: {label}, ranked by {spec.rank_by}")
    with pd.option_context(
        "display.max_rows", 500, "display.width", 220, "display.float_format", "{:,.3f}".format
    ):
        cols = [c for c in res.windows.columns if c not in ("train_start", "train_end")]
        w = res.windows[cols].copy()
        for c in ("test_start", "test_end"):
            w[c] = w[c].astype(str).str.slice(0, 16)
        print(w.to_string(index=False))
        print("\nparameter stability")
        print(res.stability.to_string(index=False))
    print("\nout of sample (stitched)")
    width = max(len(v) for v in METRIC_LABELS.values())
    for k, v in res.metrics.items():
        print(f"{METRIC_LABELS.get(str(k), str(k)):<{width}}  {_fmt(v)}")
    if args.plot:
        import plotext as plt

        plt.clear_figure()
        plt.theme("clear")
        plt.plotsize(100, 20)
        eq = res.equity.to_numpy(dtype=float)
        step = max(len(eq) // 2000, 1)
        plt.plot(list(range(0, len(eq), step)), eq[::step].tolist(), color="green")
        plt.title("out-of-sample equity (stitched)")
        print(plt.build())
        plt.clear_figure()
    return EXIT_OK


def _fmt(v: Any) -> str:
    import math

    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.4f}"
    return "—" if str(v) == "NaT" else str(v)
