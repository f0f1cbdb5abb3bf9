"""The command palette: every console action, found by name, with the key that runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand
from textual.screen import Screen

from fbterm.tui.console import ConsoleScreen
from fbterm.tui.keymap import ACTIONS

if TYPE_CHECKING:
    from fbterm.tui.app import FbtermApp


def console_commands(app: FbtermApp, screen: Screen[Any]) -> Iterable[SystemCommand]:
    """The console's actions as palette commands, offered only over the console itself
    (a dialog's palette must not run console actions behind it)."""
    console = next((s for s in app.screen_stack if isinstance(s, ConsoleScreen)), None)
    if console is None or screen is not console:
        return
    for a in ACTIONS:
        if a.id in ("next_pane", "prev_pane"):
            continue
        title = f"{a.label} [{app.keymap.display(a.id)}]"
        yield SystemCommand(title, a.help, _palette_callback(console, a.action))


def _palette_callback(console: ConsoleScreen, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await console.run_action(action)

    return run
