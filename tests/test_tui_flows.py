"""Pilot tests: the real console on the real paper engine (simulated market, temp journal).

Each test drives the app with keys only (plus moving a table cursor to a known row, which is
what the arrow keys do) and waits, bounded, for the engine's published state to change.
Nothing asserts wall-clock durations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input
from tui_support import run_async
from waiting import async_wait_until

from fbterm.config import default_config, to_dict
from fbterm.engine import Engine
from fbterm.model import StrategyState, TradingState
from fbterm.snapshot import EngineSnapshot
from fbterm.tui.app import FbtermApp
from fbterm.tui.backtest import BacktestScreen
from fbterm.tui.console import ConsoleScreen
from fbterm.tui.dialogs import ConfirmDialog, Dialog, FlattenDialog
from fbterm.tui.logpane import LogPane
from fbterm.tui.orders import OrdersTable
from fbterm.tui.positions import PositionsTable
from fbterm.tui.risk import Banner, GaugeLine
from fbterm.tui.strategies import StrategiesTable
from fbterm.tui.ticket import ModifyDialog, OrderTicket, TransmitDialog

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(90)

WAIT = 15.0  # generous bound for a busy CI machine; never an assertion about speed


Notes = list[tuple[str, str]]
Console = Callable[..., AbstractAsyncContextManager[tuple[FbtermApp, Pilot[Any], Engine, Notes]]]


@pytest.fixture
def console(tmp_path: Path, make_config: ConfigBuilder) -> Console:
    """``async with console(size, strategies, **ui) as (app, pilot, engine, notes)``: the console
    on a started engine with the default config (demo strategies unless ``strategies=False``)
    and every file in tmp_path, once the first prices are on screen."""

    @asynccontextmanager
    async def open_console(
        size: tuple[int, int] = (120, 40), strategies: bool = True, **ui: Any
    ) -> AsyncIterator[tuple[FbtermApp, Pilot[Any], Engine, Notes]]:
        cfg = make_config(
            to_dict(default_config()),
            journal={"path": str(tmp_path / "journal.sqlite")},
            data={"dir": str(tmp_path / "data")},
            log={"path": str(tmp_path / "activity.jsonl")},
            control={"socket": str(tmp_path / "control.sock")},
            ui=ui,
            source="<test>",
            **({} if strategies else {"strategies": []}),
        )
        engine = Engine(cfg)
        engine.start()
        app = FbtermApp(engine, cfg, handle_signals=False)
        notes: Notes = []
        real_notify = app.notify

        def notify(message: str, **kw: Any) -> None:
            notes.append((message, kw.get("severity", "information")))
            real_notify(message, **kw)

        app.notify = notify  # type: ignore[method-assign]
        try:
            async with app.run_test(size=size) as pilot:
                await wait_for(
                    pilot,
                    lambda: (
                        app.snapshot is not None
                        and bool(app.snapshot.last_prices)
                        and (bool(app.snapshot.positions) or not strategies)
                    ),
                    "first prices",
                )
                yield app, pilot, engine, notes
        finally:
            engine.stop()

    return open_console


async def wait_for(
    pilot: Pilot[Any], cond: Callable[[], Any], what: str, timeout: float = WAIT
) -> None:
    # The console runs on this event loop: it keeps handling messages while this waits.
    await async_wait_until(cond, what, timeout)


def snap(app: FbtermApp) -> EngineSnapshot:
    assert app.snapshot is not None
    return app.snapshot


async def newer_snapshot(pilot: Pilot[Any], app: FbtermApp, what: str) -> EngineSnapshot:
    """A snapshot the engine built after this moment: the positive sign that the engine has
    run past whatever the console did before, so "nothing changed" can then be asserted."""
    seen = snap(app).seq
    await wait_for(pilot, lambda: snap(app).seq > seen + 1, f"a newer snapshot ({what})")
    return snap(app)


async def type_text(pilot: Pilot[Any], text: str) -> None:
    for ch in text:
        await pilot.press(ch)


async def send_limit_order(
    pilot: Pilot[Any], app: FbtermApp, symbol: str = "AAPL", qty: int = 10, below: float = 0.03
) -> str:
    """Fill the ticket by keyboard: a BUY limit far enough below market to rest."""
    before = {o.client_order_id for o in snap(app).open_orders}
    price = round(snap(app).last_prices[symbol] * (1 - below), 2)
    await pilot.press("2")  # orders pane focused: the ticket starts empty, cursor in Symbol
    await pilot.press("n")
    assert isinstance(app.screen, OrderTicket)
    await type_text(pilot, symbol)
    await pilot.press("tab", "tab", "l")  # Side stays BUY; Type -> LMT
    await pilot.press("tab")
    await type_text(pilot, str(qty))
    await pilot.press("tab")
    await type_text(pilot, f"{price}")
    await pilot.press("ctrl+s")
    ticket = app.screen
    try:
        await wait_for(pilot, lambda: isinstance(app.screen, TransmitDialog), "the transmit step")
    except AssertionError:
        raise AssertionError(
            f"the ticket stayed open: {ticket.query_one('#error').render()}"
        ) from None
    # The transmit step: the order in words, then t sends it.
    words = str(app.screen.query_one("#words").render())
    assert words.startswith(f"BUY {qty} {symbol} LMT {price:,.2f} DAY ≈ $"), words
    await pilot.press("t")
    await wait_for(pilot, lambda: not isinstance(app.screen, Dialog), "the ticket to close")

    def mine() -> str | None:
        for o in snap(app).open_orders:
            if o.client_order_id not in before and o.strategy_id == "manual" and o.symbol == symbol:
                return o.client_order_id
        return None

    await wait_for(pilot, mine, "the new order in the open orders")
    oid = mine()
    assert oid is not None
    await wait_for(pilot, lambda: oid in app.screen.query_one(OrdersTable).keys, "the order row")
    return oid


def log_text(app: FbtermApp) -> str:
    return "\n".join(line.text for line in app.screen.query_one(LogPane).lines)


@run_async
async def test_start_shows_every_pane(console: Console) -> None:
    async with console() as (app, pilot, _engine, _notes):
        oid = await send_limit_order(pilot, app)
        screen = app.screen
        assert isinstance(screen, ConsoleScreen)
        await wait_for(
            pilot, lambda: screen.query_one(PositionsTable).row_count > 0, "positions rows"
        )
        assert screen.query_one(StrategiesTable).row_count == len(snap(app).strategies) == 4
        assert oid in screen.query_one(OrdersTable).keys
        assert len(screen.query(GaugeLine)) == len(snap(app).risk.gauges) >= 3
        assert screen.query_one(LogPane).lines
        assert str(screen.query_one("#hdr-mode").render()).strip() == "PAPER"
        assert str(screen.query_one("#hdr-conn").render()).startswith("●")


@run_async
async def test_halt_blocks_orders_shows_banner_then_resume(console: Console) -> None:
    async with console() as (app, pilot, engine, notes):
        banner = app.screen.query_one(Banner)
        assert not banner.display
        await pilot.press("h")
        await wait_for(
            pilot, lambda: snap(app).risk.state is TradingState.HALTED and banner.display, "HALTED"
        )
        assert "TRADING HALTED" in str(banner.render())
        assert engine.latest() is not None and engine.latest().halted  # type: ignore[union-attr]
        await wait_for(pilot, lambda: not snap(app).open_orders, "orders cancelled on halt")
        fills = snap(app).fills_total
        # A manual order while halted is refused by the engine's gate, and says why.
        await pilot.press("2", "n")
        await type_text(pilot, "MSFT")
        await pilot.press("tab", "tab", "tab")
        await type_text(pilot, "5")
        await pilot.press("ctrl+s", "t")
        await wait_for(
            pilot, lambda: any(s == "error" for _, s in notes), "a rejection notification"
        )
        assert "✗" in log_text(app)
        assert "halt" in log_text(app).lower()
        later = await newer_snapshot(pilot, app, "after the rejection")
        assert later.fills_total == fills
        assert not later.open_orders
        # Resuming asks first; "n" keeps it halted, "y" resumes.
        await pilot.press("h")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmDialog) and not app.pending  # nothing sent
        assert (await newer_snapshot(pilot, app, "after 'n'")).risk.state is TradingState.HALTED
        await pilot.press("h")
        await pilot.press("y")
        await wait_for(
            pilot,
            lambda: snap(app).risk.state is TradingState.ACTIVE and not banner.display,
            "resume",
        )


@run_async
async def test_new_modify_cancel_order(console: Console) -> None:
    async with console() as (app, pilot, _engine, notes):
        # Invalid ticket: stays open with an inline error, nothing sent.
        await pilot.press("2", "n")
        await type_text(pilot, "ZZZZ")
        await pilot.press("tab", "tab", "tab")
        await type_text(pilot, "10")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, OrderTicket)
        assert "not traded here" in app.screen.error_text
        pending = dict(app.pending)
        await pilot.press("escape")
        assert app.pending == pending

        oid = await send_limit_order(pilot, app)
        table = app.screen.query_one(OrdersTable)
        table.select_key(oid)
        await pilot.press("m")
        dialog = app.screen
        assert isinstance(dialog, ModifyDialog)
        qty = dialog.query_one("#quantity", Input)
        qty.value = ""
        await type_text(pilot, "abc")
        await pilot.press("ctrl+s")
        assert app.screen is dialog and "not a number" in dialog.error_text
        qty.value = ""
        await type_text(pilot, "-5")
        await pilot.press("ctrl+s")
        assert app.screen is dialog and "> 0" in dialog.error_text
        qty.value = ""
        await type_text(pilot, "25")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, TransmitDialog)
        assert "now  BUY 25 AAPL LMT" in str(app.screen.query_one("#words").render())
        await pilot.press("t")
        assert not isinstance(app.screen, Dialog)

        def order_qty() -> float | None:
            return next(
                (o.quantity for o in snap(app).open_orders if o.client_order_id == oid), None
            )

        await wait_for(pilot, lambda: order_qty() == 25, "the modified quantity")
        assert any("modify" in m for m, _ in notes)

        table.select_key(oid)
        await pilot.press("c")
        # A single cancel names the order it will cancel, and n keeps it.
        assert isinstance(app.screen, ConfirmDialog)
        assert str(app.screen.query_one(".dialog-message").render()).startswith(
            f"{oid}: BUY 25 AAPL LMT"
        )
        await pilot.press("n")
        await pilot.pause()
        assert oid in {o.client_order_id for o in snap(app).open_orders}
        await pilot.press("c", "y")
        await wait_for(
            pilot, lambda: oid not in {o.client_order_id for o in snap(app).open_orders}, "cancel"
        )
        await wait_for(
            pilot,
            lambda: f"cancel {oid}" in log_text(app) and "✓" in log_text(app),
            "cancel logged",
        )


@run_async
async def test_cancel_all_with_confirmation(console: Console) -> None:
    async with console() as (app, pilot, _engine, _notes):
        a = await send_limit_order(pilot, app, "AAPL")
        b = await send_limit_order(pilot, app, "MSFT")
        await pilot.press("C")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmDialog) and not app.pending  # nothing sent
        later = await newer_snapshot(pilot, app, "after escape")
        assert {a, b} <= {o.client_order_id for o in later.open_orders}
        await pilot.press("C", "y")
        await wait_for(
            pilot,
            lambda: not {a, b} & {o.client_order_id for o in snap(app).open_orders},
            "cancel all",
        )
        assert "cancel all" in log_text(app)


@run_async
async def test_flatten_with_confirmation(console: Console) -> None:
    # No strategies: the positions are the operator's own, so nothing reopens them.
    async with console(strategies=False) as (app, pilot, _engine, notes):
        await pilot.press("f")
        assert not isinstance(app.screen, Dialog)  # nothing to flatten: a warning, no dialog
        for sym in ("AAPL", "MSFT"):
            await pilot.press("2", "n")
            await type_text(pilot, sym)
            await pilot.press("tab", "tab", "tab")
            await type_text(pilot, "20")
            await pilot.press("ctrl+s", "t")
        await wait_for(
            pilot, lambda: sum(1 for p in snap(app).positions if p.quantity) == 2, "two positions"
        )
        await pilot.press("f")
        assert isinstance(app.screen, FlattenDialog)
        await pilot.press("escape")
        assert not isinstance(app.screen, Dialog)
        assert not any("flatten" in p.description for p in app.pending.values())
        later = await newer_snapshot(pilot, app, "after escape")
        assert sum(1 for p in later.positions if p.quantity) == 2
        await pilot.press("f", "y")
        await wait_for(
            pilot, lambda: any(m.startswith("flatten all") for m, _ in notes), "the flatten outcome"
        )
        assert [s for m, s in notes if m.startswith("flatten all")] == ["information"], notes
        await wait_for(pilot, lambda: all(p.quantity == 0 for p in snap(app).positions), "flat")


@run_async
async def test_pause_and_resume_strategy(console: Console) -> None:
    async with console() as (app, pilot, _engine, _notes):
        await pilot.press("3")
        table = app.screen.query_one(StrategiesTable)
        await wait_for(pilot, lambda: table.row_count == 4, "strategy rows")
        table.select_key("sma_fast")

        def state() -> StrategyState:
            return next(s.state for s in snap(app).strategies if s.name == "sma_fast")

        assert state() is StrategyState.RUNNING
        await pilot.press("p")
        await wait_for(pilot, lambda: state() is StrategyState.PAUSED, "paused")
        await wait_for(pilot, lambda: "paused" in str(table.get_row("sma_fast")[1]), "paused row")
        await pilot.press("p")
        await wait_for(pilot, lambda: state() is StrategyState.RUNNING, "running again")


def write_bars(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)) + 0.3 * np.sin(np.arange(n) / 15))
    idx = pd.date_range("2024-01-02", periods=n, freq="D", tz="UTC")
    df = pd.DataFrame({"open": close * (1 + rng.normal(0, 0.002, n)), "close": close}, index=idx)
    df["high"] = df[["open", "close"]].max(axis=1) * 1.004
    df["low"] = df[["open", "close"]].min(axis=1) * 0.996
    df["volume"] = 1_000_000
    df.index.name = "date"
    df[["open", "high", "low", "close", "volume"]].to_csv(path)
    return path


@run_async
async def test_backtest_from_the_console(tmp_path: Path, console: Console) -> None:
    data = write_bars(tmp_path / "spy.csv")
    async with console() as (app, pilot, _engine, notes):
        await pilot.press("b")
        screen = app.screen
        assert isinstance(screen, BacktestScreen)
        data_input = screen.query_one("#bt-data", Input)
        data_input.value = str(tmp_path / "missing.csv")
        await pilot.press("ctrl+r")
        assert "not found" in str(screen.query_one("#bt-error").render())
        data_input.value = str(data)
        seq_before = snap(app).seq
        await pilot.press("ctrl+r")
        await wait_for(
            pilot,
            lambda: (
                screen.result is not None or "-visible" in screen.query_one("#bt-error").classes
            ),
            "the backtest result",
            timeout=60,
        )
        assert screen.result is not None, str(screen.query_one("#bt-error").render())
        metrics = screen.query_one("#bt-metrics", DataTable)
        assert metrics.row_count == len(screen.result.metrics) > 5
        assert snap(app).seq > seq_before  # the console kept rendering meanwhile
        # Watched to the end: the status line says it, no toast over the metrics' values.
        assert "done in" in str(screen.query_one("#bt-status").render())
        assert not any("Backtest finished" in m for m, _ in notes)
        await pilot.press("escape")
        assert isinstance(app.screen, ConsoleScreen)
        await pilot.press("b")
        assert (
            app.screen is screen
            and screen.query_one("#bt-metrics", DataTable).row_count == metrics.row_count
        )
        await pilot.press("escape")


@run_async
async def test_quit_asks_when_orders_are_open(console: Console) -> None:
    async with console() as (app, pilot, _engine, _notes):
        await send_limit_order(pilot, app)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert isinstance(app.screen, ConsoleScreen) and app.is_running
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: app.return_code is not None, "the console to exit")
        assert app.return_code == 0


@run_async
async def test_keymap_override_and_compact_80x24(console: Console) -> None:
    async with console(size=(80, 24), keys={"halt": "x"}, confirm={"resume": False}) as (
        app,
        pilot,
        _engine,
        _notes,
    ):
        screen = app.screen
        assert isinstance(screen, ConsoleScreen) and screen.compact
        await pilot.press("h")  # rebound: "h" now does nothing
        assert isinstance(app.screen, ConsoleScreen) and not app.pending  # nothing sent
        assert not (await newer_snapshot(pilot, app, "after 'h'")).halted
        await pilot.press("x")
        await wait_for(
            pilot, lambda: snap(app).halted and screen.query_one(Banner).display, "halt on x"
        )
        await pilot.press("x")  # confirmation switched off: resumes at once
        await wait_for(pilot, lambda: not snap(app).halted, "resume on x")
        # One pane at a time; number keys switch.
        await pilot.press("5")
        assert screen.query_one(LogPane).display and not screen.query_one(PositionsTable).display
        await pilot.press("tab")
        assert screen.query_one(PositionsTable).display


@run_async
async def test_theme_cycle_restyles_cells(console: Console) -> None:
    async with console() as (app, pilot, _engine, _notes):
        table = app.screen.query_one(PositionsTable)
        dark_up = table.get_component_rich_style("tone--up", partial=True).color
        await pilot.press("t")

        def up_colour() -> object:
            return table.get_component_rich_style("tone--up", partial=True).color

        await wait_for(pilot, lambda: up_colour() != dark_up, "the light theme's colours")
        assert app.theme_file.name == "light"
        await pilot.press("t", "t")
        await wait_for(pilot, lambda: app.theme_file.name == "dark", "the dark theme again")
        await wait_for(pilot, lambda: up_colour() == dark_up, "the dark theme's colours")
