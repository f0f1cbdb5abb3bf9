"""DataRetrieval caching over counting sources, the CSV replay source, the simulated source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest

from fbterm.config import SimulatedMarketConfig
from fbterm.data import retrieval as rmod
from fbterm.data.bars import DataError
from fbterm.data.retrieval import (
    CSVSource,
    DataRetrieval,
    HistoricalSource,
    RealtimeSource,
    SimulatedSource,
    merge_intervals,
    subtract_intervals,
)
from fbterm.data.simulated import SimulatedMarket, synth_bars
from fbterm.data.storage import DataStorage
from fbterm.model import Tick

T_ = TypeVar("T_")

ALL = synth_bars(400, seed=3, start="2020-01-01")


class CountingSource:
    name = "counting"

    def __init__(self, bars: pd.DataFrame = ALL):
        self.bars = bars
        self.calls: list[tuple[pd.Timestamp, pd.Timestamp]] = []

    def fetch_bars(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, bar_size: str
    ) -> pd.DataFrame:
        self.calls.append((start, end))
        return self.bars.loc[(self.bars.index >= start) & (self.bars.index < end)]


def T(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def test_second_request_for_a_covered_range_does_not_call_the_source(tmp_path: Path) -> None:
    src = CountingSource()
    dr = DataRetrieval(DataStorage(tmp_path), src)
    assert isinstance(src, HistoricalSource)
    a = dr.fetch_historical_data("AAPL", "2020-02-01", "2020-06-01", "1d")
    pd.testing.assert_frame_equal(a, ALL.loc["2020-02-01":"2020-05-31"], check_freq=False)
    assert src.calls == [(T("2020-02-01"), T("2020-06-01"))]
    b = dr.fetch_historical_data("AAPL", "2020-02-01", "2020-06-01", "1d")
    c = dr.fetch_historical_data("AAPL", "2020-03-07", "2020-03-09", "1 day")  # a weekend: no bars
    assert src.calls == [(T("2020-02-01"), T("2020-06-01"))]
    pd.testing.assert_frame_equal(a, b)
    assert c.empty
    # A wider request fetches only the two missing ends.
    d = dr.fetch_historical_data("AAPL", "2020-01-15", "2020-07-01", "1d")
    assert src.calls[1:] == [(T("2020-01-15"), T("2020-02-01")), (T("2020-06-01"), T("2020-07-01"))]
    pd.testing.assert_frame_equal(d, ALL.loc["2020-01-15":"2020-06-30"], check_freq=False)
    assert dr.coverage("AAPL", "1d") == [(T("2020-01-15"), T("2020-07-01"))]
    # A new DataRetrieval over the same storage remembers the coverage.
    again = DataRetrieval(DataStorage(tmp_path), src)
    again.fetch_historical_data("AAPL", "2020-03-01", "2020-04-01", "1d")
    assert len(src.calls) == 3
    # Other bar sizes and symbols are separate.
    dr.fetch_historical_data("MSFT", "2020-03-01", "2020-04-01", "1d")
    assert len(src.calls) == 4


def test_coverage_stops_before_the_bar_in_progress(tmp_path: Path) -> None:
    src = CountingSource(
        synth_bars(5, start=pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=2))
    )
    dr = DataRetrieval(DataStorage(tmp_path), src)
    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=10)
    dr.fetch_historical_data("X", start, None, "1d")
    dr.fetch_historical_data("X", start, None, "1d")
    assert len(src.calls) == 2 and src.calls[1][0] == pd.Timestamp.now(tz="UTC").normalize()


def test_no_source_serves_cache_or_says_why(tmp_path: Path) -> None:
    st = DataStorage(tmp_path)
    DataRetrieval(st, CountingSource()).fetch_historical_data("AAPL", "2020-02-01", "2020-03-01")
    offline = DataRetrieval(st)
    assert len(offline.fetch_historical_data("AAPL", "2020-02-03", "2020-02-10")) == 5
    with pytest.raises(
        DataError, match="AAPL 1d bars are not cached for this range and no historical source"
    ):
        offline.fetch_historical_data("AAPL", "2020-01-01", "2020-02-10")
    with pytest.raises(ValueError, match="must be after start"):
        offline.fetch_historical_data("AAPL", "2020-02-10", "2020-02-01")


def test_bad_source_data_is_refused_with_the_source_named(tmp_path: Path) -> None:
    bad = ALL.iloc[:10].copy()
    bad.iloc[3, bad.columns.get_loc("volume")] = -1
    dr = DataRetrieval(DataStorage(tmp_path), CountingSource(bad))
    with pytest.raises(DataError, match=r"^counting AAPL 1d bars: row 3 .*negative volume"):
        dr.fetch_historical_data("AAPL", "2020-01-01", "2020-02-01")
    assert dr.coverage("AAPL", "1d") == []


def test_async_sources(tmp_path: Path) -> None:
    class AsyncSource(CountingSource):
        async def fetch_bars(
            self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, bar_size: str
        ) -> pd.DataFrame:  # type: ignore[override]
            await asyncio.sleep(0)
            return super().fetch_bars(symbol, start, end, bar_size)

    src = AsyncSource()
    dr = DataRetrieval(DataStorage(tmp_path), src)
    with pytest.raises(TypeError, match="afetch_historical_data"):
        dr.fetch_historical_data("AAPL", "2020-02-01", "2020-03-01")
    df = asyncio.run(dr.afetch_historical_data("AAPL", "2020-02-01", "2020-03-01"))
    assert len(df) == 20 and len(src.calls) == 1  # the refused coroutine never ran
    asyncio.run(dr.afetch_historical_data("AAPL", "2020-02-01", "2020-03-01"))
    assert len(src.calls) == 1


def test_interval_helpers() -> None:
    assert merge_intervals([(5, 7), (1, 3), (2, 4), (7, 8)]) == [(1, 4), (5, 8)]
    assert subtract_intervals((0, 10), [(2, 3), (5, 12)]) == [(0, 2), (3, 5)]
    assert subtract_intervals((0, 10), []) == [(0, 10)]
    assert subtract_intervals((4, 6), [(0, 10)]) == []


# ---------------------------------------------------------------------------- realtime


async def take(it: AsyncIterator[list[Tick]], n: int) -> list[list[Tick]]:
    out = []
    async for batch in it:
        out.append(batch)
        if len(out) == n:
            break
    await it.aclose()  # type: ignore[attr-defined]
    return out


class VirtualTime:
    """Pacing on a clock the test owns: the event loop's ``time()`` reads ``t``, and
    ``asyncio.sleep`` records the delay asked for, moves ``t`` by it and returns at once.

    The sources pace on ``loop.time()``; with this, what they ask to sleep is exact whatever
    the machine's load, so the test checks the schedule itself, never a wall clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.t = 1_000.0
        self.delays: list[float] = []
        real_sleep = asyncio.sleep

        async def sleep(delay: float, *a: Any) -> None:
            self.delays.append(delay)
            self.t += max(delay, 0.0)
            await real_sleep(0)

        monkeypatch.setattr(rmod.asyncio, "sleep", sleep)

    def run(self, coro: Coroutine[Any, Any, T_]) -> T_:
        with asyncio.Runner() as runner:
            runner.get_loop().time = lambda: self.t  # type: ignore[method-assign]
            return runner.run(coro)


def test_csv_source_replays_bars_as_ticks(tmp_path: Path) -> None:
    st = DataStorage(tmp_path)
    up = synth_bars(3, seed=1)
    st.save("AAA", "1d", up)
    st.save("BBB", "1d", synth_bars(2, seed=2))
    src = CSVSource(st)
    assert isinstance(src, RealtimeSource) and isinstance(src, HistoricalSource)
    batches = asyncio.run(take(src.stream(["AAA", "BBB"]), 100))
    assert len(batches) == 12  # 4 ticks per bar, both symbols share timestamps for 2 bars
    assert [len(b) for b in batches] == [2] * 8 + [1] * 4
    first_bar = [b[0] for b in batches[:4]]
    o, h, lo, c, v = up.iloc[0].tolist()
    path = [o, lo, h, c] if c >= o else [o, h, lo, c]
    assert [t.last for t in first_bar] == path
    assert [t.ts for t in first_bar] == [up.index[0].timestamp() + k * 21600 for k in range(4)]
    assert sum(t.volume for t in first_bar) == v
    assert all(t.bid == t.ask == t.last and t.symbol == "AAA" for t in first_bar)
    assert [t.symbol for t in batches[0]] == ["AAA", "BBB"]
    part = src.fetch_bars("AAA", up.index[1], up.index[2], "1d")
    assert list(part.index) == [up.index[1]]


def test_csv_source_single_file_symbol_and_spread(tmp_path: Path) -> None:
    p = DataStorage(tmp_path).save_to_csv(synth_bars(2), tmp_path / "spy.csv")
    src = CSVSource(p, spread_bps=10)
    assert src.symbol == "SPY"
    ticks = [t for b in asyncio.run(take(src.stream(["SPY"]), 100)) for t in b]
    assert len(ticks) == 8
    assert all(t.ask - t.bid == pytest.approx(t.last * 0.001) for t in ticks)
    with pytest.raises(DataError, match="holds SPY bars, not QQQ"):
        asyncio.run(take(src.stream(["QQQ"]), 1))
    layout = DataStorage(tmp_path / "d")
    layout.save("IWM", "1h", synth_bars(2, bar_size="1h"))
    assert CSVSource(layout.path_for("IWM", "1h")).symbol == "IWM"


def test_csv_source_paces_by_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = DataStorage(tmp_path)
    st.save("AAA", "1h", synth_bars(3, bar_size="1h"))
    vt = VirtualTime(monkeypatch)
    src = CSVSource(st, speed=3600.0, bar_size="1h")  # an hour of data per second
    vt.run(take(src.stream(["AAA"]), 12))
    # 12 ticks 15 minutes apart -> one due every 0.25 s of the loop's clock.
    assert vt.delays == [0.25] * 11


def test_csv_source_catches_up_after_a_stall_without_sleeping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = DataStorage(tmp_path)
    st.save("AAA", "1h", synth_bars(3, bar_size="1h"))
    vt = VirtualTime(monkeypatch)
    src = CSVSource(st, speed=3600.0, bar_size="1h")

    async def consume() -> list[float]:
        seen = []
        async for batch in src.stream(["AAA"]):
            seen.append(batch[0].ts)
            if len(seen) == 2:
                vt.t += 0.6  # the consumer stalls: the next two ticks are already due
            if len(seen) == 6:
                break
        return seen

    assert len(vt.run(consume())) == 6
    # Ticks are due at 0, 0.25, 0.5, ...: the stall leaves the clock at 0.85, so the 3rd and
    # 4th go at once, the 5th (due at 1.0) waits 0.15 and the 6th a further 0.25.
    assert vt.delays == pytest.approx([0.25, 0.15, 0.25])


def test_simulated_source_streams_paced_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    market = SimulatedMarket(["AAPL", "MSFT"], SimulatedMarketConfig(seed=1), 1e9)
    vt = VirtualTime(monkeypatch)
    src = SimulatedSource(market, ticks_per_second=20)
    batches = vt.run(take(src.stream(["MSFT"]), 5))
    assert [[t.symbol for t in b] for b in batches] == [["MSFT"]] * 5
    assert [b[0].ts for b in batches] == [1e9 + k * market.dt_seconds for k in range(1, 6)]
    # 20 batches a second: each sleeps until the next is due, 0.05 s on the loop's clock.
    assert vt.delays == pytest.approx([0.05] * 4)
    with pytest.raises(DataError, match="unknown symbol"):
        vt.run(take(src.stream(["TSLA"]), 1))


def test_simulated_source_restarts_its_pacing_after_falling_a_second_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market = SimulatedMarket(["AAPL"], SimulatedMarketConfig(seed=1), 1e9)
    vt = VirtualTime(monkeypatch)
    src = SimulatedSource(market, ticks_per_second=10)

    async def consume() -> int:
        n = 0
        async for _ in src.stream():
            n += 1
            if n == 2:
                vt.t += 2.5  # the consumer falls 2.5 s behind
            if n == 5:
                return n
        return n

    assert vt.run(consume()) == 5
    # 0.1 after the 1st batch; the 2nd is 2.4 s late: no burst to catch up (a yield, then
    # pacing restarts from now), so the 3rd and 4th are again 0.1 s apart.
    assert vt.delays == pytest.approx([0.1, 0, 0.1, 0.1])


def test_fetch_realtime_data_through_data_retrieval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vt = VirtualTime(monkeypatch)
    market = SimulatedMarket(["AAPL", "MSFT"], SimulatedMarketConfig(seed=1), 1e9)
    dr = DataRetrieval(DataStorage(tmp_path), realtime=SimulatedSource(market))
    batches = vt.run(take(dr.fetch_realtime_data(["AAPL", "MSFT"]), 3))
    assert [len(b) for b in batches] == [2, 2, 2]
    with pytest.raises(DataError, match="no realtime source"):
        asyncio.run(take(DataRetrieval(DataStorage(tmp_path)).fetch_realtime_data(["AAPL"]), 1))


def test_simulated_history_is_deterministic_and_ends_at_the_start_price(tmp_path: Path) -> None:
    cfg = SimulatedMarketConfig(seed=4, prices={"AAPL": 190.0})
    src = SimulatedSource(SimulatedMarket(["AAPL"], cfg, 1e9))

    def fetch() -> pd.DataFrame:
        return src.fetch_bars("AAPL", T("2024-01-01"), T("2024-03-01"), "1d")

    a = fetch()
    pd.testing.assert_frame_equal(a, fetch())
    assert a["close"].iloc[-1] == 190.0 and (a.index.day_of_week < 5).all() and len(a) == 44
    intraday = src.fetch_bars("AAPL", T("2024-01-02 14:30"), T("2024-01-02 21:00"), "5m")
    assert len(intraday) == 78
    dr = DataRetrieval(DataStorage(tmp_path), src)
    assert len(dr.fetch_historical_data("AAPL", "2024-01-01", "2024-03-01")) == 44
