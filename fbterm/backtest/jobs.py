"""Backtest jobs: load bars, run one backtest, run a parameter sweep (:mod:`fbterm.backtest.sweep`).

Usable from the CLI and from the console's worker thread (:func:`run_backtest_job`); nothing
here touches the terminal.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable
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


def run_sweep(
    data: str | os.PathLike[str] | pd.DataFrame,
    strategy: str,
    grid: list[dict[str, Any]],
    *,
    cash: float = 10_000.0,
    commission: float | str = 0.0,
    sizing: str = "all_in",
    size: float | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    progress: Progress | None = None,
    rank_by: str = "sharpe",
    out_dir: str | os.PathLike[str] | None = None,
    fresh: bool = False,
    mp_context: str | None = None,
) -> pd.DataFrame:
    """Run every grid point through the sweep engine (all cores, or a Dask cluster at
    ``cluster``) and return the table ranked by ``rank_by`` (best first; grid points that
    cannot run last). ``progress`` gets the finished fraction."""
    from fbterm.backtest.sweep import SweepSpec, run_grid

    # Check the strategy and every parameter name and type before any process starts.
    for p in grid:
        try:
            create_strategy(strategy, None, p)
        except StrategyError as e:
            msg = str(e)
            if "unknown" in msg or "expected" in msg:
                raise
    path = "" if isinstance(data, pd.DataFrame) else str(Path(data).expanduser().resolve())
    bars = data if isinstance(data, pd.DataFrame) else load_bars(data)
    spec = SweepSpec(
        strategy,
        grid,
        cash=cash,
        commission=commission,
        sizing=sizing,
        size=size,
        symbol=Path(path).stem.upper() if path else "SYM",
        rank_by=rank_by,
        data=path,
    )
    return run_grid(
        spec,
        bars,
        workers=workers,
        cluster=cluster,
        progress=(lambda done, total: progress(done / total)) if progress else None,
        out_dir=out_dir,
        fresh=fresh,
        mp_context=mp_context,
    )
