"""The command palette (ctrl+p): every console action, found by name, with the key that runs it.

A provider of its own, not Textual's system commands: those are read as markup, so a title
such as "Filter (/)" written with square brackets crashed the console and "Cancel [c]" lost
its key. Here titles are plain :class:`~textual.content.Content` and help text is escaped;
nothing an action is called can be taken for markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher
from textual.markup import escape

from fbterm.tui.console import ConsoleScreen
from fbterm.tui.keys import ACTIONS

if TYPE_CHECKING:
    from fbterm.tui.app import FbtermApp


class ConsoleCommands(Provider):
    """The console's actions, offered only over the console itself (a dialog's palette must
    not run console actions behind it)."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        app = cast("FbtermApp", self.app)
        console = next((s for s in app.screen_stack if isinstance(s, ConsoleScreen)), None)
        if console is None or self.screen is not console:
            return
        for a in ACTIONS:
            if a.id in ("next_pane", "prev_pane"):
                continue
            title = f"{a.label} [{app.keymap.display(a.id)}]"
            yield title, a.help, _run(console, a.action)

    async def discover(self) -> Hits:
        for title, help_text, run in self._commands():
            yield DiscoveryHit(Content(title), run, text=title, help=escape(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, _highlight(matcher, title), run, text=title, help=escape(help_text)
                )


def _highlight(matcher: Matcher, title: str) -> Content:
    """The matched letters highlighted, on the plain title (Textual's own highlight parses
    the title as markup)."""
    content = Content(title)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, title)
    for i in offsets:
        if not title[i].isspace():
            content = content.stylize(matcher.match_style, i, i + 1)
    return content


def _run(console: ConsoleScreen, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await console.run_action(action)

    return run
