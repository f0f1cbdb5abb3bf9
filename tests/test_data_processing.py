"""clean_data, gaps, sessions, resampling and transform_data against hand-computed frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fbterm.config import default_config
from fbterm.data.bars import DataError, validate_bars
from fbterm.data.processing import (
    DataProcessing,
    clean_data,
    find_gaps,
    outlier_mask,
    resample_bars,
    session_mask,
    transform_data,
)
from fbterm.data.simulated import synth_bars


def bars(rows: list[tuple], tz: str = "UTC") -> pd.DataFrame:
    """Bars from (timestamp, open, high, low, close, volume) tuples."""
    idx = pd.DatetimeIndex([r[0] for r in rows]).tz_localize(tz).tz_convert("UTC").as_unit("ns")
    df = pd.DataFrame([r[1:] for r in rows], columns=["open", "high", "low", "close", "volume"],
                      index=idx, dtype=float)  # fmt: skip
    df.index.name = "ts"
    return df


def test_clean_sorts_dedupes_and_removes_impossible_rows() -> None:
    raw = bars([
        ("2024-01-03", 11, 12, 10, 11, 100),
        ("2024-01-02", 10, 11, 9, 10, 100),
        ("2024-01-03", 11, 13, 10, 12, 150),   # duplicate: the last one wins
        ("2024-01-04", 12, 11, 13, 12, 100),   # high < low
        ("2024-01-05", 12, 13, 11, 12, -1),    # negative volume
        ("2024-01-08", 0, 13, 11, 12, 10),     # zero open
        ("2024-01-09", 12, 13, 11, 12.5, 10),
    ])  # fmt: skip
    out, rep = clean_data(raw, report=True)
    expected = bars([
        ("2024-01-02", 10, 11, 9, 10, 100),
        ("2024-01-03", 11, 13, 10, 12, 150),
        ("2024-01-09", 12, 13, 11, 12.5, 10),
    ])  # fmt: skip
    pd.testing.assert_frame_equal(out, expected)
    assert (rep.rows_in, rep.rows_out, rep.duplicates, rep.impossible, rep.unsorted) == (
        7,
        3,
        1,
        3,
        True,
    )
    # Between Jan 3 and Jan 9 four weekdays are missing (4, 5, 8 were removed; 6-7 are a weekend).
    assert rep.gaps["missing"].tolist() == [3]
    validate_bars(out, "cleaned")
    assert "1 duplicates dropped" in rep.summary()


def test_clean_plain_call_returns_a_frame() -> None:
    df = synth_bars(30)
    out = clean_data(df)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_frame_equal(out, df, check_freq=False)
    out2 = DataProcessing().clean_data(df)
    pd.testing.assert_frame_equal(out2, out)
    with pytest.raises(DataError, match="tz-aware"):
        clean_data(df.tz_localize(None))
    with pytest.raises(ValueError, match="gap_policy"):
        clean_data(df, gap_policy="interpolate")  # type: ignore[arg-type]


def with_missing_values() -> pd.DataFrame:
    return bars([
        ("2024-01-01", 10, 11, 9, 10, 100),    # Monday
        ("2024-01-02", np.nan, np.nan, np.nan, np.nan, np.nan),
        ("2024-01-03", 10, 12, 10, 11, 100),
        # Thursday 2024-01-04 missing entirely
        ("2024-01-05", 11, 12, 10, 11.5, 50),
        ("2024-01-08", 11.5, 12, 11, 12, 70),  # Monday after a weekend: no gap
    ])  # fmt: skip


def test_gap_policy_keep() -> None:
    out, rep = clean_data(with_missing_values(), gap_policy="keep", report=True)
    assert len(out) == 5 and out.iloc[1].isna().all()
    assert rep.missing_rows == 1
    assert list(rep.gaps.itertuples(index=False, name=None)) == [
        (pd.Timestamp("2024-01-03", tz="UTC"), pd.Timestamp("2024-01-05", tz="UTC"), 1)
    ]


def test_gap_policy_drop() -> None:
    out, rep = clean_data(with_missing_values(), gap_policy="drop", report=True)
    assert list(out.index.day) == [1, 3, 5, 8]
    assert rep.gaps["missing"].tolist() == [1, 1]  # Jan 2 (now missing) and Jan 4


def test_gap_policy_ffill_builds_flat_bars_at_previous_close() -> None:
    out, rep = clean_data(with_missing_values(), gap_policy="ffill", report=True, timezone="UTC")
    expected = bars([
        ("2024-01-01", 10, 11, 9, 10, 100),
        ("2024-01-02", 10, 10, 10, 10, 0),
        ("2024-01-03", 10, 12, 10, 11, 100),
        ("2024-01-04", 11, 11, 11, 11, 0),
        ("2024-01-05", 11, 12, 10, 11.5, 50),
        ("2024-01-08", 11.5, 12, 11, 12, 70),
    ])  # fmt: skip
    pd.testing.assert_frame_equal(out, expected)
    assert rep.filled_bars == 1
    validate_bars(out, "filled")


def test_intraday_gaps_ignore_nights_and_ffill_fills_within_the_day() -> None:
    df = bars([
        ("2024-01-02 09:30", 10, 10, 10, 10, 1),
        ("2024-01-02 09:31", 10, 11, 10, 11, 1),
        ("2024-01-02 09:34", 11, 12, 11, 12, 1),   # 09:32 and 09:33 missing
        ("2024-01-03 09:30", 12, 12, 12, 12, 1),   # overnight: not a gap
        ("2024-01-03 09:31", 12, 13, 12, 13, 1),
    ], tz="America/New_York")  # fmt: skip
    gaps = find_gaps(df)
    assert gaps["missing"].tolist() == [2]
    assert gaps["start"].iloc[0] == pd.Timestamp("2024-01-02 14:31", tz="UTC")
    out, rep = clean_data(df, gap_policy="ffill", report=True)
    assert rep.filled_bars == 2 and len(out) == 7
    filled = out.loc["2024-01-02 14:32":"2024-01-02 14:33"]
    assert filled["close"].tolist() == [11.0, 11.0] and filled["volume"].tolist() == [0.0, 0.0]
    assert find_gaps(df, "1m")["missing"].tolist() == [2]
    assert find_gaps(df, "5m").empty


def test_daily_gaps_with_an_exchange_calendar_skip_holidays() -> None:
    # 2024-07-04 is a NYSE holiday; 2024-07-08 (Monday) follows the weekend.
    df = bars([("2024-07-03", 1, 1, 1, 1, 1), ("2024-07-05", 1, 1, 1, 1, 1),
               ("2024-07-09", 1, 1, 1, 1, 1)], tz="America/New_York")  # fmt: skip
    assert find_gaps(df, "1d")["missing"].tolist() == [1, 1]
    assert find_gaps(df, "1d", session="XNYS")["missing"].tolist() == [1]


def test_session_filter_keeps_regular_hours() -> None:
    idx = pd.date_range("2024-01-02 13:00", "2024-01-02 22:00", freq="30min", tz="UTC")
    df = pd.DataFrame(
        {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}, index=idx
    )
    out, rep = clean_data(df, session="XNYS", report=True)
    # NYSE in January: 09:30-16:00 New York = 14:30-21:00 UTC, the close excluded.
    assert out.index[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")
    assert out.index[-1] == pd.Timestamp("2024-01-02 20:30", tz="UTC")
    assert rep.outside_session == len(df) - len(out) == 19 - 13
    daily = bars([("2024-07-03", 1, 1, 1, 1, 1), ("2024-07-04", 1, 1, 1, 1, 1),
                  ("2024-07-06", 1, 1, 1, 1, 1)], tz="America/New_York")  # fmt: skip
    assert session_mask(daily, "XNYS").tolist() == [True, False, False]
    with pytest.raises(ValueError, match="unknown exchange calendar"):
        session_mask(daily, "NOPE")


def test_outliers_are_flagged_not_removed() -> None:
    df = synth_bars(300, seed=4)
    spike = df.index[150]
    df.loc[spike, ["open", "high", "low", "close"]] *= 1.5
    out, rep = clean_data(df, report=True)
    assert len(out) == 300
    assert list(rep.outliers) == [spike, df.index[151]]  # up, then back down
    assert not outlier_mask(synth_bars(300, seed=4)["close"], 8.0).any()
    _, rep2 = clean_data(df, outlier_sigma=None, report=True)
    assert rep2.outliers.empty


def test_resample_minutes_to_five_minutes_by_hand() -> None:
    df = bars([
        ("2024-01-02 14:30", 10, 11, 9, 10.5, 100),
        ("2024-01-02 14:31", 10.5, 12, 10, 11, 200),
        ("2024-01-02 14:34", 11, 11.5, 8, 9, 50),
        ("2024-01-02 14:35", 9, 10, 9, 9.5, 10),
        # 14:40 bin empty: dropped, not a NaN bar
        ("2024-01-02 14:47", 9.5, 9.7, 9.1, 9.2, 5),
    ])  # fmt: skip
    out = resample_bars(df, "5m")
    expected = bars([
        ("2024-01-02 14:30", 10, 12, 8, 9, 350),
        ("2024-01-02 14:35", 9, 10, 9, 9.5, 10),
        ("2024-01-02 14:45", 9.5, 9.7, 9.1, 9.2, 5),
    ])  # fmt: skip
    pd.testing.assert_frame_equal(out, expected, check_freq=False)


def test_resample_daily_to_weekly_labels_mondays() -> None:
    df = synth_bars(10, start="2024-01-03")  # Wed 3rd .. Tue 16th
    out = resample_bars(df, "1w")
    assert list(out.index.strftime("%Y-%m-%d")) == ["2024-01-01", "2024-01-08", "2024-01-15"]
    first = df.loc[:"2024-01-05"]
    assert out.iloc[0].tolist() == [first["open"].iloc[0], first["high"].max(), first["low"].min(),
                                    first["close"].iloc[-1], first["volume"].sum()]  # fmt: skip


def test_resample_intraday_to_daily_in_exchange_time() -> None:
    df = bars([("2024-01-02 23:00", 1, 2, 1, 2, 1), ("2024-01-03 01:00", 2, 3, 2, 3, 1)])
    assert len(resample_bars(df, "1d")) == 2  # two UTC days
    ny = resample_bars(df, "1d", timezone="America/New_York")  # one New York day
    assert ny.index.tolist() == [pd.Timestamp("2024-01-02 05:00", tz="UTC")]
    assert ny.iloc[0].tolist() == [1.0, 3.0, 1.0, 3.0, 2.0]


def test_transform_data_adds_returns_and_indicators() -> None:
    df = synth_bars(100, seed=2)
    out = transform_data(
        df, log_returns=True, indicators=["sma_5", "rsi_14", "bb_20_2.5", "atr_14"]
    )
    np.testing.assert_allclose(out["return"].iloc[1], df["close"].iloc[1] / df["close"].iloc[0] - 1)
    np.testing.assert_allclose(
        out["log_return"].iloc[1], np.log(df["close"].iloc[1] / df["close"].iloc[0])
    )
    pd.testing.assert_series_equal(out["sma_5"], df["close"].rolling(5).mean(), check_names=False)
    assert {"bb_20_2.5_mid", "bb_20_2.5_upper", "bb_20_2.5_lower", "rsi_14", "atr_14"} <= set(
        out.columns
    )
    assert list(out.columns[:5]) == ["open", "high", "low", "close", "volume"]
    weekly = transform_data(df, returns=False, resample="1w")
    assert list(weekly.columns) == ["open", "high", "low", "close", "volume"] and len(weekly) == 21
    named = transform_data(df, returns=False, indicators={"fast": {"fn": "ema", "n": 3}})
    assert named["fast"].notna().sum() == 98
    with pytest.raises(ValueError, match="unknown indicator"):
        transform_data(df, indicators=["macd_12"])


def test_data_processing_from_config() -> None:
    dp = DataProcessing.from_config(default_config())
    assert (dp.gap_policy, dp.outlier_sigma, dp.timezone) == ("keep", 8.0, "America/New_York")
    df = synth_bars(20)
    pd.testing.assert_frame_equal(dp.transform_data(df), transform_data(df))
