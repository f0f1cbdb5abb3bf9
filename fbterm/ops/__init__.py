"""Maintenance and monitoring: alerts, the activity log, and live strategy updates.

One job per module:

* :mod:`~fbterm.ops.activity`: the JSON-lines activity log (write, read back, follow);
* :mod:`~fbterm.ops.alerts`: what an alert is (severity, kind, text, decision);
* :mod:`~fbterm.ops.channels`: how alerts are delivered (email, SMS, webhook) and the registry
  a new channel is added to;
* :mod:`~fbterm.ops.outbox`: the SQLite retry queue that survives restarts;
* :mod:`~fbterm.ops.diagnostics`: :class:`Diagnostics`, ``send_alert`` and ``log_activity``;
* :mod:`~fbterm.ops.updates`: :class:`UpdatesManagement`, hot updates of running strategies.

Only the standard library is used (smtplib, urllib, sqlite3) so that the CLI stays cheap to
start; the names below load on first use for the same reason (``fbterm log`` needs only the
activity log, not smtplib).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "fbterm.ops.activity": (
        "ActivityEntry", "ActivityLog", "activity_log_files", "follow_activity_log",
        "read_activity_log",
    ),
    "fbterm.ops.alerts": ("ALERT_SEVERITY", "Alert", "AlertDecision", "AlertKind", "Severity"),
    "fbterm.ops.channels": ("DeliveryError", "EmailChannel", "TwilioChannel", "WebhookChannel"),
    "fbterm.ops.outbox": ("AlertOutbox",),
    "fbterm.ops.diagnostics": ("Diagnostics",),
    "fbterm.ops.updates": (
        "UpdatableEngine", "UpdateError", "UpdateResult", "UpdatesManagement", "load_fresh_module",
    ),
}  # fmt: skip
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}

__all__ = [
    "ALERT_SEVERITY",
    "ActivityEntry",
    "ActivityLog",
    "Alert",
    "AlertDecision",
    "AlertKind",
    "AlertOutbox",
    "DeliveryError",
    "Diagnostics",
    "EmailChannel",
    "Severity",
    "TwilioChannel",
    "UpdatableEngine",
    "UpdateError",
    "UpdateResult",
    "UpdatesManagement",
    "WebhookChannel",
    "activity_log_files",
    "follow_activity_log",
    "load_fresh_module",
    "read_activity_log",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'fbterm.ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from fbterm.ops.activity import (
        ActivityEntry,
        ActivityLog,
        activity_log_files,
        follow_activity_log,
        read_activity_log,
    )
    from fbterm.ops.alerts import ALERT_SEVERITY, Alert, AlertDecision, AlertKind, Severity
    from fbterm.ops.channels import DeliveryError, EmailChannel, TwilioChannel, WebhookChannel
    from fbterm.ops.diagnostics import Diagnostics
    from fbterm.ops.outbox import AlertOutbox
    from fbterm.ops.updates import (
        UpdatableEngine,
        UpdateError,
        UpdateResult,
        UpdatesManagement,
        load_fresh_module,
    )
