"""Form widgets that keep up with a burst of keys: fields, choices and buttons.

Textual hands a key to the focused widget by posting it into that widget's queue, but it runs
*non-priority* bindings (an Input's backspace, a RadioSet's arrows, Tab's focus move) only
after the key has come back up to the app. When keys arrive in one burst (a paste, a laggy
SSH link), the keys behind a Tab are already queued for the old field before the Tab moves
focus, and a binding runs against whatever has focus by then: ``10<Tab>415`` became a
quantity of 10415. So here:

* a form's Tab, Shift+Tab, Enter, Ctrl+S and Esc are priority bindings (:data:`FORM_BINDINGS`),
  which Textual runs while it reads the key, in arrival order: the keys after a Tab are
  routed to the next field;
* each widget runs its own editing keys itself, in the order its queue delivers them
  (:class:`Field`, :class:`Choice`, :class:`PushButton`), never through a binding that could
  meet a different focused widget;
* a submit first lets every field finish the keys already queued for it
  (:func:`settle`), so what is read is everything that was typed before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Button, Input
from textual.widgets.button import ButtonVariant

FORM_BINDINGS: list[BindingType] = [
    Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
    Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    Binding("escape", "cancel", "Cancel", priority=True),
    Binding("ctrl+s", "submit", "Submit", priority=True),
    # Enter submits from a field or a choice; on a button it presses the button (see
    # check_action in the dialogs), so it falls through to the button itself.
    Binding("enter", "submit_from_field", "Submit", show=False, priority=True),
]

# The Input's own editing keys and what they do, run by the Field itself (see Field).
_INPUT_KEYS: dict[str, str] = {
    k.strip(): b.action for b in Input.BINDINGS if isinstance(b, Binding) for k in b.key.split(",")
}


class Field(Input):
    """An Input that edits with its own keys in the order they reach it."""

    def __init__(
        self,
        value: str = "",
        *,
        id: str | None = None,
        placeholder: str = "",
        suggester: Suggester | None = None,
    ) -> None:
        super().__init__(value, placeholder, id=id, suggester=suggester, compact=True)

    async def _on_key(self, event: events.Key) -> None:
        action = _INPUT_KEYS.get(event.key)
        if action is not None and event.key != "enter":
            event.stop()
            event.prevent_default()
            await self.run_action(action)
            return
        await super()._on_key(event)


class PushButton(Button):
    """A compact button that presses on Enter or Space the moment the key reaches it."""

    def __init__(self, label: str, *, id: str, variant: ButtonVariant = "default") -> None:
        # Content, not a str: a label is never read as markup ("Send [ctrl+s]" stays as typed).
        super().__init__(Content(label), id=id, variant=variant, compact=True)

    async def _on_key(self, event: events.Key) -> None:
        if event.key in ("enter", "space"):
            event.stop()
            event.prevent_default()
            self.press()
            return
        await super()._on_key(event)


class Choice(Widget, can_focus=True):
    """One of a few options on one line: ``(•) BUY  ( ) SELL``.

    The choice is in the text, not only in colour: the chosen option has the bullet and is
    upper case. Left/Right and Space move it; a letter picks the option it starts (pressed
    again, the next one with that letter); a click picks the option under the mouse.
    """

    DEFAULT_CSS = """
    Choice { height: 1; width: auto; }
    Choice > .choice--chosen { text-style: bold; }
    Choice:focus > .choice--chosen { text-style: bold reverse; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"choice--chosen", "choice--other"}

    index: reactive[int] = reactive(0)

    class Changed(Message):
        def __init__(self, choice: Choice, index: int) -> None:
            super().__init__()
            self.choice = choice
            self.index = index

        @property
        def control(self) -> Choice:
            return self.choice

    def __init__(
        self,
        options: Sequence[str],
        selected: int = 0,
        *,
        id: str | None = None,
        tones: Sequence[str] = (),
    ) -> None:
        super().__init__(id=id)
        if not options:
            raise ValueError("a choice needs options")
        self.options = list(options)
        self.tones = list(tones)
        self.set_reactive(Choice.index, max(0, min(selected, len(self.options) - 1)))

    @property
    def value(self) -> str:
        return self.options[self.index]

    def _parts(self) -> list[tuple[str, bool]]:
        return [
            (f"({'•' if i == self.index else ' '}) {o}", i == self.index)
            for i, o in enumerate(self.options)
        ]

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        chosen = self.get_component_rich_style("choice--chosen", partial=True)
        other = self.get_component_rich_style("choice--other", partial=True)
        parts = self._parts()
        width = self.content_region.width
        if width and sum(len(t) for t, _ in parts) + 2 * (len(parts) - 1) > width:
            # Too narrow for every option: the chosen one, and how to reach the others.
            out.append(parts[self.index][0], chosen)
            out.append(f"  ({self.index + 1} of {len(parts)}, left/right)", other)
            return out
        for i, (text, on) in enumerate(parts):
            if i:
                out.append("  ")
            out.append(text, chosen if on else other)
        return out

    def get_content_width(self, container: object, viewport: object) -> int:
        return sum(len(t) for t, _ in self._parts()) + 2 * (len(self.options) - 1)

    def watch_index(self, old: int, new: int) -> None:
        if old != new:
            self.post_message(self.Changed(self, new))
        self.refresh(layout=True)

    def select(self, index: int) -> None:
        self.index = index % len(self.options)

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key in ("left", "up"):
            self.select(self.index - 1)
        elif key in ("right", "down", "space"):
            self.select(self.index + 1)
        elif event.character and event.character.isalpha():
            c = event.character.lower()
            hits = [i for i, o in enumerate(self.options) if o.lower().startswith(c)]
            if not hits:
                return  # not ours: a dialog key such as y may still act on it
            later = [i for i in hits if i > self.index]
            self.select(later[0] if self.index in hits and later else hits[0])
        else:
            return
        event.stop()
        event.prevent_default()

    def on_click(self, event: events.Click) -> None:
        x = event.x
        for i, (text, _on) in enumerate(self._parts()):
            if x < len(text):
                self.select(i)
                return
            x -= len(text) + 2


async def settle(widgets: Iterable[Widget], timeout: float = 2.0) -> None:
    """Return once each widget has handled every message queued for it before this call.

    Each gets a callback at the end of its queue; the keys typed into it before a submit are
    ahead of that callback, so when all have run, the form holds everything that was typed.
    """
    loop = asyncio.get_running_loop()
    waits: list[asyncio.Future[None]] = []
    for w in widgets:
        fut: asyncio.Future[None] = loop.create_future()

        def done(f: asyncio.Future[None] = fut) -> None:
            if not f.done():
                f.set_result(None)

        if w.is_attached and w.call_later(done):
            waits.append(fut)
    if waits:
        await asyncio.wait(waits, timeout=timeout)
