"""Backtest screen: choose a strategy, its parameters and the bars; run it in a thread
worker with a progress bar; browse metrics, charts and trades. Esc returns to the console
and the screen (with its last result) is kept, so ``b`` brings the result back.

The bars are offered, not typed: seeded synthetic bars (the default, so the first Run always
works) and every bar file in the data folder, recognised by its header (reports that live in
the same folder are not offered). Any other file can still be given by path.

A sweep (ctrl+g) runs the grid typed in the Sweep field (``fast=5:30:5 slow=20:60:10``; the
other parameters keep the form's values) on all cores, lists the sets ranked by Sharpe and
draws the heatmap of the first two swept parameters.

The job runs off the UI thread; the worker talks to the screen only through posted messages.
Charts are drawn once per result (plotext redraws are ~100 ms), never per tick.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Label,
    ProgressBar,
    Select,
    Static,
    TabbedContent,
    TabPane,
)
from textual.worker import get_current_worker

from fbterm.tui.dialogs import InputError, parse_number
from fbterm.tui.forms import Choice, Field, PushButton

if TYPE_CHECKING:
    from fbterm.config import Config

SIZINGS = ("fraction", "all_in", "cash", "fixed")
SYNTHETIC = "synthetic"
SYNTHETIC_BARS = 1_000
SYNTHETIC_SEED = 7
MAX_FILES = 200


def bar_files(data_dir: Path | None) -> list[Path]:
    """The CSV files under ``data_dir`` whose header the bar loader accepts (a date column and
    open, high, low, close, volume), sorted; at most MAX_FILES. Reports are not bars."""
    from fbterm.data.bars import DataError
    from fbterm.data.csvparse import map_columns, read_header

    if data_dir is None or not data_dir.is_dir():
        return []
    out = []
    for p in sorted(data_dir.glob("**/*.csv")):
        try:
            map_columns(read_header(p, str(p)), str(p))
        except (DataError, OSError):
            continue
        out.append(p)
        if len(out) >= MAX_FILES:
            break
    return out


class BacktestProgress(Message):
    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction


class BacktestDone(Message):
    def __init__(self, result: Any, elapsed: float) -> None:
        super().__init__()
        self.result = result
        self.elapsed = elapsed


class SweepDone(Message):
    def __init__(self, table: Any, heatmap: Any, elapsed: float) -> None:
        super().__init__()
        self.table = table
        self.heatmap = heatmap
        self.elapsed = elapsed


class BacktestFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


def _strategies() -> dict[str, Any]:
    from fbterm.strategies import STRATEGIES

    return dict(STRATEGIES)


def _fraction(args: tuple[Any, ...]) -> float | None:
    """Progress callbacks report either a fraction or (done, total)."""
    try:
        if len(args) >= 2 and float(args[1]) > 0:
            return float(args[0]) / float(args[1])
        if len(args) == 1:
            return float(args[0])
    except (TypeError, ValueError):
        return None
    return None


class BacktestScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back to console"),
        Binding("ctrl+r", "run", "Run"),
        Binding("ctrl+g", "sweep", "Sweep"),
        # As in the dialogs: Tab moves focus while the key is read, so keys typed ahead land
        # in the field they were aimed at (see fbterm.tui.forms).
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]
    CSS = """
    BacktestScreen { layout: vertical; }
    #bt-form { height: auto; max-height: 50%; padding: 0 1; }
    #bt-form .field { height: 1; }
    #bt-form .field-label { width: 14; }
    #bt-form Choice { width: 1fr; }
    #bt-form Select { width: 1fr; }
    #bt-form .field.-select { height: 1; }
    #bt-params { height: auto; }
    #bt-bar { height: 1; padding: 0 1; }
    #bt-bar ProgressBar { width: 40; }
    #bt-status { width: 1fr; padding-left: 2; }
    #bt-error { padding: 0 1; display: none; text-style: bold; }
    #bt-error.-visible { display: block; }
    #bt-results { height: 1fr; }
    #bt-results PlotextPlot { height: 1fr; }
    """

    def __init__(self, cfg: Config | None) -> None:
        super().__init__(id="backtest")
        self.cfg = cfg
        self.strategies = _strategies()
        self.strategy_names = list(self.strategies)
        self.result: Any = None
        self.sweep: Any = None  # the last sweep's ranked table
        self.heatmap: Any = None
        self.running = False
        self._last_progress = -1.0
        self.files = bar_files(self._data_dir())

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with VerticalScroll(id="bt-form"):
            yield Label("Backtest", classes="dialog-title", markup=False)
            with Horizontal(classes="field"):
                yield Label("Strategy", classes="field-label")
                yield Choice(self.strategy_names, 0, id="bt-strategy")
            yield Vertical(id="bt-params")
            with Horizontal(classes="field -select"):
                yield Label("Bars", classes="field-label")
                yield Select(
                    self._sources(),
                    value=SYNTHETIC,
                    allow_blank=False,
                    compact=True,
                    id="bt-source",
                )
            with Horizontal(classes="field"):
                yield Label("Other file", classes="field-label")
                yield Field(
                    "",
                    id="bt-data",
                    placeholder="a bars CSV by path (overrides Bars when given)",
                )
            with Horizontal(classes="field"):
                yield Label("Cash", classes="field-label")
                yield Field("100000", id="bt-cash")
            with Horizontal(classes="field"):
                yield Label("Commission", classes="field-label")
                yield Field(
                    "0.001", id="bt-commission", placeholder="fraction of value, e.g. 0.001"
                )
            with Horizontal(classes="field"):
                yield Label("Sizing", classes="field-label")
                yield Choice(SIZINGS, 0, id="bt-sizing")
            with Horizontal(classes="field"):
                yield Label("Sweep", classes="field-label")
                yield Field(
                    "",
                    id="bt-sweep",
                    placeholder="grid for ctrl+g, e.g. fast=5:30:5 slow=20:60:10",
                )
            with Horizontal(classes="field"):
                yield PushButton("Run (ctrl+r)", id="bt-run", variant="primary")
                yield PushButton("Sweep (ctrl+g)", id="bt-sweep-run")
        with Horizontal(id="bt-bar"):
            yield ProgressBar(total=1.0, show_eta=False, id="bt-progress")
            yield Static("", id="bt-status", markup=False)
        yield Static("", id="bt-error", markup=False)
        with TabbedContent(id="bt-results"):
            with TabPane("Metrics", id="tab-metrics"):
                yield DataTable(id="bt-metrics", cursor_type="row")
            with TabPane("Equity", id="tab-equity"):
                yield from self._plot("bt-equity")
            with TabPane("Price & trades", id="tab-price"):
                yield from self._plot("bt-price")
            with TabPane("Trades", id="tab-trades"):
                yield DataTable(id="bt-trades", cursor_type="row")
            with TabPane("Sweep", id="tab-sweep"):
                yield DataTable(id="bt-sweep-table", cursor_type="row")
            with TabPane("Heatmap", id="tab-heatmap"):
                yield from self._plot("bt-heatmap")
        yield Footer(compact=True)

    def _sources(self) -> list[tuple[Content, str]]:
        # Content, not str: Select reads a str prompt as markup ("bars[1].csv" would break).
        synth = f"synthetic: {SYNTHETIC_BARS:,} daily bars, seed {SYNTHETIC_SEED}"
        d = self._data_dir()
        out = [(Content(synth), SYNTHETIC)]
        for p in self.files:
            shown = str(p.relative_to(d)) if d is not None and p.is_relative_to(d) else str(p)
            out.append((Content(shown), str(p)))
        return out

    def _plot(self, id: str) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield PlotextPlot(id=id)

    def on_mount(self) -> None:
        self._build_params()
        self.set_focus(self.query_one("#bt-strategy", Choice))

    def _data_dir(self) -> Path | None:
        return self.cfg.data_dir if self.cfg is not None else None

    @property
    def strategy_name(self) -> str:
        return self.strategy_names[self.query_one("#bt-strategy", Choice).index]

    def _build_params(self) -> None:
        box = self.query_one("#bt-params", Vertical)
        box.remove_children()
        cls = self.strategies[self.strategy_name]
        rows = []
        for p in getattr(cls, "params", ()):
            rows.append(
                Horizontal(
                    Label(p.name, classes="field-label", markup=False),
                    Field(str(p.default), id=f"param-{p.name}", placeholder=p.help),
                    classes="field",
                )
            )
        box.mount_all(rows)

    @on(Choice.Changed, "#bt-strategy")
    def _strategy_changed(self) -> None:
        self._build_params()

    # -- running ---------------------------------------------------------------------------
    def _inputs(self) -> dict[str, Any]:
        from fbterm.strategies.base import StrategyError

        cls = self.strategies[self.strategy_name]
        params: dict[str, Any] = {}
        for p in getattr(cls, "params", ()):
            raw = self.query_one(f"#param-{p.name}", Field).value
            try:
                params[p.name] = p.coerce(raw)
            except StrategyError as e:
                raise InputError(str(e)) from None
        data = self.query_one("#bt-data", Field).value.strip()
        source = str(self.query_one("#bt-source", Select).value)
        bars: Path | pd.DataFrame
        if data:
            bars = Path(data).expanduser()
            if not bars.is_file():
                raise InputError(f"other file: not found: {bars}")
        elif source == SYNTHETIC:
            from fbterm.data.simulated import synth_bars

            bars = synth_bars(SYNTHETIC_BARS, seed=SYNTHETIC_SEED, symbol="SYN")
        else:
            bars = Path(source)
        cash = parse_number(self.query_one("#bt-cash", Field).value, "cash")
        commission = parse_number(
            self.query_one("#bt-commission", Field).value, "commission", positive=False
        )
        if commission is None or not 0 <= commission < 1:
            raise InputError("commission: a fraction between 0 and 1, e.g. 0.001")
        sizing = SIZINGS[self.query_one("#bt-sizing", Choice).index]
        return {
            "data_path": bars,
            "symbol": "SYN" if isinstance(bars, pd.DataFrame) else None,
            "strategy": self.strategy_name,
            "params": params,
            "cash": cash,
            "commission": commission,
            "sizing": sizing,
        }

    def _error(self, message: str) -> None:
        err = self.query_one("#bt-error", Static)
        err.update(message)
        err.set_class(bool(message), "-visible")

    def _begin(self, status: str) -> None:
        """A run or a sweep starts: no error shown, progress at 0, ``status`` in the line."""
        self._error("")
        self.running = True
        self._last_progress = -1.0
        self.query_one("#bt-progress", ProgressBar).update(progress=0.0)
        self.query_one("#bt-status", Static).update(status)

    def action_run(self) -> None:
        if self.running:
            self.notify("A backtest is already running.", severity="warning")
            return
        try:
            job = self._inputs()
        except InputError as e:
            self._error(str(e))
            return
        bars = job["data_path"]
        name = bars.name if isinstance(bars, Path) else "synthetic bars"
        self._begin(f"running {job['strategy']} on {name} …")
        self._run_job(job)

    @on(Button.Pressed, "#bt-run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_run()

    @work(thread=True, exclusive=True, group="backtest")
    def _run_job(self, job: dict[str, Any]) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()

        def progress(*args: Any) -> None:
            f = _fraction(args)
            # Coalesced: a message per whole percent, not per bar.
            if f is not None and f - self._last_progress >= 0.01 and not worker.is_cancelled:
                self._last_progress = f
                self.post_message(BacktestProgress(f))

        try:
            from fbterm.backtest.jobs import run_backtest_job

            result = run_backtest_job(progress=progress, **job)
        except Exception as e:  # shown to the operator; the UI must survive a failed job
            self.post_message(BacktestFailed(f"{type(e).__name__}: {e}" if not str(e) else str(e)))
            return
        self.post_message(BacktestDone(result, time.perf_counter() - t0))

    @on(BacktestProgress)
    def _progress(self, msg: BacktestProgress) -> None:
        self.query_one("#bt-progress", ProgressBar).update(
            progress=min(max(msg.fraction, 0.0), 1.0)
        )

    @on(BacktestFailed)
    def _failed(self, msg: BacktestFailed) -> None:
        self.running = False
        self.query_one("#bt-status", Static).update("failed")
        self._error(msg.error)
        self.notify(f"Backtest failed: {msg.error}", severity="error")

    @on(BacktestDone)
    def _done(self, msg: BacktestDone) -> None:
        self.running = False
        self.result = msg.result
        self.query_one("#bt-progress", ProgressBar).update(progress=1.0)
        n_trades = len(getattr(msg.result, "trades", ()))
        self.query_one("#bt-status", Static).update(
            f"done in {msg.elapsed:.1f}s: {n_trades} trades"
        )
        self._show_metrics(msg.result)
        self._show_trades(msg.result)
        self._draw_charts(msg.result)
        self.query_one("#bt-results", TabbedContent).active = "tab-metrics"
        self.set_focus(self.query_one("#bt-metrics", DataTable))
        if self.app.screen is not self:
            # Watching it, the status line and the metrics say so; a toast would only cover
            # the metrics' values at 80 columns.
            self.notify("Backtest finished.", severity="information")

    def _show_metrics(self, result: Any) -> None:
        table: DataTable[Text] = self.query_one("#bt-metrics", DataTable)
        table.clear(columns=True)
        table.add_column("Metric", width=28, key="k")
        table.add_column("Value", width=32, key="v")
        for k, v in result.metrics.items():
            table.add_row(Text(str(k)), Text(_value(v)), key=str(k))

    def _show_trades(self, result: Any) -> None:
        table: DataTable[Text] = self.query_one("#bt-trades", DataTable)
        table.clear(columns=True)
        trades = result.trades
        if trades is None or len(trades) == 0:
            table.add_column("Trades", width=20)
            table.add_row(Text("no trades"))
            return
        cols = list(trades.columns)[:9]
        for c in cols:
            table.add_column(str(c), width=14, key=str(c))
        for i, row in enumerate(trades[cols].head(2000).itertuples(index=False)):
            table.add_row(*(Text(_value(v)) for v in row), key=str(i))

    def _draw_charts(self, result: Any) -> None:
        from textual_plotext import PlotextPlot

        from fbterm.backtest.analysis import draw_equity, draw_price_trades

        for id_, draw in (("#bt-equity", draw_equity), ("#bt-price", draw_price_trades)):
            plot = self.query_one(id_, PlotextPlot)
            plot.plt.clear_figure()
            try:
                draw(plot.plt, result)
            except Exception as e:  # a chart must not take the result down with it
                plot.plt.clear_figure()
                plot.plt.title(f"chart unavailable: {e}")
            plot.refresh()

    # -- sweeps ----------------------------------------------------------------------------
    def action_sweep(self) -> None:
        if self.running:
            self.notify("A backtest is already running.", severity="warning")
            return
        try:
            job = self._inputs()
            specs = self.query_one("#bt-sweep", Input).value.split()
            if not specs:
                raise InputError("sweep: type a grid, e.g. fast=5:30:5 slow=20:60:10")
            from fbterm.backtest.jobs import sweep_grid

            try:
                job["grid"] = sweep_grid(specs, job.pop("params"))
            except ValueError as e:
                raise InputError(str(e)) from None
        except InputError as e:
            self._error(str(e))
            return
        self._begin(
            f"sweeping {len(job['grid'])} sets of {job['strategy']} on {job['data_path'].name} …"
        )
        self._run_sweep(job)

    @on(Button.Pressed, "#bt-sweep-run")
    def _sweep_pressed(self) -> None:
        self.action_sweep()

    @work(thread=True, exclusive=True, group="backtest")
    def _run_sweep(self, job: dict[str, Any]) -> None:
        worker = get_current_worker()
        t0 = time.perf_counter()

        def progress(f: float) -> None:
            if f - self._last_progress >= 0.01 and not worker.is_cancelled:
                self._last_progress = f
                self.post_message(BacktestProgress(f))

        try:
            from fbterm.backtest.heatmap import heatmap, swept_axes
            from fbterm.backtest.jobs import run_sweep
            from fbterm.backtest.sweepkernel import SWEEP_KEYS

            table = run_sweep(
                job["data_path"],
                job["strategy"],
                job["grid"],
                cash=job["cash"],
                commission=job["commission"],
                sizing=job["sizing"],
                progress=progress,
                # Worker processes are spawned, not forked: this process runs threads.
                mp_context="spawn",
            )
            axes = swept_axes(table, SWEEP_KEYS)
            hm = heatmap(table, "sharpe", axes=axes) if len(axes) >= 2 else None
        except Exception as e:  # shown to the operator; the UI must survive a failed sweep
            self.post_message(BacktestFailed(f"{type(e).__name__}: {e}" if not str(e) else str(e)))
            return
        self.post_message(SweepDone(table, hm, time.perf_counter() - t0))

    @on(SweepDone)
    def _sweep_done(self, msg: SweepDone) -> None:
        self.running = False
        self.sweep, self.heatmap = msg.table, msg.heatmap
        self.query_one("#bt-progress", ProgressBar).update(progress=1.0)
        best = msg.table.iloc[0].to_dict() if len(msg.table) else {}
        self.query_one("#bt-status", Static).update(
            f"sweep of {len(msg.table)} sets done in {msg.elapsed:.1f}s; best sharpe "
            f"{_value(best.get('sharpe', float('nan')))}"
        )
        table: DataTable[str] = self.query_one("#bt-sweep-table", DataTable)
        table.clear(columns=True)
        for c in msg.table.columns:
            table.add_column(str(c), width=max(8, min(len(str(c)) + 2, 16)), key=str(c))
        for i, row in enumerate(msg.table.head(500).itertuples(index=False)):
            table.add_row(*(_value(v) for v in row), key=str(i))
        tabs = self.query_one("#bt-results", TabbedContent)
        if msg.heatmap is not None:
            self._draw_heatmap(msg.heatmap)
            tabs.active = "tab-heatmap"
        else:
            tabs.active = "tab-sweep"
        self.notify("Sweep finished.", severity="information")

    def _draw_heatmap(self, hm: Any) -> None:
        from textual_plotext import PlotextPlot

        from fbterm.backtest.heatmap import draw_heatmap

        plot = self.query_one("#bt-heatmap", PlotextPlot)
        plot.plt.clear_figure()
        try:
            draw_heatmap(plot.plt, hm)
        except Exception as e:  # a chart must not take the result down with it
            plot.plt.clear_figure()
            plot.plt.title(f"heatmap unavailable: {e}")
        plot.refresh()

    def action_close(self) -> None:
        self.app.pop_screen()


def _value(v: Any) -> str:
    """A metric or trade field as an operator reads it: money with separators, no exponents."""
    if isinstance(v, bool) or not isinstance(v, float | int):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if v != v:  # NaN
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.2f}"
    if abs(v) >= 1 or v == 0:
        return f"{v:,.4f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:,.0f}"
    return f"{v:.4g}"
