"""Post-trade reports: per-day aggregates of closed trades, the daily report files, and the
SQLite tables (in the journal database) that keep metrics snapshots and trades.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.metrics.trades import ClosedTrade

if TYPE_CHECKING:
    from fbterm.metrics.live import MetricsSnapshot

# The name of the all-strategies row, in daily aggregates and in live snapshots.
PORTFOLIO = "portfolio"


@dataclass(frozen=True, slots=True)
class DailyTradeStats:
    day: dt.date
    strategy_id: str
    trades: int
    wins: int
    gross_pnl: float
    pnl: float
    commissions: float
    slippage: float
    avg_holding_seconds: float
    avg_return: float
    worst_mae: float
    best_mfe: float

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["day"] = self.day.isoformat()
        d["win_rate"] = None if math.isnan(self.win_rate) else self.win_rate
        return d


@dataclass(frozen=True, slots=True)
class PostTradeMetrics:
    trades: list[ClosedTrade]
    daily: list[DailyTradeStats]

    def for_day(self, day: dt.date) -> list[DailyTradeStats]:
        return [d for d in self.daily if d.day == day]


def daily_aggregates(
    trades: Iterable[ClosedTrade], day_of: Callable[[float], dt.date]
) -> list[DailyTradeStats]:
    """Per (exit day, strategy) aggregates, plus a ``portfolio`` row per day."""
    groups: dict[tuple[dt.date, str], list[ClosedTrade]] = {}
    for t in trades:
        d = day_of(t.exit_ts)
        groups.setdefault((d, t.strategy_id), []).append(t)
        groups.setdefault((d, PORTFOLIO), []).append(t)
    out = []
    for (d, name), ts in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == PORTFOLIO, kv[0][1])
    ):
        n = len(ts)
        out.append(
            DailyTradeStats(
                day=d,
                strategy_id=name,
                trades=n,
                wins=sum(t.is_win for t in ts),
                gross_pnl=sum(t.gross_pnl for t in ts),
                pnl=sum(t.pnl for t in ts),
                commissions=sum(t.commissions for t in ts),
                slippage=sum(t.slippage for t in ts),
                avg_holding_seconds=sum(t.holding_seconds for t in ts) / n,
                avg_return=sum(t.return_pct for t in ts) / n,
                worst_mae=min(t.mae for t in ts),
                best_mfe=max(t.mfe for t in ts),
            )
        )
    return out


TRADE_FIELDS = [f.name for f in dataclasses.fields(ClosedTrade)]


def write_daily_report(
    directory: Path | str,
    day: dt.date,
    post: PostTradeMetrics,
    day_of: Callable[[float], dt.date],
    snapshot: MetricsSnapshot | None = None,
) -> list[Path]:
    """``trades-YYYY-MM-DD.csv`` (trades closed that day) and ``report-YYYY-MM-DD.json``.

    Written to a temporary name then renamed, so a reader never sees half a report.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    trades = [t for t in post.trades if day_of(t.exit_ts) == day]
    csv_path = d / f"trades-{day.isoformat()}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TRADE_FIELDS)
        w.writeheader()
        for t in trades:
            w.writerow(dataclasses.asdict(t))
    tmp.replace(csv_path)
    report = {
        "day": day.isoformat(),
        "daily": [s.to_dict() for s in post.for_day(day)],
        "trades": len(trades),
        "snapshot": snapshot.to_dict() if snapshot is not None and snapshot.day == day else None,
    }
    json_path = d / f"report-{day.isoformat()}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    tmp.replace(json_path)
    return [csv_path, json_path]


# =========================================================================== persistence

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics_snapshots (
    ts REAL NOT NULL,
    scope TEXT NOT NULL,            -- 'portfolio' or 'strategy'
    name TEXT NOT NULL,
    equity REAL, total_pnl REAL, pnl_today REAL, drawdown REAL, rolling_sharpe REAL,
    gross_exposure REAL, turnover_today REAL, win_rate REAL, slippage REAL, fill_rate REAL,
    data TEXT NOT NULL,             -- the full PerformanceMetrics as JSON
    PRIMARY KEY (ts, scope, name)
);
CREATE TABLE IF NOT EXISTS trades (
    trade_id TEXT PRIMARY KEY,
    strategy_id TEXT NOT NULL,
    instrument TEXT NOT NULL,
    direction INTEGER NOT NULL,
    quantity REAL NOT NULL,
    entry_ts REAL NOT NULL,
    exit_ts REAL NOT NULL,
    entry_price REAL NOT NULL,
    exit_price REAL NOT NULL,
    multiplier INTEGER NOT NULL,
    commissions REAL NOT NULL,
    gross_pnl REAL NOT NULL,
    pnl REAL NOT NULL,
    return_pct REAL NOT NULL,
    holding_seconds REAL NOT NULL,
    mae REAL NOT NULL,
    mfe REAL NOT NULL,
    slippage REAL NOT NULL,
    entry_fill_id TEXT NOT NULL,
    exit_fill_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_exit ON trades (exit_ts);
"""


def _nan_none(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v


def store_metrics(
    conn: sqlite3.Connection,
    snapshot: MetricsSnapshot | None = None,
    trades: Iterable[ClosedTrade] = (),
) -> None:
    """Persist a snapshot and closed trades in one transaction; tables are created on first use.

    Re-storing the same snapshot or trade replaces it (keyed by ts/name and trade id), so the
    engine can store "all trades so far" each time without duplicates.
    """
    conn.executescript(_SCHEMA)
    with conn:
        if snapshot is not None:
            rows = [(PORTFOLIO, snapshot.portfolio)] + [
                ("strategy", m) for m in snapshot.strategies.values()
            ]
            conn.executemany(
                "INSERT OR REPLACE INTO metrics_snapshots VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        snapshot.ts,
                        scope,
                        m.name,
                        m.equity,
                        m.total_pnl,
                        m.pnl_today,
                        m.drawdown,
                        _nan_none(m.rolling_sharpe),
                        m.gross_exposure,
                        _nan_none(m.turnover_today),
                        _nan_none(m.win_rate),
                        m.slippage,
                        _nan_none(m.fill_rate),
                        json.dumps(m.to_dict()),
                    )
                    for scope, m in rows
                ],
            )
        conn.executemany(
            f"INSERT OR REPLACE INTO trades VALUES ({','.join('?' * len(TRADE_FIELDS))})",
            [tuple(getattr(t, f) for f in TRADE_FIELDS) for t in trades],
        )


def load_trades(
    conn: sqlite3.Connection,
    strategy_id: str | None = None,
    *,
    exit_from: float | None = None,
    exit_to: float | None = None,
) -> list[ClosedTrade]:
    """Stored trades, optionally one strategy's and those that closed in [exit_from, exit_to)."""
    conn.executescript(_SCHEMA)
    where: list[str] = []
    args: list[Any] = []
    if strategy_id is not None:
        where.append("strategy_id = ?")
        args.append(strategy_id)
    if exit_from is not None:
        where.append("exit_ts >= ?")
        args.append(exit_from)
    if exit_to is not None:
        where.append("exit_ts < ?")
        args.append(exit_to)
    q = f"SELECT {','.join(TRADE_FIELDS)} FROM trades"
    if where:
        q += " WHERE " + " AND ".join(where)
    return [ClosedTrade(*row) for row in conn.execute(q + " ORDER BY exit_ts, trade_id", args)]


__all__ = [
    "PORTFOLIO",
    "TRADE_FIELDS",
    "DailyTradeStats",
    "PostTradeMetrics",
    "daily_aggregates",
    "load_trades",
    "store_metrics",
    "write_daily_report",
]
