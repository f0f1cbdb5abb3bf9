"""Backtest jobs: load bars, run one backtest, run a parameter sweep (processes or Dask).

Usable from the CLI and from the console's worker thread (:func:`run_backtest_job`); nothing
here touches the terminal.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.inputs import BacktestError
from fbterm.backtest.result import BacktestResult
from fbterm.config import StrategyRiskConfig
from fbterm.strategies import create_strategy
from fbterm.strategies.base import StrategyError

if TYPE_CHECKING:
    from fbterm.data.csvparse import BadRows, LoadReport

Progress = Callable[[float], None]


def load_bars(
    path: str | os.PathLike[str],
    on_bad_rows: BadRows = "error",
    *,
    timezone: str | None = None,
    adj_close: bool = False,
) -> pd.DataFrame:
    """Bars from any CSV that DataStorage loads (its binary cache makes reloads fast).

    ``on_bad_rows`` = "drop" or "repair" skips or mends bad rows instead of refusing the file.
    ``timezone``: the zone of times without one (default New York); ``adj_close``: prices
    scaled by the Adj Close column.
    """
    return load_bars_report(path, on_bad_rows, timezone=timezone, adj_close=adj_close)[0]


def load_bars_report(
    path: str | os.PathLike[str],
    on_bad_rows: BadRows = "error",
    *,
    timezone: str | None = None,
    adj_close: bool = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """:func:`load_bars` and its load report (what reading the file's clock decided, ...)."""
    from fbterm.data.bars import DataError
    from fbterm.data.storage import DataStorage

    p = Path(path).expanduser()
    if not p.is_file():
        raise BacktestError(f"{p}: no such file")
    try:
        bars, report = DataStorage(p.parent).load_from_csv(
            p, on_bad_rows=on_bad_rows, timezone=timezone, adj_close=adj_close, report=True
        )
    except DataError as e:
        raise BacktestError(str(e)) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise BacktestError(f"{p}: cannot load: {e}") from None
    return bars, report


def run_backtest_job(
    data_path: str | os.PathLike[str] | pd.DataFrame,
    strategy: str,
    params: dict[str, Any] | None = None,
    cash: float = 10_000.0,
    commission: float | str = 0.0,
    sizing: str = "all_in",
    progress: Progress | None = None,
    *,
    mode: str = "fast",
    risk: StrategyRiskConfig | None = None,
    symbol: str | None = None,
) -> BacktestResult:
    """Load the data, build the strategy and run one backtest; errors are BacktestError or
    StrategyError with a one-line message. Safe to call from a worker thread."""
    if progress:
        progress(0.0)
    bars = data_path if isinstance(data_path, pd.DataFrame) else load_bars(data_path)
    if progress:
        progress(0.05)
    sym = symbol or (
        Path(data_path).stem.upper() if not isinstance(data_path, pd.DataFrame) else "SYM"
    )
    strat = create_strategy(strategy, None, params or {})
    bt = CustomBacktester(
        bars,
        strat,
        cash=cash,
        commission=commission,
        sizing=sizing,
        symbol=sym or "SYM",
        risk=risk,
        mode=mode,
        progress=(lambda f: progress(0.05 + 0.95 * f)) if progress else None,
    )
    return bt.run_backtest()


# ---------------------------------------------------------------------------------- sweeps


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """``fast=5:30:5`` (inclusive range) or ``fast=5,10,20`` -> ("fast", [values])."""
    name, sep, rng = spec.partition("=")
    name = name.strip()
    if not sep or not name or not rng.strip():
        raise BacktestError(f"--sweep {spec!r}: expected NAME=START:STOP[:STEP] or NAME=A,B,C")
    text = rng.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise BacktestError(f"--sweep {spec!r}: expected NAME=START:STOP[:STEP]")
        try:
            nums = [float(x) for x in parts]
        except ValueError:
            raise BacktestError(f"--sweep {spec!r}: range bounds must be numbers") from None
        start, stop = nums[0], nums[1]
        step = nums[2] if len(nums) == 3 else 1.0
        if step <= 0 or stop < start:
            raise BacktestError(f"--sweep {spec!r}: need STOP >= START and STEP > 0")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > 100_000:
            raise BacktestError(f"--sweep {spec!r}: {count} values is too many")
        vals: list[Any] = [start + k * step for k in range(count)]
        if all(float(x).is_integer() for x in (*nums,)):
            vals = [round(v) for v in vals]
        return name, vals
    return name, [v.strip() for v in text.split(",") if v.strip()]


def sweep_grid(specs: Iterable[str], fixed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    axes = [parse_sweep(s) for s in specs]
    names = [n for n, _ in axes]
    if len(set(names)) != len(names):
        raise BacktestError("--sweep: a parameter is swept twice")
    grid = []
    for combo in itertools.product(*(v for _, v in axes)):
        p = dict(fixed or {})
        p.update(zip(names, combo, strict=True))
        grid.append(p)
    return grid


SWEEP_KEYS = (
    "return_pct",
    "sharpe",
    "sortino",
    "max_drawdown_pct",
    "trades",
    "win_rate_pct",
    "equity_final",
    "sqn",
    "profit_factor",
    "exposure_pct",
)

_WORKER_BARS: pd.DataFrame | None = None


def _init_worker(path: str | None, bars: pd.DataFrame | None) -> None:
    global _WORKER_BARS
    _WORKER_BARS = bars if bars is not None else load_bars(path)  # type: ignore[arg-type]


def _sweep_one(
    params: dict[str, Any],
    strategy: str,
    cash: float,
    commission: float | str,
    sizing: str,
    bars: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """One grid point -> its params and headline metrics, or the reason it could not run."""
    data = bars if bars is not None else _WORKER_BARS
    assert data is not None
    row: dict[str, Any] = dict(params)
    try:
        strat = create_strategy(strategy, None, params)
        res = CustomBacktester(
            data, strat, cash=cash, commission=commission, sizing=sizing
        ).run_backtest()
    except (StrategyError, BacktestError) as e:
        row["error"] = str(e)
        return row
    for k in SWEEP_KEYS:
        v = res.metrics.get(k)
        row[k] = float(v) if isinstance(v, int | float) else v
    return row


def run_sweep(
    data: str | os.PathLike[str] | pd.DataFrame,
    strategy: str,
    grid: list[dict[str, Any]],
    *,
    cash: float = 10_000.0,
    commission: float | str = 0.0,
    sizing: str = "all_in",
    workers: int | None = None,
    cluster: str | None = None,
    progress: Progress | None = None,
    rank_by: str = "sharpe",
) -> pd.DataFrame:
    """Run every grid point in parallel (all cores, or a Dask cluster at ``cluster``) and
    return the table ranked by ``rank_by`` (best first; grid points that cannot run last)."""
    if not grid:
        raise BacktestError("--sweep: empty grid")
    if rank_by not in SWEEP_KEYS:
        raise BacktestError(f"--rank: one of {', '.join(SWEEP_KEYS)} expected, got {rank_by!r}")
    # Check the strategy and every parameter name and type before any process starts.
    for p in grid:
        try:
            create_strategy(strategy, None, p)
        except StrategyError as e:
            msg = str(e)
            if "unknown" in msg or "expected" in msg:
                raise
    path = None if isinstance(data, pd.DataFrame) else str(data)
    bars = data if isinstance(data, pd.DataFrame) else load_bars(data)
    rows: list[dict[str, Any]] = []
    total = len(grid)
    if cluster:
        rows = _run_dask(cluster, bars, strategy, grid, cash, commission, sizing, progress)
    elif (workers or os.cpu_count() or 1) <= 1 or total == 1:
        for i, p in enumerate(grid):
            rows.append(_sweep_one(p, strategy, cash, commission, sizing, bars))
            if progress:
                progress((i + 1) / total)
    else:
        nw = min(workers or os.cpu_count() or 1, total)
        # Workers read the CSV's binary cache themselves; pickling 1M bars to each costs more.
        init_args = (path, None) if path else (None, bars)
        with ProcessPoolExecutor(nw, initializer=_init_worker, initargs=init_args) as ex:
            futs = [ex.submit(_sweep_one, p, strategy, cash, commission, sizing) for p in grid]
            for i, f in enumerate(as_completed(futs)):
                rows.append(f.result())
                if progress:
                    progress((i + 1) / total)
    return rank_table(rows, rank_by)


def _run_dask(
    address: str,
    bars: pd.DataFrame,
    strategy: str,
    grid: list[dict[str, Any]],
    cash: float,
    commission: float | str,
    sizing: str,
    progress: Progress | None,
) -> list[dict[str, Any]]:
    try:
        import distributed
    except ImportError:
        raise BacktestError(
            "--cluster needs dask.distributed: pip install 'fbterm[dask]'"
        ) from None
    # distributed ships without type annotations: it is typed at this boundary, as Any.
    dist: Any = distributed
    try:
        client = dist.Client(address, timeout=10)
    except Exception as e:
        raise BacktestError(
            f"--cluster {address}: cannot connect: {type(e).__name__}: {e}"
        ) from None
    try:
        [remote] = client.scatter([bars], broadcast=True)
        futs = client.map(
            _sweep_one,
            grid,
            strategy=strategy,
            cash=cash,
            commission=commission,
            sizing=sizing,
            bars=remote,
            pure=False,
        )
        rows = []
        for i, f in enumerate(dist.as_completed(futs)):
            rows.append(f.result())
            if progress:
                progress((i + 1) / len(grid))
        return rows
    finally:
        client.close()


def rank_table(rows: list[dict[str, Any]], rank_by: str) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if "error" in df and df["error"].isna().all():
        df = df.drop(columns="error")
    if "trades" in df:
        df["trades"] = df["trades"].astype("Int64")
    if rank_by in df:
        # Every ranked metric is better when higher (drawdowns are negative numbers).
        df = df.sort_values(rank_by, ascending=False, na_position="last", kind="stable")
    return df.reset_index(drop=True)
