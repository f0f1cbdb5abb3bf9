"""Safe operation: confirmations that name what they do, the kill switch and scoped flatten
from the keyboard, Ctrl+Q asking what q asks, the quit question telling the truth per venue,
an unhandled exception ending as a logged crash with a non-zero exit, and the CLI refusing
key maps and durations the console could not use.

The console renders the fixed snapshot (FrozenEngine records commands); the crash test runs
the real ``run_app`` (real engine, headless console) with one console method made to raise.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tui_support import FrozenEngine, fixed_snapshot, run_async, screen_text, settle

from fbterm.cli import main
from fbterm.commands import CancelOrder, FlattenAll, KillSwitch, NewOrder
from fbterm.config import default_config, to_dict
from fbterm.model import OrderType, Side
from fbterm.tui.actions import QuitDialog, quit_message
from fbterm.tui.app import FbtermApp, run_app
from fbterm.tui.backtest import bar_files
from fbterm.tui.console import ConsoleScreen
from fbterm.tui.dialogs import ConfirmDialog, FlattenDialog, KillDialog
from fbterm.tui.forms import Choice
from fbterm.tui.keys import Keymap
from fbterm.tui.orders import OrdersTable
from fbterm.tui.positions import PositionsTable
from fbterm.tui.ticket import OrderTicket, TransmitDialog

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(90)


def make_app(engine: FrozenEngine | None = None, **kw: object) -> FbtermApp:
    return FbtermApp(engine or FrozenEngine(), None, handle_signals=False, **kw)  # type: ignore[arg-type]


@run_async
async def test_a_single_cancel_names_its_order_and_cancels_that_one() -> None:
    engine = FrozenEngine()
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("2")
        table = app.screen.query_one(OrdersTable)
        table.select_key("O-1002")
        await pilot.press("c")
        await settle(pilot, app, lambda: isinstance(app.screen, ConfirmDialog))
        message = str(app.screen.query_one(".dialog-message").render())
        assert message == (
            "O-1002: SELL 100 AAPL STP stop 182.00 DAY ≈ $18,200 (manual, Submitted)"
        )
        # Strategy orders come and go: the cursor lands on another row meanwhile.
        table.select_key("O-1001")
        await pilot.press("y")
        await settle(pilot, app)
        assert engine.commands[-1] == CancelOrder(
            client_order_id="O-1002", command_id=engine.commands[-1].command_id
        )


@run_async
async def test_experts_can_switch_the_cancel_confirmation_off() -> None:
    engine = FrozenEngine()
    app = make_app(engine, keymap=Keymap.build(None, {"cancel_order": False}))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("2")
        app.screen.query_one(OrdersTable).select_key("O-1001")
        await pilot.press("c")
        await settle(pilot, app)
        assert isinstance(app.screen, ConsoleScreen)
        assert isinstance(engine.commands[-1], CancelOrder)


@run_async
async def test_transmit_step_shows_the_order_in_words_and_the_what_if() -> None:
    engine = FrozenEngine()
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("2", "n", *"SPY", "tab", "s", "tab", "l", "tab", "5", "tab", *"590")
        await pilot.press("enter")
        await settle(pilot, app, lambda: isinstance(app.screen, TransmitDialog))
        text = screen_text(app)
        assert "SELL 5 SPY LMT 590.00 DAY ≈ $2,950" in text
        # The venue's answer to the WhatIf command (the FrozenEngine answers "accepted").
        assert str(app.screen.query_one("#whatif").render()) == "accepted"
        assert "Transmit (t)" in text and "Back (esc)" in text
        assert not any(isinstance(c, NewOrder) for c in engine.commands)  # nothing sent yet
        await pilot.press("escape")  # back to the ticket, fields kept
        await settle(pilot, app, lambda: isinstance(app.screen, OrderTicket))
        await pilot.press("enter", "t")
        await settle(pilot, app, lambda: isinstance(app.screen, ConsoleScreen))
        sent = [c for c in engine.commands if isinstance(c, NewOrder)]
        assert len(sent) == 1 and (sent[0].side, sent[0].quantity, sent[0].limit_price) == (
            Side.SELL,
            5,
            590.0,
        )
        assert sent[0].order_type is OrderType.LIMIT


@run_async
async def test_kill_switch_asks_with_numbers_then_sends_one_command() -> None:
    engine = FrozenEngine()
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("K")
        await settle(pilot, app, lambda: isinstance(app.screen, KillDialog))
        text = screen_text(app)
        assert "1. Pause all 4 strategies" in text
        assert "2. Cancel all 3 open orders." in text
        assert "3. Flatten all 4 positions (gross $184,400)" in text
        assert "Kill (y)" in text
        await pilot.press("y")
        await settle(pilot, app)
        assert isinstance(engine.commands[-1], KillSwitch)


@run_async
async def test_flatten_offers_the_selected_symbol_and_says_who_is_paused() -> None:
    engine = FrozenEngine()
    app = make_app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("1")
        app.screen.query_one(PositionsTable).select_key("SPY")
        await pilot.press("f")
        await settle(pilot, app, lambda: isinstance(app.screen, FlattenDialog))
        scope = app.screen.query_one("#scope", Choice)
        assert scope.options == ["all", "symbol SPY"] and scope.value == "all"
        what = app.screen.query_one("#what")
        assert str(what.render()).endswith(
            "Cancels the open orders in them. Pauses covered_aapl, meanrev_spy, sma_fast so "
            "they do not trade back in."
        )
        await pilot.press("shift+tab", "shift+tab", "shift+tab", "shift+tab", "right")
        await settle(pilot, app)
        assert scope.value == "symbol SPY"
        assert str(what.render()) == (
            "Closes 1 position (gross $76,792): SPY +150\n"
            "Cancels the open orders in them. Pauses meanrev_spy so it does not trade back in."
        )
        await pilot.press("y")
        await settle(pilot, app)
        cmd = engine.commands[-1]
        assert isinstance(cmd, FlattenAll) and (cmd.symbol, cmd.strategy) == ("SPY", None)


def test_quit_tells_the_truth_per_venue() -> None:
    paper = fixed_snapshot()
    assert quit_message(paper).startswith("3 open orders. The paper venue runs inside fbterm")
    assert "at the next start GTC orders and today's DAY orders work again" in quit_message(paper)
    ib = dataclasses.replace(paper, broker="ib")
    assert quit_message(ib).startswith("3 open orders stay working at IB after fbterm exits")


@run_async
async def test_ctrl_q_asks_what_q_asks() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        for key in ("q", "ctrl+q"):
            await pilot.press(key)
            await settle(pilot, app, lambda: isinstance(app.screen, QuitDialog))
            assert "The paper venue runs inside fbterm" in screen_text(app)
            await pilot.press("ctrl+q")  # a second ctrl+q does not stack a second question
            await settle(pilot, app)
            assert sum(isinstance(s, QuitDialog) for s in app.screen_stack) == 1
            await pilot.press("n")
            await settle(pilot, app)
            assert app.is_running and isinstance(app.screen, ConsoleScreen)
        await pilot.press("ctrl+q", "y")
        await settle(pilot, app, lambda: not app.is_running)
        assert app.return_code == 0


@run_async
async def test_ctrl_q_quits_at_once_without_open_orders() -> None:
    app = make_app(FrozenEngine(dataclasses.replace(fixed_snapshot(), open_orders=())))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("ctrl+q")
        await settle(pilot, app, lambda: not app.is_running)
        assert app.return_code == 0


# --------------------------------------------------------------------------- crashes


def test_an_unhandled_exception_is_logged_and_exits_non_zero(
    tmp_path: Path,
    make_config: ConfigBuilder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = make_config(
        to_dict(default_config()),
        journal={"path": str(tmp_path / "journal.sqlite")},
        log={"path": str(tmp_path / "activity.jsonl")},
        control={"socket": str(tmp_path / "control.sock")},
        strategies=[],
        source="<test>",
    )

    def boom(self: ConsoleScreen, snap: object) -> None:
        raise RuntimeError("a [/] bug in the console")

    monkeypatch.setattr(ConsoleScreen, "render_snapshot", boom)
    assert run_app(cfg, headless=True) == 1
    err = capsys.readouterr().err
    assert "fbterm: the console crashed (RuntimeError: a [/] bug in the console)" in err
    assert str(tmp_path / "activity.jsonl") in err
    entries = [json.loads(line) for line in (tmp_path / "activity.jsonl").read_text().splitlines()]
    crash = [e for e in entries if e["kind"] == "console"]
    assert crash and crash[0]["level"] == "error"
    assert crash[0]["message"] == "console crashed: RuntimeError: a [/] bug in the console"
    assert "render_snapshot" in crash[0]["fields"]["traceback"]


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ('halt = "ctrl-x"', "ui.keys.halt: 'ctrl-x' is not a key name"),
        ('flatten = "h"', "ui.keys.flatten: key 'h' is already bound to 'halt'"),
        ('quit = "end"', "ui.keys.quit: 'end' is not delivered reliably through tmux/SSH"),
        ('hallt = "x"', "ui.keys.hallt: unknown action (did you mean 'halt'?)"),
    ],
)
def test_check_config_refuses_key_maps_the_console_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys: str, error: str
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[ui.keys]\n{keys}\n")
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fbterm: {cfg}: {error}") and err.count("\n") == 1, err
    cfg.write_text('[ui.keys]\nhalt = "ctrl+x"\n[ui.confirm]\ncancel_order = false\n')
    assert main(["check-config", str(cfg)]) == 0


@pytest.mark.parametrize("value", ["0", "-5", "nan", "abc"])
def test_run_duration_must_be_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--headless", f"--duration={value}"])
    assert exc.value.code == 2
    assert "argument --duration:" in capsys.readouterr().err


# --------------------------------------------------------------------------- backtest data


def test_backtest_offers_bar_files_not_reports(tmp_path: Path) -> None:
    (tmp_path / "SPY").mkdir()
    bars = tmp_path / "SPY" / "1d.csv"
    bars.write_text("date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,100\n")
    (tmp_path / "trades-2025-01-02.csv").write_text("date,strategy,symbol,pnl\n")
    (tmp_path / "notes.csv").write_text("")
    assert bar_files(tmp_path) == [bars]
    assert bar_files(tmp_path / "missing") == []


@run_async
async def test_ctrl_c_says_how_to_quit_in_plain_words() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot, app, lambda: app.frames > 0)
        await pilot.press("ctrl+c")
        await settle(pilot, app)
        assert "Press q or ctrl+q to quit." in screen_text(app)  # no "[b]" markup shown
        assert app.is_running


def test_the_hangup_guard_asks_the_ui_to_leave_and_gives_up_on_it_in_time() -> None:
    """A signal, or the terminal hanging up with no signal at all, asks the UI to exit; if the
    exit does not finish within the grace the guard gives up on the UI (run_app then stops the
    engine and ends the process); an exit that finishes in time stands it down. A real pty
    and a real SIGHUP to this process: nothing is mocked."""
    import os
    import pty
    import signal

    from waiting import wait_until

    from fbterm.tui.hangup import HangupGuard

    # The terminal hangs up (its other end closes) and no signal comes: 129, then given up.
    master, slave = pty.openpty()
    asked: list[int] = []
    gave_up: list[int] = []
    guard = HangupGuard(asked.append, gave_up.append, grace=0.2, fds=(slave,), poll_every=0.05)
    guard.start(handle_signals=False)
    os.close(master)
    try:
        wait_until(lambda: gave_up, "the guard to give up on the UI")
        assert asked == [129] and gave_up == [129] and guard.tripped_by == "terminal"
    finally:
        os.close(slave)

    # SIGHUP itself, delivered to this process: the handler only passes it on.
    asked, gave_up = [], []
    before = signal.getsignal(signal.SIGHUP)
    guard = HangupGuard(asked.append, gave_up.append, grace=30.0, fds=(), poll_every=0.05)
    guard.start()
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        wait_until(lambda: asked, "the guard to ask the UI to leave")
        assert asked == [128 + signal.SIGHUP] and guard.tripped_by == "signal"
    finally:
        guard.stop()  # the UI left in time: no giving up, and the old handler is back
    assert signal.getsignal(signal.SIGHUP) is before
    wait_until(lambda: not guard._thread.is_alive(), "the guard to stand down")
    assert gave_up == []

    # A pipe (no terminal) is not watched: a closed pipe is no hang-up.
    r, w = os.pipe()
    guard = HangupGuard(asked.append, gave_up.append, grace=0.1, fds=(r,), poll_every=0.05)
    os.close(w)
    guard.start(handle_signals=False)
    guard.stop()
    os.close(r)
    assert gave_up == []
