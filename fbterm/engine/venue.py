"""What the engine does when the venue link changes state.

Cut off (IB 1100, a dropped socket): the operator hears at once (a critical alert), and
trading goes REDUCING or HALTED (``broker.ib.on_connection_lost``). Back (1101/1102, a
reconnect): the engine re-syncs from the venue's own answers before any order goes out, then
says how long it was down and, if ``broker.ib.resume_on_restore`` and nobody changed the
trading state meanwhile, resumes. A venue that refuses orders (IB 321, read-only API) is an
alert too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from fbterm.config import Config
from fbterm.engine.events import ActivityLog, VenueLink
from fbterm.execution.brokers.base import ConnectionEvent, ConnectionState
from fbterm.model import TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.snapshot import ConnectionChange


class ConnectionWatch:
    """Connection events -> the link the snapshot shows, alerts, the trading state, re-syncs.

    ``resync(trigger)`` asks the reconciler to run (remote venues); ``stopping`` says whether
    the engine is shutting down (a disconnect then is ours, not news). Until :meth:`arm` (the
    engine's own first reconciliation is done) a SYNCING state asks for nothing.
    """

    def __init__(
        self,
        cfg: Config,
        link: VenueLink,
        risk: PortfolioLevelRisk,
        activity: ActivityLog,
        clock: Callable[[], float],
        *,
        stopping: Callable[[], bool],
        resync: Callable[[str], None] | None = None,
    ) -> None:
        self.config = cfg
        self.link = link
        self.risk = risk
        self.activity = activity
        self.clock = clock
        self.stopping = stopping
        self.resync = resync
        self.down_since: float | None = None
        self.down_count = 0
        self._held: tuple[TradingState, str] | None = None  # the state we set, and why
        self._armed = False

    def arm(self) -> None:
        self._armed = True

    def on_oms_event(self, kind: str, obj: Any) -> None:
        """The order manager's listener; only connection events concern us."""
        if kind == "connection":
            self.on_event(cast(ConnectionEvent, obj))

    def on_event(self, c: ConnectionEvent) -> None:
        prev = self.link.state
        now = self.clock()
        if c.state is not prev:
            self.link.since = now
        self.link.state, self.link.message = c.state, c.message
        self.link.history.append(ConnectionChange(now, c.state.value, c.message))
        stopping = self.stopping()
        quiet = c.state.is_up or c.state is ConnectionState.SYNCING or stopping
        self.activity.log(
            "info" if quiet else "error", "broker", f"connection {c.state.value}: {c.message}"
        )
        if stopping:
            return
        if c.state.is_down:
            if self.down_since is None:
                self._lost(c, now)
        elif c.state is ConnectionState.SYNCING:
            if self._armed and self.resync is not None:
                self.resync(f"IB {c.code}" if c.code else "reconnect")
        elif c.state.is_up:
            if self.down_since is not None:
                self._restored(now)
            if c.state is ConnectionState.READ_ONLY and prev is ConnectionState.CONNECTED:
                self.activity.alert(
                    "error", "Venue refuses orders (read-only)", c.message, key="read-only"
                )

    def _lost(self, c: ConnectionEvent, now: float) -> None:
        self.down_since = now
        self.down_count += 1
        action = self.config.broker.ib.on_connection_lost
        why = f"venue connection {c.state.value}" + (f" (IB {c.code})" if c.code else "")
        risk = self.risk
        changed = risk.halt_trading(why) if action == "halt" else risk.reduce_only(why)
        self._held = (risk.state, risk.reason) if changed else None
        did = (
            f"trading is now {risk.state.value}" if changed else f"trading stays {risk.state.value}"
        )
        self.activity.alert(
            "critical",
            "Broker connection lost",
            f"{c.message}; {did}; no order can reach the venue until it is back and re-synced",
            key=f"connection-lost:{self.down_count}",
        )

    def _restored(self, now: float) -> None:
        assert self.down_since is not None
        down = now - self.down_since
        self.down_since = None
        risk = self.risk
        resumed = False
        if (
            self.config.broker.ib.resume_on_restore
            and self._held is not None
            and (risk.state, risk.reason) == self._held
        ):
            resumed = risk.resume()
        self._held = None
        then = (
            "trading resumed (ACTIVE)"
            if resumed
            else f"trading stays {risk.state.value}" + (f" ({risk.reason})" if risk.reason else "")
        )
        self.activity.log("warning", "broker", f"connection restored after {down:.0f} s; {then}")
        self.activity.alert(
            "warning",
            "Broker connection restored",
            f"back after {down:.0f} s and re-synced with the venue; {then}",
            key=f"connection-restored:{self.down_count}",
        )
