"""Plain data (what :func:`fbterm.config.to_dict` gives) written back as TOML.

``check-config`` prints the effective config with it, and what it prints loads back to the
same config. Standard library only; enough TOML for our own config's shape.
"""

from __future__ import annotations

import json
import re
from typing import Any


def dump_toml(data: dict[str, Any]) -> str:
    """Render plain data as TOML (enough for our own config shape)."""
    out: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            # JSON's escapes are TOML's; TOML also wants DEL escaped.
            return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{_key(k)} = {scalar(x)}" for k, x in v.items()) + "}"
        return str(v)

    def _key(k: str) -> str:
        return k if _BARE_KEY.fullmatch(k) else scalar(k)

    def table(prefix: str, d: dict[str, Any], array: bool = False) -> None:
        plain = {
            k: v for k, v in d.items() if v is not None and not _is_table(v) and not _is_aot(v)
        }
        if prefix:
            out.append(f"\n[[{prefix}]]" if array else f"\n[{prefix}]")
        for k, v in plain.items():
            out.append(f"{_key(k)} = {scalar(v)}")
        for k, v in d.items():
            if _is_table(v):
                table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)
            elif _is_aot(v):
                for item in v:
                    table(f"{prefix}.{_key(k)}" if prefix else _key(k), item, array=True)

    table("", data)
    return "\n".join(out).lstrip("\n") + "\n"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_aot(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)
