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
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Label

from fbterm.commands import (
    CancelAll,
    CancelOrder,
    Command,
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
from fbterm.snapshot import EngineSnapshot
from fbterm.tui.dialogs import ConfirmDialog, FilterDialog, FlattenDialog, ModifyDialog, OrderTicket
from fbterm.tui.header import HeaderBar
from fbterm.tui.help import HelpScreen
from fbterm.tui.keymap import ACTIONS, Keymap, KeymapError
from fbterm.tui.logpane import LogPane
from fbterm.tui.orders import OrdersTable
from fbterm.tui.positions import PositionsTable
from fbterm.tui.risk import Banner, RiskPane, RiskSummary
from fbterm.tui.strategies import StrategiesTable
from fbterm.tui.table import KeyedTable
from fbterm.tui.themes import ThemeError, ThemeFile, builtin_names, load_theme

if TYPE_CHECKING:
    from fbterm.config import Config

PANES: tuple[tuple[str, str], ...] = (
    ("positions", "Positions"),
    ("orders", "Orders"),
    ("strategies", "Strategies"),
    ("risk", "Risk"),
    ("log", "Log"),
)
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


STRUCTURE_CSS = """
ConsoleScreen { layout: vertical; }
HeaderBar { height: 1; dock: top; }
HeaderBar Part { width: auto; padding: 0 1; }
ConsoleScreen.-compact HeaderBar Part { padding: 0 0 0 1; }
ConsoleScreen.-compact HeaderBar #hdr-mode { padding: 0; }
HeaderBar #hdr-clock { dock: right; }
#banner { width: 1fr; height: auto; text-align: center; text-style: bold; }
#pane-tabs { height: 1; display: none; }
#pane-tabs Label { width: auto; padding: 0 1; }
#risk-summary { height: 1; display: none; padding: 0 1; }
#body { height: 1fr; }
#left { width: 1fr; }
#right { width: 44; }
#positions, #orders, #strategies { height: 1fr; }
#risk { height: auto; padding: 0 1; }
#log { height: 1fr; overflow-x: hidden; }
.pane { border: round $panel-lighten-2; border-title-align: left; }
.pane:focus, .pane:focus-within { border: round $accent; }
GaugeLine { height: 1; }
#risk-state { height: 1; }
ConsoleScreen.-compact #pane-tabs { display: block; }
ConsoleScreen.-compact #risk-summary { display: block; }
ConsoleScreen.-compact #right { width: 1fr; }
ConsoleScreen.-compact .pane { border: none; height: 1fr; }
ConsoleScreen.-compact #risk { height: 1fr; }

ModalScreen { align: center middle; }
.dialog { width: 72; max-width: 100%; height: auto; max-height: 100%; border: thick $accent; padding: 0 1; }
.dialog.help { width: 90; height: 90%; }
.dialog-title { text-style: bold; width: 1fr; margin-bottom: 1; }
.dialog-message { margin-top: 1; }
.dialog-message { margin-bottom: 1; }
.dialog-error { display: none; text-style: bold; margin-top: 1; }
.dialog-error.-visible { display: block; }
.dialog-buttons { height: 1; margin-top: 1; align-horizontal: right; }
.dialog-buttons Button { margin-left: 2; }
.field { height: 1; }
.field RadioButton { width: auto; margin-right: 2; }
.field-label { width: 10; }
.field Input { width: 1fr; }
.field RadioSet { layout: horizontal; width: auto; height: 1; }
MetricsScreen #metrics-table { height: auto; max-height: 60%; }
.section-title { text-style: bold; margin-top: 1; }
"""


class ConsoleScreen(Screen[None]):
    """The main screen. Its bindings come from the keymap, so they are inactive while a
    dialog is open (a key typed into a dialog never triggers a console action)."""

    BINDINGS: ClassVar[list[Binding]] = Keymap.build().bindings()  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(id="console")
        self.current_pane = "positions"
        self.compact = False
        self.ready = False  # children composed; snapshots arriving earlier wait for this

    @property
    def fb(self) -> FbtermApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Banner(id="banner")
        with Horizontal(id="pane-tabs"):
            for pid, title in PANES:
                n = PANES.index((pid, title)) + 1
                yield Label(f"{n} {title}", id=f"tab-{pid}")
        yield RiskSummary(id="risk-summary")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield PositionsTable(id="positions", classes="pane")
                yield OrdersTable(id="orders", classes="pane")
                yield StrategiesTable(id="strategies", classes="pane")
            with Vertical(id="right"):
                risk = RiskPane(id="risk", classes="pane")
                risk.can_focus = True
                yield risk
                yield LogPane(id="log", classes="pane")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        for pid, title in PANES:
            self.query_one(f"#{pid}").border_title = title
        self.query_one("#log", LogPane).border_subtitle = self.query_one(
            "#log", LogPane
        ).describe_filter()
        self.apply_compact(self.fb.want_compact(self.app.size.width, self.app.size.height))
        self.show_pane("positions")
        self.ready = True
        self.fb.post_message(SnapshotReady())

    # -- layout ----------------------------------------------------------------------------
    def on_resize(self, event: Resize) -> None:
        self.apply_compact(self.fb.want_compact(event.size.width, event.size.height))

    def apply_compact(self, compact: bool) -> None:
        changed = compact != self.compact
        self.compact = compact
        self.set_class(compact, "-compact")
        self._apply_visibility()
        if changed and self.fb.snapshot is not None:
            self.render_snapshot(self.fb.snapshot)

    def _apply_visibility(self) -> None:
        left = {"positions", "orders", "strategies"}
        for pid, _ in PANES:
            self.query_one(f"#{pid}").display = not self.compact or pid == self.current_pane
            self.query_one(f"#tab-{pid}", Label).set_class(pid == self.current_pane, "-current")
        self.query_one("#left").display = not self.compact or self.current_pane in left
        self.query_one("#right").display = not self.compact or self.current_pane not in left

    def pane(self, pid: str) -> Widget:
        return self.query_one(f"#{pid}")

    def show_pane(self, pid: str) -> None:
        self.current_pane = pid
        self._apply_visibility()
        if self.fb.snapshot is not None:
            self.render_snapshot(self.fb.snapshot)
        self.pane(pid).focus()

    def on_descendant_focus(self, event: Any) -> None:
        # Focus moved by mouse or Tab inside a pane: keep the tab strip in step.
        for pid, _ in PANES:
            w = self.pane(pid)
            if self.focused is not None and (self.focused is w or w in self.focused.ancestors):
                if pid != self.current_pane:
                    self.current_pane = pid
                    self._apply_visibility()
                break

    # -- rendering -------------------------------------------------------------------------
    def render_snapshot(self, snap: EngineSnapshot) -> None:
        fb = self.fb
        self.query_one(HeaderBar).update_snapshot(snap, fb.ui_lag())
        self.query_one(Banner).update_snapshot(snap, fb.keymap.display("halt"), self.compact)
        if self.compact:
            self.query_one(RiskSummary).update_snapshot(snap)
        for pid, _ in PANES:
            w = self.pane(pid)
            if w.display:
                w.update_snapshot(snap)  # type: ignore[attr-defined]
            elif pid == "log":
                # The log keeps its own buffer so nothing is lost while it is hidden.
                w.update_snapshot(snap)  # type: ignore[attr-defined]

    # -- actions ---------------------------------------------------------------------------
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

    def _focused_pane(self) -> str:
        for pid, _ in PANES:
            w = self.pane(pid)
            if self.focused is w:
                return pid
        return self.current_pane

    def action_filter(self) -> None:
        pid = self._focused_pane()
        w = self.pane(pid)
        if not isinstance(w, KeyedTable | LogPane):
            self.fb.notify("This pane has nothing to filter.", severity="warning")
            return

        def done(text: str | None) -> None:
            if text is None:
                return
            w.set_filter(text)
            if isinstance(w, LogPane):
                w.border_subtitle = w.describe_filter()
            else:
                w.border_subtitle = f"/{text}" if text else ""
            w.focus()

        self.app.push_screen(FilterDialog(dict(PANES)[pid], w.filter_text), done)

    def action_sort_next(self) -> None:
        w = self.pane(self._focused_pane())
        if isinstance(w, KeyedTable):
            w.cycle_sort()

    def action_sort_reverse(self) -> None:
        w = self.pane(self._focused_pane())
        if isinstance(w, KeyedTable):
            w.reverse_sort()

    def action_log_level(self) -> None:
        log = self.query_one(LogPane)
        level = log.cycle_level()
        self.fb.notify(f"Log shows {level} and above.", timeout=2)

    def action_cycle_theme(self) -> None:
        self.fb.cycle_theme()

    def action_next_pane(self) -> None:
        self._step_pane(1)

    def action_prev_pane(self) -> None:
        self._step_pane(-1)

    def _step_pane(self, step: int) -> None:
        ids = [p for p, _ in PANES]
        cur = self._focused_pane()
        self.show_pane(ids[(ids.index(cur) + step) % len(ids)])

    def action_show_pane(self, pid: str) -> None:
        self.show_pane(pid)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.fb.keymap))

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


class FbtermApp(App[int]):
    TITLE = "fbterm"
    CSS = STRUCTURE_CSS
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        engine: EngineLink,
        cfg: Config | None = None,
        *,
        keymap: Keymap | None = None,
        theme_name: str | None = None,
        handle_signals: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.cfg = cfg
        ui = cfg.ui if cfg is not None else None
        self.keymap = keymap or Keymap.build(ui.keys if ui else None, ui.confirm if ui else None)
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
        self.set_keymap(self.keymap.textual_keymap())
        self._unsubscribe = self.engine.subscribe(self._on_engine_snapshot, hz=self.refresh_hz)
        first = self.engine.latest()
        if first is not None:
            self._on_engine_snapshot(first)
        self.set_interval(1.0, self._tick)
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                # Event loops without signal support (Windows, some embedded runners) raise
                # here; the console then simply relies on the terminal closing its input.
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_hangup, sig)

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            try:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGHUP, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                pass

    def _on_hangup(self, sig: int) -> None:
        # The terminal is gone (SSH dropped) or we were asked to stop: leave the UI loop;
        # run_app then stops the engine, which flushes and closes the journal.
        self.hangup = True
        self.exit(128 + int(sig))

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
            self.exit(1)  # a journal write failed: run_app prints why
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
                self._log(
                    f"no outcome for #{cid} {p.description} after {NO_ANSWER_AFTER:g}s", "warning"
                )
                self.notify(f"No answer from the engine for: {p.description}", severity="warning")

    # -- commands --------------------------------------------------------------------------
    def send(self, cmd: Command, description: str) -> int | None:
        try:
            cid = self.engine.submit(cmd)
        except Exception as e:  # the engine stopped or refused the queue
            self._log(f"could not send {description}: {e}", "error")
            self.notify(f"Could not send {description}: {e}", severity="error")
            return None
        self.pending[cid] = Pending(description, time.monotonic())
        self._log(f"→ #{cid} {description}")
        return cid

    def _collect_results(self, snap: EngineSnapshot) -> None:
        if not self.pending:
            return
        for r in snap.results:
            p = self.pending.pop(r.command_id, None)
            if p is None:
                continue
            mark = "✓" if r.ok else "✗"
            self._log(
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

    def _log(self, message: str, level: str = "info", ts: float | None = None) -> None:
        with contextlib.suppress(LookupError):
            self._console_screen().query_one(LogPane).add_ui_line(message, level, ts=ts)

    def confirm_then(
        self, action_id: str, title: str, message: str, then: Callable[[], Any], yes: str = "Yes"
    ) -> None:
        if not self.keymap.needs_confirm(action_id):
            then()
            return

        def done(ok: bool | None) -> None:
            if ok:
                then()

        self.push_screen(ConfirmDialog(title, message, yes), done)

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

    # -- command palette -------------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        console = next((s for s in self.screen_stack if isinstance(s, ConsoleScreen)), None)
        if console is None or screen is not console:
            return
        for a in ACTIONS:
            if a.id in ("next_pane", "prev_pane"):
                continue
            title = f"{a.label} [{self.keymap.display(a.id)}]"
            yield SystemCommand(title, a.help, _palette_callback(console, a.action))


def _palette_callback(console: ConsoleScreen, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await console.run_action(action)

    return run


def run_app(cfg: Config) -> int:
    """Start the engine, run the console on it, stop the engine; returns the exit code."""
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
    code: int | None = 1
    try:
        code = app.run()
    except OSError:
        # The terminal vanished mid-write (EIO after a hang-up): still shut down cleanly.
        code = 129
    finally:
        engine.stop()
    if engine.fatal is not None:
        raise EngineFailed(engine.fatal)  # printed once the terminal is back to normal
    return int(code or 0)
