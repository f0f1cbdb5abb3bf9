"""The header: mode, account, connection and feed staleness, latency, trading state, clock.

LIVE must be unmistakable: the whole bar changes colour (via the -live class the theme
styles) and the word LIVE is printed in a badge; READ-ONLY gets its own class. Each part is a
separate Static so only the part that changed is repainted.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from fbterm.model import TradingState
from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt


class Part(Static):
    def __init__(self, *, id: str, classes: str = "") -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._last = ""

    def set(self, text: str, **classes: bool) -> None:
        for name, on in classes.items():
            self.set_class(on, f"-{name.replace('_', '-')}")
        if text != self._last:
            self._last = text
            self.update(text)


class HeaderBar(Horizontal):
    def compose(self) -> ComposeResult:
        # Most important first: on a narrow terminal the right end is what gets cut.
        yield Part(id="hdr-mode")
        yield Part(id="hdr-state")
        yield Part(id="hdr-conn")
        yield Part(id="hdr-feeds")
        yield Part(id="hdr-account")
        yield Part(id="hdr-latency")
        yield Part(id="hdr-clock")

    def update_snapshot(self, snap: EngineSnapshot, ui_lag: float | None = None) -> None:
        mode = snap.mode.upper()
        self.set_class(mode == "LIVE", "-live")
        self.set_class(mode == "READ-ONLY", "-read-only")
        self.query_one("#hdr-mode", Part).set(
            f" {mode} ", live=mode == "LIVE", read_only=mode == "READ-ONLY"
        )
        self.query_one("#hdr-account", Part).set(
            snap.account if self.size.width < 100 else f"{snap.broker}:{snap.account}"
        )
        conn = snap.connection
        stale_engine = ui_lag is not None and ui_lag > 3.0
        conn_text = f"● {conn}" if conn == "connected" else f"○ {conn}"
        if stale_engine:
            conn_text = f"○ no data {ui_lag:.0f}s"
        self.query_one("#hdr-conn", Part).set(
            conn_text,
            ok=conn == "connected" and not stale_engine,
            bad=conn in ("disconnected", "lost", "reconnecting") or stale_engine,
            warn=conn in ("re-syncing", "read-only"),
        )
        stale = snap.stale_feeds
        if not snap.feeds:
            feeds = "feeds –"
        elif stale:
            oldest = max((f.age for f in snap.feeds if f.stale), default=0.0)
            feeds = f"STALE {','.join(stale[:2])}{'+' if len(stale) > 2 else ''} {fmt.age(oldest)}"
        else:
            feeds = f"feeds {len(snap.feeds)} ok"
        # Strategies still warming on history, and a reconciliation that found differences
        # (details in the log pane and the summary), ride along with the feeds.
        warm, recon = snap.warmup, snap.reconciliation
        if warm is not None and not warm.complete:
            feeds += f" · warming {warm.done}/{warm.total}"
        if recon is not None and not recon.clean:
            feeds += " · recon FAILED" if recon.error else " · recon diff"
        if snap.market_data_delayed:
            feeds = "DELAYED " + feeds
        busy = (warm is not None and not warm.complete) or (recon is not None and not recon.clean)
        busy = busy or snap.market_data_delayed
        self.query_one("#hdr-feeds", Part).set(
            feeds, warn=bool(stale) or busy, ok=not (stale or busy)
        )
        if snap.latency_ms_p50 is None:
            lat = "lat –"
        else:
            lat = f"{_ms(snap.latency_ms_p50)}/{_ms(snap.latency_ms_p99 or 0.0)}ms"
            if self.size.width >= 100:
                lat = "lat " + lat
        self.query_one("#hdr-latency", Part).set(lat)
        st = snap.risk.state
        self.query_one("#hdr-state", Part).set(
            st.value,
            ok=st is TradingState.ACTIVE,
            warn=st is TradingState.REDUCING,
            breach=st is TradingState.HALTED,
        )
        # The clock is the engine's: frozen snapshots render the same clock every time.
        self.query_one("#hdr-clock", Part).set(time.strftime("%H:%M:%S", time.localtime(snap.ts)))


def _ms(v: float) -> str:
    """Milliseconds that stay readable from microseconds (a paper ack) to seconds (a slow gateway)."""
    if v < 1:
        return f"{v:.2f}"
    if v < 10:
        return f"{v:.1f}"
    return f"{v:.0f}"
