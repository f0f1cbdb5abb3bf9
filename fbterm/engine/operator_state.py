"""The operator's decisions as durable state: kept in the journal, restored at start.

Halted or reduce-only and why, the day-start and peak equity behind the daily-loss and
drawdown limits, paused strategies and allocations: each is written to the journal when it
changes (:meth:`OperatorStateKeeper.sync`, called by whatever changed it, before anything says
so), and read back by :meth:`OperatorStateKeeper.restore` when the engine starts. So a halt
survives ``q``, SIGHUP and SIGKILL alike, and a restart does not hand out a fresh loss budget.

Each engine run is also a session in the journal; the next run reads how the last one ended
and says it ("previous session ended HALTED", "... ended uncleanly").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal, OperatorState, SessionRecord, StrategyRecord
from fbterm.model import StrategyState, TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk, RiskBaselines
from fbterm.strategies.executor import StrategyExecutor


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a start found in the journal: how the last session ended and what was restored."""

    previous: SessionRecord | None
    state: TradingState
    reason: str
    orders: int
    open_orders: int
    fills: int
    positions: int
    baselines_restored: bool
    paused: tuple[str, ...] = ()
    allocations: tuple[tuple[str, float], ...] = ()
    unknown: tuple[str, ...] = ()  # records of strategies this config no longer has

    @property
    def previous_ended(self) -> str:
        """How the previous session ended, in words ('' for a fresh journal)."""
        p = self.previous
        if p is None:
            return ""
        if not p.clean:
            return "previous session ended uncleanly (no clean shutdown recorded)"
        if p.end_state == TradingState.HALTED.value:
            return f"previous session ended HALTED ({p.end_reason or 'operator'})"
        return f"previous session ended cleanly ({p.end_state or 'ACTIVE'})"

    @property
    def recovered(self) -> str:
        """What was restored from the journal, in words ('' when there was nothing)."""
        if self.previous is None and not (self.orders or self.fills):
            return ""
        parts = [
            f"{self.orders} orders ({self.open_orders} open)",
            f"{self.fills} fills",
            f"{self.positions} positions",
        ]
        state = self.state.value + (f" ({self.reason})" if self.reason else "")
        parts.append(f"trading {state}")
        if self.baselines_restored:
            parts.append("loss-limit baselines")
        if self.paused:
            parts.append("paused " + ", ".join(self.paused))
        if self.allocations:
            parts.append("allocations " + ", ".join(f"{n} {c:,.0f}" for n, c in self.allocations))
        return "recovered from the journal: " + "; ".join(parts)

    @property
    def note(self) -> str:
        """One line for the console header, the log and the headless summary."""
        bits = [b for b in (self.previous_ended, self.recovered) if b]
        if self.state is not TradingState.ACTIVE and self.previous is not None:
            bits.append(f"trading stays {self.state.value} until you resume")
        if self.unknown:
            bits.append(
                "ignored the journal's decisions for strategies this config does not run: "
                + ", ".join(self.unknown)
            )
        return "; ".join(bits)

    @property
    def uneventful(self) -> bool:
        """A clean stop while ACTIVE: worth an info line, not a warning."""
        clean = self.previous is None or self.previous.clean
        return clean and self.state is TradingState.ACTIVE and not self.unknown


class OperatorStateKeeper:
    """Writes the operator's decisions to the journal as they change; reads them back at start.

    Engine thread only. ``sync`` compares with what it last wrote and writes only the
    difference, so calling it after every command and every housekeeping pass is cheap.
    """

    def __init__(
        self,
        journal: Journal,
        risk: PortfolioLevelRisk,
        executor: StrategyExecutor,
        oms: OrderManagement,
        clock: Callable[[], float],
    ) -> None:
        self.journal = journal
        self.risk = risk
        self.executor = executor
        self.oms = oms
        self.clock = clock
        self.session: SessionRecord | None = None
        self._state: OperatorState | None = None
        self._strategies: dict[str, StrategyRecord] = {}

    # -- sessions ------------------------------------------------------------------------
    def begin_session(self) -> SessionRecord | None:
        """Record this run; returns the run before it (None on a fresh journal)."""
        self.session, previous = self.journal.begin_session(os.getpid(), self.clock())
        return previous

    def end_session(self) -> None:
        """A clean shutdown: the last decisions, then the session's end."""
        if self.session is None or self.journal.failed is not None:
            return
        self.sync()
        self.journal.end_session(self.session.id, self.clock(), self.risk.state, self.risk.reason)
        self.session = None

    # -- restore -------------------------------------------------------------------------
    def restore(self, previous: SessionRecord | None) -> Recovery:
        """Put the journal's decisions back into the risk manager and the executor."""
        self._state = saved = self.journal.operator_state()
        baselines = False
        if saved is not None:
            today = self.risk.trading_day(self.clock()).toordinal()
            same_day = saved.day == today
            self.risk.restore(
                RiskBaselines(
                    saved.trading_state,
                    saved.reason,
                    saved.day if same_day else None,
                    saved.day_start_equity if same_day else None,
                    saved.peak_equity,
                )
            )
            self.executor.set_halted(saved.trading_state is TradingState.HALTED)
            baselines = True
        self._strategies = records = self.journal.strategy_records()
        paused, allocations, unknown = [], [], []
        for name, rec in records.items():
            slot = self.executor.slots.get(name)
            if slot is None:
                unknown.append(name)
                continue
            if rec.paused and slot.state in (StrategyState.RUNNING, StrategyState.HALTED):
                slot.state = StrategyState.PAUSED
            elif not rec.paused and slot.state is StrategyState.PAUSED:
                halted = self.risk.state is TradingState.HALTED
                slot.state = StrategyState.HALTED if halted else StrategyState.RUNNING
            if rec.paused:
                paused.append(name)
            if abs(rec.capital - slot.capital) > 1e-9:
                self.executor.scale_strategy(name, rec.capital)
                allocations.append((name, rec.capital))
        oms = self.oms
        return Recovery(
            previous=previous,
            state=self.risk.state,
            reason=self.risk.reason,
            orders=oms.orders_total,
            open_orders=len(oms.open),
            fills=oms.fills_total,
            positions=sum(1 for p in oms.positions.values() if not p.is_flat),
            baselines_restored=baselines,
            paused=tuple(paused),
            allocations=tuple(allocations),
            unknown=tuple(unknown),
        )

    # -- write ---------------------------------------------------------------------------
    def current(self) -> OperatorState:
        b = self.risk.baselines()
        last = self._state
        changed = (
            last.changed_ts
            if last is not None and (last.trading_state, last.reason) == (b.state, b.reason)
            else self.clock()
        )
        return OperatorState(b.state, b.reason, changed, b.day, b.day_start_equity, b.peak)

    def sync(self) -> None:
        """Write whatever changed since the last write (raises JournalWriteError)."""
        if self.journal.failed is not None:
            return
        state = self.current()
        if state != self._state:
            self.journal.save_operator_state(state)
            self._state = state
        now = None
        for name, slot in self.executor.slots.items():
            paused = slot.state is StrategyState.PAUSED
            last = self._strategies.get(name)
            if last is not None and last.paused == paused and last.capital == slot.capital:
                continue
            now = now if now is not None else self.clock()
            rec = StrategyRecord(name, paused, slot.capital, now)
            self.journal.save_strategy(rec)
            self._strategies[name] = rec
