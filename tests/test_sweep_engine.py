"""The sweep engine: every row equals a full backtest's metrics; the lockstep equals the fast
path's plain loop; the array twins equal the scalar rules; stored parts resume a sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.jobs import sweep_grid
from fbterm.backtest.sweep import SweepSpec, run_grid, tasks_of
from fbterm.backtest.sweepkernel import (
    SWEEP_KEYS,
    events_of,
    lockstep_fills,
    make_context,
    max_drawdown,
    run_points,
    scalar_fills,
    targets_of,
)
from fbterm.data.simulated import synth_bars
from fbterm.execution.costs import FractionCommission, PerShareCommission, commissions
from fbterm.stats import drawdown_series
from fbterm.strategies import create_strategy
from fbterm.strategies.base import Sizing, sizer, sizer_array
from fbterm.strategies.sma_cross import crossover_targets


@pytest.fixture(scope="module")
def bars():
    """Hourly bars with closes on a 0.1 grid: moving averages tie exactly now and then, so
    sma_cross re-enters (the lockstep's scalar branch) as well as reverses."""
    b = synth_bars(6000, bar_size="1h", seed=3)
    b["close"] = b["close"].round(1)
    b["high"] = b[["high", "close"]].max(axis=1)
    b["low"] = b[["low", "close"]].min(axis=1)
    return b


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


GRID = [{"fast": f, "slow": s} for f in (2, 3, 5, 8, 13) for s in (14, 21, 34, 55)]


@pytest.mark.parametrize(
    ("commission", "sizing"),
    [(0.0, "all_in"), (0.002, "all_in"), ("ib", "fraction"), (0.001, Sizing("cash", 5000.0))],
)
@pytest.mark.parametrize("lockstep", [True, False])
def test_every_row_equals_a_full_backtest(bars, commission, sizing, lockstep, monkeypatch) -> None:
    from fbterm.backtest import sweepkernel

    monkeypatch.setattr(sweepkernel, "LOCKSTEP_MIN", 2 if lockstep else 10**9)
    ctx = make_context(bars, "sma_cross", cash=10_000, commission=commission, sizing=sizing)
    rows = run_points(ctx, GRID)
    for p, row in zip(GRID, rows, strict=True):
        res = CustomBacktester(
            bars,
            create_strategy("sma_cross", None, p),
            cash=10_000,
            commission=commission,
            sizing=sizing,
        ).run_backtest()
        for k in SWEEP_KEYS:
            assert same(row[k], res.metrics[k]), (p, k, row[k], res.metrics[k])


def test_lockstep_equals_the_plain_loop(bars) -> None:
    ctx = make_context(bars, "sma_cross", cash=10_000, commission=0.001)
    events = [
        events_of(targets_of(ctx, create_strategy("sma_cross", None, p)), ctx.reenter, ctx.n)
        for p in GRID
    ]
    together = lockstep_fills(ctx, events)
    assert any(len(np.unique(f[0])) < len(f[0]) for f in together)
    for ev, fills in zip(events, together, strict=True):
        alone = scalar_fills(ctx, ev)
        for a, b in zip(fills, alone, strict=True):
            assert np.array_equal(a, b)


def test_sma_kernel_equals_analyze(bars) -> None:
    ctx = make_context(bars, "sma_cross")
    for p in GRID:
        strat = create_strategy("sma_cross", None, p)
        target = strat.analyze(bars)["target"].to_numpy()
        idx, vals = targets_of(ctx, strat)
        assert np.array_equal(idx, np.flatnonzero(~np.isnan(target)))
        assert np.array_equal(vals, target[idx])
    # Each window is computed once for the whole grid.
    assert len(ctx.cache) == len({p["fast"] for p in GRID} | {p["slow"] for p in GRID})
    f, s = ctx.sma(3), ctx.sma(14)
    assert np.array_equal(
        np.flatnonzero(~np.isnan(crossover_targets(f, s))),
        targets_of(ctx, create_strategy("sma_cross", None, {"fast": 3, "slow": 14}))[0],
    )


def test_other_strategies_and_failures(bars) -> None:
    ctx = make_context(bars, "mean_reversion", cash=10_000, commission=0.001, sizing="fraction")
    grid = [{"window": w, "entry_z": z} for w in (10, 20) for z in (1.0, 1.5)]
    grid.append({"window": 10_000, "entry_z": 1.0})  # longer than the data
    rows = run_points(ctx, grid)
    assert "window longer than the data" in rows[-1]["error"]
    for p, row in zip(grid[:-1], rows[:-1], strict=True):
        res = CustomBacktester(
            bars,
            create_strategy("mean_reversion", None, p),
            cash=10_000,
            commission=0.001,
            sizing="fraction",
        ).run_backtest()
        for k in SWEEP_KEYS:
            assert same(row[k], res.metrics[k]), (p, k)
    bad = run_points(make_context(bars, "sma_cross"), [{"fast": 30, "slow": 10}])
    assert "must be < slow" in bad[0]["error"]


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=5000)
@given(
    mode=st.sampled_from(["all_in", "fraction", "cash", "fixed"]),
    value=st.floats(0.05, 3.0),
    cf=st.sampled_from([0.0, 0.001, 0.01]),
    data=st.lists(
        st.tuples(
            st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]),
            st.floats(0.01, 5000),
            st.floats(-1000, 1e7),
            st.sampled_from([-300.0, -1.0, 0.0, 2.0, 17.0]),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_sizer_array_twin(mode, value, cf, data) -> None:
    sz = Sizing(mode, value)
    t, px, eq, pos = (np.array(c, dtype=float) for c in zip(*data, strict=True))
    got = sizer_array(sz, commission_fraction=cf)(t, px, eq, pos)
    one = sizer(sz, commission_fraction=cf)
    want = [one(*row) for row in data]
    assert got.tolist() == want


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=5000)
@given(
    q=st.lists(st.floats(0, 1e6), min_size=1, max_size=20),
    px=st.floats(0.01, 5000),
    frac=st.sampled_from([0.0, 0.001, 0.02]),
)
def test_commission_array_twin(q, px, frac) -> None:
    qa = np.array(q)
    pa = np.full(len(q), px)
    for model in (
        FractionCommission(frac),
        PerShareCommission(),
        PerShareCommission(0.01, 2.0, 0.005),
    ):
        assert commissions(model, qa, pa).tolist() == [model(x, px) for x in q]


def test_blocked_max_drawdown_is_exact() -> None:
    rng = np.random.default_rng(0)
    for n in (10, 5000, 100_000):
        for drift in (-0.001, 0.0, 0.001):
            eq = 100 * np.exp(np.cumsum(rng.normal(drift, 0.01, n)))
            assert max_drawdown(eq) == float(drawdown_series(eq).max())
    assert max_drawdown(np.linspace(1, 2, 50_000)) == 0.0


def test_tasks_cover_the_grid_once() -> None:
    for n, size in ((1, 1), (10, 3), (100, 100), (101, 25)):
        tasks = tasks_of(n, size)
        covered = [i for lo, hi in tasks for i in range(lo, hi)]
        assert covered == list(range(n))


def test_run_grid_workers_and_store_resume(bars, tmp_path) -> None:
    grid = sweep_grid(["fast=2:12:2", "slow=20:60:10"])
    spec = SweepSpec("sma_cross", grid, commission=0.001)
    one = run_grid(spec, bars, workers=1)
    two = run_grid(spec, bars, workers=2)
    assert one.equals(two)
    seen: list[tuple[int, int]] = []
    stored = run_grid(
        spec, bars, workers=1, out_dir=tmp_path, progress=lambda d, t: seen.append((d, t))
    )
    assert stored.equals(one)
    assert seen[0] == (0, len(grid)) and seen[-1] == (len(grid), len(grid))
    parts = sorted((tmp_path / "sweep-parts").iterdir())
    assert len(parts) > 1
    # Remove one part: a rerun computes that task only and returns the same table.
    parts[1].unlink()
    seen.clear()
    again = run_grid(
        spec, bars, workers=1, out_dir=tmp_path, progress=lambda d, t: seen.append((d, t))
    )
    assert again.equals(one)
    assert seen[0][0] == len(grid) - (
        int(parts[2].stem.split("-")[1]) - int(parts[1].stem.split("-")[1])
    )
    # A different sweep in the same directory is refused, unless --fresh.
    other = SweepSpec("sma_cross", grid, commission=0.002)
    with pytest.raises(ValueError, match="different sweep"):
        run_grid(other, bars, workers=1, out_dir=tmp_path)
    assert run_grid(other, bars, workers=1, out_dir=tmp_path, fresh=True)["trades"].notna().all()
