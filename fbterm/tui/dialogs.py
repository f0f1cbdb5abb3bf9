"""Dialogs: confirm, order ticket, modify, flatten, filter, strategy update.

Each dialog validates everything before it dismisses: an invalid entry shows an inline error
under the fields and the dialog stays open, so nothing reaches the engine until the input is
valid. Dialogs only *build* commands; the console sends them. Order-field rules are the
model's own (``validate_order_fields``, ``Order.modified``), computed on copies, so the
dialog and the engine cannot disagree about what is a valid order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from fbterm.commands import FlattenAll, ModifyOrder, NewOrder, UpdateStrategy
from fbterm.model import (
    IllegalTransition,
    Order,
    OrderError,
    OrderType,
    Side,
    Signal,
    TimeInForce,
    instrument_from_key,
    validate_order_fields,
)
from fbterm.model.order_terms import parse_order_terms
from fbterm.snapshot import PositionRow, StrategyRow
from fbterm.tui import fmt

T = TypeVar("T")

ORDER_TYPES: tuple[OrderType, ...] = (
    OrderType.MARKET,
    OrderType.LIMIT,
    OrderType.STOP,
    OrderType.STOP_LIMIT,
)
# The ticket also offers trailing stops; a working order changes among the plain types.
TICKET_TYPES: tuple[OrderType, ...] = (*ORDER_TYPES, OrderType.TRAIL)


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

    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]
    TITLE_TEXT = ""
    OK_LABEL = "OK"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.TITLE_TEXT, classes="dialog-title")
            yield from self.fields()
            yield Static("", id="error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.OK_LABEL, id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def fields(self) -> ComposeResult:
        yield from ()

    def show_error(self, message: str) -> None:
        err = self.query_one("#error", Static)
        err.update(message)
        err.set_class(bool(message), "-visible")

    @property
    def error_text(self) -> str:
        return str(self.query_one("#error", Static).render())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            result = self.build()
        except (InputError, OrderError, IllegalTransition) as e:
            self.show_error(str(e))
            return
        self.show_error("")
        self.dismiss(result)

    def build(self) -> T:
        """The command (or value) the dialog stands for; raise InputError to keep it open.

        Every concrete dialog defines it: a dialog without one has nothing to submit.
        """
        raise TypeError(f"{type(self).__name__} must define build()")


def _field(label: str, widget: Any) -> Horizontal:
    return Horizontal(Label(label, classes="field-label"), widget, classes="field")


def _radio(options: Sequence[str], selected: int, id: str) -> RadioSet:
    return RadioSet(
        *(RadioButton(o, value=i == selected) for i, o in enumerate(options)), id=id, compact=True
    )


class ConfirmDialog(Dialog[bool]):
    """Yes / No. Focus starts on No, so a stray Enter never confirms."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,n", "cancel", "No"),
        Binding("y", "submit", "Yes"),
    ]

    def __init__(self, title: str, message: str, yes: str = "Yes") -> None:
        super().__init__(classes="confirm")
        self.TITLE_TEXT = title
        self.OK_LABEL = f"{yes} (y)"
        self.message = message

    def fields(self) -> ComposeResult:
        yield Static(self.message, classes="dialog-message", markup=False)

    def on_mount(self) -> None:
        cancel = self.query_one("#cancel", Button)
        cancel.label = "No (n)"
        cancel.focus()

    def action_cancel(self) -> None:
        self.dismiss(False)

    def build(self) -> bool:
        return True


class OrderTicket(Dialog[NewOrder]):
    TITLE_TEXT = "New order"
    OK_LABEL = "Send (ctrl+s)"

    def __init__(self, symbols: Sequence[str], prices: dict[str, float], symbol: str = "") -> None:
        super().__init__()
        self.symbols = list(symbols)
        self.prices = prices
        self.initial_symbol = symbol

    def fields(self) -> ComposeResult:
        yield _field(
            "Symbol",
            Input(
                self.initial_symbol,
                id="symbol",
                placeholder="AAPL",
                suggester=SuggestFromList(self.symbols, case_sensitive=False),
                compact=True,
            ),
        )
        yield _field("Side", _radio(("BUY", "SELL"), 0, "side"))
        yield _field("Type", _radio([t.value for t in TICKET_TYPES], 0, "type"))
        yield _field("Quantity", Input(id="quantity", placeholder="100", compact=True))
        yield _field("Limit", Input(id="limit", placeholder="limit price", compact=True))
        yield _field("Stop", Input(id="stop", placeholder="stop price", compact=True))
        yield _field(
            "Terms",
            Input(id="terms", placeholder="tp=  sl=  trail=1%  tif=IOC  outside-rth", compact=True),
        )
        yield Static("", id="preview", classes="dialog-message", markup=False)

    def on_mount(self) -> None:
        self.query_one("#symbol" if not self.initial_symbol else "#quantity", Input).focus()
        self._sync_price_fields()

    def _type(self) -> OrderType:
        idx = self.query_one("#type", RadioSet).pressed_index
        return TICKET_TYPES[max(idx, 0)]

    def _sync_price_fields(self) -> None:
        t = self._type()
        self.query_one("#limit", Input).disabled = t not in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        self.query_one("#stop", Input).disabled = t not in (OrderType.STOP, OrderType.STOP_LIMIT)

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._sync_price_fields()
        self._preview()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._preview()

    def _preview(self) -> None:
        sym = self.query_one("#symbol", Input).value.strip().upper()
        last = self.prices.get(sym)
        try:
            q = parse_number(self.query_one("#quantity", Input).value, "quantity", required=False)
        except InputError:
            q = None
        text = f"last {fmt.num(last)}" if last else ""
        if last and q:
            text += f"   ≈ {fmt.money(q * last, 0)}"
        self.query_one("#preview", Static).update(text)

    def build(self) -> NewOrder:
        sym = self.query_one("#symbol", Input).value.strip().upper()
        if not sym:
            raise InputError("symbol: required")
        try:
            inst = instrument_from_key(sym)
        except ValueError as e:
            raise InputError(f"symbol: {e}") from None
        if self.symbols and inst.key not in self.symbols and inst.underlying not in self.symbols:
            raise InputError(
                f"symbol: {sym} is not traded here (known: {', '.join(self.symbols[:6])})"
            )
        side = Side.BUY if self.query_one("#side", RadioSet).pressed_index <= 0 else Side.SELL
        otype = self._type()
        q = parse_number(self.query_one("#quantity", Input).value, "quantity")
        assert q is not None
        lp = sp = None
        if otype in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            lp = parse_number(self.query_one("#limit", Input).value, "limit price")
        if otype in (OrderType.STOP, OrderType.STOP_LIMIT):
            sp = parse_number(self.query_one("#stop", Input).value, "stop price")
        validate_order_fields("", q, otype, lp, sp, instrument=inst)
        try:
            terms = parse_order_terms(self.query_one("#terms", Input).value)
            tif = terms.tif or TimeInForce.DAY
            # The same checks the engine makes, shown here before anything is sent.
            Signal(
                "manual",
                inst,
                side,
                q,
                otype,
                lp,
                sp,
                tif,
                options=terms.options,
                take_profit=terms.take_profit,
                stop_loss=terms.stop_loss,
            )
        except OrderError as e:
            raise InputError(str(e).removeprefix("order: ")) from None
        return NewOrder(
            symbol=inst.key,
            side=side,
            quantity=q,
            order_type=otype,
            limit_price=lp,
            stop_price=sp,
            tif=tif,
            options=terms.options,
            take_profit=terms.take_profit,
            stop_loss=terms.stop_loss,
        )


class ModifyDialog(Dialog[ModifyOrder]):
    OK_LABEL = "Modify (ctrl+s)"

    def __init__(self, order: Order) -> None:
        super().__init__()
        self.order = order
        # A trailing stop keeps its distance; it may also become a plain order.
        self.types = TICKET_TYPES if order.order_type is OrderType.TRAIL else ORDER_TYPES
        self.TITLE_TEXT = (
            f"Modify {order.client_order_id}: {order.side.value} {fmt.qty(order.quantity)} {order.symbol}"
            f" (filled {fmt.qty(order.filled_quantity)})"
        )

    def fields(self) -> ComposeResult:
        o = self.order
        yield _field(
            "Quantity", Input(fmt.qty(o.quantity).replace(",", ""), id="quantity", compact=True)
        )
        types = self.types
        yield _field("Type", _radio([t.value for t in types], types.index(o.order_type), "type"))
        yield _field(
            "Limit",
            Input("" if o.limit_price is None else f"{o.limit_price:g}", id="limit", compact=True),
        )
        yield _field(
            "Stop",
            Input("" if o.stop_price is None else f"{o.stop_price:g}", id="stop", compact=True),
        )

    def on_mount(self) -> None:
        self.query_one("#quantity", Input).focus()

    def build(self) -> ModifyOrder:
        o = self.order
        q = parse_number(self.query_one("#quantity", Input).value, "quantity")
        idx = self.query_one("#type", RadioSet).pressed_index
        otype = self.types[max(idx, 0)]
        lp = sp = None
        if otype in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            lp = parse_number(self.query_one("#limit", Input).value, "limit price")
        if otype in (OrderType.STOP, OrderType.STOP_LIMIT):
            sp = parse_number(self.query_one("#stop", Input).value, "stop price")
        # The model decides what a legal modification is; this builds a copy and drops it.
        new = o.modified(quantity=q, order_type=otype, limit_price=lp, stop_price=sp)
        if (new.quantity, new.order_type, new.limit_price, new.stop_price) == (
            o.quantity,
            o.order_type,
            o.limit_price,
            o.stop_price,
        ):
            raise InputError("nothing changed")
        return ModifyOrder(
            client_order_id=o.client_order_id,
            quantity=new.quantity if new.quantity != o.quantity else None,
            order_type=new.order_type if new.order_type != o.order_type else None,
            limit_price=new.limit_price,
            stop_price=new.stop_price,
        )


class FlattenDialog(Dialog[FlattenAll]):
    TITLE_TEXT = "Flatten all positions"
    OK_LABEL = "Flatten (y)"
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Flatten"),
    ]

    def __init__(
        self, positions: Sequence[PositionRow], order_type: str, offset_pct: float
    ) -> None:
        super().__init__()
        self.positions = [p for p in positions if p.quantity != 0]
        self.order_type = order_type
        self.offset_pct = offset_pct

    def fields(self) -> ComposeResult:
        gross = sum(abs(p.market_value) for p in self.positions)
        names = ", ".join(f"{p.symbol} {fmt.signed_qty(p.quantity)}" for p in self.positions[:4])
        more = f" +{len(self.positions) - 4} more" if len(self.positions) > 4 else ""
        yield Static(
            f"{len(self.positions)} positions, gross {fmt.money(gross, 0)}\n{names}{more}",
            classes="dialog-message",
            markup=False,
        )
        yield _field(
            "Orders", _radio(("market", "limit"), 0 if self.order_type == "market" else 1, "otype")
        )
        yield _field("Offset %", Input(f"{self.offset_pct:g}", id="offset", compact=True))

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self.query_one("#ok", Button).variant = "error"

    def on_key(self, event: Any) -> None:
        # 'y' confirms unless the operator is typing into the offset field.
        if event.key == "y" and not isinstance(self.focused, Input):
            event.stop()
            self.action_submit()

    def build(self) -> FlattenAll:
        limit = self.query_one("#otype", RadioSet).pressed_index == 1
        off = parse_number(
            self.query_one("#offset", Input).value, "offset %", required=limit, positive=False
        )
        if off is not None and not 0 <= off <= 10:
            raise InputError(f"offset %: must be between 0 and 10, got {off:g}")
        return FlattenAll(
            order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            limit_offset_pct=off if off is not None else self.offset_pct,
        )


class FilterDialog(Dialog[str]):
    OK_LABEL = "Apply"

    def __init__(self, target: str, current: str) -> None:
        super().__init__(classes="small")
        self.TITLE_TEXT = f"Filter {target} (empty clears)"
        self.current = current

    def fields(self) -> ComposeResult:
        yield _field("Contains", Input(self.current, id="filter", compact=True))

    def on_mount(self) -> None:
        self.query_one("#filter", Input).focus()

    def build(self) -> str:
        text = self.query_one("#filter", Input).value
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
        for name, value in self.row.params:
            yield self._row(name, Input(str(value), id=f"p-{name}", compact=True))
        yield self._row(
            "Code",
            Input("", placeholder="package.module:Class (optional)", id="code", compact=True),
        )

    @staticmethod
    def _row(text: str, widget: Input) -> Horizontal:
        label = Label(text, classes="field-label")
        label.styles.width = 16  # parameter names are longer than the order ticket's labels
        return Horizontal(label, widget, classes="field")

    def on_mount(self) -> None:
        inputs = list(self.query(Input))
        if inputs:
            inputs[0].focus()

    def build(self) -> UpdateStrategy:
        from fbterm.strategies import StrategyError, load_strategy_class

        code = self.query_one("#code", Input).value.strip()
        if code and ":" not in code:
            raise InputError(f"code: expected 'package.module:Class', got {code!r}")
        given = {
            name: self.query_one(f"#p-{name}", Input).value.strip() for name, _ in self.row.params
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
