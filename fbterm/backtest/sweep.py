"""Parameter sweeps: a grid of parameter sets cut into tasks, run on all cores or a Dask
cluster through the sweep kernel (:mod:`fbterm.backtest.sweepkernel`), with progress, results
on disk and resumption.

A task is a run of consecutive grid points (its size is fixed when the sweep starts and kept
in the manifest, so a resumed sweep cuts the grid the same way whatever the worker count).
Each finished task is written at once as a part file (:mod:`fbterm.backtest.sweepstore`); a
rerun of the same sweep in the same directory skips the parts it finds. Nothing here touches
the terminal: progress is a callback ``(done, total)``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fbterm.backtest.inputs import BacktestError
from fbterm.backtest.sweepkernel import SWEEP_KEYS, SweepContext, make_context, run_points
from fbterm.backtest.sweepstore import SweepStore

SweepProgress = Callable[[int, int], None]
MAX_TASK = 500  # grid points per task: big enough for the lockstep, small enough to resume


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep is: the strategy, its grid and the backtest settings every point shares."""

    strategy: str
    grid: list[dict[str, Any]]
    cash: float = 10_000.0
    commission: float | str = 0.0
    sizing: str = "all_in"
    size: float | None = None
    symbol: str = "SYM"
    rank_by: str = "sharpe"
    data: str = ""  # the bars' file, recorded in the manifest (empty: bars given in memory)
    extra: dict[str, Any] = field(default_factory=dict)  # recorded too: e.g. a train window

    def context(self, bars: pd.DataFrame) -> SweepContext:
        from fbterm.backtest.inputs import make_sizing

        return make_context(
            bars,
            self.strategy,
            cash=self.cash,
            commission=self.commission,
            sizing=make_sizing(self.sizing, self.size),
            symbol=self.symbol,
        )

    def identity(self) -> dict[str, Any]:
        """What must match for a stored part to belong to this sweep."""
        return {
            "strategy": self.strategy,
            "grid": self.grid,
            "cash": self.cash,
            "commission": str(self.commission),
            "sizing": self.sizing,
            "size": self.size,
            "symbol": self.symbol,
            "data": self.data,
            **self.extra,
        }


def task_size(n_points: int, workers: int) -> int:
    """Points per task: about four tasks per worker (progress, balance), at most MAX_TASK."""
    return max(1, min(MAX_TASK, math.ceil(n_points / max(4 * workers, 1))))


def tasks_of(n_points: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + size, n_points)) for lo in range(0, n_points, size)]


# ------------------------------------------------------------------------------ workers

_CTX: SweepContext | None = None
_CTX_KEY: str = ""
_GRID: list[dict[str, Any]] = []


def _init_local(spec: SweepSpec, bars: pd.DataFrame | None) -> None:
    """Worker start: the shared context, from the parent's bars (fork: no copy) or the file."""
    global _CTX, _GRID
    if bars is None:
        from fbterm.backtest.jobs import load_bars

        bars = load_bars(spec.data)
    _CTX, _GRID = spec.context(bars), spec.grid


def _run_local(lo: int, hi: int) -> tuple[int, int, list[dict[str, Any]]]:
    assert _CTX is not None
    return lo, hi, run_points(_CTX, _GRID[lo:hi])


def _run_remote(
    spec: SweepSpec, bars: pd.DataFrame, key: str, lo: int, hi: int
) -> tuple[int, int, list[dict[str, Any]]]:
    """A task on a Dask worker: the context is built once per worker process and sweep."""
    global _CTX, _CTX_KEY
    if _CTX is None or key != _CTX_KEY:
        _roomy_malloc()
        _CTX, _CTX_KEY = spec.context(bars), key
    return lo, hi, run_points(_CTX, spec.grid[lo:hi])


# --------------------------------------------------------------------------------- runs


def run_grid(
    spec: SweepSpec,
    bars: pd.DataFrame,
    *,
    workers: int | None = None,
    cluster: str | None = None,
    progress: SweepProgress | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    fresh: bool = False,
    mp_context: str | None = None,
) -> pd.DataFrame:
    """Every grid point's metrics, ranked by ``spec.rank_by`` (best first, failures last).

    With ``out_dir`` each finished task is stored as it completes, the ranked table is written
    as ``sweep.parquet`` (``sweep.csv`` without pyarrow), and a rerun skips stored tasks
    (``fresh`` starts over). ``mp_context`` picks how local workers start ("spawn" from a
    process that runs threads, such as the console)."""
    if not spec.grid:
        raise BacktestError("--sweep: empty grid")
    if spec.rank_by not in SWEEP_KEYS:
        raise BacktestError(
            f"--rank: one of {', '.join(SWEEP_KEYS)} expected, got {spec.rank_by!r}"
        )
    ctx = spec.context(bars)  # checks the strategy, cash, commission and sizing up front
    nw = max(1, workers or os.cpu_count() or 1)
    store = SweepStore(out_dir, spec.identity(), fresh=fresh) if out_dir else None
    size = (
        store.task_size(task_size(len(spec.grid), nw)) if store else task_size(len(spec.grid), nw)
    )
    tasks = tasks_of(len(spec.grid), size)
    rows: dict[int, list[dict[str, Any]]] = dict(store.done()) if store else {}
    todo = [t for t in tasks if t[0] not in rows]
    total = len(spec.grid)
    done = sum(hi - lo for lo, hi in tasks if lo in rows)
    if progress:
        progress(done, total)
    for lo, hi, part in _execute(spec, bars, ctx, todo, nw, cluster, mp_context):
        rows[lo] = part
        if store:
            store.save(lo, part)
        done += hi - lo
        if progress:
            progress(done, total)
    table = rank_table([r for lo, _ in tasks for r in rows[lo]], spec.rank_by)
    if store:
        store.finish(table)
    return table


def _execute(
    spec: SweepSpec,
    bars: pd.DataFrame,
    ctx: SweepContext,
    todo: list[tuple[int, int]],
    workers: int,
    cluster: str | None,
    mp_context: str | None = None,
) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    if not todo:
        return
    if cluster:
        yield from _execute_dask(spec, bars, todo, cluster)
        return
    if workers <= 1 or len(todo) == 1:
        for lo, hi in todo:
            yield lo, hi, run_points(ctx, spec.grid[lo:hi])
        return
    import multiprocessing

    mp = multiprocessing.get_context(mp_context)
    if mp.get_start_method() != "fork":
        _tracker_with_real_stderr()
    # The bars go to the workers by fork (no copy) where the platform forks; elsewhere
    # the workers read the file's binary cache themselves.
    init_bars = bars if mp.get_start_method() == "fork" or not spec.data else None
    with ProcessPoolExecutor(
        min(workers, len(todo)), mp_context=mp, initializer=_init_local, initargs=(spec, init_bars)
    ) as ex:
        futs = [ex.submit(_run_local, lo, hi) for lo, hi in todo]
        try:
            for f in as_completed(futs):
                yield f.result()
        finally:
            for f in futs:
                f.cancel()


def _roomy_malloc() -> None:
    """Let glibc serve bar-length arrays from its heap in a Dask worker.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which also pins glibc's
    mmap threshold at 128 KiB: every temporary of a sweep (an equity curve is 800 KB at 100k
    bars) is then a fresh mmap, page-faulted in and unmapped again, and tasks ran 2-4x slower
    than in a local process. Raising the mmap threshold to 64 MiB gives that speed back; the
    trim threshold still returns freed memory to the system.
    """
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_") or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return  # not glibc: nothing to adjust


def _tracker_with_real_stderr() -> None:
    """Start multiprocessing's resource tracker with a real stderr. Its launch passes
    stderr's file descriptor on, and a console (Textual) replaces sys.stderr with an object
    that has none, so spawning workers from the console would fail."""
    try:
        if sys.stderr.fileno() >= 0:
            return
    except (AttributeError, OSError, ValueError):
        pass
    from multiprocessing import resource_tracker

    saved = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = sys.__stderr__ or devnull
        try:
            resource_tracker.ensure_running()
        finally:
            sys.stderr = saved


def _execute_dask(
    spec: SweepSpec, bars: pd.DataFrame, todo: list[tuple[int, int]], address: str
) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
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
        import uuid

        key = uuid.uuid4().hex
        [remote] = client.scatter([bars], broadcast=True)
        futs = [
            client.submit(_run_remote, spec, remote, key, lo, hi, pure=False) for lo, hi in todo
        ]
        for f in dist.as_completed(futs):
            yield f.result()
    finally:
        client.close()


def rank_table(rows: list[dict[str, Any]], rank_by: str) -> pd.DataFrame:
    """The rows as a table ranked by ``rank_by``, best first; failed points last."""
    df = pd.DataFrame(rows)
    if "error" in df and df["error"].isna().all():
        df = df.drop(columns="error")
    if "trades" in df:
        df["trades"] = df["trades"].astype("Int64")
    if rank_by in df:
        # Every ranked metric is better when higher (drawdowns are negative numbers).
        df = df.sort_values(rank_by, ascending=False, na_position="last", kind="stable")
    return df.reset_index(drop=True)
