"""Hot updates and rebalancing from the console: the real app on the real paper engine.

The dialog validates parameters against the strategy's own declarations (an invalid value
keeps it open with the reason); a valid change reaches the running engine, positions intact.
"""

from __future__ import annotations

import pytest
from test_tui_flows import Console, snap, type_text, wait_for
from test_tui_flows import console as console  # the fixture, shared with the console flows
from textual.widgets import Input
from tui_support import run_async

from fbterm.tui.dialogs import ConfirmDialog, UpdateStrategyDialog
from fbterm.tui.strategies import StrategiesTable

pytestmark = pytest.mark.timeout(90)


@run_async
async def test_update_strategy_parameters_from_the_console(console: Console) -> None:
    async with console() as (app, pilot, engine, _notes):
        await pilot.press("3")
        table = app.screen.query_one(StrategiesTable)
        await wait_for(pilot, lambda: table.row_count == 4, "strategy rows")
        table.select_key("sma_fast")
        await pilot.press("u")
        assert isinstance(app.screen, UpdateStrategyDialog)
        fast = app.screen.query_one("#p-fast", Input)
        fast.value = ""
        fast.focus()
        await type_text(pilot, "500")  # slow is 180: fast must stay below it
        await pilot.press("ctrl+s")
        dialog = app.screen
        assert isinstance(dialog, UpdateStrategyDialog)
        await wait_for(pilot, lambda: "must be < slow" in dialog.error_text, "the dialog's error")
        assert app.screen is dialog  # refused in the dialog: nothing sent
        fast.value = ""
        await type_text(pilot, "70")
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: not isinstance(app.screen, UpdateStrategyDialog), "dialog closed"
        )

        def fast_now() -> object:
            return dict(next(s for s in snap(app).strategies if s.name == "sma_fast").params).get(
                "fast"
            )

        await wait_for(pilot, lambda: fast_now() == 70, "the engine runs the new parameter")
        assert engine.call(lambda: engine.executor.slots["sma_fast"].strategy.p["fast"]) == 70


@run_async
async def test_rebalance_asks_then_reports(console: Console) -> None:
    async with console() as (app, pilot, _engine, _notes):
        before = {r.command_id for r in snap(app).results}
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")

        def outcome() -> str | None:
            for r in snap(app).results:
                if r.command_id not in before and "rebalance" in r.message:
                    return r.message
            return None

        await wait_for(pilot, outcome, "the rebalance outcome")
        assert "no change" in (outcome() or "") or "->" in (outcome() or "")
