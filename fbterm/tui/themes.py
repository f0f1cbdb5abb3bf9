"""Theme files: the repo's themes/ folder, shipped as fbterm.themes, or a path to a .tcss file.

A theme file is plain Textual CSS that colours the console's semantic classes (P&L up/down,
risk ok/warn/breach, LIVE, buy/sell). Its first line may name the Textual base theme that
styles the stock widgets (inputs, footer, palette): ``/* base: textual-light */``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BUILTIN_ORDER = ("dark", "light", "high-contrast")
_BASE = re.compile(r"/\*\s*base:\s*([\w-]+)\s*\*/")


class ThemeError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ThemeFile:
    name: str
    css: str
    base: str
    path: str


def _package_dir() -> Path:
    return Path(str(resources.files("fbterm.themes")))


def builtin_names() -> list[str]:
    d = _package_dir()
    found = sorted(p.stem for p in d.glob("*.tcss")) if d.is_dir() else []
    ordered = [n for n in BUILTIN_ORDER if n in found]
    return ordered + [n for n in found if n not in ordered]


def load_theme(name_or_path: str) -> ThemeFile:
    """A shipped theme by name, or a user's .tcss file by path."""
    if name_or_path.endswith(".tcss") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
    else:
        path = _package_dir() / f"{name_or_path}.tcss"
        if not path.is_file():
            raise ThemeError(
                f"ui.theme: unknown theme {name_or_path!r}; use one of {', '.join(builtin_names())} "
                "or a path to a .tcss file"
            )
    try:
        css = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ThemeError(f"ui.theme: cannot read {path}: {e.strerror}") from None
    m = _BASE.search(css[:200])
    base = m.group(1) if m else "textual-dark"
    return ThemeFile(name=path.stem, css=css, base=base, path=str(path))
