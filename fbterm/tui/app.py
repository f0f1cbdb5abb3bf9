"""The fbterm console: a Textual app over the engine thread.

How data flows, and why:

* The engine thread publishes immutable :class:`EngineSnapshot` objects through
  ``engine.subscribe(callback, hz)``. The callback runs on the engine thread, so it only stores
  the newest snapshot and, if none is already queued, posts one :class:`SnapshotReady` message
  (``post_message`` is thread-safe and non-blocking; ``call_from_thread`` would block the engine
  until the UI ran). At most one snapshot message is ever in the UI queue, so a burst of ticks
  can never pile up in front of a keypress; the UI always renders the newest state.
* Keys turn into typed commands sent with ``engine.submit`` (non-blocking). The console never
  mutates trading state: it renders what the engine says, including the outcome of each
  command, which it writes to the log pane and shows as a notification.
* Tables are keyed and diffed (see :mod:`fbterm.tui.table`); panes hidden in compact mode are
  not rendered until shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from textual import on
from textual.app import App
from textual.command import Provider
from textual.css.query import NoMatches
from textual.filter import LineFilter
from textual.message import Message
from textual.screen import Screen

from fbterm.commands import Command, CommandResult, NewOrder, WhatIf
from fbterm.model import TradingState
from fbterm.snapshot import EngineSnapshot
from fbterm.tui.actions import QuitDialog
from fbterm.tui.ascii import AsciiFilter, want_ascii
from fbterm.tui.console import ConsoleScreen
from fbterm.tui.dialogs import ConfirmDialog
from fbterm.tui.hangup import HangupGuard, silence_dead_terminal
from fbterm.tui.header import HeaderBar
from fbterm.tui.keymap import Keymap, KeymapError, textual_keymap
from fbterm.tui.logpane import LogPane
from fbterm.tui.palette import ConsoleCommands
from fbterm.tui.risk import Banner
from fbterm.tui.table import KeyedTable
from fbterm.tui.themes import ThemeError, ThemeFile, builtin_names, load_theme

if TYPE_CHECKING:
    from fbterm.config import Config

HANGUP_GRACE = 5.0  # seconds the UI may take to exit once its terminal is gone
NO_ANSWER_AFTER = 10.0  # seconds before a command without an outcome is reported as such
ENGINE_SILENT_AFTER = 3.0  # seconds without a snapshot before the header says so


class EngineLink(Protocol):
    """What the console needs from the engine (fbterm.engine.Engine provides it)."""

    def submit(self, cmd: Command) -> int: ...
    def subscribe(
        self, callback: Callable[[EngineSnapshot], None], hz: float = 10.0
    ) -> Callable[[], None]: ...
    def latest(self) -> EngineSnapshot | None: ...


class SnapshotReady(Message):
    """The engine has a newer snapshot; carries nothing (the app reads the newest)."""


@dataclass(slots=True)
class Pending:
    description: str
    sent: float
    # Set for commands whose answer a dialog shows (what-if): no toast, no log line.
    on_result: Callable[[CommandResult], None] | None = None


class FbtermApp(App[int]):
    TITLE = "fbterm"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    # Only the console's own actions: Textual's system commands would offer a second theme
    # switch (its base themes, not fbterm's) and list in a varying order with these.
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {ConsoleCommands}

    def __init__(
        self,
        engine: EngineLink,
        cfg: Config | None = None,
        *,
        keymap: Keymap | None = None,
        theme_name: str | None = None,
        handle_signals: bool = True,
        ascii: bool | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.cfg = cfg
        ui = cfg.ui if cfg is not None else None
        self.keymap = keymap or Keymap.build(ui.keys if ui else None, ui.confirm if ui else None)
        self.ascii = want_ascii(ui.ascii if ui else "auto") if ascii is None else ascii
        self._ascii_filter = AsciiFilter()
        self.crash: str | None = None  # the traceback of an unhandled exception, if any
        self.refresh_hz = ui.refresh_hz if ui else 10.0
        self.compact_setting = ui.compact if ui else "auto"
        self.theme_names = builtin_names()
        self.theme_file: ThemeFile = load_theme(theme_name or (ui.theme if ui else "dark"))
        self._theme_key: tuple[str, str] | None = None
        self._install_theme(self.theme_file)
        self.handle_signals = handle_signals
        self.snapshot: EngineSnapshot | None = None
        self.pending: dict[int, Pending] = {}
        self.hangup = False
        # Called from the hang-up guard's thread, with the exit status, if the UI cannot
        # finish exiting once its terminal is gone.
        self.on_stuck_exit: Callable[[int], None] | None = None
        self.guard: HangupGuard | None = None
        # Handed from the engine thread; a plain attribute store is atomic under the GIL.
        self._newest: EngineSnapshot | None = None
        self._queued = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._last_arrival: float | None = None
        # Instrumentation the tests and the benchmark read.
        self.frames = 0
        self.first_frame_at: float | None = None
        self.halt_banner_at: float | None = None
        self.started_at = time.perf_counter()

    # -- wiring ----------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[Any]:
        return ConsoleScreen()

    def _console_screen(self) -> ConsoleScreen:
        for s in self.screen_stack:
            if isinstance(s, ConsoleScreen):
                return s
        raise LookupError("console screen not mounted")

    def on_mount(self) -> None:
        self.set_keymap(textual_keymap(self.keymap))
        self.set_class(self.ascii, "-ascii")
        self._unsubscribe = self.engine.subscribe(self._on_engine_snapshot, hz=self.refresh_hz)
        first = self.engine.latest()
        if first is not None:
            self._on_engine_snapshot(first)
        self.set_interval(1.0, self._tick)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            self.guard = HangupGuard(
                lambda code: loop.call_soon_threadsafe(self.leave, code),
                self._give_up,
                grace=HANGUP_GRACE,
            )
            self.guard.start()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def leave(self, code: int) -> None:
        """The terminal is gone (SSH dropped) or we were asked to stop: leave the UI loop;
        run_app then stops the engine, which flushes and closes the journal."""
        self.hangup = True
        self.exit(code, return_code=code)

    def _give_up(self, code: int) -> None:
        # The UI did not finish exiting in time (its output thread died writing to the dead
        # terminal): on_stuck_exit stops the engine (journal closed) and ends the process.
        if self.on_stuck_exit is not None:
            self.on_stuck_exit(code)

    def exited_in_time(self) -> None:
        """The UI loop has ended: the hang-up guard stands down."""
        if self.guard is not None:
            self.guard.stop()

    # -- text, crashes, quitting -------------------------------------------------------------
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast. Never markup by default: engine messages and order names hold brackets
        ("Filter [/]"), and markup would mangle them or crash the console."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def get_line_filters(self) -> Sequence[LineFilter]:
        filters = list(super().get_line_filters())
        if self.ascii:
            filters.append(self._ascii_filter)
        return filters

    def _handle_exception(self, error: Exception) -> None:
        # Textual prints the traceback and exits with code 1; keep the text so run_app can put
        # it in the activity log, where the operator and the alerts look.
        if self.crash is None:
            self.crash = "".join(traceback.format_exception(error))
        super()._handle_exception(error)

    def action_help_quit(self) -> None:
        """Ctrl+C: say how to quit (Textual's own hint is markup, which notify here is not)."""
        self.notify(
            f"Press {self.keymap.display('quit')} or ctrl+q to quit.", title="Do you want to quit?"
        )

    async def action_quit(self) -> None:
        """Ctrl+Q asks exactly what q asks (open orders, per venue), from any screen."""
        if isinstance(self.screen, QuitDialog):
            return
        try:
            console = self._console_screen()
        except LookupError:
            self.exit(0)
            return
        console.action_quit()

    def request_render(self) -> None:
        """Draw the newest snapshot as soon as the console can (it has just been mounted)."""
        self.post_message(SnapshotReady())

    def _on_engine_snapshot(self, snap: EngineSnapshot) -> None:
        """Runs on the engine thread: store, and post at most one message at a time."""
        self._newest = snap
        if not self._queued.is_set():
            self._queued.set()
            self.post_message(SnapshotReady())

    @on(SnapshotReady)
    def _render_newest(self) -> None:
        self._queued.clear()
        snap = self._newest
        if snap is None or snap is self.snapshot:
            return
        try:
            console = self._console_screen()
        except LookupError:
            return
        if not console.ready or not console.is_attached:
            return
        if snap.fatal:
            self.exit(1, return_code=1)  # a journal write failed: run_app prints why
            return
        if snap.session_note and self.snapshot is None:
            self.notify(snap.session_note, title="Journal", timeout=15)
        self.snapshot = snap
        self._last_arrival = time.monotonic()
        try:
            was_halted = console.query_one(Banner).state is TradingState.HALTED
            console.render_snapshot(snap)
        except NoMatches:
            return  # the console is being torn down (quit) while a snapshot arrived
        top = self.screen
        if top is not console and hasattr(top, "update_snapshot"):
            top.update_snapshot(snap)
        self._collect_results(snap)
        self.frames += 1
        if snap.risk.state is TradingState.HALTED and not was_halted:
            self.halt_banner_at = time.perf_counter()
        if self.first_frame_at is None and self._full(snap):
            self.first_frame_at = time.perf_counter()

    @staticmethod
    def _full(snap: EngineSnapshot) -> bool:
        return bool(snap.strategies) and bool(snap.risk.gauges) and bool(snap.log)

    def ui_lag(self) -> float | None:
        if self._last_arrival is None:
            return None
        return time.monotonic() - self._last_arrival

    def _tick(self) -> None:
        lag = self.ui_lag()
        if self.snapshot is not None and lag is not None and lag > ENGINE_SILENT_AFTER:
            with contextlib.suppress(LookupError):
                self._console_screen().query_one(HeaderBar).update_snapshot(self.snapshot, lag)
        now = time.monotonic()
        for cid, p in list(self.pending.items()):
            if now - p.sent > NO_ANSWER_AFTER:
                del self.pending[cid]
                if p.on_result is not None:
                    p.on_result(CommandResult(cid, False, f"{p.description}: no answer"))
                    continue
                self.log_line(
                    f"no outcome for #{cid} {p.description} after {NO_ANSWER_AFTER:g}s", "warning"
                )
                self.notify(f"No answer from the engine for: {p.description}", severity="warning")

    # -- commands --------------------------------------------------------------------------
    def send(
        self,
        cmd: Command,
        description: str,
        on_result: Callable[[CommandResult], None] | None = None,
    ) -> int | None:
        try:
            cid = self.engine.submit(cmd)
        except Exception as e:  # the engine stopped or refused the queue
            self.log_line(f"could not send {description}: {e}", "error")
            self.notify(f"Could not send {description}: {e}", severity="error")
            return None
        self.pending[cid] = Pending(description, time.monotonic(), on_result)
        if on_result is None:
            self.log_line(f"→ #{cid} {description}")
        return cid

    def what_if(self, order: NewOrder, show: Callable[[str], None]) -> None:
        """Ask the venue what ``order`` would do to margin; ``show`` gets its answer."""
        cmd = WhatIf(
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            order_type=order.order_type,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
        )
        self.send(cmd, "what-if", on_result=lambda r: show(r.message))

    def _collect_results(self, snap: EngineSnapshot) -> None:
        if not self.pending:
            return
        for r in snap.results:
            p = self.pending.pop(r.command_id, None)
            if p is None:
                continue
            if p.on_result is not None:
                p.on_result(r)
                continue
            mark = "✓" if r.ok else "✗"
            self.log_line(
                f"{mark} #{r.command_id} {p.description}: {r.message}",
                "info" if r.ok else "error",
                ts=r.ts or None,
            )
            self.notify(
                f"{p.description}: {r.message}",
                title="accepted" if r.ok else "rejected",
                severity="information" if r.ok else "error",
                timeout=4 if r.ok else 8,
            )

    def log_line(self, message: str, level: str = "info", ts: float | None = None) -> None:
        """A line in the console's log pane, from the console itself (commands and outcomes)."""
        with contextlib.suppress(LookupError):
            self._console_screen().query_one(LogPane).add_ui_line(message, level, ts=ts)

    def confirm_then(
        self,
        action_id: str,
        title: str,
        message: str,
        then: Callable[[], Any],
        yes: str = "Yes",
        *,
        dialog: ConfirmDialog | None = None,
    ) -> None:
        if not self.keymap.needs_confirm(action_id):
            then()
            return

        def done(ok: bool | None) -> None:
            if ok:
                then()

        self.push_screen(dialog or ConfirmDialog(title, message, yes), done)

    def symbols(self) -> list[str]:
        out: list[str] = []
        if self.cfg is not None:
            out.extend(self.cfg.market.symbols)
        if self.snapshot is not None:
            out.extend(k for k in self.snapshot.last_prices if k not in out)
            out.extend(p.symbol for p in self.snapshot.positions if p.symbol not in out)
        return out

    def open_backtest(self) -> None:
        from fbterm.tui.backtest import BacktestScreen

        # Installed, not just pushed: an installed screen survives being popped, so the last
        # result (tables, charts) is still there when the operator comes back.
        if not self.is_screen_installed("backtest"):
            self.install_screen(BacktestScreen(self.cfg), name="backtest")
        self.push_screen("backtest")

    # -- layout and themes -----------------------------------------------------------------
    def want_compact(self, width: int, height: int) -> bool:
        if self.compact_setting == "on":
            return True
        if self.compact_setting == "off":
            return False
        return width < 100 or height < 30

    def _install_theme(self, tf: ThemeFile) -> None:
        if self._theme_key is not None:
            self.stylesheet.source.pop(self._theme_key, None)
        self._theme_key = (tf.path, "fbterm-theme")
        # A high tie-breaker: the theme's colours win over the structure CSS at equal specificity.
        self.stylesheet.add_source(
            tf.css, read_from=self._theme_key, is_default_css=False, tie_breaker=100
        )
        self.theme_file = tf
        if tf.base in self.available_themes:
            self.theme = tf.base

    def cycle_theme(self) -> str:
        names = self.theme_names or [self.theme_file.name]
        i = names.index(self.theme_file.name) if self.theme_file.name in names else -1
        name = names[(i + 1) % len(names)]
        self.apply_theme(name)
        self.notify(f"Theme: {name}", timeout=2)
        return name

    def apply_theme(self, name: str) -> None:
        self._install_theme(load_theme(name))
        self.refresh_css(animate=False)
        self.call_after_refresh(self._restyle)

    def _restyle(self) -> None:
        try:
            console = self._console_screen()
        except LookupError:
            return
        for t in console.query(KeyedTable):
            t.restyle()
        console.query_one(LogPane).restyle()
        if self.snapshot is not None:
            console.render_snapshot(self.snapshot)


def run_app(cfg: Config, *, headless: bool = False) -> int:
    """Start the engine, run the console on it, stop the engine; returns the exit code.

    An unhandled exception in the console is a crash, never a quiet exit: Textual shows the
    traceback, the activity log records it, one line on stderr says where to find it, and
    the exit code is 1. ``headless`` runs the console without a terminal (tests).
    """
    try:
        keymap = Keymap.build(cfg.ui.keys, cfg.ui.confirm)
        load_theme(cfg.ui.theme)
    except (KeymapError, ThemeError) as e:
        print(f"fbterm: {cfg.source}: {e}", file=sys.stderr)
        return 2
    from fbterm.engine import Engine, EngineFailed

    engine = Engine(cfg)
    # ConnectionError and JournalLocked go to the CLI, which prints them as one line.
    engine.start(control=True)
    app = FbtermApp(engine, cfg, keymap=keymap)
    app.on_stuck_exit = lambda code: _stop_and_leave(engine, code)
    code: int | None = 1
    try:
        app.run(headless=headless)
        code = app.return_code
    except OSError:
        # The terminal vanished mid-write (EIO after a hang-up): still shut down cleanly.
        code = 129
    finally:
        app.exited_in_time()
        silence_dead_terminal()
        crash = report_crash(app, engine, cfg)
        engine.stop()
    if crash:
        print(crash, file=sys.stderr)
    if engine.fatal is not None:
        raise EngineFailed(engine.fatal)  # printed once the terminal is back to normal
    if crash:
        return 1
    return int(code or 0)


def _stop_and_leave(engine: Any, code: int) -> None:
    """The terminal is gone and the UI could not exit: stop the engine (it flushes and closes
    the journal, so nothing is lost) and end the process with the hang-up status."""
    with contextlib.suppress(Exception):
        engine.stop()
    os._exit(code)


def report_crash(app: FbtermApp, engine: Any, cfg: Config) -> str:
    """If the console died of an unhandled exception, put it in the activity log (with the
    traceback) and return the line for stderr; else ''."""
    if app.crash is None:
        return ""
    last = app.crash.strip().splitlines()[-1]
    with contextlib.suppress(Exception):  # a failing log must not hide the crash itself
        engine.activity.activity(
            "console", f"console crashed: {last}", level="error", traceback=app.crash
        )
    return (
        f"fbterm: the console crashed ({last}); the engine was stopped. "
        f"The traceback is above and in {cfg.activity_log_path}"
    )
