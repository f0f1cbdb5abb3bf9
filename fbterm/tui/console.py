"""The console screen: the panes, their layout (full or compact), and how a snapshot is drawn.

Its trading actions are in :mod:`fbterm.tui.actions`; here are the view actions (panes,
filters, sorting, log level, theme, help). Bindings come from the keymap
(:mod:`fbterm.tui.keymap`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.events import Resize
from textual.widgets import Label

from fbterm.model import TradingState
from fbterm.snapshot import EngineSnapshot
from fbterm.tui.actions import ConsoleActions
from fbterm.tui.dialogs import FilterDialog
from fbterm.tui.header import HeaderBar
from fbterm.tui.help import HelpScreen
from fbterm.tui.keybar import KeyBar
from fbterm.tui.keymap import bindings
from fbterm.tui.logpane import LogPane
from fbterm.tui.orders import OrdersTable
from fbterm.tui.positions import PositionsTable
from fbterm.tui.risk import Banner, RiskPane, RiskSummary
from fbterm.tui.strategies import StrategiesTable
from fbterm.tui.table import KeyedTable

PANES: tuple[tuple[str, str], ...] = (
    ("positions", "Positions"),
    ("orders", "Orders"),
    ("strategies", "Strategies"),
    ("risk", "Risk"),
    ("log", "Log"),
)


WIDE = 160  # from this many columns the log and risk column takes two fifths, not a third


class ConsoleScreen(ConsoleActions):
    """The main screen. Its bindings come from the keymap, so they are inactive while a
    dialog is open (a key typed into a dialog never triggers a console action)."""

    BINDINGS: ClassVar[list[BindingType]] = bindings()

    def __init__(self) -> None:
        super().__init__(id="console")
        self.current_pane = "positions"
        self.compact = False
        self.ready = False  # children composed; snapshots arriving earlier wait for this

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Banner(id="banner")
        with Horizontal(id="pane-tabs"):
            for pid, title in PANES:
                n = PANES.index((pid, title)) + 1
                yield Label(f"{n} {title}", id=f"tab-{pid}", markup=False)
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
        yield KeyBar(self.fb.keymap, id="keybar")

    def on_mount(self) -> None:
        for pid, title in PANES:
            self.query_one(f"#{pid}").border_title = title
        self._show_filters()
        self.set_class(self.app.size.width >= WIDE, "-wide")
        self.apply_compact(self.fb.want_compact(self.app.size.width, self.app.size.height))
        self.show_pane("positions")
        self.ready = True
        self.fb.request_render()

    # -- layout ----------------------------------------------------------------------------
    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width >= WIDE, "-wide")
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

    def show_pane(self, pid: str) -> None:
        self.current_pane = pid
        self._apply_visibility()
        if self.fb.snapshot is not None:
            self.render_snapshot(self.fb.snapshot)
        self.set_focus(self.pane(pid))

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
        state = snap.risk.state
        labels = {}
        if state is TradingState.HALTED:
            labels["halt"] = "Resume"
        if state is TradingState.REDUCING:
            labels["reduce_only"] = "Active"
        self.query_one(KeyBar).set_labels(labels)
        if self.compact:
            self.query_one(RiskSummary).update_snapshot(snap)
        for pid, _ in PANES:
            w = self.pane(pid)
            if w.display:
                w.update_snapshot(snap)  # type: ignore[attr-defined]
            elif pid == "log":
                # The log keeps its own buffer so nothing is lost while it is hidden.
                w.update_snapshot(snap)  # type: ignore[attr-defined]

    # -- view actions ----------------------------------------------------------------------
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
            self._show_filters()
            self.set_focus(w)

        self.app.push_screen(FilterDialog(dict(PANES)[pid], w.filter_text), done)

    def _show_filters(self) -> None:
        """An active filter shows on its pane's border and, in compact mode where there are no
        borders, on its tab: a filtered pane never looks like a pane with fewer rows."""
        for pid, title in PANES:
            w = self.pane(pid)
            n = PANES.index((pid, title)) + 1
            text = ""
            # Content, not str: a border title given as str is read as markup, and a filter
            # such as "[/]" would crash the console.
            if isinstance(w, LogPane):
                w.border_subtitle = Content(w.describe_filter())
                text = f" /{w.filter_text}" if w.filter_text else ""
            elif isinstance(w, KeyedTable):
                text = f" /{w.filter_text}" if w.filter_text else ""
                w.border_subtitle = Content(f"filter{text}") if text else None
            tab = self.query_one(f"#tab-{pid}", Label)
            tab.update(f"{n} {title}{text}")
            tab.set_class(bool(text), "-filtered")

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
        self._show_filters()
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
        cfg = self.fb.cfg
        cancel_on_halt = cfg.risk.cancel_orders_on_halt if cfg is not None else True
        self.app.push_screen(HelpScreen(self.fb.keymap, cancel_on_halt))
