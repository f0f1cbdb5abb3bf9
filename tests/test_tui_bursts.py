"""Typed-ahead keys: a burst (a paste, keys typed over a laggy SSH link) lands in the field
that had focus when each key was typed, not in the field that had focus when the app got to it.

The keys are queued all at once (tui_support.burst), so the app has every one of them before
it handles the first, as with one read from a terminal. The console is the real app on the
fixed snapshot (FrozenEngine records the commands it is sent).
"""

from __future__ import annotations

import pytest
from textual.widgets import Select
from tui_support import FrozenEngine, burst, run_async, settle

from fbterm.commands import ModifyOrder, NewOrder
from fbterm.model import OrderType, Side, TimeInForce
from fbterm.tui.app import FbtermApp
from fbterm.tui.backtest import BacktestScreen
from fbterm.tui.console import ConsoleScreen
from fbterm.tui.forms import Choice, Field
from fbterm.tui.orders import OrdersTable
from fbterm.tui.ticket import ModifyDialog, OrderTicket, TransmitDialog

pytestmark = pytest.mark.timeout(60)


def keys(text: str) -> list[str]:
    return list(text)


def app_on(engine: FrozenEngine) -> FbtermApp:
    return FbtermApp(engine, None, handle_signals=False)


@run_async
async def test_ticket_burst_lands_field_by_field() -> None:
    engine = FrozenEngine()
    app = app_on(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        # From the console: orders pane, new ticket, symbol, side, type, quantity, limit, TIF,
        # send; all in one burst.
        burst(
            app,
            [
                "2",
                "n",
                *keys("MSFT"),
                "tab",
                "s",
                "tab",
                "l",
                "tab",
                *keys("10"),
                "tab",
                *keys("415"),
                "tab",
                "tab",
                "g",
                "enter",
            ],
        )
        await settle(pilot, app, lambda: isinstance(app.screen, TransmitDialog))
        ticket = app.screen_stack[-2]
        assert isinstance(ticket, OrderTicket)
        assert ticket.query_one("#symbol", Field).value == "MSFT"
        assert ticket.query_one("#quantity", Field).value == "10"
        assert ticket.query_one("#limit", Field).value == "415"
        assert ticket.query_one("#stop", Field).value == ""
        assert str(app.screen.query_one("#words").render()).startswith(
            "SELL 10 MSFT LMT 415.00 GTC ≈ $4,150"
        )
        burst(app, ["t"])
        await settle(pilot, app, lambda: isinstance(app.screen, ConsoleScreen))
        assert engine.commands[-1] == NewOrder(
            symbol="MSFT",
            side=Side.SELL,
            quantity=10,
            order_type=OrderType.LIMIT,
            limit_price=415.0,
            tif=TimeInForce.GTC,
            command_id=engine.commands[-1].command_id,
        )


@run_async
async def test_editing_keys_in_a_burst_edit_the_field_they_were_typed_in() -> None:
    app = app_on(FrozenEngine())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("2", "n")
        await settle(pilot, app, lambda: isinstance(app.screen, OrderTicket))
        # Backspace and the arrows are the quantity's own keys: they act there, in order,
        # even though the Tab after them has moved focus by the time they are handled.
        burst(app, ["tab", "tab", "tab", *keys("105"), "backspace", "left", "2"])
        burst(app, ["tab", *keys("4155"), "backspace", "home", "9"])
        await settle(pilot, app)
        t = app.screen
        assert t.query_one("#quantity", Field).value == "120"
        assert t.query_one("#limit", Field).value == "9415"


@run_async
async def test_modify_burst_puts_quantity_and_limit_where_they_were_typed() -> None:
    engine = FrozenEngine()
    app = app_on(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("2")
        app.screen.query_one(OrdersTable).select_key("O-1003")  # BUY 200 SPY LMT 510, 80 filled
        # The issue's own burst: 7<Tab><Tab>580, then send and transmit.
        burst(app, ["m", "7", "tab", "tab", *keys("580"), "ctrl+s"])
        await settle(pilot, app, lambda: isinstance(app.screen, (TransmitDialog, ModifyDialog)))
        dialog = app.screen_stack[-2] if isinstance(app.screen, TransmitDialog) else app.screen
        assert isinstance(dialog, ModifyDialog)
        assert dialog.query_one("#quantity", Field).value == "7"
        assert dialog.query_one("#limit", Field).value == "580"
        # 7 is below the 80 already filled: refused inline, nothing sent.
        assert isinstance(app.screen, ModifyDialog)
        assert "80" in app.screen.error_text
        burst(app, ["shift+tab", "shift+tab", "backspace", *keys("150"), "enter"])
        await settle(pilot, app, lambda: isinstance(app.screen, TransmitDialog))
        assert "now  BUY 150 SPY LMT 580.00" in str(app.screen.query_one("#words").render())
        burst(app, ["t"])
        await settle(pilot, app, lambda: isinstance(app.screen, ConsoleScreen))
        cmd = engine.commands[-1]
        assert isinstance(cmd, ModifyOrder)
        assert (cmd.client_order_id, cmd.quantity, cmd.limit_price) == ("O-1003", 150, 580.0)


@run_async
async def test_a_price_typed_ahead_of_a_type_change_is_never_dropped() -> None:
    engine = FrozenEngine()
    app = app_on(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        # The type stays MKT but a limit was typed: refused, not sent as a market order.
        burst(app, ["2", "n", *keys("AAPL"), "tab", "tab", "tab", "5", "tab", *keys("180")])
        burst(app, ["ctrl+s"])
        await settle(pilot, app)
        assert isinstance(app.screen, OrderTicket)
        assert "limit price: MKT takes none" in app.screen.error_text
        assert not any(isinstance(c, NewOrder) for c in engine.commands)


@run_async
async def test_console_keys_in_a_burst_act_in_order() -> None:
    app = app_on(FrozenEngine())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        # "2" then "n": the ticket is opened from the orders pane (empty symbol), not from the
        # positions pane that had focus before the 2 was handled.
        burst(app, ["2", "n", *keys("NVDA")])
        await settle(pilot, app, lambda: isinstance(app.screen, OrderTicket))
        await settle(pilot, app)
        assert app.screen.query_one("#symbol", Field).value == "NVDA"


@run_async
async def test_backtest_form_burst() -> None:
    app = app_on(FrozenEngine())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("b")
        await settle(pilot, app, lambda: isinstance(app.screen, BacktestScreen))
        # Parameters of the chosen strategy (sma_cross: fast, slow), then cash.
        burst(app, ["tab", *keys("30"), "tab", "backspace", "backspace", "9", "0"])
        burst(app, ["tab", "tab", "tab", "ctrl+u", *keys("5000"), "tab", "tab", "a"])
        await settle(pilot, app)
        s = app.screen
        assert s.query_one("#bt-strategy", Choice).value == "sma_cross"
        assert s.query_one("#param-fast", Field).value == "30"
        assert s.query_one("#param-slow", Field).value == "90"
        assert s.query_one("#bt-cash", Field).value == "5000"
        assert s.query_one("#bt-sizing", Choice).value == "all_in"
        assert s.query_one("#bt-source", Select).value == "synthetic"
