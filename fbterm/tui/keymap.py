"""Keys as data: every console action is a named entry with a default key.

Users override keys in ``config.toml`` (``[ui.keys] halt = "ctrl+x"``); the same registry
feeds the Textual bindings (through binding ids and :meth:`App.set_keymap`), the footer, the
``?`` help screen and the command palette, so what is shown is always what is bound.
Confirmations are data too: ``[ui.confirm] flatten = false`` skips that dialog.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import format_key

# tmux and many SSH clients swallow or remap these; a critical action bound there could be
# unreachable exactly when it is needed.
UNRELIABLE_KEYS = frozenset({"home", "end", "insert", "pageup", "pagedown"})


class KeymapError(ValueError):
    """A key override or confirm setting in the config is wrong; phrased for the operator."""


@dataclass(frozen=True, slots=True)
class ActionSpec:
    id: str  # binding id and config key
    key: str  # Textual key name(s), comma separated
    action: str  # Textual action on the console screen
    label: str  # short, for the footer
    help: str  # one line, for help and the command palette
    show: bool = True  # in the footer
    critical: bool = False  # never on keys a terminal may not deliver


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "halt",
        "h",
        "halt_toggle",
        "Halt",
        "Halt trading now; pressed while halted, resume",
        critical=True,
    ),
    ActionSpec(
        "reduce_only",
        "r",
        "reduce_only",
        "Reduce",
        "Reduce-only: allow only orders that shrink positions",
        critical=True,
    ),
    ActionSpec(
        "flatten",
        "f",
        "flatten",
        "Flatten",
        "Flatten all positions (market or limit at an offset)",
        critical=True,
    ),
    ActionSpec(
        "cancel_order", "c", "cancel_order", "Cancel", "Cancel the selected order", critical=True
    ),
    ActionSpec("cancel_all", "C", "cancel_all", "Cxl all", "Cancel all open orders", critical=True),
    ActionSpec("new_order", "n", "new_order", "New", "New order ticket"),
    # Not in the footer only because 80 columns cannot hold every key; help and palette list them.
    ActionSpec(
        "modify_order", "m", "modify_order", "Modify", "Modify the selected order", show=False
    ),
    ActionSpec(
        "pause_strategy",
        "p",
        "pause_strategy",
        "Pause",
        "Pause or resume the selected strategy",
        show=False,
    ),
    ActionSpec(
        "backtest",
        "b",
        "backtest",
        "Backtest",
        "Run a backtest (strategy, parameters, data file)",
        show=False,
    ),
    ActionSpec(
        "update_strategy",
        "u",
        "update_strategy",
        "Update",
        "Hot-update the selected strategy's parameters or code",
        show=False,
    ),
    ActionSpec(
        "rebalance",
        "k",
        "rebalance",
        "Rebalance",
        "Rebalance strategy capital by half Kelly",
        show=False,
    ),
    ActionSpec(
        "metrics", "s", "metrics", "Stats", "Strategy metrics and engine statistics", show=False
    ),
    ActionSpec(
        "filter", "slash", "filter", "Filter", "Filter the focused table or the log", show=False
    ),
    ActionSpec(
        "sort", "o", "sort_next", "Sort", "Sort the focused table by the next column", show=False
    ),
    ActionSpec(
        "sort_reverse",
        "O",
        "sort_reverse",
        "Reverse",
        "Reverse the focused table's sort order",
        show=False,
    ),
    ActionSpec(
        "log_level", "l", "log_level", "Log level", "Cycle the log's minimum level", show=False
    ),
    ActionSpec(
        "theme",
        "t",
        "cycle_theme",
        "Theme",
        "Cycle the theme (dark, light, high contrast)",
        show=False,
    ),
    ActionSpec(
        "next_pane", "tab,right", "next_pane", "Next pane", "Focus the next pane", show=False
    ),
    ActionSpec(
        "prev_pane",
        "shift+tab,left",
        "prev_pane",
        "Prev pane",
        "Focus the previous pane",
        show=False,
    ),
    ActionSpec(
        "pane_positions",
        "1",
        "show_pane('positions')",
        "Positions",
        "Show the positions pane",
        show=False,
    ),
    ActionSpec(
        "pane_orders", "2", "show_pane('orders')", "Orders", "Show the open orders pane", show=False
    ),
    ActionSpec(
        "pane_strategies",
        "3",
        "show_pane('strategies')",
        "Strategies",
        "Show the strategies pane",
        show=False,
    ),
    ActionSpec("pane_risk", "4", "show_pane('risk')", "Risk", "Show the risk pane", show=False),
    ActionSpec("pane_log", "5", "show_pane('log')", "Log", "Show the log pane", show=False),
    ActionSpec("help", "question_mark", "help", "Help", "Keys and what they do"),
    ActionSpec("quit", "q", "quit", "Quit", "Quit (asks when orders are open)", critical=True),
)

ACTION_IDS = frozenset(a.id for a in ACTIONS)

# Which actions ask first unless the user switched it off. Halting is never delayed by a
# dialog: stopping is always safe, starting again is what deserves a second look.
CONFIRM_DEFAULTS: dict[str, bool] = {
    "halt": False,
    "resume": True,
    "reduce_only": False,
    "flatten": True,
    "cancel_order": False,
    "cancel_all": True,
    "pause_strategy": False,
    "rebalance": True,
    "quit": True,
}


def _norm_key(key: str) -> str:
    k = key.strip()
    aliases = {"?": "question_mark", "/": "slash", "esc": "escape", "return": "enter"}
    return aliases.get(k, k)


def _split(keys: str) -> list[str]:
    return [_norm_key(k) for k in keys.split(",") if k.strip()]


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
        keys: dict[str, str] = {}
        for spec in ACTIONS:
            keys[spec.id] = spec.key
        for action_id, key in overrides.items():
            if action_id not in ACTION_IDS:
                raise KeymapError(
                    f"ui.keys.{action_id}: unknown action{_did_you_mean(action_id, ACTION_IDS)}"
                )
            parts = _split(key)
            if not parts:
                raise KeymapError(f"ui.keys.{action_id}: no key given")
            keys[action_id] = ",".join(parts)
        for spec in ACTIONS:
            for k in _split(keys[spec.id]):
                if spec.critical and k.lower() in UNRELIABLE_KEYS:
                    raise KeymapError(
                        f"ui.keys.{spec.id}: {k!r} is not delivered reliably through tmux/SSH; "
                        "choose another key for this action"
                    )
        seen: dict[str, str] = {}
        for spec in ACTIONS:
            for k in _split(keys[spec.id]):
                if k in seen:
                    raise KeymapError(
                        f"ui.keys.{spec.id}: key {k!r} is already bound to {seen[k]!r}"
                    )
                seen[k] = spec.id
        for action_id, flag in confirm.items():
            if action_id not in CONFIRM_DEFAULTS:
                raise KeymapError(
                    f"ui.confirm.{action_id}: no confirmation to switch{_did_you_mean(action_id, CONFIRM_DEFAULTS)}"
                )
            if not isinstance(flag, bool):
                raise KeymapError(f"ui.confirm.{action_id}: expected true or false, got {flag!r}")
        return cls(keys=keys, confirm={**CONFIRM_DEFAULTS, **confirm})

    def bindings(self) -> list[Binding]:
        """Default-key Bindings with ids; :meth:`textual_keymap` then applies the overrides."""
        return [
            Binding(
                spec.key,
                spec.action,
                spec.label,
                show=spec.show,
                id=spec.id,
                tooltip=spec.help,
                priority=spec.id in ("next_pane", "prev_pane"),
            )
            for spec in ACTIONS
        ]

    def textual_keymap(self) -> dict[str, str]:
        return {spec.id: self.keys[spec.id] for spec in ACTIONS if self.keys[spec.id] != spec.key}

    def display(self, action_id: str) -> str:
        """How the key reads in help and the palette: '?' rather than 'question_mark'."""
        return " / ".join(format_key(k) for k in _split(self.keys[action_id]))

    def needs_confirm(self, action_id: str) -> bool:
        return self.confirm.get(action_id, True)


def spec(action_id: str) -> ActionSpec:
    for a in ACTIONS:
        if a.id == action_id:
            return a
    raise KeyError(action_id)


def _did_you_mean(word: str, options: object) -> str:
    near = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)  # type: ignore[call-overload]
    return f" (did you mean {near[0]!r}?)" if near else ""
