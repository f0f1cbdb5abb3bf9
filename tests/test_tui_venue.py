"""The console's header tells the venue's story: a lost link, a re-sync, READ-ONLY after IB's
321, strategies still warming, a reconciliation that found differences."""

from __future__ import annotations

import dataclasses

from tui_support import FrozenEngine, fixed_snapshot, run_async
from waiting import async_wait_until

from fbterm.snapshot import EngineSnapshot, ReconcileView, WarmupView
from fbterm.tui.app import FbtermApp


async def header(snap: EngineSnapshot) -> dict[str, tuple[str, set[str]]]:
    """Each header part's text and classes, and the bar's own classes under "bar"."""
    app = FbtermApp(FrozenEngine(snap), None, handle_signals=False)
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        # The header has drawn this snapshot once its mode part says the snapshot's mode.
        await async_wait_until(
            lambda: str(screen.query_one("#hdr-mode").render()).strip() == snap.mode.upper(),
            "the header to show the snapshot",
        )
        await pilot.pause()
        out = {
            part: (str(screen.query_one(f"#hdr-{part}").render()).strip(),
                   set(screen.query_one(f"#hdr-{part}").classes))
            for part in ("mode", "conn", "feeds")
        }  # fmt: skip
        out["bar"] = ("", set(screen.query_one("HeaderBar").classes))
        return out


@run_async
async def test_a_lost_link_is_red_and_warming_and_differences_ride_with_the_feeds() -> None:
    snap = dataclasses.replace(
        fixed_snapshot(mode="LIVE"),
        connection="lost",
        warmup=WarmupView(1, 2, "warming 1/2: MSFT waiting 30 s on IB pacing (retry 2)"),
        reconciliation=ReconcileView(
            3, 0.0, "timer", False, "", ("12:00:01 AAPL: +50 booked",), 0.0, 0
        ),
    )
    h = await header(snap)
    assert h["conn"][0] == "○ lost" and "-bad" in h["conn"][1]
    assert "warming 1/2" in h["feeds"][0] and "recon diff" in h["feeds"][0]
    assert "-warn" in h["feeds"][1]


@run_async
async def test_read_only_after_321_switches_the_header_and_a_resync_is_amber() -> None:
    h = await header(dataclasses.replace(fixed_snapshot(mode="READ-ONLY"), connection="read-only"))
    assert h["mode"][0] == "READ-ONLY" and "-read-only" in h["bar"][1]
    assert "-warn" in h["conn"][1]
    h = await header(dataclasses.replace(fixed_snapshot(mode="LIVE"), connection="re-syncing"))
    assert h["conn"][0] == "○ re-syncing" and "-warn" in h["conn"][1]
    assert "warming" not in h["feeds"][0] and "recon" not in h["feeds"][0]
