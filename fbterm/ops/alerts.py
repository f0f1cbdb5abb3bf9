"""What an alert is: its severity, its kind, its text, and what ``send_alert`` decided about it.

Shared by the channels that deliver alerts, the outbox that keeps them and
:class:`~fbterm.ops.diagnostics.Diagnostics`, which decides whether one goes out at all.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class AlertKind(StrEnum):
    """The conditions the engine alerts on; each has a default severity in ALERT_SEVERITY."""

    HALT = "halt"
    MAX_DRAWDOWN = "max_drawdown"
    BROKER_DISCONNECT = "broker_disconnect"
    ORDER_REJECTED = "order_rejected"
    STRATEGY_ERROR = "strategy_error"
    UPDATE_FAILED = "update_failed"
    TEST = "test"
    OTHER = "other"


ALERT_SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.HALT: Severity.CRITICAL,
    AlertKind.MAX_DRAWDOWN: Severity.CRITICAL,
    AlertKind.BROKER_DISCONNECT: Severity.ERROR,
    AlertKind.ORDER_REJECTED: Severity.WARNING,
    AlertKind.STRATEGY_ERROR: Severity.ERROR,
    AlertKind.UPDATE_FAILED: Severity.ERROR,
    AlertKind.TEST: Severity.INFO,
    AlertKind.OTHER: Severity.WARNING,
}


@dataclass(frozen=True, slots=True)
class Alert:
    severity: Severity
    title: str
    body: str
    key: str
    kind: str = AlertKind.OTHER.value
    ts: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        return f"[fbterm {self.severity.value.upper()}] {self.title}"

    def text(self) -> str:
        when = dt.datetime.fromtimestamp(self.ts, dt.UTC).isoformat(timespec="seconds")
        return (
            f"{self.body}\n\n--\nseverity: {self.severity.value}\nkind: {self.kind}\n"
            f"time: {when}\nhost: {socket.gethostname()}\n"
        )

    def short(self, limit: int = 600) -> str:
        s = f"[{self.severity.value.upper()}] {self.title}: {self.body}"
        return s if len(s) <= limit else s[: limit - 1] + "…"


class AlertDecision(StrEnum):
    """What send_alert did with an alert (returned so callers and tests need not guess)."""

    QUEUED = "queued"
    LOGGED_ONLY = "logged_only"  # no channel enabled
    BELOW_MIN_SEVERITY = "below_min_severity"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    CLOSED = "closed"


__all__ = ["ALERT_SEVERITY", "Alert", "AlertDecision", "AlertKind", "Severity"]
