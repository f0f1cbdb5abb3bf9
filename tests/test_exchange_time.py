"""Exchange time: the trading day rolls at the exchange's close whatever daylight saving does;
naive CSV times are read in the zone the user names, DST gaps and repeats resolved (never
refused) and said once; intraday returns are bucketed by session; durations are wall-clock;
option expiry is the exchange close for every caller."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbterm import sessions
from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.metrics import periodic_returns
from fbterm.cli import main
from fbterm.config import RiskConfig
from fbterm.data.storage import DataStorage
from fbterm.pricing import expiry_ts
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.strategies.base import Sizing, StrategyInterface, signal_frame


def utc(text: str) -> float:
    return pd.Timestamp(text, tz="UTC").timestamp()


def ns(*texts: str) -> np.ndarray:
    return pd.DatetimeIndex(list(texts), tz="UTC").as_unit("ns").asi8


@pytest.mark.parametrize(
    ("moment", "session"),
    [
        ("2024-01-10 20:59", "2024-01-10"),  # winter: the close is 16:00 EST = 21:00 UTC
        ("2024-01-10 21:00", "2024-01-11"),
        ("2024-07-10 19:59", "2024-07-10"),  # summer: 16:00 EDT = 20:00 UTC
        ("2024-07-10 20:00", "2024-07-11"),
        ("2024-03-09 12:00", "2024-03-11"),  # a Saturday belongs to Monday's session
        (
            "2024-11-29 18:30",
            "2024-12-02",
        ),  # after the 13:00 early close the day after Thanksgiving
        ("2024-07-03 17:30", "2024-07-05"),  # early close, then the holiday
    ],
)
def test_a_session_ends_at_the_exchanges_close(moment: str, session: str) -> None:
    (day,) = sessions.session_days(ns(moment))
    assert sessions.session_date(int(day)) == dt.date.fromisoformat(session)
    assert sessions.trading_day(utc(moment)) == dt.date.fromisoformat(session)


def test_round_the_clock_calendar_rolls_at_midnight_utc() -> None:
    days = sessions.session_days(ns("2024-07-10 23:59", "2024-07-11 00:00"), "24/7")
    assert [str(sessions.session_date(int(d))) for d in days] == ["2024-07-10", "2024-07-11"]
    assert sessions.calendar_timezone("24/7") == "UTC"
    with pytest.raises(sessions.CalendarError, match="unknown exchange calendar 'XXXX'"):
        sessions.check_calendar("XXXX")


def test_daily_loss_limit_day_rolls_at_the_summer_close() -> None:
    g = PortfolioLevelRisk(RiskConfig(max_drawdown_pct=99.0, daily_loss_limit=5_000))
    g.update_equity(100_000, utc("2024-07-10 19:00"))
    g.update_equity(97_000, utc("2024-07-10 19:59"))
    assert g.daily_pnl == -3_000
    g.update_equity(96_000, utc("2024-07-10 20:00"))  # 16:00 New York: a new trading day
    assert g.daily_pnl == 0.0


def hourly_ny_naive(tmp_path: Path, name: str = "ny.csv") -> tuple[Path, pd.DatetimeIndex]:
    """Hourly bars written in New York wall-clock time without a zone across both 2024 DST
    changes, as a vendor publishes them: the spring gap absent, the autumn hour twice."""
    true = pd.date_range("2024-03-09", "2024-11-04", freq="h", tz="UTC")
    local = true.tz_convert("America/New_York").tz_localize(None)
    rng = np.random.default_rng(0)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, len(true))))
    df = pd.DataFrame(
        {"Date": local.strftime("%Y-%m-%d %H:%M"), "Open": c, "High": c * 1.001,
         "Low": c * 0.999, "Close": c, "Adj Close": c / 2, "Volume": 100}
    )  # fmt: skip
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p, true


def test_naive_local_times_across_dst_load_in_the_named_zone(tmp_path: Path) -> None:
    p, true = hourly_ny_naive(tmp_path)
    bars, rep = DataStorage(tmp_path, cache=False).load_from_csv(p, report=True)
    assert bars.index.equals(true.as_unit("ns")) and rep.bad_rows == 0
    assert rep.clock == "America/New_York"
    assert rep.notes[0] == "times without a zone read as America/New_York wall-clock time"
    assert len(rep.notes) == 2 and "2 local times in America/New_York happen twice" in rep.notes[1]
    # The same file read as UTC: another clock, 4-5 hours earlier, no DST to resolve, and so
    # the repeated 01:00 is a plain duplicate, refused unless bad rows may be dropped.
    with pytest.raises(Exception, match="duplicate timestamp 2024-11-03 01:00"):
        DataStorage(tmp_path, cache=False).load_from_csv(p, timezone="UTC")
    as_utc, rep2 = DataStorage(tmp_path, cache=False).load_from_csv(
        p, report=True, timezone="UTC", on_bad_rows="drop"
    )
    assert rep2.notes == ["times without a zone read as UTC wall-clock time"]
    assert rep2.dropped == {"duplicate timestamp": 1}
    assert as_utc.index[0] == pd.Timestamp("2024-03-08 19:00", tz="UTC")  # not 2024-03-09 00:00
    assert bars.index[0] == pd.Timestamp("2024-03-09 00:00", tz="UTC")


def test_a_gap_time_moves_forward_and_a_clash_is_dropped_not_refused(tmp_path: Path) -> None:
    text = "ts,open,high,low,close,volume\n" + "".join(
        f"2024-03-10 {h:02d}:30,1,1,1,1,1\n" for h in range(0, 5)
    )
    (tmp_path / "gap.csv").write_text(text)
    bars, rep = DataStorage(tmp_path, cache=False).load_from_csv(tmp_path / "gap.csv", report=True)
    # 02:30 does not exist in New York that night: moved to 03:00 EDT (07:00 UTC); no clash
    assert "1 local time in America/New_York does not exist" in rep.notes[1]
    assert list(bars.index.strftime("%H:%M")) == ["05:30", "06:30", "07:00", "07:30", "08:30"]
    # A UTC file read as New York has all 24 hours that day: 02:00 lands on 03:00 and goes.
    text = "ts,open,high,low,close,volume\n" + "".join(
        f"2024-03-10 {h:02d}:00,1,1,1,1,1\n" for h in range(0, 5)
    )
    (tmp_path / "clash.csv").write_text(text)
    bars, rep = DataStorage(tmp_path, cache=False).load_from_csv(
        tmp_path / "clash.csv", report=True
    )
    assert len(bars) == 4 and rep.dropped == {"DST gap clash": 1}
    assert "name its zone (--timezone)" in rep.notes[-1]


def test_a_file_with_offsets_keeps_its_own_clock(tmp_path: Path) -> None:
    (tmp_path / "aware.csv").write_text(
        "ts,open,high,low,close,volume\n2024-07-01T09:30:00-04:00,1,1,1,1,1\n"
        "2024-12-02T09:30:00-05:00,1,1,1,1,1\n"
    )
    bars, rep = DataStorage(tmp_path, cache=False).load_from_csv(
        tmp_path / "aware.csv", report=True, timezone="Asia/Tokyo"
    )
    assert list(bars.index.strftime("%H:%M")) == ["13:30", "14:30"] and rep.notes == []


def test_backtest_cli_reads_the_named_zone_and_says_so_once(tmp_path: Path, capsys) -> None:
    p, true = hourly_ny_naive(tmp_path)
    args = ["backtest", "--data", str(p), "--param", "fast=5", "--param", "slow=20", "--json"]
    assert main([*args, "--timezone", "America/New_York"]) == 0
    ny = __import__("json").loads(capsys.readouterr().out)
    assert ny["start"] == true[0].isoformat()
    assert ny["notes"][0] == "times without a zone read as America/New_York wall-clock time"
    assert sum("happen twice" in n for n in ny["notes"]) == 1
    assert main([*args, "--timezone", "UTC", "--on-bad-rows", "drop"]) == 0
    as_utc = __import__("json").loads(capsys.readouterr().out)
    assert as_utc["start"] == "2024-03-08T19:00:00+00:00"
    # --adjust trades the Adj Close series (here half the price): 10 shares make half the P&L
    fixed = [
        *args,
        "--timezone",
        "UTC",
        "--on-bad-rows",
        "drop",
        "--sizing",
        "fixed",
        "--size",
        "10",
    ]
    assert main(fixed) == 0
    raw = __import__("json").loads(capsys.readouterr().out)
    assert main([*fixed, "--adjust"]) == 0
    adj = __import__("json").loads(capsys.readouterr().out)
    assert adj["trades"] == raw["trades"] > 0
    assert adj["return_pct"] == pytest.approx(raw["return_pct"] / 2, rel=1e-9)
    # the table says the clock once, above the statistics
    assert main([*args[:-1], "--timezone", "America/New_York"]) == 0
    out = capsys.readouterr().out
    assert out.count("wall-clock time") == 1 and out.index("note:") < out.index("Sharpe")


class _HoldFridayToMonday(StrategyInterface):
    name = "hold"

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        t = np.full(len(bars), np.nan)
        t[0], t[1] = 1.0, 0.0
        return signal_frame(bars.index, t)


def test_durations_are_wall_clock_across_a_dst_change() -> None:
    # Daily bars stamped 16:00 New York: Friday 2024-03-08 (21:00 UTC) to Monday 03-11
    # (20:00 UTC) is 71 hours of real time but three days on the exchange's clock.
    local = pd.DatetimeIndex(["2024-03-07 16:00", "2024-03-08 16:00", "2024-03-11 16:00",
                              "2024-03-12 16:00"]).tz_localize("America/New_York")  # fmt: skip
    idx = local.tz_convert("UTC")
    px = np.array([100.0, 100.0, 101.0, 102.0])
    df = pd.DataFrame({"open": px, "high": px, "low": px, "close": px, "volume": 1.0}, index=idx)
    res = CustomBacktester(df, _HoldFridayToMonday(), sizing=Sizing("fixed", 1)).run_backtest()
    assert res.trades["duration"].iloc[0] == pd.Timedelta(days=3)
    assert res.metrics["max_trade_duration"] == pd.Timedelta(days=3)
    utc_clock = CustomBacktester(
        df, _HoldFridayToMonday(), sizing=Sizing("fixed", 1), timezone="UTC"
    ).run_backtest()
    assert utc_clock.trades["duration"].iloc[0] == pd.Timedelta(hours=71)


def test_intraday_returns_are_bucketed_by_session() -> None:
    # Round-the-clock hourly equity for two weeks: XNYS sessions give one return per trading
    # day (weekend hours join Monday) and about 252 periods a year; UTC days give one per day.
    idx = pd.date_range("2024-06-03", periods=24 * 14, freq="h", tz="UTC")
    eq = pd.Series(np.linspace(100.0, 120.0, len(idx)), index=idx)
    r_xnys, per_xnys = periodic_returns(eq, "XNYS")
    r_utc, per_utc = periodic_returns(eq, None)
    assert len(r_xnys) == 10 - 1 + 1 and per_xnys == pytest.approx(252, abs=1)
    assert len(r_utc) == 14 - 1 and per_utc == 365.0
    sessions_end = pd.DatetimeIndex(["2024-06-03 19:00"], tz="UTC")  # last bar before 20:00
    assert eq[sessions_end[0]] == eq.iloc[19]


def test_option_expiry_is_the_exchange_close_for_every_caller() -> None:
    import fbterm.backtest.options as backtest_options
    import fbterm.data.simulated as simulated
    import fbterm.strategies.covered_call as covered_call

    summer, winter = dt.date(2024, 7, 19), dt.date(2024, 12, 20)
    assert expiry_ts(summer) == utc("2024-07-19 20:00")  # 16:00 EDT
    assert expiry_ts(winter) == utc("2024-12-20 21:00")  # 16:00 EST
    for module in (backtest_options, simulated, covered_call):
        assert module.expiry_ts is expiry_ts, module.__name__
