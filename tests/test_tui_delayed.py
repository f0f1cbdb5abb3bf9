"""The header says DELAYED while quotes are IB's delayed data, and only then."""

from __future__ import annotations

import dataclasses

import pytest
from tui_support import FrozenEngine, fixed_snapshot, run_async, screen_text
from waiting import async_wait_until

from fbterm.tui.app import FbtermApp

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("delayed", [True, False])
@run_async
async def test_header_shows_delayed_market_data(delayed: bool) -> None:
    snap = dataclasses.replace(fixed_snapshot(), market_data_delayed=delayed)
    app = FbtermApp(FrozenEngine(snap), None, handle_signals=False)
    async with app.run_test(size=(120, 40)) as pilot:
        # The header has drawn the snapshot once its mode part says the snapshot's mode.
        await async_wait_until(
            lambda: str(app.screen.query_one("#hdr-mode").render()).strip() == snap.mode.upper(),
            "the header to show the snapshot",
        )
        await pilot.pause()
        header = screen_text(app).splitlines()[0]
        assert ("DELAYED" in header) is delayed, header
