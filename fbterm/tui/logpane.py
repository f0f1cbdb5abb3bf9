"""Log pane: engine, order and alert events, newest last, filterable by level and text.

Lines arrive inside every snapshot (the most recent N, each with a sequence number); only
lines with a sequence above the last one written are appended, so a snapshot costs nothing
here when nothing new happened. A filter change rewrites from the pane's own buffer.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.content import Content
from textual.widgets import RichLog

from fbterm.snapshot import EngineSnapshot, LogLine

LEVELS = ("debug", "info", "warning", "error")
_LEVEL_RANK = {lv: i for i, lv in enumerate(LEVELS)}
_KIND_TONE = {"fill": "up", "risk": "warn", "alert": "bad"}


@dataclass(frozen=True, slots=True)
class UILine:
    """A line the console itself adds (what it sent, what came back)."""

    ts: float
    level: str
    kind: str
    message: str


class LogPane(RichLog):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "log--debug",
        "log--info",
        "log--warning",
        "log--error",
        "log--time",
        "log--up",
        "log--ui",
    }

    def __init__(
        self, *, id: str | None = None, classes: str | None = None, max_lines: int = 2000
    ) -> None:
        super().__init__(
            id=id,
            classes=classes,
            max_lines=max_lines,
            wrap=False,
            markup=False,
            highlight=False,
            auto_scroll=True,
        )
        self.min_level = "info"
        self.filter_text = ""
        self.last_seq = 0
        self._buffer: deque[LogLine | UILine] = deque(maxlen=max_lines)
        self._tz_local = True

    # -- input -----------------------------------------------------------------------------
    def update_snapshot(self, snap: EngineSnapshot) -> None:
        for line in snap.log:
            if line.seq > self.last_seq:
                self.last_seq = line.seq
                self._add(line)

    def add_ui_line(
        self, message: str, level: str = "info", kind: str = "ui", ts: float | None = None
    ) -> None:
        self._add(UILine(ts if ts is not None else time.time(), level, kind, message))

    def _add(self, line: LogLine | UILine) -> None:
        self._buffer.append(line)
        if self._passes(line):
            self._write(line)

    def _write(self, line: LogLine | UILine) -> None:
        # Each line is kept whole and the pane shows as much of it as its width allows: a
        # wider pane (a bigger terminal, compact mode off) shows more without a rewrite.
        text = self._format_line(line)
        self.write(text, width=max(text.cell_len, 1), shrink=False)

    # -- filtering -------------------------------------------------------------------------
    def _passes(self, line: LogLine | UILine) -> bool:
        if _LEVEL_RANK.get(line.level, 1) < _LEVEL_RANK[self.min_level]:
            return False
        return (
            not self.filter_text
            or self.filter_text.lower() in (line.kind + " " + line.message).lower()
        )

    def cycle_level(self) -> str:
        self.min_level = LEVELS[(_LEVEL_RANK[self.min_level] + 1) % len(LEVELS)]
        self._rewrite()
        return self.min_level

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._rewrite()

    def restyle(self) -> None:
        self._rewrite()

    def _rewrite(self) -> None:
        self.clear()
        for line in self._buffer:
            if self._passes(line):
                self._write(line)
        self.border_subtitle = Content(self.describe_filter())  # never markup (see console)

    def describe_filter(self) -> str:
        text = f"≥{self.min_level}"
        if self.filter_text:
            text += f" /{self.filter_text}"
        return text

    # -- rendering -------------------------------------------------------------------------
    def _format_line(self, line: LogLine | UILine) -> Text:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
        style_name = f"log--{line.level}" if line.level in _LEVEL_RANK else "log--info"
        if isinstance(line, UILine):
            style_name = "log--ui" if line.level in ("info", "debug") else style_name
        elif line.level == "info" and _KIND_TONE.get(line.kind) == "up":
            style_name = "log--up"
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(stamp + " ", self.get_component_rich_style("log--time", partial=True))
        t.append(f"{line.kind[:7]:<7} ", self.get_component_rich_style(style_name, partial=True))
        t.append(line.message, self.get_component_rich_style(style_name, partial=True))
        return t
