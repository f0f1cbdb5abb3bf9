"""The backtest screen launches a sweep (spawned worker processes, as the console runs
threads) and shows its ranked table and heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.widgets import DataTable, Input, TabbedContent
from textual_plotext import PlotextPlot
from tui_support import run_async
from waiting import async_wait_until

from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage
from fbterm.tui.backtest import BacktestScreen

pytestmark = pytest.mark.timeout(120)


class _Host(App[None]):
    def on_mount(self) -> None:
        self.push_screen(BacktestScreen(None))


async def _until(pilot: Any, cond: Any, timeout: float = 90.0) -> None:
    # The app runs on this loop: waiting with asyncio.sleep lets it work meanwhile.
    await async_wait_until(cond, "the sweep on the backtest screen", timeout)


@run_async
async def test_sweep_from_the_backtest_screen(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    DataStorage(tmp_path).save_to_csv(synth_bars(3000, bar_size="1h", seed=4), csv)
    app = _Host()
    async with app.run_test(size=(130, 45)) as pilot:
        screen = app.screen
        assert isinstance(screen, BacktestScreen)
        screen.query_one("#bt-data", Input).value = str(csv)
        await pilot.press("ctrl+g")
        assert "type a grid" in str(screen.query_one("#bt-error").render())
        screen.query_one("#bt-sweep", Input).value = "fast=3:9:3 slow=20:40:10"
        await pilot.press("ctrl+g")
        await _until(
            pilot,
            lambda: screen.sweep is not None or "-visible" in screen.query_one("#bt-error").classes,
        )
        assert screen.sweep is not None, str(screen.query_one("#bt-error").render())
        assert len(screen.sweep) == 9
        assert screen.query_one("#bt-sweep-table", DataTable).row_count == 9
        assert screen.query_one("#bt-results", TabbedContent).active == "tab-heatmap"
        assert screen.heatmap is not None and screen.heatmap.z.shape == (3, 3)
        await pilot.pause()
        plot = screen.query_one("#bt-heatmap", PlotextPlot)
        assert "sharpe by fast" in str(plot.render())
