"""Order entry as TWS users expect it: a ticket, then the order in words, then Transmit.

The ticket shows the order in words as it is typed ("SELL 5 SPY LMT 590.00 DAY ≈ $2,950").
Send (Enter or Ctrl+S) checks the fields and opens the transmit step: the order in words,
its value, and what the venue says about its margin (a what-if, when the venue offers one).
Only Transmit sends it; Esc goes back to the ticket with every field as it was. Experts can
skip the transmit step with ``[ui.confirm] new_order = false`` (``modify_order`` likewise).

Order-field rules are the model's own (``validate_order_fields``, ``Order.modified``),
computed on copies, so the dialog and the engine cannot disagree about a valid order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.suggester import SuggestFromList
from textual.widgets import Static

from fbterm.commands import ModifyOrder, NewOrder
from fbterm.model import (
    Order,
    OrderError,
    OrderType,
    Side,
    Signal,
    TimeInForce,
    instrument_from_key,
    validate_order_fields,
)
from fbterm.model.order_terms import parse_order_terms, terms_text
from fbterm.tui import fmt
from fbterm.tui.dialogs import ConfirmDialog, Dialog, InputError, field_row, parse_number
from fbterm.tui.forms import FORM_BINDINGS, Choice, Field

ORDER_TYPES: tuple[OrderType, ...] = (
    OrderType.MARKET,
    OrderType.LIMIT,
    OrderType.STOP,
    OrderType.STOP_LIMIT,
)
# The ticket also offers trailing stops; a working order changes among the plain types.
TICKET_TYPES: tuple[OrderType, ...] = (*ORDER_TYPES, OrderType.TRAIL)
TIFS: tuple[TimeInForce, ...] = (TimeInForce.DAY, TimeInForce.GTC)

# Asks the venue for a margin preview of an order; calls back with one line of text.
WhatIf = Callable[[NewOrder, Callable[[str], None]], None]


def order_words(
    side: Side,
    quantity: float,
    symbol: str,
    order_type: OrderType,
    limit_price: float | None,
    stop_price: float | None,
    tif: TimeInForce | None,
    last: float | None,
) -> str:
    """The order as a sentence with its value: 'SELL 5 SPY LMT 590.00 DAY ≈ $2,950'.

    The value uses the limit price, else the stop, else the last price; options count their
    multiplier (1 contract = 100 shares).
    """
    try:
        mult = instrument_from_key(symbol).multiplier
    except ValueError:
        mult = 1
    words = f"{side.value} {fmt.qty(quantity)} {fmt.contract(symbol)} {order_type.value}"
    if stop_price is not None:
        words += f" stop {fmt.num(stop_price)}"
    if limit_price is not None:
        words += f" {'limit ' if stop_price is not None else ''}{fmt.num(limit_price)}"
    if tif is not None:
        words += f" {tif.value}"
    price = limit_price or stop_price or last
    if price:
        words += f" ≈ ${fmt.money(quantity * price * mult, 0)}"
        if order_type is OrderType.MARKET:
            words += f" (last {fmt.num(last)})"
    return words


def new_order_words(cmd: NewOrder, last: float | None) -> str:
    """The order in words, with its bracket exits and every other term the Terms field set
    (trail, GTD time, outside-RTH, algo): what the transmit step asks about is all of it."""
    words = order_words(
        cmd.side,
        cmd.quantity,
        cmd.symbol,
        cmd.order_type,
        cmd.limit_price,
        cmd.stop_price,
        cmd.tif,
        last,
    )
    exits = [
        f"{name} {fmt.num(price)}"
        for name, price in (("take-profit", cmd.take_profit), ("stop-loss", cmd.stop_loss))
        if price is not None
    ]
    terms = terms_text(cmd.options)
    if terms:
        exits.append(f"terms {terms}")
    return f"{words}; {', '.join(exits)}" if exits else words


def mark_price_fields(dialog: Dialog[Any], otype: OrderType) -> None:
    """Mark the price fields the order type does not use.

    They are never disabled: Tab then always walks the same fields, so keys typed ahead of a
    type change still land where they were aimed. A value left in an unused field is refused
    (:func:`prices_for`).
    """
    for id_, used in (
        ("#limit", otype in (OrderType.LIMIT, OrderType.STOP_LIMIT)),
        ("#stop", otype in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAIL)),
    ):
        f = dialog.query_one(id_, Field)
        f.set_class(not used, "-unused")
        f.placeholder = f"{id_[1:]} price" if used else f"not used for {otype.value}"
    if otype is OrderType.TRAIL:
        # The distance goes in Terms (trail=1.5 or trail=2%); a stop here is the first level.
        dialog.query_one("#stop", Field).placeholder = "first level (optional; trail= in Terms)"


def prices_for(dialog: Dialog[Any], otype: OrderType) -> tuple[float | None, float | None]:
    """The limit and stop prices the order type takes, from the dialog's #limit and #stop.

    A price typed into a field the type does not use is refused, not dropped: "LMT 415" with
    the type still on MKT would otherwise go out as a market order.
    """
    out: list[float | None] = []
    for id_, name, uses in (
        ("#limit", "limit price", (OrderType.LIMIT, OrderType.STOP_LIMIT)),
        ("#stop", "stop price", (OrderType.STOP, OrderType.STOP_LIMIT)),
    ):
        text = dialog.query_one(id_, Field).value
        if otype is OrderType.TRAIL and id_ == "#stop":
            try:  # the first level, if any
                out.append(parse_number(text, name, required=False))
            except InputError as e:
                raise InputError(f"{e}; a trailing distance goes in Terms (trail=1%)") from None
        elif otype in uses:
            out.append(parse_number(text, name))
        elif text.strip():
            raise InputError(
                f"{name}: {otype.value} takes none; choose a type that uses it or clear it"
            )
        else:
            out.append(None)
    return out[0], out[1]


class TransmitDialog(ConfirmDialog, inherit_bindings=False):
    """The transmit step: the order in words, its value and the venue's what-if, then
    Transmit (t) or back to the ticket (Esc). Focus starts on Back: Enter never transmits."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *FORM_BINDINGS,
        Binding("t", "submit", "Transmit", priority=True),
        Binding("n", "cancel", "Back", priority=True),
    ]

    def __init__(self, title: str, words: str, side: Side, venue: str | None) -> None:
        super().__init__(title, words, yes="Transmit")
        self.OK_LABEL = "Transmit (t)"
        self.CANCEL_LABEL = "Back (esc)"
        self.side = side
        self.venue = venue

    def fields(self) -> ComposeResult:
        yield Static(
            self.message,
            id="words",
            classes=f"order-words -{self.side.value.lower()}",
            markup=False,
        )
        if self.venue is not None:
            yield Static(
                f"what-if: asking {self.venue}…",
                id="whatif",
                classes="dialog-message",
                markup=False,
            )

    def show_what_if(self, text: str) -> None:
        for w in self.query("#whatif").results(Static):
            w.update(text)


class OrderTicket(Dialog[NewOrder]):
    TITLE_TEXT = "New order"
    OK_LABEL = "Send (enter)"

    def __init__(
        self,
        symbols: Sequence[str],
        prices: dict[str, float],
        symbol: str = "",
        *,
        review: bool = True,
        what_if: WhatIf | None = None,
        venue: str = "the venue",
    ) -> None:
        super().__init__()
        self.symbols = list(symbols)
        self.prices = prices
        self.initial_symbol = symbol
        self.review = review
        self.what_if = what_if
        self.venue = venue

    def fields(self) -> ComposeResult:
        yield field_row(
            "Symbol",
            Field(
                self.initial_symbol,
                id="symbol",
                placeholder="AAPL",
                suggester=SuggestFromList(self.symbols, case_sensitive=False),
            ),
        )
        yield field_row("Side", Choice(("BUY", "SELL"), 0, id="side", tones=("buy", "sell")))
        yield field_row("Type", Choice([t.value for t in TICKET_TYPES], 0, id="type"))
        yield field_row("Quantity", Field(id="quantity", placeholder="100"))
        yield field_row("Limit", Field(id="limit", placeholder="limit price"))
        yield field_row("Stop", Field(id="stop", placeholder="stop price"))
        yield field_row("TIF", Choice([t.value for t in TIFS], 0, id="tif"))
        yield field_row(
            "Terms",
            Field(id="terms", placeholder="tp=  sl=  trail=1%  tif=IOC  outside-rth"),
        )
        yield Static("", id="preview", classes="order-words", markup=False)

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#symbol" if not self.initial_symbol else "#quantity", Field))
        self._sync_price_fields()
        self._preview()

    def _type(self) -> OrderType:
        return TICKET_TYPES[self.query_one("#type", Choice).index]

    def _side(self) -> Side:
        return Side.BUY if self.query_one("#side", Choice).index == 0 else Side.SELL

    def _sync_price_fields(self) -> None:
        mark_price_fields(self, self._type())

    def on_choice_changed(self, event: Choice.Changed) -> None:
        if event.choice.id == "type":
            self._sync_price_fields()
        self._preview()

    def on_input_changed(self) -> None:
        self._preview()

    def _preview(self) -> None:
        """The order in words, live, from whatever parses so far."""
        sym = self.query_one("#symbol", Field).value.strip().upper()
        otype = self._type()

        def num(id_: str) -> float | None:
            try:
                return parse_number(self.query_one(id_, Field).value, id_, required=False)
            except InputError:
                return None

        q = num("#quantity")
        lp = num("#limit") if otype in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
        sp = (
            num("#stop")
            if otype in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAIL)
            else None
        )
        tif = TIFS[self.query_one("#tif", Choice).index]
        last = self.prices.get(sym)
        text = order_words(self._side(), q or 0, sym or "?", otype, lp, sp, tif, last)
        if not q:
            text = text.split(" ≈ ")[0].replace(f" {fmt.qty(0)} ", " ? ", 1)
        preview = self.query_one("#preview", Static)
        preview.update(text)
        preview.set_class(self._side() is Side.BUY, "-buy")
        preview.set_class(self._side() is Side.SELL, "-sell")

    def build(self) -> NewOrder:
        sym = self.query_one("#symbol", Field).value.strip().upper()
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
        otype = self._type()
        q = parse_number(self.query_one("#quantity", Field).value, "quantity")
        assert q is not None
        lp, sp = prices_for(self, otype)
        validate_order_fields("", q, otype, lp, sp, instrument=inst)
        side = self._side()
        try:
            terms = parse_order_terms(self.query_one("#terms", Field).value)
            # A tif= in Terms (IOC, GTD) overrides the TIF choice.
            tif = terms.tif or TIFS[self.query_one("#tif", Choice).index]
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

    def accept(self, result: NewOrder) -> None:
        if not self.review:
            self.dismiss(result)
            return
        words = new_order_words(result, self.prices.get(result.symbol))
        dialog = TransmitDialog("Transmit this order?", words, result.side, self.venue)

        def done(ok: bool | None) -> None:
            if ok:
                self.dismiss(result)

        self.app.push_screen(dialog, done)
        if self.what_if is not None:
            self.what_if(result, dialog.show_what_if)
        else:
            dialog.show_what_if(f"what-if: {self.venue} gives no margin preview")


class ModifyDialog(Dialog[ModifyOrder]):
    OK_LABEL = "Send (enter)"

    def __init__(self, order: Order, *, review: bool = True, last: float | None = None) -> None:
        super().__init__()
        self.order = order
        self.review = review
        self.last = last
        # A trailing stop keeps its distance; it may also become a plain order.
        self.types = TICKET_TYPES if order.order_type is OrderType.TRAIL else ORDER_TYPES
        self.TITLE_TEXT = (
            f"Modify {order.client_order_id}: {order.side.value} {fmt.qty(order.quantity)} "
            f"{fmt.contract(order.symbol)} (filled {fmt.qty(order.filled_quantity)})"
        )

    def fields(self) -> ComposeResult:
        o = self.order
        yield field_row("Quantity", Field(fmt.qty(o.quantity).replace(",", ""), id="quantity"))
        yield field_row(
            "Type",
            Choice([t.value for t in self.types], self.types.index(o.order_type), id="type"),
        )
        yield field_row(
            "Limit", Field("" if o.limit_price is None else f"{o.limit_price:g}", id="limit")
        )
        yield field_row(
            "Stop", Field("" if o.stop_price is None else f"{o.stop_price:g}", id="stop")
        )

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#quantity", Field))
        mark_price_fields(self, self.order.order_type)

    def on_choice_changed(self, event: Choice.Changed) -> None:
        mark_price_fields(self, self.types[event.index])

    def build(self) -> ModifyOrder:
        o = self.order
        q = parse_number(self.query_one("#quantity", Field).value, "quantity")
        otype = self.types[self.query_one("#type", Choice).index]
        lp, sp = prices_for(self, otype)
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

    def accept(self, result: ModifyOrder) -> None:
        if not self.review:
            self.dismiss(result)
            return
        o = self.order
        was = order_words(
            o.side, o.quantity, o.symbol, o.order_type, o.limit_price, o.stop_price, None, self.last
        )
        now = order_words(
            o.side,
            result.quantity if result.quantity is not None else o.quantity,
            o.symbol,
            result.order_type or o.order_type,
            result.limit_price,
            result.stop_price,
            None,
            self.last,
        )
        dialog = TransmitDialog(
            f"Transmit the change to {o.client_order_id}?", f"was  {was}\nnow  {now}", o.side, None
        )

        def done(ok: bool | None) -> None:
            if ok:
                self.dismiss(result)

        self.app.push_screen(dialog, done)


__all__ = [
    "ORDER_TYPES",
    "TICKET_TYPES",
    "ModifyDialog",
    "OrderTicket",
    "TransmitDialog",
    "WhatIf",
    "new_order_words",
    "order_words",
]
