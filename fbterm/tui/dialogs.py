"""Dialogs: the base every dialog shares, confirm, flatten and kill switch, filter, strategy
update. The order ticket, modify and transmit dialogs are in :mod:`fbterm.tui.ticket`.

Each dialog validates everything before it dismisses: an invalid entry shows an inline error
under the fields and the dialog stays open, so nothing reaches the engine until the input is
valid. Dialogs only *build* commands; the console sends them. Text is never read as markup:
a title such as "Filter [/]" shows as typed. Keys typed in a burst land in the field that had
focus when they were typed (see :mod:`fbterm.tui.forms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Label, Static

from fbterm.commands import FlattenAll, UpdateStrategy
from fbterm.model import IllegalTransition, OrderError, OrderType
from fbterm.snapshot import PositionRow, StrategyRow
from fbterm.tui import fmt
from fbterm.tui.forms import FORM_BINDINGS, Choice, Field, PushButton, settle

T = TypeVar("T")


class InputError(ValueError):
    """What is wrong with the dialog's input, phrased for the operator; shown inline."""


def parse_number(
    text: str, field: str, *, required: bool = True, positive: bool = True
) -> float | None:
    t = text.strip().replace(",", "").replace("_", "")
    if not t:
        if required:
            raise InputError(f"{field}: required")
        return None
    try:
        v = float(t)
    except ValueError:
        raise InputError(f"{field}: not a number: {text.strip()!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{field}: must be a finite number")
    if positive and v <= 0:
        raise InputError(f"{field}: must be > 0, got {v:g}")
    return v


class Dialog(ModalScreen[T]):
    """A modal with a title, fields, an inline error line and OK / Cancel buttons."""

    BINDINGS: ClassVar[list[BindingType]] = FORM_BINDINGS
    TITLE_TEXT = ""
    OK_LABEL = "OK"
    CANCEL_LABEL = "Cancel (esc)"
    _dismissed = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.TITLE_TEXT, classes="dialog-title", markup=False)
            yield from self.fields()
            yield Static("", id="error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield PushButton(self.OK_LABEL, id="ok", variant="primary")
                yield PushButton(self.CANCEL_LABEL, id="cancel")

    def fields(self) -> ComposeResult:
        yield from ()

    def show_error(self, message: str) -> None:
        err = self.query_one("#error", Static)
        err.update(message)
        err.set_class(bool(message), "-visible")

    @property
    def error_text(self) -> str:
        return str(self.query_one("#error", Static).render())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit_from_field":
            # Enter on a button presses that button: let the key through to it.
            return isinstance(self.focused, Field | Choice)
        return True

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            await self.action_submit()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def dismiss(self, result: T | None = None) -> AwaitComplete:
        """Close with ``result``, once. Keys of one burst can ask twice (Esc, then Enter on a
        button already queued); Textual would then pop whatever screen is on top by then,
        possibly the console itself. A dialog that is not the top screen is already closed."""
        if self._dismissed or self.app.screen is not self:
            return AwaitComplete(_nothing())
        self._dismissed = True
        return super().dismiss(result)

    async def action_submit_from_field(self) -> None:
        await self.action_submit()

    async def action_submit(self) -> None:
        # Everything typed before the submit is read, even if it is still queued for a field.
        await settle(self.query(Field))
        if not self.is_active:
            return  # a key in the same burst closed the dialog first
        try:
            result = self.build()
        except (InputError, OrderError, IllegalTransition) as e:
            self.show_error(str(e))
            return
        self.show_error("")
        self.accept(result)

    def accept(self, result: T) -> None:
        """The input is valid: close with it (the ticket reviews it first)."""
        self.dismiss(result)

    def build(self) -> T:
        """The command (or value) the dialog stands for; raise InputError to keep it open.

        Every concrete dialog defines it: a dialog without one has nothing to submit.
        """
        raise TypeError(f"{type(self).__name__} must define build()")


async def _nothing() -> None:
    return None


def field_row(label: str, widget: Widget, label_width: int | None = None) -> Horizontal:
    lab = Label(label, classes="field-label", markup=False)
    if label_width is not None:
        lab.styles.width = label_width
    return Horizontal(lab, widget, classes="field")


class ConfirmDialog(Dialog[bool]):
    """Yes / No. Focus starts on No, so a stray Enter never confirms; y and n answer."""

    BINDINGS: ClassVar[list[BindingType]] = [  # added to the Dialog's form keys
        Binding("y", "submit", "Yes", priority=True),
        Binding("n", "cancel", "No", priority=True),
    ]

    def __init__(self, title: str, message: str, yes: str = "Yes", *, danger: bool = False) -> None:
        super().__init__(classes="confirm -danger" if danger else "confirm")
        self.TITLE_TEXT = title
        self.OK_LABEL = f"{yes} (y)"
        self.CANCEL_LABEL = "No (n)"
        self.message = message
        self.danger = danger

    def fields(self) -> ComposeResult:
        yield Static(self.message, classes="dialog-message", markup=False)

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#cancel", Button))
        if self.danger:
            self.query_one("#ok", Button).variant = "error"

    def action_cancel(self) -> None:
        self.dismiss(False)

    def build(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class FlattenScope:
    """What the flatten dialog may close: everything, one symbol, or one strategy's book."""

    label: str
    symbol: str | None = None
    strategy: str | None = None


def flatten_scopes(
    positions: Sequence[PositionRow], symbol: str | None, strategy: str | None
) -> list[FlattenScope]:
    """All first; then the selected symbol and the selected strategy, if any hold a position."""
    held = [p for p in positions if p.quantity != 0]
    scopes = [FlattenScope("all")]
    if symbol and any(p.symbol == symbol for p in held):
        scopes.append(FlattenScope(f"symbol {symbol}", symbol=symbol))
    if strategy and any(strategy in p.strategies for p in held):
        scopes.append(FlattenScope(f"strategy {strategy}", strategy=strategy))
    return scopes


def _in_scope(p: PositionRow, scope: FlattenScope) -> bool:
    if scope.symbol is not None:
        return p.symbol == scope.symbol
    if scope.strategy is not None:
        return scope.strategy in p.strategies
    return True


class FlattenDialog(Dialog[FlattenAll]):
    """Flatten all positions, one symbol or one strategy's; says what it will do, including
    pausing the strategies it closes (else they would trade straight back in)."""

    TITLE_TEXT = "Flatten positions"
    OK_LABEL = "Flatten (y)"
    BINDINGS: ClassVar[list[BindingType]] = [  # added to the Dialog's form keys
        Binding("y", "submit", "Flatten", priority=True),
    ]

    def __init__(
        self,
        positions: Sequence[PositionRow],
        order_type: str,
        offset_pct: float,
        scopes: Sequence[FlattenScope] = (FlattenScope("all"),),
        initial_scope: int = 0,
    ) -> None:
        super().__init__(classes="-danger")
        self.positions = [p for p in positions if p.quantity != 0]
        self.order_type = order_type
        self.offset_pct = offset_pct
        self.scopes = list(scopes)
        self.initial_scope = initial_scope

    def fields(self) -> ComposeResult:
        if len(self.scopes) > 1:
            yield field_row(
                "Close",
                Choice([s.label for s in self.scopes], self.initial_scope, id="scope"),
            )
        yield Static("", id="what", classes="dialog-message", markup=False)
        yield field_row(
            "Orders",
            Choice(("market", "limit"), 0 if self.order_type == "market" else 1, id="otype"),
        )
        yield field_row("Offset %", Field(f"{self.offset_pct:g}", id="offset"))

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#cancel", Button))
        self.query_one("#ok", Button).variant = "error"
        self._describe()

    def on_choice_changed(self, event: Choice.Changed) -> None:
        self._describe()

    @property
    def scope(self) -> FlattenScope:
        if len(self.scopes) > 1:
            return self.scopes[self.query_one("#scope", Choice).index]
        return self.scopes[0]

    def _describe(self) -> None:
        scope = self.scope
        rows = [p for p in self.positions if _in_scope(p, scope)]
        gross = sum(abs(p.market_value) for p in rows)
        names = ", ".join(
            f"{fmt.contract(p.symbol)} {fmt.signed_qty(p.quantity)}" for p in rows[:4]
        )
        more = f" +{len(rows) - 4} more" if len(rows) > 4 else ""
        holders = sorted({s for p in rows for s in p.strategies if s != "manual"})
        they = "it does" if len(holders) == 1 else "they do"
        pause = (
            f"Pauses {', '.join(holders)} so {they} not trade back in."
            if holders
            else "No strategy holds these; none is paused."
        )
        self.query_one("#what", Static).update(
            f"Closes {len(rows)} position{'s' if len(rows) != 1 else ''} "
            f"(gross ${fmt.money(gross, 0)}): {names}{more}\n"
            f"Cancels the open orders in them. {pause}"
        )

    def build(self) -> FlattenAll:
        limit = self.query_one("#otype", Choice).index == 1
        off = parse_number(
            self.query_one("#offset", Field).value, "offset %", required=limit, positive=False
        )
        if off is not None and not 0 <= off <= 10:
            raise InputError(f"offset %: must be between 0 and 10, got {off:g}")
        scope = self.scope
        return FlattenAll(
            order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            limit_offset_pct=off if off is not None else self.offset_pct,
            symbol=scope.symbol,
            strategy=scope.strategy,
        )


def kill_summary(
    n_strategies: int, n_orders: int, positions: Sequence[PositionRow], state: str
) -> str:
    """What the kill switch will do, in numbers, in the order the engine does it."""
    held = [p for p in positions if p.quantity != 0]
    gross = sum(abs(p.market_value) for p in held)

    def every(n: int, what: str, plural: str) -> str:
        if n == 0:
            return f"{plural} (none now)"
        return f"the 1 {what}" if n == 1 else f"all {n} {plural}"

    pause = (
        f"1. Pause {every(n_strategies, 'strategy', 'strategies')} "
        "(each stays paused until you resume it)."
        if n_strategies
        else "1. No strategy to pause."
    )
    flatten = f"3. Flatten {every(len(held), 'position', 'positions')}"
    flatten += f" (gross ${fmt.money(gross, 0)}) with market orders." if held else "."
    return "\n".join(
        (
            pause,
            f"2. Cancel {every(n_orders, 'open order', 'open orders')}.",
            flatten,
            f"Trading stays {state}; the closing orders are let through even when halted.",
        )
    )


class KillDialog(ConfirmDialog):
    """The kill switch's confirmation: exactly what it will do, in numbers."""

    def __init__(
        self, n_strategies: int, n_orders: int, positions: Sequence[PositionRow], state: str
    ) -> None:
        super().__init__(
            "KILL SWITCH",
            kill_summary(n_strategies, n_orders, positions, state),
            yes="Kill",
            danger=True,
        )


class FilterDialog(Dialog[str]):
    OK_LABEL = "Apply"

    def __init__(self, target: str, current: str) -> None:
        super().__init__(classes="small")
        self.TITLE_TEXT = f"Filter {target} (empty clears)"
        self.current = current

    def fields(self) -> ComposeResult:
        yield field_row("Contains", Field(self.current, id="filter"))

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#filter", Field))

    def build(self) -> str:
        text = self.query_one("#filter", Field).value
        if len(text) > 64:
            raise InputError("filter: at most 64 characters")
        return text.strip()


class UpdateStrategyDialog(Dialog[UpdateStrategy]):
    """Hot-update a running strategy: new parameter values and, optionally, new code.

    Parameters are checked against the strategy class's own declarations before anything is
    sent; the engine then validates again (a dry run on recent bars) and rolls back on failure.
    """

    OK_LABEL = "Update (ctrl+s)"

    def __init__(self, row: StrategyRow) -> None:
        super().__init__()
        self.row = row
        self.TITLE_TEXT = f"Update {row.name} ({row.cls}): positions and orders stay"

    def fields(self) -> ComposeResult:
        # Parameter names are longer than the order ticket's labels.
        for name, value in self.row.params:
            yield field_row(name, Field(str(value), id=f"p-{name}"), label_width=16)
        yield field_row(
            "Code",
            Field("", placeholder="package.module:Class (optional)", id="code"),
            label_width=16,
        )

    def on_mount(self) -> None:
        inputs = list(self.query(Field))
        if inputs:
            self.set_focus(inputs[0])

    def build(self) -> UpdateStrategy:
        from fbterm.strategies import StrategyError, load_strategy_class

        code = self.query_one("#code", Field).value.strip()
        if code and ":" not in code:
            raise InputError(f"code: expected 'package.module:Class', got {code!r}")
        given = {
            name: self.query_one(f"#p-{name}", Field).value.strip() for name, _ in self.row.params
        }
        changed = {k: v for k, v in given.items() if v != str(dict(self.row.params)[k])}
        if not changed and not code:
            raise InputError("nothing changed")
        try:
            cls = load_strategy_class(self.row.cls)
            merged = cls.validate_params({**{k: v for k, v in self.row.params}, **given})
            cls(self.row.name, **merged)  # cross-parameter rules (e.g. fast < slow)
        except StrategyError as e:
            raise InputError(str(e)) from None
        return UpdateStrategy(
            name=self.row.name, params={k: merged[k] for k in changed}, cls=code or None
        )


__all__ = [
    "ConfirmDialog",
    "Dialog",
    "FilterDialog",
    "FlattenDialog",
    "FlattenScope",
    "InputError",
    "KillDialog",
    "UpdateStrategyDialog",
    "field_row",
    "flatten_scopes",
    "parse_number",
]
