"""The blotter fits the terminal: columns by priority, contract names, bid/ask, gauges that
shorten labels not numbers, the log using its width, help reachable at 80x24, toasts off
dialogs, filter state in sight, the footer following the state, ASCII mode, the palette.

The real app renders the fixed snapshot (tui_support); assertions read the screen as text.
"""

from __future__ import annotations

import re
import time

import pytest
from textual.command import CommandPalette
from tui_support import FrozenEngine, burst, fixed_snapshot, run_async, screen_text, settle

from fbterm.model import TradingState
from fbterm.snapshot import Gauge
from fbterm.tui import fmt
from fbterm.tui.app import FbtermApp
from fbterm.tui.ascii import to_ascii, want_ascii
from fbterm.tui.dialogs import FilterDialog
from fbterm.tui.help import HelpScreen
from fbterm.tui.keybar import footer_items
from fbterm.tui.keys import Keymap
from fbterm.tui.orders import OrdersTable
from fbterm.tui.risk import gauge_layout, gauge_text, summary_text
from fbterm.tui.table import fit_columns
from fbterm.tui.ticket import OrderTicket

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def make_app(state: TradingState = TradingState.ACTIVE, **kw: object) -> FbtermApp:
    return FbtermApp(FrozenEngine(fixed_snapshot(state)), None, handle_signals=False, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- columns


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 200])
def test_orders_keep_side_symbol_quantity_price_and_status_at_any_width(width: int) -> None:
    layout = dict(fit_columns(OrdersTable.COLUMNS, width, {"symbol": 15, "price": 8}, 2))
    if width >= 60:
        assert {"side", "symbol", "qty", "price", "status"} <= set(layout), layout
    assert sum(w + 2 for w in layout.values()) <= width
    if width >= 120:
        assert set(layout) == {c.key for c in OrdersTable.COLUMNS}  # everything, grown
        assert layout["symbol"] == 15  # the longest contract name shows whole


def test_columns_grow_with_the_terminal() -> None:
    narrow = dict(fit_columns(OrdersTable.COLUMNS, 80, {}, 2))
    wide = dict(fit_columns(OrdersTable.COLUMNS, 200, {}, 2))
    assert wide["status"] > narrow["status"] and wide["strategy"] > narrow.get("strategy", 0)


@run_async
async def test_blotter_at_80x24_shows_price_status_side_and_bid_ask() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        text = screen_text(app)
        assert "Bid" in text and "Ask" in text and "189.08" in text and "189.12" in text
        assert "AAPL 26FEB 195C" in text  # expiry, strike and right, not "AAPL 202602…"
        await pilot.press("2")
        await settle(pilot, app)
        text = screen_text(app)
        for word in ("Side", "Lmt/Stp", "Status", "SELL", "@182.00", "510.00", "Part.fill"):
            assert word in text, word
        assert all(len(line) <= 80 for line in text.splitlines())


def test_contract_names_keep_expiry_strike_and_right() -> None:
    assert fmt.contract("AAPL 20261218 C200") == "AAPL 26DEC 200C"  # monthly: 3rd Friday
    assert fmt.contract("AAPL 20261204 P197.5") == "AAPL 26DEC04 197.5P"  # weekly keeps its day
    assert fmt.contract("SPY") == "SPY"
    assert fmt.contract("AAPL 20261399 C1") == "AAPL 20261399 C1"  # not a date: left alone


# --------------------------------------------------------------------------- gauges

GAUGES = (
    Gauge("drawdown", 0.04, 10.0, "ok", "0.04% / 10%"),
    Gauge("daily loss", 324, 50_000, "warn", "324 / 50,000"),
    Gauge("gross exposure", 408_105, 2_000_000, "ok", "408,105 / 2,000,000"),
    Gauge("orders/s", 1, 20, "breach", "1 / 20"),
)


@pytest.mark.parametrize("width", range(24, 121, 4))
def test_gauges_shorten_labels_never_numbers(width: int) -> None:
    layout = gauge_layout(GAUGES, width)
    lines = [gauge_text(g, layout) for g in GAUGES]
    for g, line in zip(GAUGES, lines, strict=True):
        assert line.endswith(g.text), line  # the numbers, whole
        assert len(line) <= max(width, len(line)) and (len(line) == width or layout.bar_width == 0)
    if width >= 60:
        assert lines[2].startswith("gross exposure ")  # room: the full label
    if width <= 40:
        assert lines[2].startswith("gross ") and not lines[2].startswith("gross exposure")
    if layout.bar_width:
        starts = {min(i for i, c in enumerate(line) if c in "█░") for line in lines}
        assert len(starts) == 1  # the bars line up


def test_compact_risk_summary_keeps_every_number_at_80() -> None:
    risk = fixed_snapshot().risk
    text = summary_text(risk, 78).plain
    assert len(text) <= 78
    for g in risk.gauges:
        assert g.text.replace(" / ", "/").upper() in text.upper(), (g.text, text)


# --------------------------------------------------------------------------- log, help


@run_async
async def test_log_pane_uses_the_width_it_is_given() -> None:
    line = "engine started: paper broker, simulated market (4 symbols)"
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        log = app.screen.query_one("#log")
        assert log.size.width > 60
        assert line in screen_text(app)
        await pilot.resize_terminal(120, 40)
        await settle(pilot, app)
        assert line not in screen_text(app)  # 44 cells: cut...
        await pilot.resize_terminal(200, 60)
        await settle(pilot, app)
        assert line in screen_text(app)  # ...and whole again when the pane is wide again


@run_async
async def test_help_reaches_every_row_at_80x24() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("question_mark")
        await settle(pilot, app, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        assert "Halt trading now" in text and "(asks first)" in text
        assert all(len(line) <= 80 for line in text.splitlines())
        assert "Command palette" not in text  # the last row is below the fold...
        for _ in range(6):
            await pilot.press("pagedown")
        await settle(pilot, app)
        assert "Command palette: search every action by name" in screen_text(app)  # ...reached
        await pilot.press("escape")
        await settle(pilot, app)
        assert not isinstance(app.screen, HelpScreen)


# --------------------------------------------------------------------------- toasts, filters


@run_async
async def test_toasts_never_cover_a_dialog() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)

        async def dialog_text() -> list[str]:
            await pilot.press("2", "n")  # the ticket: the tallest dialog, to the bottom row
            await settle(pilot, app, lambda: isinstance(app.screen, OrderTicket))
            r = app.screen.query_one(".dialog").region
            lines = screen_text(app).splitlines()[r.y : r.y + r.height]
            await pilot.press("escape")
            await settle(pilot, app)
            return [line[r.x : r.x + r.width] for line in lines]

        clean = await dialog_text()
        # A rejection is long: its toast is tall enough to reach the dialog's buttons.
        app.notify("a toast that would sit on the buttons " + "and then some " * 12, timeout=30)
        await settle(pilot, app)
        assert "a toast that would sit" in screen_text(app)
        assert await dialog_text() == clean  # the dialog, cell for cell, as without the toast
        assert "a toast that would sit" in screen_text(app)  # and back on the console after


@run_async
async def test_an_active_filter_shows_in_compact_and_full_mode() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("2", "slash")
        await settle(pilot, app, lambda: isinstance(app.screen, FilterDialog))
        burst(app, [*"[/]aapl", "enter"])
        await settle(pilot, app, lambda: not isinstance(app.screen, FilterDialog))
        text = screen_text(app)
        assert "2 Orders /[/]aapl" in text  # compact: on the tab, brackets as typed
        assert "O-1002" not in text and "SELL" not in text  # filtered away (no match)
        await pilot.resize_terminal(120, 40)
        await settle(pilot, app)
        assert "filter /[/]aapl" in screen_text(app)  # full mode: on the pane's border


# --------------------------------------------------------------------------- footer


def test_footer_keeps_the_critical_keys_at_80_and_follows_the_state() -> None:
    km = Keymap.build()
    ids = [a.id for a, _, _ in footer_items(km, {}, 80)]
    assert {"halt", "quit", "kill", "flatten", "cancel_order", "new_order"} <= set(ids)
    labels = {a.id: label for a, _, label in footer_items(km, {"halt": "Resume"}, 80)}
    assert labels["halt"] == "Resume"
    assert [a.id for a, _, _ in footer_items(km, {}, 30)] == ["halt", "kill", "quit"]


@run_async
async def test_footer_says_resume_while_halted() -> None:
    app = make_app(TradingState.HALTED)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        last = screen_text(app).splitlines()[-1]
        assert last.startswith("h Resume") and "Halt" not in last


# --------------------------------------------------------------------------- ASCII


@run_async
async def test_ascii_mode_draws_nothing_outside_7_bit_ascii() -> None:
    app = make_app(ascii=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        for keys in ([], ["n"], ["escape", "4"], ["question_mark"]):
            await pilot.press(*keys)
            await settle(pilot, app)
            text = screen_text(app)
            assert text.isascii(), [c for c in text if not c.isascii()][:10]
        await pilot.press("escape")
        await settle(pilot, app)
        # No colour either: the terminal gets bold/reverse at most, never a colour code.
        sgr = re.findall(r"\x1b\[([0-9;]*)m", screen_text(app, styles=True))
        colours = {
            p
            for codes in sgr
            for p in codes.split(";")
            if p and (30 <= int(p) <= 38 or 40 <= int(p) <= 48 or 90 <= int(p) <= 107)
        }
        assert sgr and not colours, colours


def test_ascii_mode_is_chosen_for_dumb_terminals_and_no_color() -> None:
    assert want_ascii("auto", {"TERM": "dumb"})
    assert want_ascii("auto", {"TERM": "xterm", "NO_COLOR": "1"})
    assert not want_ascii("auto", {"TERM": "xterm", "NO_COLOR": ""})  # no-color.org: non-empty
    assert not want_ascii("auto", {"TERM": "xterm-256color"})
    assert want_ascii("on", {"TERM": "xterm"}) and not want_ascii("off", {"TERM": "dumb"})
    assert to_ascii("╭─ Risk ─╮ █░ ▲▼ … ≈ ● – é") == "+- Risk -+ #. ^v ~ ~ * - e"
    # Cells stay cells: the greeks, and the palette prompt's two-cell magnifier.
    assert to_ascii("Δ Γ θ 🔎x") == "D G T >>x"


# --------------------------------------------------------------------------- palette


@run_async
async def test_palette_lists_and_runs_actions_with_brackets_intact() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("ctrl+p")
        await settle(pilot, app, lambda: isinstance(app.screen, CommandPalette))
        await settle(pilot, app)
        text = screen_text(app)
        assert "Halt [h]" in text and "Cancel [c]" in text
        burst(app, list("filter"))
        await settle(pilot, app)
        assert "Filter [/]" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot, app, lambda: isinstance(app.screen, FilterDialog))
        assert isinstance(app.screen, FilterDialog) and app.crash is None
