"""IBSource against the TWS-protocol test server: paged, paced history and streaming quotes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from ib_async import IB
from waiting import async_wait_until

from fbterm.data.ib_source import (
    IBDataError,
    IBSource,
    PacingGate,
    duration_string,
    normalize_bar_size,
)
from fbterm.testing.ibserver import IBTestServer, synthetic_bars

if TYPE_CHECKING:
    from conftest import FakeClock

pytestmark = pytest.mark.timeout(60)

UTC = dt.UTC
BARS = synthetic_bars(("AAPL", "MSFT"), start="2024-01-02 00:00", periods=3 * 2880, freq="30s")


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(bars=BARS) as srv:
        yield srv


def run_with_ib(srv: IBTestServer, body: Any, timeout: float = 30.0) -> None:
    async def main() -> None:
        ib = IB()
        await ib.connectAsync("127.0.0.1", srv.port, clientId=3, timeout=5)
        try:
            await asyncio.wait_for(body(ib), timeout)
        finally:
            ib.disconnect()

    asyncio.run(main())


def source(ib: IB, clock: FakeClock, **gate: Any) -> IBSource:
    return IBSource(ib, pacing=PacingGate(clock=clock, sleep=clock.sleep, **gate))


def test_bar_sizes_and_durations_speak_ib() -> None:
    assert normalize_bar_size("1m") == ("1 min", 60)
    assert normalize_bar_size("5 mins") == ("5 mins", 300)
    assert normalize_bar_size("30s") == ("30 secs", 30)
    assert normalize_bar_size("1d") == ("1 day", 86400)
    with pytest.raises(ValueError, match="IB has no"):
        normalize_bar_size("7m")
    assert duration_string(3600) == "3600 S" and duration_string(86400) == "86400 S"
    assert duration_string(86401) == "2 D"


def test_history_is_paged_into_ib_sized_requests_and_matches_the_source(
    server: IBTestServer, fake_clock: FakeClock
) -> None:
    start, end = dt.datetime(2024, 1, 2, 6, tzinfo=UTC), dt.datetime(2024, 1, 3, 6, tzinfo=UTC)

    async def body(ib: IB) -> None:
        src = source(ib, fake_clock)
        df = await src.fetch_bars("AAPL", start, end, "30 secs")
        want = BARS["AAPL"][(BARS["AAPL"].index >= start) & (BARS["AAPL"].index < end)]
        pd.testing.assert_frame_equal(df, want, check_freq=False)
        assert str(df.index.tz) == "UTC" and df.index.name == "ts"
        assert list(df.dtypes) == [float] * 5
        # 30-second bars come 8 hours per request: one day is three requests, newest first.
        reqs = server.historical_requests
        assert [(r.duration, r.bar_size) for r in reqs] == [("28800 S", "30 secs")] * 3
        assert [r.end for r in reqs] == [
            "20240103 06:00:00 UTC",
            "20240102 22:00:00 UTC",
            "20240102 14:00:00 UTC",
        ]
        assert src.requests == 3 and fake_clock.sleeps == []

    run_with_ib(server, body)


def test_pacing_spaces_small_bar_requests_without_really_waiting(
    server: IBTestServer, fake_clock: FakeClock
) -> None:
    start, end = dt.datetime(2024, 1, 2, 0, tzinfo=UTC), dt.datetime(2024, 1, 2, 12, tzinfo=UTC)

    async def body(ib: IB) -> None:
        # A tight budget (3 requests per 600 s) shows the 10-minute rule on a 6-request download.
        src = source(ib, fake_clock, max_requests=3, window=600.0)
        df = await src.fetch_bars("MSFT", start, end, "5 secs")
        assert len(df) == 12 * 120  # the server's 30 s bars: 12 hours of them
        assert src.requests == 12
        assert src.pacing.waited == pytest.approx(sum(fake_clock.sleeps))
        # 12 requests under 3 per 600 s: the 4th, 7th and 10th each wait out the window.
        assert len(fake_clock.sleeps) == 3 and all(
            s == pytest.approx(600.0) for s in fake_clock.sleeps
        )
        # Asking for the very same piece again within 15 s waits out the identical-request rule.
        before = len(fake_clock.sleeps)
        await src.fetch_bars("MSFT", end - dt.timedelta(hours=1), end, "5 secs")
        assert fake_clock.sleeps[before:] and fake_clock.sleeps[-1] <= 600.0

    run_with_ib(server, body)


def test_identical_request_within_15s_waits(fake_clock: FakeClock) -> None:
    gate = PacingGate(clock=fake_clock, sleep=fake_clock.sleep)

    async def body() -> None:
        await gate.acquire(("AAPL", "x"), "AAPL", small_bars=False)
        fake_clock.t += 5
        await gate.acquire(("AAPL", "x"), "AAPL", small_bars=False)
        assert fake_clock.sleeps == [pytest.approx(10.0)]
        await gate.acquire(("AAPL", "y"), "AAPL", small_bars=False)
        assert len(fake_clock.sleeps) == 1
        for i in range(4):  # six requests for one contract within 2 s is the limit...
            await gate.acquire(("AAPL", i), "AAPL", small_bars=False)
        assert len(fake_clock.sleeps) == 1
        await gate.acquire(("AAPL", "7th"), "AAPL", small_bars=False)  # ...so the 7th waits
        assert len(fake_clock.sleeps) == 2 and fake_clock.sleeps[-1] == pytest.approx(2.0)

    asyncio.run(asyncio.wait_for(body(), 10))


def test_pacing_violation_from_ib_is_retried_then_reported(
    server: IBTestServer, fake_clock: FakeClock
) -> None:
    server.pacing_window = 60.0  # the server really enforces 15 s+ between identical requests
    start, end = dt.datetime(2024, 1, 2, 10, tzinfo=UTC), dt.datetime(2024, 1, 2, 11, tzinfo=UTC)

    async def body(ib: IB) -> None:
        src = source(ib, fake_clock)
        src.max_retries = 2
        first = await src.fetch_bars("AAPL", start, end, "1 min")
        assert len(first) == 60
        with pytest.raises(
            IBDataError,
            match=r"AAPL: IB 162: historical data request failed .*pacing violation.*2 retries",
        ):
            await src.fetch_bars("AAPL", start, end, "1 min")
        assert src.requests == 4

    run_with_ib(server, body)


def test_no_data_is_an_empty_frame_and_unknown_symbol_an_error(
    server: IBTestServer, fake_clock: FakeClock
) -> None:

    async def body(ib: IB) -> None:
        src = source(ib, fake_clock)
        df = await src.fetch_bars(
            "AAPL",
            dt.datetime(2023, 6, 1, tzinfo=UTC),
            dt.datetime(2023, 6, 1, 1, tzinfo=UTC),
            "1m",
        )
        assert df.empty and list(df.columns) == ["open", "high", "low", "close", "volume"]
        assert str(df.index.tz) == "UTC"
        with pytest.raises(IBDataError, match="ZZZZ: IB 200: no security definition"):
            await src.fetch_bars(
                "ZZZZ",
                dt.datetime(2024, 1, 2, tzinfo=UTC),
                dt.datetime(2024, 1, 2, 1, tzinfo=UTC),
                "1m",
            )
        with pytest.raises(ValueError, match="time zone"):
            await src.fetch_bars("AAPL", dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3), "1m")

    run_with_ib(server, body)


def test_daily_bars_are_midnight_utc(server: IBTestServer, fake_clock: FakeClock) -> None:
    async def body(ib: IB) -> None:
        src = source(ib, fake_clock)
        df = await src.fetch_bars(
            "AAPL", dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 5, tzinfo=UTC), "1d"
        )
        assert list(df.index) == [
            pd.Timestamp("2024-01-02", tz="UTC"),
            pd.Timestamp("2024-01-03", tz="UTC"),
            pd.Timestamp("2024-01-04", tz="UTC"),
        ]
        day = BARS["AAPL"].loc["2024-01-02"]
        assert (
            df["open"].iloc[0] == day["open"].iloc[0]
            and df["close"].iloc[0] == day["close"].iloc[-1]
        )
        assert df["volume"].iloc[0] == day["volume"].sum()

    run_with_ib(server, body)


def test_stream_yields_quotes_and_resubscribes_after_reconnect(server: IBTestServer) -> None:
    async def body(ib: IB) -> None:
        src = IBSource(ib)
        it = src.stream(["AAPL", "MSFT"]).__aiter__()
        seen: dict[str, Any] = {}
        while len(seen) < 2:  # the initial quote of each symbol
            for t in await asyncio.wait_for(it.__anext__(), 5):
                seen[t.symbol] = t
        last = float(BARS["AAPL"]["close"].iloc[-1])
        assert seen["AAPL"].last == pytest.approx(last) and seen["AAPL"].bid < seen["AAPL"].ask
        assert server.push_quote("AAPL", 10.0, 10.02, 10.01, 300) == 1
        got = None
        while got is None or got.last != 10.01:
            batch = await asyncio.wait_for(it.__anext__(), 5)
            got = next((t for t in batch if t.symbol == "AAPL"), got)
        assert (got.bid, got.ask, got.last, got.volume) == (10.0, 10.02, 10.01, 300.0)
        # After the socket drops and the IB object reconnects, quotes flow again.
        server.drop_connections()
        await async_wait_until(lambda: not ib.isConnected(), "the client to see the drop")
        await ib.connectAsync("127.0.0.1", server.port, clientId=3, timeout=5)
        await async_wait_until(
            lambda: server.push_quote("MSFT", 20.0, 20.02, 20.01) == 1, "MSFT resubscribed"
        )
        got = None
        while got is None or got.last != 20.01:
            batch = await asyncio.wait_for(it.__anext__(), 5)
            got = next((t for t in batch if t.symbol == "MSFT"), got)
        await it.aclose()
        await async_wait_until(
            lambda: server.push_quote("MSFT", 1, 2, 1.5) == 0, "MSFT unsubscribed on close"
        )

    run_with_ib(server, body)


def test_unknown_symbol_in_stream_is_refused(server: IBTestServer) -> None:
    async def body(ib: IB) -> None:
        with pytest.raises(IBDataError, match="IB does not know ZZZZ"):
            await IBSource(ib).stream(["AAPL", "ZZZZ"]).__anext__()

    run_with_ib(server, body)
