"""Bar files in other vendors' layouts: Binance klines and MetaTrader histories (no header),
European exports (';', decimal commas, thousands dots, day-first dotted dates, German
names), tab- and pipe-separated files. Each loads to the same bars as the plain CSV of the
same data, says once what it assumed, and reports bad rows by their line in the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbterm.cli import main
from fbterm.data.bars import DataError
from fbterm.data.csvlayout import read_layout
from fbterm.data.storage import DataStorage

N = 50
PX = 1000 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, N)))


def _load(path: Path, **kw):  # type: ignore[no-untyped-def]
    return DataStorage(path.parent).load_from_csv(path, report=True, cache=False, **kw)


def _european(x: float) -> str:
    return f"{x:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


def test_binance_klines_without_a_header(tmp_path: Path) -> None:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    ms = (t0 + pd.to_timedelta(np.arange(N), unit="h")).asi8 // 10**6
    rows = [
        f"{ms[i]},{PX[i]:.2f},{PX[i] * 1.01:.2f},{PX[i] * 0.99:.2f},{PX[i]:.2f},{10 + i},"
        f"{ms[i] + 3_599_999},0,0,0,0,0"
        for i in range(N)
    ]
    p = tmp_path / "BTCUSDT-1h.csv"
    p.write_text("\n".join(rows) + "\n")
    df, rep = _load(p)
    assert len(df) == N and df.index[0] == t0 and df.index[-1] == t0 + pd.Timedelta(hours=N - 1)
    np.testing.assert_allclose(df["close"], np.round(PX, 2))
    assert df["volume"].iloc[3] == 13
    assert rep.layout.startswith("no header: columns read as timestamp, open, high, low, close")
    # A bad row is named by its line in the file (there is no header line to skip).
    rows[4] = rows[4].replace(f",{PX[4]:.2f},", ",oops,", 1)
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 5\b"):
        _load(p)


def test_metatrader_date_and_time_without_a_header(tmp_path: Path) -> None:
    ts = pd.date_range("2024-01-02 00:00", periods=N, freq="1h")
    p = tmp_path / "EURUSD60.csv"
    p.write_text(
        "".join(
            f"{ts[i]:%Y.%m.%d},{ts[i]:%H:%M},{PX[i]:.5f},{PX[i]:.5f},{PX[i]:.5f},{PX[i]:.5f},{i}\n"
            for i in range(N)
        )
    )
    df, rep = _load(p, timezone="UTC")
    assert len(df) == N and df.index[1] == pd.Timestamp("2024-01-02 01:00", tz="UTC")
    assert rep.layout == "no header: columns read as date, time, open, high, low, close, volume"
    assert DataStorage(tmp_path)._summary(p)[0] == N  # the quick count has no header to skip


def test_a_german_export_with_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    ts = pd.date_range("2024-03-01 09:00", periods=N, freq="30min")
    p = tmp_path / "DAX.csv"
    lines = ["Datum;Eröffnung;Hoch;Tief;Schluss;Volumen"]
    lines += [
        f"{ts[i]:%d.%m.%Y %H:%M};{_european(PX[i])};{_european(PX[i] * 1.01)};"
        f"{_european(PX[i] * 0.99)};{_european(PX[i])};{1000 + i}"
        for i in range(N)
    ]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _european(1234.5) == "1.234,50"
    df, rep = _load(p, timezone="Europe/Berlin")
    # 01.03.2024 is the first of March (day first), 09:00 in Berlin is 08:00 UTC.
    assert df.index[0] == pd.Timestamp("2024-03-01 08:00", tz="UTC")
    np.testing.assert_allclose(df["close"], np.round(PX, 2))
    assert rep.layout == "columns separated by semicolons; decimal commas"


@pytest.mark.parametrize("sep", ["\t", "|", ";"])
def test_other_separators_with_a_header(tmp_path: Path, sep: str) -> None:
    ts = pd.date_range("2024-01-02", periods=N, freq="D", tz="UTC")
    p = tmp_path / "bars.txt"
    head = sep.join(["timestamp", "open", "high", "low", "close", "volume"])
    body = [sep.join([ts[i].isoformat(), *(f"{PX[i]:.2f}",) * 4, str(i)]) for i in range(N)]
    p.write_text("\n".join([head, *body]) + "\n")
    layout = read_layout(p, str(p))
    assert (layout.delimiter, layout.decimal, layout.has_header) == (sep, ".", True)
    df, rep = _load(p)
    assert len(df) == N and df["open"].iloc[7] == round(PX[7], 2)
    assert "separated by" in rep.layout


def test_a_plain_csv_assumes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "plain.csv"
    p.write_text("date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n")
    layout = read_layout(p, str(p))
    assert (layout.delimiter, layout.has_header, layout.note()) == (",", True, "")
    df, rep = _load(p, timezone="UTC")
    assert len(df) == 1 and rep.layout == ""


def test_the_backtest_and_data_show_say_what_they_assumed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "klines.csv"
    t0 = pd.Timestamp("2024-01-01", tz="UTC").value // 10**6
    p.write_text(
        "".join(
            f"{t0 + i * 3_600_000},{PX[i]:.2f},{PX[i]:.2f},{PX[i]:.2f},{PX[i]:.2f},1\n"
            for i in range(N)
        )
    )
    assert main(["data", "show", str(p)]) == 0
    out = capsys.readouterr().out
    assert "layout    no header: columns read as timestamp, open" in out
    code = main(["backtest", "--data", str(p), "--param", "fast=3", "--param", "slow=8"])
    assert code == 0
    assert "note: no header: columns read as timestamp" in capsys.readouterr().out
