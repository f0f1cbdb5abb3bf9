"""The key registry (:mod:`fbterm.tui.keys`) as Textual bindings.

The same registry feeds the Textual bindings (through binding ids and
:meth:`App.set_keymap`), the footer, the ``?`` help screen and the command palette, so what
is shown is always what is bound.

Every console binding is a *priority* binding: Textual then runs it while it reads the key,
in the order the keys arrived, instead of after the key has travelled to the focused table
and back. Keys that arrive in one burst (a paste, a laggy SSH link) therefore act in order,
and a key typed after ``n`` can never reach a console action behind the ticket it opened.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

from fbterm.tui.keys import (
    ACTION_IDS,
    ACTIONS,
    CONFIRM_DEFAULTS,
    ActionSpec,
    Keymap,
    KeymapError,
    spec,
)

__all__ = [
    "ACTIONS",
    "ACTION_IDS",
    "CONFIRM_DEFAULTS",
    "ActionSpec",
    "Keymap",
    "KeymapError",
    "bindings",
    "spec",
    "textual_keymap",
]


def bindings() -> list[BindingType]:
    """Default-key Bindings with ids; :func:`textual_keymap` then applies the overrides.

    None is shown by Textual's footer: the console draws its own (:mod:`fbterm.tui.keybar`),
    whose labels follow the trading state.
    """
    return [
        Binding(a.key, a.action, a.label, show=False, id=a.id, tooltip=a.help, priority=True)
        for a in ACTIONS
    ]


def textual_keymap(keymap: Keymap) -> dict[str, str]:
    return {a.id: keymap.keys[a.id] for a in ACTIONS if keymap.keys[a.id] != a.key}
