"""SVG snapshots of the console at 80x24 and 120x40: every pane, halted, LIVE, themes, ASCII,
every dialog (ticket empty, filled, invalid; transmit; modify; cancel; flatten; kill; quit;
filter), an active filter, help (top and bottom), metrics and backtest. (The palette is
opened, searched and fed key bursts by tests/test_tui_fuzz.py: its search results render in a varying order,
so a picture of it is no stable reference.)

Deterministic because the real app and real widgets render a fixed EngineSnapshot (fixed
prices, clock and order ages, see tui_support.fixed_snapshot) served by FrozenEngine, with
TZ=UTC. Update with ``pytest tests/test_tui_snapshots.py --snapshot-update`` after a
deliberate visual change, and look at the report before committing.
"""

from __future__ import annotations

import os
import time

import pytest
from tui_support import FrozenEngine, fixed_snapshot
from waiting import async_wait_until

from fbterm.model import TradingState
from fbterm.tui.app import FbtermApp

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def make_app(
    state: TradingState = TradingState.ACTIVE,
    mode: str = "PAPER",
    theme: str = "dark",
    ascii: bool = False,
) -> FbtermApp:
    return FbtermApp(
        FrozenEngine(fixed_snapshot(state, mode)),
        None,
        theme_name=theme,
        handle_signals=False,
        ascii=ascii,
    )


async def first_frame(pilot) -> None:  # type: ignore[no-untyped-def]
    """Until the console has rendered the fixed snapshot once, then until the app is idle
    (every message that frame queued handled): a condition, not a fixed delay."""
    await async_wait_until(lambda: pilot.app.frames > 0, "the first frame")
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


TICKET = ["2", "n", *"AAPL", "tab", "s", "tab", "l", "tab", *"10", "tab", *"190"]

CASES = {
    "main": ([], {}),
    "orders": (["2"], {}),
    "strategies": (["3"], {}),
    "risk": (["4"], {}),
    "log": (["5"], {}),
    "halted": ([], {"state": TradingState.HALTED}),
    "live": ([], {"mode": "LIVE"}),
    "light": ([], {"theme": "light"}),
    "high_contrast": ([], {"theme": "high-contrast", "state": TradingState.REDUCING}),
    "ascii": ([], {"ascii": True}),
    "ascii_ticket": (TICKET, {"ascii": True}),
    "ticket": (["2", "n"], {}),
    "ticket_filled": (TICKET, {}),
    "transmit": ([*TICKET, "enter"], {}),
    "ticket_invalid": (["2", "n", "ctrl+s"], {}),
    "modify": (["2", "m"], {}),
    "cancel": (["2", "c"], {}),
    "flatten": (["f"], {}),
    "kill": (["K"], {}),
    "confirm_cancel_all": (["C"], {}),
    "quit": (["q"], {}),
    "filter": (["2", "slash"], {}),
    "filtered": (["2", "slash", *"NVDA", "enter"], {}),
    "help": (["question_mark"], {}),
    "help_end": (["question_mark", "end"], {}),
    "metrics": (["s"], {}),
    "backtest": (["b"], {}),
    "update_strategy": (["3", "u"], {}),
}


def _what_if_answered(app: FbtermApp) -> bool:
    answers = app.screen.query("#whatif")
    return bool(answers) and str(answers.first().render()) == "accepted"


# Screens that fill in after the keys (the venue's what-if answer): the snapshot waits,
# bounded, until they have.
READY = {"transmit": _what_if_answered}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", list(CASES))
def test_snapshot(case: str, size: tuple[int, int], snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert os.environ["TZ"] == "UTC"
    keys, kwargs = CASES[case]
    ready = READY.get(case)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await first_frame(pilot)
        if keys:
            await pilot.press(*keys)
        if ready is not None:
            await async_wait_until(lambda: ready(pilot.app), f"the {case} screen filled in")
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(make_app(**kwargs), terminal_size=size, run_before=run_before)
