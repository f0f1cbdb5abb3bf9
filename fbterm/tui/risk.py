"""Risk gauges and the HALTED / REDUCE-ONLY banner.

A gauge is a fixed-width bar whose CSS class (-ok / -warn / -breach) the theme colours; the
level word is printed too, so a breach reads as a breach in a monochrome terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from fbterm.model import TradingState
from fbterm.model.greeks import Greeks
from fbterm.snapshot import EngineSnapshot, Gauge, RiskView
from fbterm.tui import fmt

LEVELS = ("ok", "warn", "breach")
_LEVEL_WORD = {"ok": "  ", "warn": " !", "breach": "!!"}

# When a gauge line is narrow its label gets shorter, never its numbers.
SHORT_NAMES = {
    "drawdown": "DD",
    "daily loss": "loss",
    "gross exposure": "gross",
    "orders/s": "ord/s",
}


def short_name(name: str) -> str:
    return SHORT_NAMES.get(name, name[:6])


@dataclass(frozen=True, slots=True)
class GaugeLayout:
    """How every gauge line of a pane is laid out at its width (one layout for all, so the
    bars line up): full or short labels, the label and number columns, the bar's width."""

    short: bool
    label_width: int
    value_width: int
    bar_width: int


def gauge_layout(gauges: Sequence[Gauge], width: int) -> GaugeLayout:
    """The widest-reading layout that fits: full labels with a bar of at least 8, then short
    labels with a bar of at least 4, then short labels and no bar. Numbers are never cut."""
    values = max((len(g.text) for g in gauges), default=0)
    for short, least in ((False, 8), (True, 4)):
        labels = max((len(short_name(g.name) if short else g.name) for g in gauges), default=0)
        bar = width - labels - values - 5
        if bar >= least:
            return GaugeLayout(short, labels, values, bar)
    labels = max((len(short_name(g.name)) for g in gauges), default=0)
    return GaugeLayout(True, labels, max(values, width - labels - 4), 0)


def gauge_text(g: Gauge, layout: GaugeLayout) -> str:
    """One gauge: label, bar, level mark (two cells: '  ', ' !' or '!!'), value / limit."""
    mark = _LEVEL_WORD.get(g.level, "  ")
    label = short_name(g.name) if layout.short else g.name
    if layout.bar_width <= 0:
        return f"{label:<{layout.label_width}} {mark} {g.text:>{layout.value_width}}"
    filled = round(min(g.fraction, 1.0) * layout.bar_width)
    bar = "█" * filled + "░" * (layout.bar_width - filled)
    return f"{label:<{layout.label_width}} {bar} {mark} {g.text:>{layout.value_width}}"


class GaugeLine(Widget):
    """One gauge, drawn with the pane's layout. Repainted only when the gauge's text or level
    changes (or the layout does)."""

    DEFAULT_CSS = "GaugeLine { height: 1; }"

    def __init__(self, name: str) -> None:
        super().__init__(classes="gauge -ok")
        self.gauge_name = name
        self.gauge: Gauge | None = None
        self.layout_: GaugeLayout | None = None

    def show(self, g: Gauge, layout: GaugeLayout) -> None:
        old = self.gauge
        self.gauge = g
        if (
            old is not None
            and layout == self.layout_
            and (old.text, old.level, round(old.fraction, 2))
            == (g.text, g.level, round(g.fraction, 2))
        ):
            return
        self.layout_ = layout
        for lv in LEVELS:
            self.set_class(lv == g.level, f"-{lv}")
        self.refresh()

    def render(self) -> Text:
        if self.gauge is None or self.layout_ is None:
            return Text("")
        return Text(gauge_text(self.gauge, self.layout_), no_wrap=True, overflow="ellipsis")


class RiskPane(Vertical):
    """Equity and state on top, then one line per gauge (the engine decides which)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="risk-state", markup=False)
        greeks = Static("", id="risk-greeks", markup=False)
        greeks.display = False  # only while options or other positions have greeks
        yield greeks

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._gauges: dict[str, GaugeLine] = {}
        self._gauges_now: tuple[Gauge, ...] = ()
        self._state_text = ""
        self._greeks_text = ""
        self._risk: RiskView | None = None

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        r = snap.risk
        text = f"{r.state.value:<8} equity {fmt.money(r.equity, 0)}  day {fmt.pnl(r.daily_pnl, 0)}"
        if text != self._state_text:
            self._state_text = text
            st = self.query_one("#risk-state", Static)
            st.update(text)
            st.set_class(r.state is TradingState.HALTED, "-breach")
            st.set_class(r.state is TradingState.REDUCING, "-warn")
        self._gauges_now = r.gauges
        self._draw()
        self._risk = r
        self._show_greeks()

    def _show_greeks(self) -> None:
        if self._risk is None:
            return
        greeks = greeks_text(self._risk, self.content_region.width)
        if greeks != self._greeks_text:
            self._greeks_text = greeks
            st = self.query_one("#risk-greeks", Static)
            st.update(greeks)
            st.display = bool(greeks)

    def on_resize(self) -> None:
        self._draw()
        self._show_greeks()

    def _draw(self) -> None:
        width = self.content_region.width
        if width <= 0 or not self._gauges_now:
            return
        layout = gauge_layout(self._gauges_now, width)
        for g in self._gauges_now:
            line = self._gauges.get(g.name)
            if line is None:
                line = GaugeLine(g.name)
                self._gauges[g.name] = line
                self.mount(line, before="#risk-greeks")
            line.show(g, layout)


@dataclass(frozen=True, slots=True)
class _GreekColumn:
    head: str
    width: int
    keep: int  # the narrower the pane, the lower ones go first
    cell: Callable[[Greeks], str]


# Dollar delta says most about the risk, then vega, theta and gamma; delta in shares last (the
# dollar figure carries it).
GREEK_COLUMNS = (
    _GreekColumn("delta", 8, 0, lambda g: f"{g.delta:+,.0f}"),
    _GreekColumn("delta $", 10, 4, lambda g: f"{g.dollar_delta:+,.0f}"),
    _GreekColumn("gamma", 7, 1, lambda g: f"{g.gamma:+,.1f}"),
    _GreekColumn("vega/pt", 9, 3, lambda g: f"{g.vega:+,.0f}"),
    _GreekColumn("theta/d", 9, 2, lambda g: f"{g.theta:+,.0f}"),
)
NAME_WIDTH = 10


def greek_columns(width: int) -> list[_GreekColumn]:
    """The columns that fit ``width`` cells (0: all of them), in display order."""
    cols = list(GREEK_COLUMNS)
    name = NAME_WIDTH if width <= 0 or width >= 48 else 7
    while width > 0 and len(cols) > 1 and name + sum(c.width for c in cols) > width:
        cols.remove(min(cols, key=lambda c: c.keep))
    return cols


def greeks_text(r: RiskView, width: int = 0) -> str:
    """Greeks per underlying and for the portfolio, in as many columns as ``width`` holds
    (0: all); empty while no option is held (a book of stocks is all delta, which the
    exposure gauge already shows)."""
    if not any(row.greeks.gamma or row.greeks.vega or row.unpriced for row in r.greeks):
        return ""
    cols = greek_columns(width)
    name = NAME_WIDTH if width <= 0 or width >= 48 else 7

    def line(label: str, cells: list[str], tail: str = "") -> str:
        body = "".join(f"{v:>{c.width}}" for c, v in zip(cols, cells, strict=True))
        return f"{fmt.fit(label, name - 1):<{name}}{body}{tail}"

    lines = [line("greeks", [c.head for c in cols])]
    for row in r.greeks:
        unpriced = f"  ({len(row.unpriced)} unpriced)" if row.unpriced else ""
        lines.append(line(row.underlying, [c.cell(row.greeks) for c in cols], unpriced))
    # The portfolio sums only what adds up across underlyings: dollars, not shares or gamma.
    t = r.portfolio_greeks
    label = "portfolio" if name == NAME_WIDTH else "total"
    lines.append(line(label, ["" if c.keep in (0, 1) else c.cell(t) for c in cols]))
    return "\n".join(lines)


def summary_text(r: RiskView, width: int = 0) -> Text:
    """The one-line risk summary used in compact mode; breaches upper-cased to stand out.

    If the full labels do not fit ``width``, the short ones are used; the numbers stay whole.
    """

    def line(short: bool) -> list[tuple[str, str]]:
        parts = []
        for g in r.gauges:
            word = g.text if g.level == "ok" else g.text.upper()
            if short:
                word = word.replace(" / ", "/")
            mark = {"ok": "", "warn": "!", "breach": "!!"}.get(g.level, "")
            parts.append((f"{short_name(g.name) if short else g.name} {word}{mark}", g.level))
        return parts

    parts = line(False)
    sep = " │ "
    if width and sum(len(p) for p, _ in parts) + len(sep) * (len(parts) - 1) > width:
        parts = line(True)
        sep = " │ " if sum(len(p) for p, _ in parts) + 3 * (len(parts) - 1) <= width else "│"
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (p, _lv) in enumerate(parts):
        if i:
            out.append(sep)
        out.append(p)
    return out


class RiskSummary(Widget):
    """Compact mode: every gauge on one line; the line takes the worst level's colour."""

    DEFAULT_CSS = "RiskSummary { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="-ok")
        self.risk: RiskView | None = None
        self._last = ""

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        levels = [g.level for g in snap.risk.gauges]
        worst = "breach" if "breach" in levels else "warn" if "warn" in levels else "ok"
        key = repr([(g.text, g.level) for g in snap.risk.gauges])
        self.risk = snap.risk
        if key == self._last:
            return
        self._last = key
        for lv in LEVELS:
            self.set_class(lv == worst, f"-{lv}")
        self.refresh()

    def render(self) -> Text:
        if self.risk is None:
            return Text("")
        return summary_text(self.risk, self.content_region.width)


class Banner(Static):
    """Big and unmissable while halted (or reduce-only); hidden otherwise."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.state: TradingState = TradingState.ACTIVE
        self._last = ""
        self.display = False

    def update_snapshot(self, snap: EngineSnapshot, halt_key: str, compact: bool) -> None:
        r = snap.risk
        if r.state is TradingState.ACTIVE:
            text = ""
        elif r.state is TradingState.HALTED:
            why = f" — {r.halt_reason}" if r.halt_reason else ""
            text = f"■■ TRADING HALTED{why} ■■   {halt_key}: resume"
        else:
            why = f" — {r.halt_reason}" if r.halt_reason else ""
            text = f"▲▼ REDUCE-ONLY{why}   {halt_key}: halt"
        if not compact and text:
            text = "\n" + text + "\n"
        self.state = r.state
        if text == self._last:
            return
        self._last = text
        self.set_class(r.state is TradingState.HALTED, "-halted")
        self.set_class(r.state is TradingState.REDUCING, "-reducing")
        self.display = bool(text)
        self.update(text)
