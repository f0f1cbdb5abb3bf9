"""Every screen, dialog and the command palette opens, and survives random key bursts.

For each one, a seeded random stream of keys (letters, digits, brackets and other markup
characters, editing keys, Tab, Enter, Esc, Ctrl+S, arrows) is queued in bursts, as a paste or
a laggy link delivers them. After every burst the console must still be running with no
unhandled exception; a dialog that a key closed is opened again for the next burst. The
engine is the fixed snapshot (FrozenEngine records the commands and does nothing with them).
Bounded: a few bursts of a few dozen keys per target, the same keys on every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from textual.command import CommandPalette
from textual.screen import Screen
from tui_support import FrozenEngine, burst, fixed_snapshot, run_async, settle

from fbterm.model import TradingState
from fbterm.tui.actions import QuitDialog
from fbterm.tui.app import FbtermApp
from fbterm.tui.backtest import BacktestScreen
from fbterm.tui.console import ConsoleScreen
from fbterm.tui.dialogs import (
    ConfirmDialog,
    FilterDialog,
    FlattenDialog,
    KillDialog,
    UpdateStrategyDialog,
)
from fbterm.tui.help import HelpScreen
from fbterm.tui.metrics import MetricsScreen
from fbterm.tui.orders import OrdersTable
from fbterm.tui.ticket import ModifyDialog, OrderTicket, TransmitDialog

pytestmark = pytest.mark.timeout(240)

# q, ctrl+q and ctrl+c are left out only because a burst that closes a dialog and then quits
# the console would end the test, not because they could crash anything.
ALPHABET = (
    list("abcdefghijklmnoprstuvwxyzABCDEFGHIJKLMNOPRSTUVWXYZ0123456789")
    + list("[]/\\.,-+=_()*&^%$#@!~`'\";:<>?{}|")
    + ["tab", "shift+tab", "enter", "escape", "backspace", "delete", "left", "right"]
    + ["up", "down", "home", "end", "space", "ctrl+s", "ctrl+u", "ctrl+a", "ctrl+e"]
)
BURSTS = 4
BURST_LEN = 30


async def _open(app: FbtermApp, pilot: object, keys: list[str], want: type[Screen]) -> None:
    console = app._console_screen()
    while app.screen is not console:
        app.pop_screen()
        await settle(pilot, app)
    await pilot.press(*keys)  # type: ignore[attr-defined]
    await settle(pilot, app, lambda: isinstance(app.screen, want))
    assert isinstance(app.screen, want), (keys, app.screen)


def _select_order(app: FbtermApp) -> None:
    app._console_screen().query_one(OrdersTable).select_key("O-1002")


TARGETS: dict[str, tuple[list[str], type[Screen], Callable[[FbtermApp], None] | None]] = {
    "ticket": (["2", "n"], OrderTicket, None),
    "modify": (["2", "m"], ModifyDialog, _select_order),
    "cancel": (["2", "c"], ConfirmDialog, _select_order),
    "cancel_all": (["C"], ConfirmDialog, None),
    "flatten": (["1", "f"], FlattenDialog, None),
    "kill": (["K"], KillDialog, None),
    "filter": (["slash"], FilterDialog, None),
    "update": (["3", "u"], UpdateStrategyDialog, None),
    "rebalance": (["k"], ConfirmDialog, None),
    "quit": (["q"], QuitDialog, None),
    "help": (["question_mark"], HelpScreen, None),
    "metrics": (["s"], MetricsScreen, None),
    "backtest": (["b"], BacktestScreen, None),
    "palette": (["ctrl+p"], CommandPalette, None),
}


@pytest.mark.parametrize("name", list(TARGETS))
@run_async
async def test_random_bursts_never_crash(name: str) -> None:
    keys, want, prepare = TARGETS[name]
    rng = random.Random(f"fbterm-{name}")
    app = FbtermApp(FrozenEngine(), None, handle_signals=False)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        for _ in range(BURSTS):
            if prepare is not None:
                prepare(app)
            await _open(app, pilot, keys, want)
            burst(app, [rng.choice(ALPHABET) for _ in range(BURST_LEN)])
            await settle(pilot, app)
            assert app.is_running and app.return_code is None, app.crash
        assert app.crash is None


@run_async
async def test_transmit_step_and_resume_confirm_survive_bursts() -> None:
    rng = random.Random("fbterm-transmit")
    app = FbtermApp(FrozenEngine(fixed_snapshot(TradingState.HALTED)), None, handle_signals=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        for _ in range(BURSTS):
            await _open(app, pilot, ["2", "n"], OrderTicket)
            burst(app, [*"AAPL", "tab", "tab", "tab", "5", "ctrl+s"])
            await settle(pilot, app, lambda: isinstance(app.screen, TransmitDialog))
            burst(app, [rng.choice(ALPHABET) for _ in range(BURST_LEN)])
            await settle(pilot, app)
            assert app.is_running and app.crash is None
            await _open(app, pilot, ["h"], ConfirmDialog)  # halted: h asks to resume
            burst(app, [rng.choice(ALPHABET) for _ in range(BURST_LEN)])
            await settle(pilot, app)
            assert app.is_running and app.crash is None
        assert isinstance(app._console_screen(), ConsoleScreen)
