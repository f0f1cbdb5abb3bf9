"""The ``?`` screen: every action with its *effective* key (after config overrides)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from fbterm.tui.keymap import ACTIONS, Keymap


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("escape,q,question_mark", "dismiss_help", "Close"),
    ]

    def __init__(self, keymap: Keymap) -> None:
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Label("Keys", classes="dialog-title")
            table: DataTable[str] = DataTable(id="help-table", cursor_type="row", show_header=True)
            yield table
            yield Static(
                "Every action is also in the command palette (ctrl+p). Keys and confirmations "
                "are set in config.toml under [ui.keys] and [ui.confirm].  Esc closes.",
                classes="dialog-message",
                markup=False,
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Key", width=14, key="key")
        table.add_column("Action", width=16, key="action")
        table.add_column("What it does", width=52, key="help")
        for a in ACTIONS:
            confirm = ""
            if self.keymap.confirm.get(a.id):
                confirm = " (asks first)"
            table.add_row(self.keymap.display(a.id), a.id, a.help + confirm, key=a.id)
        table.add_row("ctrl+p", "palette", "Command palette: search every action", key="palette")
        table.focus()

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
