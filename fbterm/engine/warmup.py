"""Strategies warmed on recent history in the background: start-up never waits for it.

With live data (IB), each symbol's strategies need some history before their first trade.
The engine starts at once; meanwhile a background task fetches history per symbol (through
DataRetrieval, so it is cached), waiting out IB's pacing (162/366) politely, and each symbol's
strategies trade only once they are warm:

* while a symbol warms, its live bars are held back (remembered for the console, not traded);
* when its history arrives, the strategies see it, then the held bars, in time order, without
  trading on any of them; the next live bar is the first they may trade on;
* if history cannot be had, the strategies warm on live bars instead (as many as they need).

Progress is a line in the log and in every snapshot (``warmup``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fbterm.config import Config
from fbterm.engine.events import ActivityLog
from fbterm.engine.market import MarketState
from fbterm.model import Bar
from fbterm.snapshot import WarmupView
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.data.retrieval import DataRetrieval


@dataclass(slots=True)
class SymbolWarmup:
    """One symbol's way to warm: ``needed`` bars before its strategies may trade."""

    needed: int
    fed: int = 0
    warm: bool = False
    history_done: bool = False  # history fed (or given up on): live bars finish the job
    waiting: str = ""  # why it is not done yet (IB pacing...)
    held: list[Bar] = field(default_factory=list)  # live bars that came before the history


class Warmup:
    """Per-symbol warm-up state, the background task, and the gate live bars pass."""

    def __init__(
        self,
        cfg: Config,
        symbols: Sequence[str],
        market: MarketState,
        executor: StrategyExecutor,
        activity: ActivityLog,
        clock: Callable[[], float],
    ) -> None:
        self.config = cfg
        self.symbols = list(symbols)
        self.market = market
        self.executor = executor
        self.activity = activity
        self.clock = clock
        self.state: dict[str, SymbolWarmup] = {}
        self.bars_fed = 0

    # -- the gate -------------------------------------------------------------------------------
    def begin(self, retrieval: DataRetrieval | None) -> bool:
        """Hold every traded symbol until it is warm; False when nothing needs warming (no
        history source, no strategies: strategies then warm as they always did)."""
        if retrieval is None or retrieval.historical is None or not self.executor.slots:
            return False
        for sym in self.symbols:
            need = max(
                (sl.strategy.warmup() for sl in self.executor.slots.values() if sym in sl.symbols),
                default=0,
            )
            if need > 0:
                self.state[sym] = SymbolWarmup(needed=need)
        if self.state:
            self.activity.log(
                "info",
                "data",
                f"warm-up: {len(self.state)} symbols warming on history in the background; "
                "their strategies trade once warm",
            )
        return bool(self.state)

    def admit(self, bar: Bar) -> bool:
        """May the strategies trade on this live bar? (Engine thread, every closed bar.)"""
        st = self.state.get(bar.symbol)
        if st is None or st.warm:
            return True
        if not st.history_done:
            st.held.append(bar)
            return False
        self.executor.on_bar(bar, trade=False)
        st.fed += 1
        if st.fed >= st.needed:
            self._warm(bar.symbol, st, f"on {st.fed} bars (live bars completed it)")
        return False

    @property
    def complete(self) -> bool:
        return all(st.warm for st in self.state.values())

    def view(self) -> WarmupView | None:
        if not self.state:
            return None
        done = sum(st.warm for st in self.state.values())
        if done == len(self.state):
            return WarmupView(done, done, f"warm ({done} symbols, {self.bars_fed} history bars)")
        cold = [f"{sym} {_progress(st)}" for sym, st in self.state.items() if not st.warm]
        text = f"warming {done}/{len(self.state)}: " + "; ".join(cold)
        return WarmupView(done, len(self.state), text)

    # -- the background task ---------------------------------------------------------------------
    async def run(self, retrieval: DataRetrieval) -> None:
        """Fetch each cold symbol's history and feed it; never raises (a failure is a line)."""
        import pandas as pd

        secs = self.config.market.bar_seconds
        bar_size = f"{int(secs)}s" if secs < 60 or secs % 60 else f"{int(secs // 60)}m"
        for sym, st in list(self.state.items()):
            if st.warm:
                continue
            end = pd.Timestamp(self.clock(), unit="s", tz="UTC").floor(f"{int(secs)}s")
            start = end - pd.Timedelta(seconds=secs * (2 * st.needed + 5))
            try:
                df = await retrieval.afetch_historical_data(sym, start, end, bar_size)
            except Exception as e:  # history is a help, never a reason to stop
                st.history_done, st.waiting = True, ""
                self.activity.log(
                    "warning",
                    "data",
                    f"warm-up: {sym}: no history ({type(e).__name__}: {e}); its strategies warm "
                    f"on live bars ({st.needed} needed)",
                )
                self._release(sym, st, ())
                continue
            rows: Iterable[Any] = df.itertuples(index=False)  # pandas types the fields loosely
            history = [
                Bar(sym, ts.timestamp(), row.open, row.high, row.low, row.close, row.volume)
                for ts, row in zip(df.index, rows, strict=True)
            ]
            self._release(sym, st, history)
        view = self.view()
        if view is not None and view.complete:
            self.activity.log("info", "data", f"warm-up done: {view.text}")

    def note_wait(self, symbol: str, why: str, seconds: float, attempt: int) -> None:
        """The history source is waiting out IB's pacing (called from the data source)."""
        st = self.state.get(symbol)
        if st is not None:
            st.waiting = f"waiting {seconds:g} s on IB pacing (retry {attempt})"
        self.activity.log(
            "warning",
            "data",
            f"warm-up: {symbol}: {why}; waiting {seconds:g} s before retry {attempt} "
            f"of {self.config.broker.ib.pacing_max_retries}",
        )

    def _release(self, sym: str, st: SymbolWarmup, history: Sequence[Bar]) -> None:
        """Feed the history older than the held live bars, then the held bars; no trading."""
        first_live = st.held[0].ts if st.held else float("inf")
        older = [b for b in history if b.ts < first_live]
        self._remember_before(sym, older)
        for bar in [*older, *st.held]:
            self.market.prices.setdefault(sym, bar.close)
            self.executor.on_bar(bar, trade=False)
        st.fed += len(older) + len(st.held)
        self.bars_fed += len(older)
        st.held.clear()
        st.history_done, st.waiting = True, ""
        for slot in self.executor.slots.values():
            if sym in slot.symbols:
                slot.instance(sym).forget_target(sym)
        if st.fed >= st.needed:
            self._warm(sym, st, f"on {len(older)} historical bars")
        elif history:
            self.activity.log(
                "warning",
                "data",
                f"warm-up: {sym}: only {st.fed} of {st.needed} bars from history; live bars finish it",
            )

    def _warm(self, sym: str, st: SymbolWarmup, how: str) -> None:
        st.warm = True
        done = sum(s.warm for s in self.state.values())
        self.activity.log(
            "info", "data", f"warm-up: {sym} warm {how} ({done}/{len(self.state)} symbols)"
        )

    def _remember_before(self, sym: str, older: Sequence[Bar]) -> None:
        """Put history in front of the live bars the console already keeps, in time order."""
        if not older:
            return
        kept = self.market.history.get(sym)
        merged = deque([*older, *(kept or ())], maxlen=self.config.market.history_bars)
        self.market.history[sym] = merged


def _progress(st: SymbolWarmup) -> str:
    if st.waiting:
        return st.waiting
    if st.history_done:
        return f"on live bars {st.fed}/{st.needed}"
    return "fetching history"
