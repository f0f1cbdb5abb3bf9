"""The ``?`` screen: every action with its *effective* key (after config overrides).

The rows wrap to the dialog's width instead of being cut, and the list scrolls (arrows,
PgUp/PgDn, the mouse) so every row is reachable on an 80x24 terminal.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from fbterm.tui.keys import ACTIONS, Keymap

# What a confirmed action's question is like, where it says more than "are you sure".
ASKS = {
    "quit": " (asks first when orders are open)",
    "cancel_order": " (names the order and asks first)",
}


def help_rows(keymap: Keymap, cancel_on_halt: bool = True) -> list[tuple[str, str]]:
    rows = []
    for a in ACTIONS:
        text = a.help
        if a.id == "halt" and not cancel_on_halt:
            text = "Halt trading now (working orders stay: risk.cancel_orders_on_halt = false). Pressed while halted: resume"
        if keymap.confirm.get(a.id):
            text += ASKS.get(a.id, " (asks first)")
        rows.append((keymap.display(a.id), text))
    rows.append(("ctrl+p", "Command palette: search every action by name"))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss_help", "Close"),
    ]

    def __init__(self, keymap: Keymap, cancel_on_halt: bool = True) -> None:
        super().__init__()
        self.keymap = keymap
        self.cancel_on_halt = cancel_on_halt

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=True, expand=True, padding=(0, 1), pad_edge=False)
        table.add_column("Key", no_wrap=True, style="bold")
        table.add_column("What it does", ratio=1)
        for key, text in help_rows(self.keymap, self.cancel_on_halt):
            table.add_row(Text(key), Text(text))
        with Vertical(classes="dialog help"):
            yield Static(
                "Keys  (arrows / PgUp / PgDn scroll, Esc closes)",
                classes="dialog-title",
                markup=False,
            )
            with VerticalScroll(id="help-rows"):
                yield Static(table, id="help-table")
            yield Static(
                "Keys and confirmations are set in config.toml under [ui.keys] and [ui.confirm].",
                classes="dialog-message",
                markup=False,
            )

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#help-rows", VerticalScroll))

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
