"""Walk-forward and out-of-sample tests: choose parameters on one stretch of history, trade
them on the next, and judge only what was traded out of sample.

Windows are rolling (the train window slides by the test length) or anchored (the train
window always starts at the first bar). On each train window the grid is swept
(:func:`fbterm.backtest.sweep.run_grid`) and the best set by the ranking metric trades the
test window that follows. A test run starts ``warmup`` bars early so its indicators are
defined at the window's first bar; the strategy can act no earlier than that bar. Each
window's equity starts where the previous one ended (positions are marked, not closed,
across the joint), which stitches one out-of-sample equity curve.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.inputs import BacktestError
from fbterm.backtest.metrics import performance_metrics
from fbterm.backtest.sweep import SweepProgress, SweepSpec, run_grid
from fbterm.backtest.sweepkernel import SWEEP_KEYS
from fbterm.strategies import create_strategy


@dataclass(frozen=True)
class Window:
    train: tuple[int, int]  # bar positions [start, end)
    test: tuple[int, int]


@dataclass
class WalkForwardResult:
    windows: pd.DataFrame  # one row per window: periods, chosen params, in/out-of-sample
    equity: pd.Series  # stitched out-of-sample equity
    trades: pd.DataFrame
    metrics: pd.Series  # of the stitched out-of-sample run
    stability: pd.DataFrame  # per parameter: distinct values, most common and its share
    params: list[str] = field(default_factory=list)


def parse_split(spec: str, index: pd.Index) -> tuple[int, int]:
    """``TRAIN:TEST`` as bar counts (``5000:1000``) or durations (``180D:30D``, ``26W:4W``)."""
    a, sep, b = spec.partition(":")
    if not sep or not a.strip() or not b.strip():
        raise BacktestError(
            f"--walk-forward {spec!r}: expected TRAIN:TEST, e.g. 5000:1000 or 180D:30D"
        )
    return _bars(a.strip(), index, spec), _bars(b.strip(), index, spec)


def _bars(text: str, index: pd.Index, spec: str) -> int:
    if text.isdigit():
        n = int(text)
    else:
        try:
            span = pd.Timedelta(text)
        except ValueError:
            raise BacktestError(
                f"--walk-forward {spec!r}: {text!r} is neither a bar count nor a duration like 30D"
            ) from None
        if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
            raise BacktestError(f"--walk-forward {spec!r}: durations need timestamped bars")
        step = pd.Timedelta(int(np.median(np.diff(index.as_unit("ns").asi8[:10_000]))), "ns")
        n = round(span / step)
    if n < 1:
        raise BacktestError(f"--walk-forward {spec!r}: {text!r} is less than one bar")
    return n


def windows(n: int, train: int, test: int, *, anchored: bool) -> list[Window]:
    """The train/test windows over ``n`` bars; the last test window may be shorter."""
    if train + 1 > n:
        raise BacktestError(
            f"--walk-forward: the train window ({train} bars) needs more than the {n} bars there are"
        )
    out = []
    start = 0
    while start + train < n:
        t0 = start + train
        out.append(Window((0 if anchored else start, t0), (t0, min(t0 + test, n))))
        start += test
    return out


def oos_window(n: int, fraction: float) -> list[Window]:
    """One split: the first ``1 - fraction`` of the bars in sample, the rest out of sample."""
    if not 0 < fraction < 1:
        raise BacktestError(f"--oos: a fraction between 0 and 1 expected, got {fraction:g}")
    split = round(n * (1 - fraction))
    if split < 2 or split >= n:
        raise BacktestError(f"--oos {fraction:g}: leaves no bars on one side of the split")
    return [Window((0, split), (split, n))]


def walk_forward(
    spec: SweepSpec,
    bars: pd.DataFrame,
    wins: list[Window],
    *,
    workers: int | None = None,
    cluster: str | None = None,
    progress: SweepProgress | None = None,
) -> WalkForwardResult:
    if not wins:
        raise BacktestError("--walk-forward: no window fits the data")
    idx = bars.index
    total = len(wins) * len(spec.grid)
    params = sorted(
        {k for p in spec.grid for k in p if len({str(q.get(k)) for q in spec.grid}) > 1}
    )
    rows: list[dict[str, Any]] = []
    pieces: list[pd.Series] = []
    trades: list[pd.DataFrame] = []
    held: list[pd.Series] = []
    equity = spec.cash
    offset = 0
    for w_i, w in enumerate(wins):
        done0 = w_i * len(spec.grid)
        table = run_grid(
            spec,
            bars.iloc[w.train[0] : w.train[1]],
            workers=workers,
            cluster=cluster,
            progress=_offset(progress, done0, total),
        )
        ok = table[table[spec.rank_by].notna()] if spec.rank_by in table else table.iloc[:0]
        if "error" in ok:
            ok = ok[ok["error"].isna()]
        if not len(ok):
            raise BacktestError(
                f"--walk-forward: no parameter set could run on the train window "
                f"{idx[w.train[0]]} .. {idx[w.train[1] - 1]}"
            )
        best = {k: _plain(ok[k].iloc[0]) for k in spec.grid[0]}  # per column: keeps ints
        strat = create_strategy(spec.strategy, None, best)
        lead = min(strat.warmup(), w.test[0])
        seg = bars.iloc[w.test[0] - lead : w.test[1]]
        res = CustomBacktester(
            seg,
            strat,
            cash=equity,
            commission=spec.commission,
            sizing=_sizing(spec),
            symbol=spec.symbol,
        ).run_backtest()
        eq = res.equity.iloc[lead:]
        pos = res.position.iloc[lead:] if res.position is not None else None
        tr = res.trades[res.trades["entry_bar"] >= lead]
        oos_ret = (float(eq.iloc[-1]) / equity - 1) * 100
        rows.append(
            {
                "window": w_i + 1,
                "train_start": idx[w.train[0]],
                "train_end": idx[w.train[1] - 1],
                "test_start": idx[w.test[0]],
                "test_end": idx[w.test[1] - 1],
                **best,
                f"is_{spec.rank_by}": float(ok.iloc[0][spec.rank_by]),
                "oos_return_pct": oos_ret,
                "oos_sharpe": _sharpe(eq),
                "oos_trades": len(tr),
                "oos_max_drawdown_pct": _mdd(eq),
            }
        )
        pieces.append(eq)
        if pos is not None:
            held.append(pos)
        if len(tr):
            tr = tr.copy()
            # Bars counted on the stitched curve, as the out-of-sample metrics read them.
            shift = offset - lead
            tr["entry_bar"] += shift
            tr["exit_bar"] += shift
            tr["window"] = w_i + 1
            trades.append(tr)
        offset += len(eq)
        equity = float(eq.iloc[-1])
        if progress:
            progress(done0 + len(spec.grid), total)
    stitched = pd.concat(pieces)
    all_trades = (
        pd.concat(trades, ignore_index=True)
        if trades
        else pd.DataFrame(columns=[*res.trades.columns, "window"])
    )
    start = wins[0].test[0]
    metrics = performance_metrics(
        stitched,
        all_trades,
        bars["close"].iloc[start : wins[-1].test[1]],
        position=pd.concat(held) if held else None,
        commissions=float(all_trades["commission"].sum()) if len(all_trades) else 0.0,
    )
    table = pd.DataFrame(rows)
    return WalkForwardResult(
        table, stitched.rename("equity"), all_trades, metrics, stability(table, params), params
    )


def stability(table: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """How steady the chosen parameters are across windows."""
    out = []
    for p in params:
        vals = table[p].tolist()
        common, count = Counter(map(str, vals)).most_common(1)[0]
        changes = sum(1 for a, b in itertools.pairwise(vals) if a != b)
        num = pd.to_numeric(table[p], errors="coerce")
        out.append(
            {
                "param": p,
                "distinct": len(set(map(str, vals))),
                "most_common": common,
                "share_pct": count / len(vals) * 100,
                "changes": changes,
                "mean": float(num.mean()) if num.notna().all() else math.nan,
                "std": float(num.std(ddof=0)) if num.notna().all() else math.nan,
            }
        )
    return pd.DataFrame(out)


def _offset(progress: SweepProgress | None, base: int, total: int) -> SweepProgress | None:
    """A window's sweep progress as progress of the whole walk-forward."""
    if progress is None:
        return None
    report = progress

    def inner(done: int, _total: int) -> None:
        report(base + done, total)

    return inner


def _sizing(spec: SweepSpec) -> Any:
    from fbterm.backtest.inputs import make_sizing

    return make_sizing(spec.sizing, spec.size)


def _sharpe(eq: pd.Series) -> float:
    from fbterm.backtest.metrics import periodic_returns
    from fbterm.sessions import DEFAULT_CALENDAR
    from fbterm.stats import sharpe_ratio

    # Intraday returns bucketed by the exchange's sessions, as the sweep that chose the
    # parameters ranked them (not by UTC day, which splits an evening into two "days").
    r, per_year = periodic_returns(eq, DEFAULT_CALENDAR)
    return sharpe_ratio(r, per_year)


def _mdd(eq: pd.Series) -> float:
    from fbterm.stats import max_drawdown

    return -max_drawdown(eq.to_numpy(dtype=float)) * 100


def _plain(v: Any) -> Any:
    """A table cell as a plain Python value for the strategy (which coerces 10.0 to an int
    parameter's 10)."""
    return v.item() if isinstance(v, np.generic) else v


__all__ = [
    "SWEEP_KEYS",
    "WalkForwardResult",
    "Window",
    "oos_window",
    "parse_split",
    "walk_forward",
    "windows",
]
