"""IB history through the seed's DataRetrieval: fetched once from the TWS-protocol server,
cached through DataStorage, served from disk the second time (the server counts requests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from ib_async import IB

from fbterm.data.ib_source import IBSource, PacingGate
from fbterm.data.retrieval import DataRetrieval
from fbterm.data.storage import DataStorage
from fbterm.testing.ibserver import IBTestServer, synthetic_bars

pytestmark = pytest.mark.timeout(60)

BARS = synthetic_bars(("AAPL",), start="2024-01-02 00:00", periods=2 * 1440, freq="1min")


def test_second_fetch_of_a_covered_range_does_not_ask_ib(tmp_path: Path) -> None:
    srv = IBTestServer(bars=BARS).start()
    storage = DataStorage(tmp_path / "data")
    start, end = pd.Timestamp("2024-01-02 01:00", tz="UTC"), pd.Timestamp("2024-01-02 13:00", tz="UTC")

    async def main() -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
        ib = IB()
        await ib.connectAsync("127.0.0.1", srv.port, clientId=5, timeout=5)
        try:
            # The pacing gate's clock and sleep are ours, so the test never waits 15 s.
            now = [0.0]

            async def sleep(s: float) -> None:
                now[0] += s

            src = IBSource(ib, pacing=PacingGate(clock=lambda: now[0], sleep=sleep))
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
