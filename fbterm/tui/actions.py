"""The console's trading actions: what its keys do to orders, positions, strategies and the
trading state.

Each action sends a typed command to the engine through the app (behind a confirmation when
the keymap asks for one) or opens the dialog that builds the command; none of them touches
trading state itself. :class:`ConsoleActions` is the base of
:class:`fbterm.tui.console.ConsoleScreen`, which adds the layout and the view actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.widget import Widget

from fbterm.commands import (
    CancelAll,
    CancelOrder,
    FlattenAll,
    Halt,
    NewOrder,
    PauseStrategy,
    Rebalance,
    ReduceOnly,
    Resume,
    ResumeStrategy,
)
from fbterm.model import StrategyState, TradingState
from fbterm.tui.dialogs import FlattenDialog, ModifyDialog, OrderTicket
from fbterm.tui.orders import OrdersTable
from fbterm.tui.positions import PositionsTable
from fbterm.tui.strategies import StrategiesTable

if TYPE_CHECKING:
    from fbterm.tui.app import FbtermApp


class ConsoleActions(Screen[None]):
    """The console screen's trading actions (``action_<id>`` for the keymap's action ids)."""

    @property
    def fb(self) -> FbtermApp:
        """The app, with its engine link, snapshot and keymap."""
        return cast("FbtermApp", self.app)

    def pane(self, pid: str) -> Widget:
        return self.query_one(f"#{pid}")

    def action_halt_toggle(self) -> None:
        snap = self.fb.snapshot
        if snap is not None and snap.risk.state is TradingState.HALTED:
            self.fb.confirm_then(
                "resume",
                "Resume trading?",
                "Strategies and manual orders will be allowed again.",
                lambda: self.fb.send(Resume(), "resume trading"),
            )
        else:
            self.fb.send(Halt(reason="operator"), "halt trading")

    def action_reduce_only(self) -> None:
        snap = self.fb.snapshot
        state = snap.risk.state if snap is not None else TradingState.ACTIVE
        if state is TradingState.REDUCING:
            self.fb.confirm_then(
                "resume",
                "Leave reduce-only?",
                "Trading goes back to ACTIVE.",
                lambda: self.fb.send(Resume(), "resume trading"),
            )
        elif state is TradingState.HALTED:
            self.fb.confirm_then(
                "resume",
                "Go from HALTED to reduce-only?",
                "Orders that shrink positions will be allowed.",
                lambda: self.fb.send(ReduceOnly(reason="operator"), "reduce-only"),
            )
        else:
            self.fb.send(ReduceOnly(reason="operator"), "reduce-only")

    def action_flatten(self) -> None:
        snap = self.fb.snapshot
        positions = [p for p in (snap.positions if snap else ()) if p.quantity != 0]
        if not positions:
            self.fb.notify("No positions to flatten.", severity="warning")
            return
        ui = self.fb.cfg.ui if self.fb.cfg else None
        otype = ui.flatten_order_type if ui else "market"
        offset = ui.flatten_limit_offset_pct if ui else 0.1
        if not self.fb.keymap.needs_confirm("flatten"):
            from fbterm.model import OrderType

            self.fb.send(
                FlattenAll(
                    order_type=OrderType.LIMIT if otype == "limit" else OrderType.MARKET,
                    limit_offset_pct=offset,
                ),
                "flatten all",
            )
            return

        def done(cmd: FlattenAll | None) -> None:
            if cmd is not None:
                self.fb.send(cmd, f"flatten all ({cmd.order_type.value})")

        self.app.push_screen(FlattenDialog(positions, otype, offset), done)

    def action_new_order(self) -> None:
        snap = self.fb.snapshot
        symbols = self.fb.symbols()
        prices = dict(snap.last_prices) if snap else {}
        sym = ""
        if self.focused is self.pane("positions"):
            sym = self.query_one(PositionsTable).selected_key or ""

        def done(cmd: NewOrder | None) -> None:
            if cmd is not None:
                price = f" @ {cmd.limit_price:g}" if cmd.limit_price else ""
                self.fb.send(
                    cmd,
                    f"new order {cmd.side.value} {cmd.quantity:g} {cmd.symbol} {cmd.order_type.value}{price}",
                )

        self.app.push_screen(OrderTicket(symbols, prices, sym), done)

    def _selected_order(self) -> Any:
        order = self.query_one(OrdersTable).selected_order
        if order is None:
            self.fb.notify(
                "No order selected: pick one in the Orders pane (2).", severity="warning"
            )
        return order

    def action_cancel_order(self) -> None:
        order = self._selected_order()
        if order is None:
            return
        desc = (
            f"cancel {order.client_order_id} ({order.side.value} {order.quantity:g} {order.symbol})"
        )
        self.fb.confirm_then(
            "cancel_order",
            "Cancel order?",
            desc,
            lambda: self.fb.send(CancelOrder(client_order_id=order.client_order_id), desc),
        )

    def action_cancel_all(self) -> None:
        snap = self.fb.snapshot
        n = len(snap.open_orders) if snap else 0
        if n == 0:
            self.fb.notify("No open orders.", severity="warning")
            return
        self.fb.confirm_then(
            "cancel_all",
            "Cancel all orders?",
            f"{n} open orders will be cancelled.",
            lambda: self.fb.send(CancelAll(), f"cancel all ({n} orders)"),
        )

    def action_modify_order(self) -> None:
        order = self._selected_order()
        if order is None:
            return

        def done(cmd: Any) -> None:
            if cmd is not None:
                self.fb.send(cmd, f"modify {cmd.client_order_id}")

        self.app.push_screen(ModifyDialog(order), done)

    def action_pause_strategy(self) -> None:
        s = self.query_one(StrategiesTable).selected_strategy
        if s is None:
            self.fb.notify(
                "No strategy selected: pick one in the Strategies pane (3).", severity="warning"
            )
            return
        if s.state is StrategyState.RUNNING:
            self.fb.confirm_then(
                "pause_strategy",
                f"Pause {s.name}?",
                "It stops trading; positions stay.",
                lambda: self.fb.send(PauseStrategy(name=s.name), f"pause {s.name}"),
            )
        else:
            self.fb.send(ResumeStrategy(name=s.name), f"resume {s.name}")

    def action_backtest(self) -> None:
        self.fb.open_backtest()

    def action_update_strategy(self) -> None:
        from fbterm.tui.dialogs import UpdateStrategyDialog

        s = self.query_one(StrategiesTable).selected_strategy
        if s is None:
            self.fb.notify(
                "No strategy selected: pick one in the Strategies pane (3).", severity="warning"
            )
            return

        def done(cmd: Any) -> None:
            if cmd is not None:
                self.fb.send(cmd, f"update {cmd.name}")

        self.app.push_screen(UpdateStrategyDialog(s), done)

    def action_rebalance(self) -> None:
        self.fb.confirm_then(
            "rebalance",
            "Rebalance by half Kelly?",
            "Each strategy's capital is set from its own return history (capped).",
            lambda: self.fb.send(Rebalance(), "rebalance"),
        )

    def action_metrics(self) -> None:
        from fbterm.tui.metrics import MetricsScreen

        self.app.push_screen(MetricsScreen())

    def action_quit(self) -> None:
        snap = self.fb.snapshot
        n = len(snap.open_orders) if snap else 0
        if n == 0:
            self.app.exit(0)
            return
        self.fb.confirm_then(
            "quit",
            "Quit with open orders?",
            f"{n} open orders stay working at the broker after the console exits.",
            lambda: self.app.exit(0),
            yes="Quit",
        )
