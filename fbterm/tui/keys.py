"""Keys as data: every console action is a named entry with a default key, and the rules a
key map must follow.

Users override keys in ``config.toml`` (``[ui.keys] halt = "ctrl+x"``) and switch off
confirmations (``[ui.confirm] flatten = false``). This module is the one place those settings
are checked: the console checks them at start and ``fbterm check-config`` checks them with the
same :meth:`Keymap.build`, so a key map the console would refuse is refused by both. It imports
nothing from Textual (the CLI imports it without pulling the UI in); the Textual side, the
bindings, is :mod:`fbterm.tui.keymap`.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fbterm.config import Config

# tmux and many SSH clients swallow or remap these; a critical action bound there could be
# unreachable exactly when it is needed.
UNRELIABLE_KEYS = frozenset({"home", "end", "insert", "pageup", "pagedown"})

MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")

# Names of keys that are not printable characters (Textual's names; a test checks that every
# key Textual defines is known here, so the two cannot drift apart).
NAMED_KEYS = frozenset(
    {
        "escape",
        "enter",
        "return",
        "tab",
        "space",
        "backspace",
        "delete",
        "insert",
        "home",
        "end",
        "pageup",
        "pagedown",
        "up",
        "down",
        "left",
        "right",
        "newline",
        "at",
        "backtab",
        *(f"f{i}" for i in range(1, 25)),
    }
)

# Textual names a punctuation key by its Unicode name ("?" is "question_mark"), with a few
# friendlier replacements.
_NAME_REPLACEMENTS = {
    "solidus": "slash",
    "reverse_solidus": "backslash",
    "commercial_at": "at",
    "hyphen_minus": "minus",
    "plus_sign": "plus",
    "low_line": "underscore",
}
_ALIASES = {"esc": "escape", "return": "enter", "del": "delete", "pgup": "pageup"}


def char_key(ch: str) -> str:
    """The key name Textual gives a typed character: 'a' -> 'a', '?' -> 'question_mark'."""
    if ch.isalnum():
        return ch
    try:
        name = unicodedata.name(ch).lower().replace("-", "_").replace(" ", "_")
    except ValueError:
        return ch
    return _NAME_REPLACEMENTS.get(name, name)


# Every printable ASCII character by its key name, and back: for checking and for display.
CHAR_KEYS: dict[str, str] = {char_key(chr(i)): chr(i) for i in range(33, 127)}


def normalize_key(key: str) -> str:
    """One key as Textual names it: '?' -> 'question_mark', 'esc' -> 'escape'."""
    k = key.strip()
    if len(k) == 1:
        return char_key(k)
    mods, _, base = k.rpartition("+")
    if len(base) == 1:
        base = char_key(base)
    base = _ALIASES.get(base.lower(), base if len(base) == 1 else base.lower())
    return f"{mods.lower()}+{base}" if mods else base


def split_keys(keys: str) -> list[str]:
    return [normalize_key(k) for k in keys.split(",") if k.strip()]


def key_problem(key: str) -> str | None:
    """Why ``key`` (already normalized) is not a key a terminal can send, or None."""
    mods, _, base = key.rpartition("+")
    for m in mods.split("+") if mods else ():
        if m not in MODIFIERS:
            return f"unknown modifier {m!r} in {key!r} (use {', '.join(MODIFIERS)}, joined by +)"
    if len(base) == 1 and base.isprintable() and base != " ":
        return None
    if base in NAMED_KEYS or base in CHAR_KEYS:
        return None
    plus = key.replace("-", "+")
    if "-" in key and key_problem(plus) is None:
        near = [plus]  # "ctrl-x": modifiers are joined with +
    else:
        near = difflib.get_close_matches(base, [*NAMED_KEYS, *CHAR_KEYS], n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"{key!r} is not a key name{hint}; e.g. 'x', 'X', 'ctrl+x', 'f5', '?'"


def display_key(key: str) -> str:
    """How a key reads on screen: 'question_mark' -> '?', 'ctrl+x' -> 'ctrl+x'."""
    mods, sep, base = key.rpartition("+")
    shown = {"escape": "esc", "space": "space", "delete": "del"}.get(
        base, CHAR_KEYS.get(base, base)
    )
    return f"{mods}{sep}{shown}"


class KeymapError(ValueError):
    """A key override or confirm setting in the config is wrong; phrased for the operator."""


@dataclass(frozen=True, slots=True)
class ActionSpec:
    id: str  # binding id and config key
    key: str  # Textual key name(s), comma separated
    action: str  # Textual action on the console screen
    label: str  # short, for the footer
    help: str  # one line, for help and the command palette
    # Footer priority: 1 is the last to go when the terminal is narrow; 0 is never in the footer
    # (help and the palette list every action). The footer shows keys in ACTIONS order.
    footer: int = 0
    critical: bool = False  # never on keys a terminal may not deliver


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "halt",
        "h",
        "halt_toggle",
        "Halt",
        "Halt trading now; working orders are cancelled too (risk.cancel_orders_on_halt). "
        "Pressed while halted: resume",
        footer=1,
        critical=True,
    ),
    ActionSpec(
        "kill",
        "K",
        "kill",
        "Kill",
        "Kill switch: pause every strategy, cancel every order, flatten every position",
        footer=3,
        critical=True,
    ),
    ActionSpec(
        "flatten",
        "f",
        "flatten",
        "Flatten",
        "Flatten all positions, one symbol or one strategy's; pauses the strategies it closes",
        footer=4,
        critical=True,
    ),
    ActionSpec(
        "cancel_order",
        "c",
        "cancel_order",
        "Cancel",
        "Cancel the selected order",
        footer=5,
        critical=True,
    ),
    ActionSpec(
        "cancel_all",
        "C",
        "cancel_all",
        "Cxl all",
        "Cancel all open orders",
        footer=8,
        critical=True,
    ),
    ActionSpec("new_order", "n", "new_order", "New", "New order ticket", footer=6),
    ActionSpec(
        "reduce_only",
        "r",
        "reduce_only",
        "Reduce",
        "Reduce-only: allow only orders that shrink positions",
        footer=9,
        critical=True,
    ),
    ActionSpec(
        "modify_order", "m", "modify_order", "Modify", "Modify the selected order", footer=10
    ),
    ActionSpec(
        "pause_strategy",
        "p",
        "pause_strategy",
        "Pause",
        "Pause or resume the selected strategy",
        footer=11,
    ),
    ActionSpec(
        "backtest",
        "b",
        "backtest",
        "Backtest",
        "Run a backtest (strategy, parameters, bars)",
        footer=13,
    ),
    ActionSpec(
        "update_strategy",
        "u",
        "update_strategy",
        "Update",
        "Hot-update the selected strategy's parameters or code",
    ),
    ActionSpec(
        "rebalance", "k", "rebalance", "Rebalance", "Rebalance strategy capital by half Kelly"
    ),
    ActionSpec(
        "metrics", "s", "metrics", "Stats", "Strategy metrics and engine statistics", footer=14
    ),
    ActionSpec(
        "filter", "slash", "filter", "Filter", "Filter the focused table or the log", footer=12
    ),
    ActionSpec("sort", "o", "sort_next", "Sort", "Sort the focused table by the next column"),
    ActionSpec("sort_reverse", "O", "sort_reverse", "Reverse", "Reverse the focused table's sort"),
    ActionSpec("log_level", "l", "log_level", "Log level", "Cycle the log's minimum level"),
    ActionSpec(
        "theme", "t", "cycle_theme", "Theme", "Cycle the theme (dark, light, high contrast)"
    ),
    ActionSpec("next_pane", "tab,right", "next_pane", "Next pane", "Focus the next pane"),
    ActionSpec("prev_pane", "shift+tab,left", "prev_pane", "Prev pane", "Focus the previous pane"),
    ActionSpec(
        "pane_positions", "1", "show_pane('positions')", "Positions", "Show the positions pane"
    ),
    ActionSpec("pane_orders", "2", "show_pane('orders')", "Orders", "Show the open orders pane"),
    ActionSpec(
        "pane_strategies", "3", "show_pane('strategies')", "Strategies", "Show the strategies pane"
    ),
    ActionSpec("pane_risk", "4", "show_pane('risk')", "Risk", "Show the risk pane"),
    ActionSpec("pane_log", "5", "show_pane('log')", "Log", "Show the log pane"),
    ActionSpec("help", "question_mark", "help", "Help", "Keys and what they do", footer=7),
    ActionSpec(
        "quit",
        "q",
        "quit",
        "Quit",
        "Quit; ctrl+q does the same",
        footer=2,
        critical=True,
    ),
)

ACTION_IDS = frozenset(a.id for a in ACTIONS)

# Which actions ask first unless the user switched it off. Halting is never delayed by a
# dialog: stopping is always safe, starting again is what deserves a second look. Orders are
# reviewed before they are transmitted, and a single cancel names the order it cancels,
# because the row under the cursor can change while strategy orders come and go.
CONFIRM_DEFAULTS: dict[str, bool] = {
    "halt": False,
    "resume": True,
    "reduce_only": False,
    "kill": True,
    "flatten": True,
    "cancel_order": True,
    "cancel_all": True,
    "new_order": True,
    "modify_order": True,
    "pause_strategy": False,
    "rebalance": True,
    "quit": True,
}


def _did_you_mean(word: str, options: object) -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)  # type: ignore[call-overload]
    return f" (did you mean {near[0]!r}?)" if near else ""


@dataclass(frozen=True)
class Keymap:
    """The effective keys: defaults with the user's overrides applied and checked."""

    keys: Mapping[str, str]  # action id -> comma separated Textual key names
    confirm: Mapping[str, bool]

    @classmethod
    def build(
        cls, overrides: Mapping[str, str] | None = None, confirm: Mapping[str, bool] | None = None
    ) -> Keymap:
        overrides = dict(overrides or {})
        confirm = dict(confirm or {})
        keys: dict[str, str] = {spec.id: spec.key for spec in ACTIONS}
        for action_id, key in overrides.items():
            if action_id not in ACTION_IDS:
                raise KeymapError(
                    f"ui.keys.{action_id}: unknown action{_did_you_mean(action_id, ACTION_IDS)}"
                )
            if not isinstance(key, str):
                raise KeymapError(f"ui.keys.{action_id}: expected a key as text, got {key!r}")
            parts = split_keys(key)
            if not parts:
                raise KeymapError(f"ui.keys.{action_id}: no key given")
            for k in parts:
                problem = key_problem(k)
                if problem:
                    raise KeymapError(f"ui.keys.{action_id}: {problem}")
            keys[action_id] = ",".join(parts)
        for spec in ACTIONS:
            for k in split_keys(keys[spec.id]):
                if spec.critical and k.rpartition("+")[2].lower() in UNRELIABLE_KEYS:
                    raise KeymapError(
                        f"ui.keys.{spec.id}: {k!r} is not delivered reliably through tmux/SSH; "
                        "choose another key for this action"
                    )
        seen: dict[str, str] = {}
        for spec in ACTIONS:
            for k in split_keys(keys[spec.id]):
                if k in seen:
                    raise KeymapError(
                        f"ui.keys.{spec.id}: key {k!r} is already bound to {seen[k]!r}"
                    )
                seen[k] = spec.id
        for action_id, flag in confirm.items():
            if action_id not in CONFIRM_DEFAULTS:
                raise KeymapError(
                    f"ui.confirm.{action_id}: no confirmation to switch"
                    f"{_did_you_mean(action_id, CONFIRM_DEFAULTS)}"
                )
            if not isinstance(flag, bool):
                raise KeymapError(f"ui.confirm.{action_id}: expected true or false, got {flag!r}")
        return cls(keys=keys, confirm={**CONFIRM_DEFAULTS, **confirm})

    def display(self, action_id: str) -> str:
        """How the key reads in help, the footer and the palette: '?' rather than 'question_mark'."""
        return " / ".join(display_key(k) for k in split_keys(self.keys[action_id]))

    def first_key(self, action_id: str) -> str:
        """The action's first key, as shown in the footer."""
        return display_key(split_keys(self.keys[action_id])[0])

    def needs_confirm(self, action_id: str) -> bool:
        return self.confirm.get(action_id, True)


def spec(action_id: str) -> ActionSpec:
    for a in ACTIONS:
        if a.id == action_id:
            return a
    raise KeyError(action_id)


def check_ui_keys(cfg: Config) -> Keymap:
    """The console's key map from ``cfg``, checked; raises :class:`KeymapError`."""
    return Keymap.build(cfg.ui.keys, cfg.ui.confirm)
