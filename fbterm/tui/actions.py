"""The console's trading actions: what its keys do to orders, positions, strategies and the
trading state.

Each action sends a typed command to the engine through the app (behind a confirmation when
the keymap asks for one) or opens the dialog that builds the command; none of them touches
trading state itself. A confirmation names exactly what will happen: the order by its id and
terms, the positions by symbol and value, the strategies that will be paused.
:class:`ConsoleActions` is the base of :class:`fbterm.tui.console.ConsoleScreen`, which adds
the layout and the view actions.
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
    KillSwitch,
    ModifyOrder,
    NewOrder,
    PauseStrategy,
    Rebalance,
    ReduceOnly,
    Resume,
    ResumeStrategy,
)
from fbterm.model import Order, OrderType, StrategyState, TradingState
from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt
from fbterm.tui.dialogs import ConfirmDialog, FlattenDialog, KillDialog, flatten_scopes
from fbterm.tui.orders import OrdersTable
from fbterm.tui.positions import PositionsTable
from fbterm.tui.strategies import StrategiesTable
from fbterm.tui.ticket import ModifyDialog, OrderTicket, new_order_words, order_words

if TYPE_CHECKING:
    from fbterm.tui.app import FbtermApp


class QuitDialog(ConfirmDialog):
    """The quit question (one open at a time, whichever key asked)."""


def quit_message(snap: EngineSnapshot) -> str:
    """What happens to open orders when the console exits, per venue, as it really is."""
    n = len(snap.open_orders)
    orders = f"{n} open order{'s' if n != 1 else ''}"
    if snap.broker == "paper":
        # Checked against the engine: the paper venue lives in this process; the journal
        # restores its book at the next start (startup.reconcile), expiring stale DAY orders.
        return (
            f"{orders}. The paper venue runs inside fbterm, so nothing fills while fbterm is "
            "stopped. The journal keeps them: at the next start GTC orders and today's DAY "
            "orders work again; DAY orders from an earlier trading day expire."
        )
    return (
        f"{orders} stay working at {snap.broker.upper()} after fbterm exits and can fill while "
        "it is stopped; the next start reconciles them with the journal."
    )


def cancel_words(o: Order) -> str:
    terms = order_words(
        o.side, o.quantity, o.symbol, o.order_type, o.limit_price, o.stop_price, o.tif, None
    )
    filled = f", {fmt.qty(o.filled_quantity)} filled" if o.filled_quantity else ""
    return f"{o.client_order_id}: {terms} ({o.strategy_id}, {o.status.value}{filled})"


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

    def action_kill(self) -> None:
        snap = self.fb.snapshot
        if snap is None:
            self.fb.notify("No engine state yet.", severity="warning")
            return
        dialog = KillDialog(
            len(snap.strategies), len(snap.open_orders), snap.positions, snap.risk.state.value
        )
        self.fb.confirm_then(
            "kill",
            "",
            "",
            lambda: self.fb.send(KillSwitch(reason="operator"), "KILL SWITCH"),
            dialog=dialog,
        )

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
            cmd = FlattenAll(
                order_type=OrderType.LIMIT if otype == "limit" else OrderType.MARKET,
                limit_offset_pct=offset,
            )
            self.fb.send(cmd, "flatten all")
            return
        # The row under the cursor offers its scope: a symbol in Positions, a strategy in
        # Strategies. "all" is always first and is what the dialog starts on: flatten has
        # always meant everything, and a narrower scope must be chosen, never assumed.
        symbol = strategy = None
        if self.focused is self.pane("positions"):
            symbol = self.query_one(PositionsTable).selected_key
        if self.focused is self.pane("strategies"):
            s = self.query_one(StrategiesTable).selected_strategy
            strategy = s.name if s else None
        scopes = flatten_scopes(positions, symbol, strategy)

        def done(cmd: FlattenAll | None) -> None:
            if cmd is not None:
                what = cmd.symbol or cmd.strategy or "all"
                self.fb.send(cmd, f"flatten {what} ({cmd.order_type.value})")

        self.app.push_screen(FlattenDialog(positions, otype, offset, scopes), done)

    def action_new_order(self) -> None:
        snap = self.fb.snapshot
        symbols = self.fb.symbols()
        prices = dict(snap.last_prices) if snap else {}
        sym = ""
        if self.focused is self.pane("positions"):
            sym = self.query_one(PositionsTable).selected_key or ""

        def done(cmd: NewOrder | None) -> None:
            if cmd is not None:
                self.fb.send(cmd, f"new order {new_order_words(cmd, None)}")

        self.app.push_screen(
            OrderTicket(
                symbols,
                prices,
                sym,
                review=self.fb.keymap.needs_confirm("new_order"),
                what_if=self.fb.what_if,
                venue=snap.broker if snap else "the venue",
            ),
            done,
        )

    def _selected_order(self) -> Order | None:
        order = self.query_one(OrdersTable).selected_order
        if order is None:
            self.fb.notify(
                "No order selected: pick one in the Orders pane (2).", severity="warning"
            )
        return order

    def action_cancel_order(self) -> None:
        # The order is taken now, by id: the confirmation names it and the cancel goes to it,
        # even if strategy orders come and go under the cursor meanwhile.
        order = self._selected_order()
        if order is None:
            return
        words = cancel_words(order)
        self.fb.confirm_then(
            "cancel_order",
            f"Cancel {order.client_order_id}?",
            words,
            lambda: self.fb.send(
                CancelOrder(client_order_id=order.client_order_id), f"cancel {words}"
            ),
            yes="Cancel order",
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
            f"{n} open orders will be cancelled, strategies' orders too.",
            lambda: self.fb.send(CancelAll(), f"cancel all ({n} orders)"),
        )

    def action_modify_order(self) -> None:
        order = self._selected_order()
        if order is None:
            return
        snap = self.fb.snapshot
        last = snap.last_prices.get(order.symbol) if snap else None

        def done(cmd: ModifyOrder | None) -> None:
            if cmd is not None:
                self.fb.send(cmd, f"modify {cmd.client_order_id}")

        self.app.push_screen(
            ModifyDialog(order, review=self.fb.keymap.needs_confirm("modify_order"), last=last),
            done,
        )

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
        if snap is None or n == 0:
            self.app.exit(0)
            return
        self.fb.confirm_then(
            "quit",
            "Quit with open orders?",
            "",
            lambda: self.app.exit(0),
            dialog=QuitDialog("Quit with open orders?", quit_message(snap), "Quit"),
        )
