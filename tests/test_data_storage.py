"""DataStorage: the one bar shape, CSV layouts people have, bad files, atomic saves, layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbterm.data.bars import BAR_COLUMNS, DataError, canonical_bar_size, validate_bars
from fbterm.data.csvparse import parse_timestamps
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage


@pytest.fixture
def storage(tmp_path: Path) -> DataStorage:
    return DataStorage(tmp_path / "data")


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def ts(*values: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(list(values), name="ts").tz_localize("UTC").as_unit("ns")


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cache", [False, True])
def test_round_trip_is_exact(tmp_path: Path, cache: bool) -> None:
    rng = np.random.default_rng(1)
    n = 500
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))  # full-precision floats
    df = pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
         "volume": rng.integers(0, 10_000, n).astype(float)},
        index=pd.date_range("2021-03-01 14:30", periods=n, freq="37s", tz="UTC"),
    )  # fmt: skip
    st = DataStorage(tmp_path, cache=cache)
    p = st.save_to_csv(df, tmp_path / "x.csv")
    for _ in range(2):  # the second load may come from the cache
        back = st.load_from_csv(p)
        pd.testing.assert_frame_equal(
            back, validate_bars(df, "df"), check_exact=True, check_freq=False
        )
    assert back.index.name == "ts" and str(back.index.dtype) == "datetime64[ns, UTC]"
    assert list(back.columns) == list(BAR_COLUMNS)
    assert all(back[c].dtype == np.float64 for c in BAR_COLUMNS)


def test_round_trip_sub_second_timestamps(tmp_path: Path) -> None:
    df = synth_bars(4, bar_size="1s")
    df.index = df.index + pd.to_timedelta([0, 1, 2, 3], unit="ms")
    st = DataStorage(tmp_path, cache=False)
    back = st.load_from_csv(st.save_to_csv(df, tmp_path / "ms.csv"))
    pd.testing.assert_index_equal(back.index, df.index.rename("ts"))


def test_storage_layout_save_load_list_append(storage: DataStorage) -> None:
    assert storage.list() == []
    a = synth_bars(10, seed=1)
    assert storage.path_for("aapl", "1 day") == storage.data_dir / "AAPL" / "1d.csv"
    assert storage.append("AAPL", "1d", a) == 10
    pd.testing.assert_frame_equal(storage.load("AAPL", "1d"), a, check_freq=False)
    # Overlapping append: 5 old timestamps (revised prices win) + 5 new.
    b = synth_bars(15, seed=2).iloc[5:]
    assert storage.append("AAPL", "1d", b) == 5
    merged = storage.load("AAPL", "1d")
    assert len(merged) == 15 and merged.index.is_unique and merged.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(merged.iloc[5:], b, check_freq=False)
    assert storage.append("AAPL", "1d", b) == 0
    storage.append("MSFT", "5 mins", synth_bars(3, bar_size="5m"))
    listed = storage.list()
    assert [(s.symbol, s.bar_size, s.rows) for s in listed] == [
        ("AAPL", "1d", 15),
        ("MSFT", "5m", 3),
    ]
    assert listed[0].start == merged.index[0] and listed[0].end == merged.index[-1]
    sym, bar, rows, start, end = listed[1]  # still a plain tuple
    assert (sym, bar, rows, start < end) == ("MSFT", "5m", 3, True)
    # Without the cache the summary comes from the file's first and last lines.
    plain = DataStorage(storage.data_dir, cache=False).list()
    assert plain == listed


def test_load_slices_and_missing_symbol(storage: DataStorage) -> None:
    storage.save("SPY", "1d", synth_bars(10))
    part = storage.load("SPY", "1d", start="2020-01-03", end="2020-01-08")
    assert list(part.index.strftime("%Y-%m-%d")) == ["2020-01-03", "2020-01-06", "2020-01-07"]
    with pytest.raises(DataError, match=r"no stored 1d bars for QQQ"):
        storage.load("QQQ", "1d")
    with pytest.raises(ValueError, match="not a storable symbol"):
        storage.path_for("../etc", "1d")


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = DataStorage(tmp_path, cache=False)
    p = st.save_to_csv(synth_bars(5), tmp_path / "a.csv")
    before = p.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        st.save_to_csv(synth_bars(50, seed=9), p)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.csv"]  # no temporary left behind


def test_save_refuses_invalid_bars(tmp_path: Path) -> None:
    bad = synth_bars(3)
    bad.iloc[1, bad.columns.get_loc("low")] = 1e9
    with pytest.raises(DataError, match=r"row 1 .*high < low"):
        DataStorage(tmp_path).save_to_csv(bad, tmp_path / "b.csv")
    assert not (tmp_path / "b.csv").exists()


# ---------------------------------------------------------------------------- layouts


def test_yahoo_layout_naive_dates_are_exchange_time(tmp_path: Path) -> None:
    p = write(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
              "2020-01-02,10,11,9,10.5,5.25,100\n2020-07-02,20,22,18,21,10.5,200\n")  # fmt: skip
    df = DataStorage(tmp_path, cache=False).load_from_csv(p)
    # Midnight in New York: 05:00 UTC in winter, 04:00 UTC in summer.
    pd.testing.assert_index_equal(df.index, ts("2020-01-02 05:00", "2020-07-02 04:00"))
    assert df["close"].tolist() == [10.5, 21.0]
    adj = DataStorage(tmp_path, cache=False).load_from_csv(p, adj_close=True)
    assert adj["close"].tolist() == [5.25, 10.5] and adj["high"].tolist() == [5.5, 11.0]
    assert adj["volume"].tolist() == [100.0, 200.0]
    utc = DataStorage(tmp_path, cache=False).load_from_csv(p, timezone="UTC")
    assert utc.index[0] == pd.Timestamp("2020-01-02", tz="UTC")


def test_any_case_any_order_and_epoch_seconds(tmp_path: Path) -> None:
    p = write(tmp_path, "VOLUME,close,Timestamp,LOW,High,open\n5,10.5,1577977200,9,11,10\n"
              "6,10.7,1577977260,10,11,10.5\n")  # fmt: skip
    df = DataStorage(tmp_path, cache=False).load_from_csv(p)
    pd.testing.assert_index_equal(df.index, ts("2020-01-02 15:00", "2020-01-02 15:01"))
    assert df.loc[df.index[1]].tolist() == [10.5, 11.0, 10.0, 10.7, 6.0]


@pytest.mark.parametrize(
    ("first_col", "values"),
    [
        ("time", ["1577977200000", "1577977260000"]),  # epoch milliseconds
        ("datetime", ["2020-01-02T10:00:00-05:00", "2020-01-02T15:01:00Z"]),
        ("date", ["2020-01-02 10:00:00", "2020-01-02 10:01:00"]),  # naive: New York
        ("", ["2020-01-02 15:00:00+00:00", "2020-01-02 15:01:00+00:00"]),  # unnamed index column
        ("when", ["01/02/2020 10:00", "01/02/2020 10:01"]),  # first column, US format
    ],
)
def test_timestamp_formats(tmp_path: Path, first_col: str, values: list[str]) -> None:
    rows = "".join(f"{v},1,1,1,1,1\n" for v in values)
    p = write(tmp_path, f"{first_col},open,high,low,close,volume\n{rows}")
    df = DataStorage(tmp_path, cache=False).load_from_csv(p)
    pd.testing.assert_index_equal(df.index, ts("2020-01-02 15:00", "2020-01-02 15:01"))


def test_separate_date_and_time_columns(tmp_path: Path) -> None:
    p = write(tmp_path, "Date,Time,Open,High,Low,Close,Volume\n2020-07-01,09:30,1,2,1,2,3\n")
    df = DataStorage(tmp_path, cache=False).load_from_csv(p)
    assert df.index[0] == pd.Timestamp("2020-07-01 13:30", tz="UTC")


def test_yyyymmdd_integers_are_dates(tmp_path: Path) -> None:
    p = write(tmp_path, "date,open,high,low,close,volume\n20200102,1,2,1,2,3\n20200103,1,2,1,2,3\n")
    df = DataStorage(tmp_path, cache=False).load_from_csv(p, timezone="UTC")
    pd.testing.assert_index_equal(df.index, ts("2020-01-02", "2020-01-03"))


def test_parse_timestamps_unparsable_become_nat() -> None:
    idx = parse_timestamps(pd.Series(["2020-01-02", "garbage", None], dtype=object), "UTC")
    assert idx[0] == pd.Timestamp("2020-01-02", tz="UTC") and idx[1:].isna().all()


def test_unsorted_file_is_sorted_and_reported(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "ts,open,high,low,close,volume\n2020-01-03T15:00:00Z,1,1,1,1,1\n2020-01-02T15:00:00Z,2,2,2,2,2\n",
    )
    df, rep = DataStorage(tmp_path, cache=False).load_from_csv(p, report=True)
    assert df["open"].tolist() == [2.0, 1.0] and rep.sorted and rep.bad_rows == 0


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "ts,open,high,low,close,volume\n2020-01-02T15:00:00Z,1,1,1,1,1\n\n2020-01-03T15:00:00Z,1,0.5,1,1,1\n",
    )
    with pytest.raises(DataError, match=r"bars\.csv: line 4: high < low"):
        DataStorage(tmp_path, cache=False).load_from_csv(p)


# ---------------------------------------------------------------------------- bad files

HEADER = "ts,open,high,low,close,volume\n"
GOOD = "2020-01-02T15:00:00Z,10,11,9,10.5,100\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "2020-01-03T15:00:00Z,10,11,9,10.5,100\nnot a date,10,11,9,10.5,100\n",
            r"line 4: unparsable date 'not a date'",
        ),
        ("2020-01-03T15:00:00Z,10,11,9,abc,100\n", r"line 3: close is not a number: 'abc'"),
        ("2020-01-03T15:00:00Z,10,9,11,10.5,100\n", r"line 3: high < low \(9 < 11\)"),
        ("2020-01-03T15:00:00Z,10,11,9,10.5,-5\n", r"line 3: negative volume -5"),
        ("2020-01-03T15:00:00Z,10,11,9,,100\n", r"line 3: missing close"),
        ("2020-01-03T15:00:00Z,-10,11,9,10.5,100\n", r"line 3: open must be > 0, got -10"),
        ("2020-01-03T15:00:00Z,10,10.2,9,10.5,100\n", r"line 3: high 10.2 is below open/close"),
        ("2020-01-03T15:00:00Z,10,11,10.2,10.5,100\n", r"line 3: low 10.2 is above open/close"),
        ("2020-01-03T15:00:00Z,10,11,9,10.5,100,7\n", r"line 3: expected 6 fields, found 7"),
        (
            "2020-01-02T15:00:00Z,10,11,9,10.5,100\n",
            r"line 2: duplicate timestamp .* \(again on line 3\)",
        ),
        (",10,11,9,10.5,100\n", r"line 3: missing date"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, body: str, message: str) -> None:
    p = write(tmp_path, HEADER + GOOD + body)
    with pytest.raises(DataError, match=message) as ei:
        DataStorage(tmp_path, cache=False).load_from_csv(p)
    assert str(ei.value).startswith(f"{p}: line ")
    assert "\n" not in str(ei.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"file is empty"),
        (
            "ts,open,high,low,close\n" + GOOD,
            r"line 1: missing column\(s\) volume \(found: ts, open",
        ),
        ("date,price,volume\n", r"missing column\(s\) open, high, low, close"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(DataError, match=message):
        DataStorage(tmp_path, cache=False).load_from_csv(p)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    st = DataStorage(tmp_path)
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        st.load_from_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        st.load_from_csv(tmp_path)


def test_first_bad_row_wins_and_the_rest_are_counted(tmp_path: Path) -> None:
    body = "2020-01-03T15:00:00Z,10,11,9,x,1\n2020-01-06T15:00:00Z,10,9,11,10,1\n2020-01-07T15:00:00Z,10,11,9,10,-1\n"
    p = write(tmp_path, HEADER + GOOD + body)
    with pytest.raises(DataError, match=r"line 3: close is not a number: 'x'; 2 more bad rows"):
        DataStorage(tmp_path, cache=False).load_from_csv(p)


def test_drop_reports_counts_and_reasons(tmp_path: Path) -> None:
    body = ("2020-01-03T15:00:00Z,10,11,9,x,1\n2020-01-06T15:00:00Z,10,9,11,10,1\n2020-01-07T15:00:00Z,10,11,9,10,-1\n"
            "soon,1,1,1,1,1\n2020-01-08T15:00:00Z,10,11,9,10,1\n2020-01-08T15:00:00Z,10,12,9,11,1\n")  # fmt: skip
    p = write(tmp_path, HEADER + GOOD + body)
    df, rep = DataStorage(tmp_path).load_from_csv(p, on_bad_rows="drop", report=True)
    assert list(df.index.strftime("%m-%d")) == ["01-02", "01-08"]
    assert df["close"].iloc[-1] == 11.0  # duplicate timestamp: the last row wins
    assert rep.dropped == {
        "unparsable date": 1, "non-numeric close": 1, "high < low": 1, "negative volume": 1,
        "duplicate timestamp": 1,
    }  # fmt: skip
    assert rep.rows_read == 7 and rep.rows == 2 and rep.bad_rows == 5 and rep.n_dropped == 5
    assert rep.examples[0] == "line 3: close is not a number: 'x'"
    assert "dropped 1 (high < low)" in rep.summary()
    assert not rep.from_cache
    # Files with bad rows are never cached, so an 'error' load still fails afterwards.
    with pytest.raises(DataError):
        DataStorage(tmp_path).load_from_csv(p)


def test_repair_fixes_what_it_can(tmp_path: Path) -> None:
    body = ("2020-01-03T15:00:00Z,,11,9,10.8,1\n"     # missing open -> previous close 10.5
            "2020-01-06T15:00:00Z,10,9,11,10,1\n"     # high < low -> swapped
            "2020-01-07T15:00:00Z,10,10.5,9.9,11,-1\n"  # high below close, low ok, negative volume
            "2020-01-08T15:00:00Z,10,11,9,,1\n")  # missing close: cannot be rebuilt, dropped  # fmt: skip
    p = write(tmp_path, HEADER + GOOD + body)
    df, rep = DataStorage(tmp_path).load_from_csv(p, on_bad_rows="repair", report=True)
    assert len(df) == 4
    assert df.iloc[1].tolist() == [10.5, 11.0, 9.0, 10.8, 1.0]
    assert df.iloc[2].tolist() == [10.0, 11.0, 9.0, 10.0, 1.0]
    assert df.iloc[3].tolist() == [10.0, 11.0, 9.9, 11.0, 0.0]
    assert rep.repaired == {
        "missing open": 1,
        "high < low": 1,
        "high/low not containing open/close": 1,
        "bad volume": 1,
    }
    assert rep.dropped == {"unrepairable close": 1}
    validate_bars(df, "repaired")


def test_cache_is_used_and_invalidated(tmp_path: Path) -> None:
    st = DataStorage(tmp_path)
    p = write(tmp_path, HEADER + GOOD)
    a, ra = st.load_from_csv(p, report=True)
    b, rb = st.load_from_csv(p, report=True)
    assert not ra.from_cache and rb.from_cache
    pd.testing.assert_frame_equal(a, b)
    p.write_text(HEADER + GOOD.replace("10.5", "10.75"))
    c = st.load_from_csv(p)
    assert c["close"].iloc[0] == 10.75
    # The cache is keyed by the time zone too (it changes naive timestamps).
    q = write(tmp_path, "date,open,high,low,close,volume\n2020-01-02,1,1,1,1,1\n", "n.csv")
    assert st.load_from_csv(q).index[0].hour == 5
    assert st.load_from_csv(q, timezone="UTC").index[0].hour == 0


# ---------------------------------------------------------------------------- validate_bars


def test_validate_bars_converts_harmless_differences() -> None:
    idx = pd.date_range("2020-01-02 09:30", periods=3, freq="min", tz="America/New_York")
    df = pd.DataFrame({"Open": [1, 2, 3], "High": [2, 3, 4], "Low": [1, 1, 1], "Close": [2, 2, 2],
                       "Volume": [1, 2, 3], "note": ["a", "b", "c"]}, index=idx)  # fmt: skip
    out = validate_bars(df, "test")
    assert list(out.columns) == [*BAR_COLUMNS, "note"]
    assert str(out.index.dtype) == "datetime64[ns, UTC]" and out.index.name == "ts"
    assert out.index[0] == pd.Timestamp("2020-01-02 14:30", tz="UTC")
    assert out["open"].dtype == np.float64


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.tz_localize(None), "index has no time zone"),
        (lambda d: d.reset_index(drop=True), "index must be a DatetimeIndex"),
        (lambda d: d.drop(columns="volume"), r"missing column\(s\) volume"),
        (lambda d: d.iloc[[0, 2, 1]], r"row 2 \(.*\): timestamps not in order"),
        (lambda d: d.iloc[[0, 1, 1]], r"row 2 .*duplicate timestamp"),
        (lambda d: d.assign(close=[1.5, np.nan, 1.5]), r"row 1 .*close is missing"),
        (lambda d: d.assign(volume=[1.0, 1.0, -1.0]), r"row 2 .*negative volume -1"),
        (lambda d: d.assign(low=[1.0, 0.0, 1.0]), r"row 1 .*low must be > 0, got 0"),
        (lambda d: d.assign(open=["1", "x", "1"]), r"row 1 .*open is not a number: 'x'"),
    ],
)
def test_validate_bars_errors_name_where_row_and_problem(mutate, message) -> None:  # type: ignore[no-untyped-def]
    df = pd.DataFrame({"open": 1.5, "high": 2.0, "low": 1.0, "close": 1.5, "volume": 1.0},
                      index=pd.date_range("2020-01-01", periods=3, tz="UTC"))  # fmt: skip
    with pytest.raises(DataError, match=f"^IB AAPL: {message}"):
        validate_bars(mutate(df), "IB AAPL")


def test_canonical_bar_size() -> None:
    assert [canonical_bar_size(s) for s in ("1 day", "1D", "5 mins", "5min", "1 hour", "30 secs", "1W")] == [
        "1d", "1d", "5m", "5m", "1h", "30s", "1w",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown bar size"):
        canonical_bar_size("fortnight")
