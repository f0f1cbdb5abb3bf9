"""Monochrome ASCII mode: no colour and no character outside 7-bit ASCII.

For terminals that cannot show more (``TERM=dumb``, a serial console, a screen reader), for
operators who asked for no colour (``NO_COLOR``), and on request (``fbterm --ascii`` or
``[ui] ascii = "on"``). It works on the finished lines, after every widget (Textual's own
included) has drawn, so no glyph can slip through: box-drawing becomes ``+-|``, bars ``#``
and ``.``, bullets ``*``, an ellipsis ``~``; colours are dropped and meaning is carried by
the words, signs and marks the console prints anyway, plus reverse video for the cursor and
focus (see the ``-ascii`` rules in app.tcss).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.filter import LineFilter

# One ASCII character per one-cell character: the layout never shifts.
_MAP: dict[str, str] = {
    "…": "~",
    "–": "-",
    "—": "-",
    "−": "-",
    "≈": "~",
    "≥": ">",
    "≤": "<",
    "→": ">",
    "←": "<",
    "↑": "^",
    "↓": "v",
    "▲": "^",
    "▼": "v",
    "▶": ">",
    "◀": "<",
    "●": "*",
    "•": "*",
    "○": "o",
    "◉": "*",
    "■": "#",
    "□": " ",
    "█": "#",
    "▉": "#",
    "▊": "#",
    "▋": "#",
    "▌": "]",
    "▍": "#",
    "▎": "#",
    "▏": "|",
    "▐": "[",
    "░": ".",
    "▒": ":",
    "▓": "#",
    "▀": "-",
    "▄": "_",
    "▁": "_",
    "▂": "_",
    "▃": "_",
    "▅": "=",
    "▆": "=",
    "▇": "#",
    "✓": "+",
    "✗": "x",
    "✔": "+",
    "✘": "x",
    "⏎": "<",
    "⌫": "<",
    "·": ".",
    "×": "x",
    "“": '"',
    "”": '"',
    "‘": "'",
    "’": "'",
    "\u00a0": " ",
    # Greek letters of the greeks; a two-cell magnifier (Textual's palette prompt) as two.
    "Δ": "D",
    "Γ": "G",
    "θ": "T",
    "ν": "v",
    "σ": "s",
    "🔎": ">>",
}


def _box(ch: str) -> str:
    """Box drawing: corners and crossings '+', horizontals '-', verticals '|'."""
    name = unicodedata.name(ch, "")
    if "HORIZONTAL" in name and "VERTICAL" not in name and "AND" not in name:
        return "-"
    if "VERTICAL" in name and "HORIZONTAL" not in name and "AND" not in name:
        return "|"
    if "DASH" in name:
        return "-" if "HORIZONTAL" in name else "|"
    return "+"


@lru_cache(maxsize=4096)
def to_ascii(text: str) -> str:
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
        elif ch in _MAP:
            out.append(_MAP[ch])
        elif 0x2500 <= ord(ch) <= 0x257F:
            out.append(_box(ch))
        elif 0x2580 <= ord(ch) <= 0x259F:
            out.append("#")
        else:
            # Anything else: its plain letter if it has one (é -> e), else '?', one per cell.
            base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            wide = unicodedata.east_asian_width(ch) in ("W", "F")
            out.append((base[:1] or "?") * (2 if wide else 1))
    return "".join(out)


_PLAIN = Style(color="default", bgcolor="default")


@lru_cache(maxsize=4096)
def _plain_style(style: Style) -> Style:
    # Colours go; bold, underline and reverse stay (the cursor and focus rely on them).
    return style + _PLAIN


class AsciiFilter(LineFilter):
    """Every rendered line to 7-bit ASCII in the terminal's default colours."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return [
            Segment(to_ascii(text), None if style is None else _plain_style(style), control)
            for text, style, control in segments
        ]


def want_ascii(setting: str, environ: Mapping[str, str] | None = None) -> bool:
    """``[ui] ascii``: "on", "off", or "auto" (on for TERM=dumb, NO_COLOR, or no UTF-8)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    env = os.environ if environ is None else environ
    if env.get("TERM", "").lower() in ("dumb", "unknown"):
        return True
    # NO_COLOR (https://no-color.org): present and not empty means no colour.
    return bool(env.get("NO_COLOR"))
