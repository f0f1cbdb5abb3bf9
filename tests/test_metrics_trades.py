"""Round-trip matching, MAE/MFE, real-time metrics, daily reports and journal persistence."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import sqlite3
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from fbterm import stats
from fbterm.metrics.live import MetricsCalculation
from fbterm.metrics.reports import PORTFOLIO, load_trades, store_metrics
from fbterm.metrics.trades import fill_rate, match_round_trips, price_path_from_bars
from fbterm.model import Fill, Order, OrderStatus, Side, Stock, positions_from_fills
from fbterm.stats import drawdown_series, max_drawdown, rolling_sharpe, sharpe_ratio

AAPL = Stock("AAPL")
NY = ZoneInfo("America/New_York")


def fill(fid, side, qty, px, ts, comm=0.0, strat="s", order=None):
    return Fill(fid, order or f"o-{fid}", AAPL, Side(side), qty, px, comm, ts=ts, strategy_id=strat)


def ny(y, m, d, hh, mm=0):
    return dt.datetime(y, m, d, hh, mm, tzinfo=NY).timestamp()


FILLS = [
    fill("f1", "BUY", 10, 100.0, 0.0, 1.0),
    fill("f2", "BUY", 10, 110.0, 10.0, 1.0),
    fill("f3", "SELL", 15, 120.0, 20.0, 1.5),  # closes lot f1 (10) and 5 of lot f2
    fill("f4", "SELL", 10, 105.0, 30.0, 1.0),  # closes the other 5 of f2, opens a 5 short
    fill("f5", "BUY", 5, 100.0, 40.0, 0.5),  # covers the short
]


def test_fifo_round_trips_hand_computed():
    trades = match_round_trips(FILLS)
    got = [
        (t.trade_id, t.direction, t.quantity, t.gross_pnl, t.commissions, t.holding_seconds)
        for t in trades
    ]
    assert got == [
        ("f1>f3", 1, 10.0, 200.0, pytest.approx(2.0), 20.0),  # comm 1.0 entry + 10/15 of 1.5
        ("f2>f3", 1, 5.0, 50.0, pytest.approx(1.0), 10.0),  # 5/10 of 1.0 + 5/15 of 1.5
        ("f2>f4", 1, 5.0, -25.0, pytest.approx(1.0), 20.0),  # 0.5 + 5/10 of 1.0
        ("f4>f5", -1, 5.0, 25.0, pytest.approx(1.0), 10.0),  # 0.5 + 0.5
    ]
    assert trades[0].return_pct == pytest.approx(198.0 / 1000.0)
    # Flat at the end, FIFO and average-cost accounting agree on the total.
    pos = positions_from_fills(FILLS)["AAPL"]
    assert pos.is_flat
    assert sum(t.pnl for t in trades) == pytest.approx(pos.realized_pnl) == pytest.approx(245.0)


def test_round_trips_are_per_strategy():
    fills = [
        fill("a1", "BUY", 1, 10, 0, strat="a"),
        fill("b1", "SELL", 1, 12, 1, strat="b"),
        fill("a2", "SELL", 1, 11, 2, strat="a"),
    ]
    trades = match_round_trips(fills)
    assert [(t.trade_id, t.strategy_id, t.gross_pnl) for t in trades] == [("a1>a2", "a", 1.0)]


def test_mae_mfe_from_price_path_and_slippage_from_signal_prices():
    path = {"AAPL": [(5.0, 95.0), (15.0, 125.0), (35.0, 130.0)]}
    signals = {"o-f1": 99.5, "o-f3": 120.5}
    trades = match_round_trips(FILLS, price_paths=path, signal_prices=signals)
    t = trades[0]
    assert (t.mae, t.mfe) == (
        pytest.approx(-50.0),
        pytest.approx(250.0),
    )  # 10 x (95-100), 10 x (125-100)
    # entry: bought 0.5 above the signal on 10 = 5; exit: sold 0.5 below on 15, 10/15 of 7.5 = 5
    assert t.slippage == pytest.approx(10.0)
    short = trades[3]  # short from 105 between t=30 and t=40: 130 on the path is adverse
    assert (short.mae, short.mfe) == (pytest.approx(-125.0), pytest.approx(25.0))


def test_price_path_from_bars_uses_highs_and_lows():
    idx = pd.DatetimeIndex(["2025-01-02 14:30", "2025-01-02 14:31"], tz="UTC")
    bars = pd.DataFrame(
        {"open": [1, 2], "high": [3, 4], "low": [0.5, 1.5], "close": [2, 3], "volume": [1, 1]},
        index=idx,
    )
    path = price_path_from_bars(bars)
    assert [p for _, p in path] == [0.5, 3.0, 1.5, 4.0]
    assert path[0][0] == idx[0].timestamp()


def test_equity_curve_maths():
    eq = [100, 110, 99, 120, 90]
    assert drawdown_series(eq).tolist() == pytest.approx([0, 0, 0.1, 0, 0.25])
    assert max_drawdown(eq) == pytest.approx(0.25)
    r = [0.01, -0.01, 0.02, 0.0]
    # mean 0.005; sample sd sqrt((0.25 + 2.25 + 2.25 + 0.25) * 1e-4 / 3) = 0.0129099
    assert sharpe_ratio(r, periods_per_year=1) == pytest.approx(0.005 / math.sqrt(5e-4 / 3))
    assert sharpe_ratio(r, periods_per_year=4) == pytest.approx(2 * 0.005 / math.sqrt(5e-4 / 3))
    rs = rolling_sharpe(r, 2, periods_per_year=1)
    assert math.isnan(rs[0]) and rs[1] == pytest.approx(0.0)
    assert math.isnan(sharpe_ratio([0.01, 0.01]))


def test_fill_rate_counts_done_orders_only():
    def order(oid, qty, status, filled):
        return Order(oid, AAPL, Side.BUY, qty, status=status, filled_quantity=filled)

    orders = [
        order("a", 10, OrderStatus.FILLED, 10),
        order("b", 10, OrderStatus.CANCELLED, 5),
        order("c", 10, OrderStatus.REJECTED, 0),
        order("d", 100, OrderStatus.SUBMITTED, 0),
    ]
    assert fill_rate(orders) == pytest.approx(15 / 30)
    assert math.isnan(fill_rate([]))


def test_real_time_metrics_pnl_today_drawdown_exposure():
    calc = MetricsCalculation({"s": 10_000.0, "idle": 5_000.0}, rolling_window=10)
    fills = [
        fill("y1", "BUY", 10, 100.0, ny(2025, 3, 2, 15), order="o1"),  # yesterday
        fill("t1", "SELL", 5, 104.0, ny(2025, 3, 3, 10), order="o2"),  # today
    ]
    orders = [
        Order(
            "o1",
            AAPL,
            Side.BUY,
            10,
            strategy_id="s",
            status=OrderStatus.FILLED,
            filled_quantity=10,
            signal_price=99.0,
        ),
        Order(
            "o2",
            AAPL,
            Side.SELL,
            10,
            strategy_id="s",
            status=OrderStatus.CANCELLED,
            filled_quantity=5,
            signal_price=104.0,
        ),
    ]
    now = ny(2025, 3, 3, 11)
    snap = calc.calculate_real_time_metrics(
        fills, {"AAPL": 106.0}, orders=orders, now=now, day_open_marks={"AAPL": 102.0}
    )
    s = snap.strategies["s"]
    assert snap.day == dt.date(2025, 3, 3)
    assert (s.realized_pnl, s.unrealized_pnl, s.equity) == (20.0, 30.0, 10_050.0)
    # sold 5 at 104 against a 102 open (+10), held 5 from 102 to 106 (+20)
    assert s.pnl_today == pytest.approx(30.0)
    assert (s.gross_exposure, s.net_exposure, s.open_positions) == (530.0, 530.0, 1)
    assert s.traded_value_today == 520.0 and s.turnover_today == pytest.approx(520.0 / 10_050.0)
    assert s.fill_rate == pytest.approx(15 / 20)
    assert s.slippage == pytest.approx(10.0)  # bought 1.00 above the signal on 10
    assert s.closed_trades == 1 and s.win_rate == 1.0
    assert snap.strategies["idle"].equity == 5_000.0
    p = snap.portfolio
    assert p.name == PORTFOLIO and p.equity == 15_050.0 and p.pnl_today == pytest.approx(30.0)
    assert p.drawdown == 0.0

    later = calc.calculate_real_time_metrics(fills, {"AAPL": 96.0}, orders=orders, now=now + 60)
    s2 = later.strategies["s"]
    assert s2.equity == 10_000.0  # unrealized (96-100) x 5 = -20
    assert s2.drawdown == pytest.approx(50.0 / 10_050.0)
    assert s2.max_drawdown == pytest.approx(50.0 / 10_050.0)
    assert math.isnan(s2.rolling_sharpe)  # one return so far: no Sharpe yet (a dash)


def test_live_sharpe_is_per_bar_period_and_a_dash_until_there_are_enough_returns():
    # Samples every second, 60 s bars: returns are minute to minute, annualised per minute.
    calc = MetricsCalculation({"s": 10_000.0}, rolling_window=10, bar_seconds=60.0)
    buy = [fill("b1", "BUY", 10, 100.0, ny(2025, 3, 3, 10), order="o1")]
    t0 = ny(2025, 3, 3, 10, 1)
    rng = np.random.default_rng(3)
    path = 100 + np.cumsum(rng.normal(0, 0.5, 15 * 60))
    sharpes = []
    for k, px in enumerate(path):
        snap = calc.calculate_real_time_metrics(buy, {"AAPL": float(px)}, now=t0 + k)
        sharpes.append(snap.strategies["s"].rolling_sharpe)
    minutes = [i for i in range(len(path)) if (t0 + i) % 60 == 59]
    # 9 minute-to-minute returns after 10 minutes: not enough for a window of 10
    assert all(math.isnan(v) for v in sharpes[: minutes[9]])
    assert math.isfinite(sharpes[-1])
    eq = 10_000 + 10 * (path[minutes] - 100)
    r = np.diff(eq) / eq[:-1]
    want = stats.sharpe_ratio(r[-10:], stats.periods_per_year(60.0, "sessions"))
    assert sharpes[-1] == pytest.approx(want, rel=1e-9)
    # on the market's clock (a replay faster than the wall clock) samples bucket by market time
    fast = MetricsCalculation({"s": 10_000.0}, rolling_window=10, bar_seconds=60.0)
    for k, px in enumerate(path[minutes]):
        snap = fast.calculate_real_time_metrics(
            buy, {"AAPL": float(px)}, now=t0 + k * 0.01, market_ts=t0 + 59 + 60 * k
        )
    assert snap.strategies["s"].rolling_sharpe == pytest.approx(want, rel=1e-9)


def test_portfolio_uses_the_account_equity_series_when_given():
    calc = MetricsCalculation({"s": 1_000.0})
    equity = [(1.0, 1000.0), (2.0, 1100.0), (3.0, 990.0)]
    snap = calc.calculate_real_time_metrics([], {}, equity=equity, now=4.0)
    assert snap.portfolio.equity == 990.0
    assert snap.portfolio.drawdown == pytest.approx(0.1)


def test_post_trade_daily_report_and_store(tmp_path):
    base = ny(2025, 3, 3, 10)
    fills = [
        fill(f.fill_id, f.side.value, f.quantity, f.price, base + f.ts, f.commission) for f in FILLS
    ]
    fills.append(fill("g1", "BUY", 1, 50.0, ny(2025, 3, 4, 10), strat="other"))
    fills.append(fill("g2", "SELL", 1, 49.0, ny(2025, 3, 4, 11), strat="other"))
    calc = MetricsCalculation({"s": 10_000.0})
    post = calc.calculate_post_trade_metrics(fills)
    day1 = post.for_day(dt.date(2025, 3, 3))
    assert [(d.strategy_id, d.trades, d.wins) for d in day1] == [("s", 4, 3), (PORTFOLIO, 4, 3)]
    assert day1[0].pnl == pytest.approx(245.0)
    assert day1[0].avg_holding_seconds == pytest.approx(15.0)

    calc.calculate_real_time_metrics(fills, {"AAPL": 100.0}, now=ny(2025, 3, 3, 16))
    paths = calc.write_daily_report(tmp_path / "reports", dt.date(2025, 3, 3))
    assert [p.name for p in paths] == ["trades-2025-03-03.csv", "report-2025-03-03.json"]
    with paths[0].open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["trade_id"] for r in rows] == ["f1>f3", "f2>f3", "f2>f4", "f4>f5"]
    report = json.loads(paths[1].read_text())
    assert report["trades"] == 4 and report["snapshot"]["portfolio"]["name"] == PORTFOLIO

    conn = sqlite3.connect(tmp_path / "journal.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    store_metrics(conn, calc.last_snapshot, post.trades)
    store_metrics(conn, calc.last_snapshot, post.trades)  # idempotent: no duplicates
    assert conn.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 5
    assert conn.execute("SELECT COUNT(*) FROM metrics_snapshots").fetchone()[0] == 1 + len(
        calc.last_snapshot.strategies
    )
    assert load_trades(conn) == post.trades
    assert [t.trade_id for t in load_trades(conn, "other")] == ["g1>g2"]
    conn.close()


def test_incremental_ingest_matches_a_full_replay():
    import random

    rng = random.Random(7)
    syms = [Stock("AAPL"), Stock("MSFT")]
    start = ny(2025, 3, 3, 9, 30) - 86_400  # half the fills yesterday, half today
    fills = [
        Fill(
            f"f{i}",
            f"o{i}",
            rng.choice(syms),
            rng.choice([Side.BUY, Side.SELL]),
            rng.randint(1, 50),
            100 + rng.random() * 5,
            0.5,
            ts=start + i * 300,
            strategy_id=rng.choice(["a", "b"]),
        )
        for i in range(400)
    ]
    marks = {"AAPL": 102.0, "MSFT": 101.0}
    now = ny(2025, 3, 3, 16)

    def key(snap):
        return {
            n: (
                round(m.total_pnl, 6),
                round(m.pnl_today, 6),
                m.closed_trades,
                round(m.commissions, 6),
                round(m.traded_value_today, 6),
            )
            for n, m in snap.strategies.items()
        }

    whole = MetricsCalculation({"a": 1e5, "b": 1e5}).calculate_real_time_metrics(
        fills, marks, now=now
    )
    inc = MetricsCalculation({"a": 1e5, "b": 1e5})
    for k in range(0, 400, 37):
        inc.calculate_real_time_metrics(fills[:k], marks, now=now - 1000 + k)
    assert key(inc.calculate_real_time_metrics(fills, marks, now=now)) == key(whole)
    # A late execution with an earlier timestamp (e.g. re-requested after an outage) forces a replay.
    late = fills[:200] + fills[201:] + [fills[200]]
    assert key(inc.calculate_real_time_metrics(late, marks, now=now)) == key(whole)
    trades = match_round_trips(fills)
    assert sum(m.closed_trades for m in whole.strategies.values()) == len(trades)
    assert whole.portfolio.closed_trades == len(trades)
