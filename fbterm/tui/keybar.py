"""The console's footer: the keys that matter most, fitted to the width, labelled for the state.

Textual's footer shows every binding with a fixed description; the console needs less and
more: at 80 columns the halt, quit, kill, flatten and cancel keys must be there before any
other, and a label must say what the key does *now* ("h Resume" while halted, not "h Halt").
Keys come from the keymap (overrides included); a click runs the action like the key does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.widget import Widget

from fbterm.tui.keys import ACTIONS, ActionSpec, Keymap


def footer_items(
    keymap: Keymap, labels: Mapping[str, str], width: int
) -> list[tuple[ActionSpec, str, str]]:
    """(action, key, label) for the footer, most important first until ``width`` is used,
    then shown in the registry's order."""
    items = [(a, keymap.first_key(a.id), labels.get(a.id, a.label)) for a in ACTIONS if a.footer]
    chosen: set[str] = set()
    used = 0
    for a, key, label in sorted(items, key=lambda i: i[0].footer):
        need = len(key) + 1 + len(label) + 1
        if used + need > width:
            break  # a less important key never takes the place of a more important one
        chosen.add(a.id)
        used += need
    return [i for i in items if i[0].id in chosen]


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; }
    KeyBar > .keybar--key { text-style: bold reverse; }
    KeyBar > .keybar--alert { text-style: bold; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keybar--key", "keybar--label", "keybar--alert"}

    def __init__(self, keymap: Keymap, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keymap = keymap
        self.labels: dict[str, str] = {}
        self._spans: list[tuple[int, int, ActionSpec]] = []

    def set_labels(self, labels: Mapping[str, str]) -> None:
        if dict(labels) != self.labels:
            self.labels = dict(labels)
            self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keybar--key", partial=True)
        label_style = self.get_component_rich_style("keybar--label", partial=True)
        alert_style = self.get_component_rich_style("keybar--alert", partial=True)
        out = Text(no_wrap=True, overflow="crop")
        self._spans = []
        for a, key, label in footer_items(self.keymap, self.labels, self.size.width):
            start = out.cell_len
            out.append(key, key_style)
            out.append(f" {label} ", alert_style if a.id in self.labels else label_style)
            self._spans.append((start, out.cell_len, a))
        return out

    async def on_click(self, event: events.Click) -> None:
        for start, end, a in self._spans:
            if start <= event.x < end:
                await self.screen.run_action(a.action)
                return
