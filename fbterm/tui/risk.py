"""Risk gauges and the HALTED / REDUCE-ONLY banner.

A gauge is a fixed-width bar whose CSS class (-ok / -warn / -breach) the theme colours; the
level word is printed too, so a breach reads as a breach in a monochrome terminal.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from fbterm.model import TradingState
from fbterm.snapshot import EngineSnapshot, Gauge, RiskView
from fbterm.tui import fmt

LEVELS = ("ok", "warn", "breach")
_LEVEL_WORD = {"ok": "  ", "warn": " !", "breach": "!!"}


TEXT_WIDTH = 18


def gauge_text(g: Gauge, bar_width: int, label_width: int = 10) -> str:
    frac = min(g.fraction, 1.0)
    filled = round(frac * bar_width)
    bar = "█" * filled + "░" * (bar_width - filled)
    text = fmt.fit(g.text, TEXT_WIDTH)
    return f"{fmt.fit(g.name, label_width):<{label_width}} {bar} {_LEVEL_WORD.get(g.level, '  ')} {text:>{TEXT_WIDTH}}"


class GaugeLine(Widget):
    """One gauge; the bar takes whatever width the value text leaves. Repainted only when
    the gauge's text or level changes (or the widget is resized)."""

    DEFAULT_CSS = "GaugeLine { height: 1; }"

    def __init__(self, name: str) -> None:
        super().__init__(classes="gauge -ok")
        self.gauge_name = name
        self.gauge: Gauge | None = None

    def show(self, g: Gauge) -> None:
        old = self.gauge
        self.gauge = g
        if old is not None and (old.text, old.level, round(old.fraction, 2)) == (
            g.text,
            g.level,
            round(g.fraction, 2),
        ):
            return
        for lv in LEVELS:
            self.set_class(lv == g.level, f"-{lv}")
        self.refresh()

    def render(self) -> Text:
        g = self.gauge
        if g is None:
            return Text("")
        bar = max(self.size.width - 10 - 1 - 4 - TEXT_WIDTH, 4)
        return Text(gauge_text(g, bar), no_wrap=True, overflow="ellipsis")


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
        self._state_text = ""
        self._greeks_text = ""

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        r = snap.risk
        text = f"{r.state.value:<8} equity {fmt.money(r.equity, 0)}  day {fmt.pnl(r.daily_pnl, 0)}"
        if text != self._state_text:
            self._state_text = text
            st = self.query_one("#risk-state", Static)
            st.update(text)
            st.set_class(r.state is TradingState.HALTED, "-breach")
            st.set_class(r.state is TradingState.REDUCING, "-warn")
        for g in r.gauges:
            line = self._gauges.get(g.name)
            if line is None:
                line = GaugeLine(g.name)
                self._gauges[g.name] = line
                self.mount(line, before="#risk-greeks")
            line.show(g)
        text = greeks_text(r)
        if text != self._greeks_text:
            self._greeks_text = text
            st = self.query_one("#risk-greeks", Static)
            st.update(text)
            st.display = bool(text)


def greeks_text(r: RiskView) -> str:
    """Greeks per underlying and for the portfolio; empty while no option is held (a book of
    stocks is all delta, which the exposure gauge already shows)."""
    if not any(row.greeks.gamma or row.greeks.vega or row.unpriced for row in r.greeks):
        return ""
    lines = [f"{'greeks':<10}{'Δ':>10}{'Δ $':>11}{'Γ':>8}{'vega/pt':>9}{'θ/day':>9}"]
    for row in r.greeks:
        g = row.greeks
        unpriced = f"  ({len(row.unpriced)} unpriced)" if row.unpriced else ""
        lines.append(
            f"{fmt.fit(row.underlying, 10):<10}{g.delta:>+10,.0f}{g.dollar_delta:>+11,.0f}"
            f"{g.gamma:>+8,.1f}{g.vega:>+9,.0f}{g.theta:>+9,.0f}{unpriced}"
        )
    t = r.portfolio_greeks
    lines.append(
        f"{'portfolio':<10}{'':>10}{t.dollar_delta:>+11,.0f}{'':>8}{t.vega:>+9,.0f}{t.theta:>+9,.0f}"
    )
    return "\n".join(lines)


def summary_text(r: RiskView) -> Text:
    """The one-line risk summary used in compact mode; breaches upper-cased to stand out."""
    parts = []
    for g in r.gauges:
        word = g.text if g.level == "ok" else g.text.upper()
        mark = {"ok": "", "warn": "!", "breach": "!!"}.get(g.level, "")
        parts.append((f"{g.name} {word}{mark}", g.level))
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (p, _lv) in enumerate(parts):
        if i:
            out.append(" │ ")
        out.append(p)
    return out


class RiskSummary(Static):
    """Compact mode: every gauge on one line; the line takes the worst level's colour."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False, classes="-ok")
        self._last = ""

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        text = summary_text(snap.risk)
        levels = [g.level for g in snap.risk.gauges]
        worst = "breach" if "breach" in levels else "warn" if "warn" in levels else "ok"
        if text.plain + worst == self._last:
            return
        self._last = text.plain + worst
        for lv in LEVELS:
            self.set_class(lv == worst, f"-{lv}")
        self.update(text)


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
