"""IB history through the seed's DataRetrieval: fetched once from the TWS-protocol server,
cached through DataStorage, served from disk the second time (the server counts requests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from ib_async import IB
from waiting import wait_until

from fbterm.data.ib_source import IBSource, PacingGate
from fbterm.data.retrieval import DataRetrieval
from fbterm.data.storage import DataStorage
from fbterm.testing.ibserver import IBTestServer, synthetic_bars

if TYPE_CHECKING:
    from conftest import ConfigBuilder, FakeClock

pytestmark = pytest.mark.timeout(60)

BARS = synthetic_bars(("AAPL",), start="2024-01-02 00:00", periods=2 * 1440, freq="1min")


def test_second_fetch_of_a_covered_range_does_not_ask_ib(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    srv = IBTestServer(bars=BARS).start()
    storage = DataStorage(tmp_path / "data")
    start, end = (
        pd.Timestamp("2024-01-02 01:00", tz="UTC"),
        pd.Timestamp("2024-01-02 13:00", tz="UTC"),
    )

    async def main() -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
        ib = IB()
        await ib.connectAsync("127.0.0.1", srv.port, clientId=5, timeout=5)
        try:
            # The pacing gate's clock and sleep are ours, so the test never waits 15 s.
            src = IBSource(ib, pacing=PacingGate(clock=fake_clock, sleep=fake_clock.sleep))
            retrieval = DataRetrieval(storage, historical=src)
            first = await retrieval.afetch_historical_data("AAPL", start, end, "1m")
            n1 = len(srv.historical_requests)
            second = await retrieval.afetch_historical_data("AAPL", start, end, "1m")
            return first, second, n1, len(srv.historical_requests)
        finally:
            ib.disconnect()

    try:
        first, second, n1, n2 = asyncio.run(main())
    finally:
        srv.stop()
    assert n1 >= 1 and n2 == n1, "the second request must come from the cache"
    assert len(first) == 12 * 60
    pd.testing.assert_frame_equal(first, second)
    assert storage.path_for("AAPL", "1m").exists()


def test_live_engine_warms_its_strategies_on_cached_ib_history(
    tmp_path: Path, make_config: ConfigBuilder
) -> None:
    from fbterm.engine import Engine

    now = pd.Timestamp.now(tz="UTC").floor("5s")
    bars = synthetic_bars(
        ("AAPL",),
        start=str((now - pd.Timedelta(hours=1)).tz_localize(None)),
        periods=720,
        freq="5s",
    )
    srv = IBTestServer(bars=bars, tick_interval=0.05).start()
    cfg = make_config(
        broker={
            "kind": "ib",
            "ib": {
                "port": srv.port,
                "client_id": 31,
                "connect_timeout": 5.0,
                "request_timeout": 10.0,
            },
        },
        market={"source": "ib", "symbols": ["AAPL"], "bar_seconds": 5.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        data={"dir": str(tmp_path / "data")},
        strategies=[
            {
                "name": "sma",
                "class": "sma_cross",
                "symbols": ["AAPL"],
                "capital": 100_000,
                "params": {"fast": 3, "slow": 8},
            }
        ],
    )
    e = Engine(cfg)  # broker, IB source and DataRetrieval all built from the config
    try:
        e.start(timeout=30)  # returns at once: history arrives in the background
        wait_until(lambda: e.call(lambda: e.warmup.complete), "the background warm-up", 30)
        seen = e.call(lambda: len(e.history.get("AAPL", ())))
        assert seen >= 2 * 9, "the strategy was fed recent history before its first trade"
        lines = [line.message for line in e.call(lambda: list(e.activity.lines))]
        assert any("AAPL warm on" in m and "historical bars" in m for m in lines), lines
        assert (tmp_path / "data" / "AAPL" / "5s.csv").exists(), (
            "history is cached through DataStorage"
        )
    finally:
        e.stop()
        srv.stop()
