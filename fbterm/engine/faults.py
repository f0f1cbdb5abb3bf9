"""The one fault the engine does not ride out: a journal write that fails.

A full disk or an I/O error means the engine can no longer remember what it does, so it must
stop doing anything: the journal refuses every later write, and :class:`JournalFault` halts
trading at once (inside the failing write), then, from the engine loop, cancels what it can at
the venue, tries to record the halt, says one clear line (log, alert) and stops the engine.
Whoever runs the engine prints :attr:`JournalFault.message` and exits non-zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fbterm.engine.events import ActivityLog
from fbterm.engine.operator_state import OperatorStateKeeper
from fbterm.execution.brokers.base import Broker, BrokerEvent
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import OrderStatus, TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.strategies.executor import StrategyExecutor


def _drop(ev: BrokerEvent) -> None:
    """What the venue says after the failure cannot be journaled, so it is not acted on;
    the next start reconciles with the venue."""


class JournalFault:
    """Reacts to the journal's ``on_failure``. ``schedule`` runs a callable on the engine loop
    (thread-safe); ``stop`` ends the engine's main loop."""

    def __init__(
        self,
        journal: Journal,
        broker: Broker,
        oms: OrderManagement,
        risk: PortfolioLevelRisk,
        executor: StrategyExecutor,
        keeper: OperatorStateKeeper,
        activity: ActivityLog,
        *,
        schedule: Callable[[Callable[[], None]], None],
        stop: Callable[[], None],
    ) -> None:
        self.journal = journal
        self.broker = broker
        self.oms = oms
        self.risk = risk
        self.executor = executor
        self.keeper = keeper
        self.activity = activity
        self.schedule = schedule
        self.stop = stop
        self.why: str | None = None
        self.message: str | None = None  # the one line the process exits with

    def on_failure(self, why: str) -> None:
        """Inside the write that failed: nothing new may go out from here on."""
        if self.why is not None:
            return
        self.why = why
        halted = dataclasses.replace(self.risk.baselines(), state=TradingState.HALTED, reason=why)
        self.risk.restore(halted)
        self.executor.set_halted(True)
        self.schedule(self.shut_down)

    def shut_down(self) -> None:
        """On the engine loop, outside any transaction: cancel, record, say it, stop."""
        why = self.why or "journal write failed"
        self.broker.set_event_handler(_drop)
        orders = self.oms.orders
        try:
            # The venue's word on what works: the order book may be a step behind it (the
            # step that failed to commit had already sent orders).
            working = [b.client_order_id for b in self.broker.query_open_orders()]
            targets = [orders.get(cid) if cid else None for cid in working]
        except Exception:  # not known: ask the venue to cancel everything we think works
            targets = [
                o for o in self.oms.open.values() if o.status is not OrderStatus.PENDING_SUBMIT
            ]
        cancelled, refused = 0, []
        for o in targets:
            if o is None:
                refused.append("an order the venue has and the order book does not")
                continue
            try:
                self.broker.cancel_order(o)
                cancelled += 1
            except Exception as e:  # one refusal must not leave the rest working
                refused.append(f"{o.client_order_id}: {e}")
        recorded = self.journal.save_after_failure(self.keeper.current())
        msg = f"{why}: trading halted, {cancelled} orders cancelled at {self.broker.name}"
        if refused:
            msg += f" ({len(refused)} could not be: {refused[0]})"
        msg += "; the journal keeps everything committed before the failure; "
        msg += (
            "fix the disk and restart: the engine comes back HALTED"
            if recorded
            else "fix the disk and restart; the halt could not be recorded, so check before trading"
        )
        self.message = msg
        self.activity.fatal(msg, title="Journal write failed: trading halted", key="journal-failed")
        self.stop()
