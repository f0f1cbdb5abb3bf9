"""Diagnostics: alerts (email, SMS/webhook) that never block the engine, and the activity log.

``Diagnostics.send_alert`` decides (severity floor, de-dup, rate limit) under a lock and hands
the alert to a worker thread, which writes it to the SQLite outbox (:mod:`fbterm.ops.outbox`)
*before* trying to deliver, so an alert that cannot be delivered (SMTP down, no network)
survives a restart and is retried with exponential backoff. ``log_activity`` appends to the
activity log (:mod:`fbterm.ops.activity`).
"""

from __future__ import annotations

import logging
import os
import queue
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.ops.activity import ActivityEntry, ActivityLog
from fbterm.ops.alerts import ALERT_SEVERITY, Alert, AlertDecision, AlertKind, Severity
from fbterm.ops.channels import Channel, DeliveryError, build_channels
from fbterm.ops.outbox import AlertOutbox
from fbterm.redact import redact_text

if TYPE_CHECKING:
    from fbterm.config import AlertsConfig, Config, LogConfig

log = logging.getLogger(__name__)


_STOP = object()


@dataclass(frozen=True, slots=True)
class _Flush:
    gen: int


MAX_BACKOFF = 3600.0


class Diagnostics:
    """Alerts (email, SMS/webhook) and the activity log.

    ``state_path`` is the SQLite outbox that makes undelivered alerts survive a restart.
    ``clock`` (monotonic seconds) drives rate limiting and de-dup and is injectable for tests;
    retry times are wall-clock because they are persisted across restarts.
    """

    def __init__(
        self,
        cfg: AlertsConfig,
        activity_log_path: Path | str,
        state_path: Path | str,
        *,
        log_config: LogConfig | None = None,
        memory_entries: int = 1000,
        env: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        channels: Sequence[Channel] | None = None,
        start: bool = True,
    ) -> None:
        self.cfg = cfg
        self.state_path = Path(state_path)
        self.activity = ActivityLog(
            activity_log_path,
            max_bytes=log_config.max_bytes if log_config else 10_000_000,
            backups=log_config.backups if log_config else 5,
            level=log_config.level if log_config else "info",
            memory=memory_entries,
        )
        env = os.environ if env is None else env
        if channels is None:
            channels = build_channels(cfg, env, ssl_context)
        self.channels: dict[str, Channel] = {c.name: c for c in channels}
        self._clock = clock
        self._lock = threading.Lock()
        self._sent_times: deque[float] = deque()
        self._last_by_key: dict[str, tuple[float, int]] = {}
        self._suppressed = 0
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._cond = threading.Condition()
        self._flush_gen = 0
        self._flushed_gen = 0
        self._pending = 0
        self._closed = False
        self._worker: threading.Thread | None = None
        if start:
            self.start()

    @classmethod
    def from_config(cls, config: Config, **kw: Any) -> Diagnostics:
        """Diagnostics for a full Config; the outbox sits next to the activity log."""
        state = config.activity_log_path.with_name("alerts-outbox.sqlite")
        return cls(config.alerts, config.activity_log_path, state, log_config=config.log, **kw)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._worker is None:
            ready = threading.Event()
            self._worker = threading.Thread(
                target=self._run, args=(ready,), name="fbterm-alerts", daemon=True
            )
            self._worker.start()
            ready.wait(10.0)

    def close(self, timeout: float = 5.0, *, flush: bool = True) -> bool:
        """Stop the worker (after one last delivery attempt if ``flush``); True if nothing is left."""
        if self._closed:
            return self.pending_count() == 0
        ok = self.flush(timeout) if flush and self._worker is not None else self._pending == 0
        self._closed = True
        if self._worker is not None:
            self._inbox.put(_STOP)
            self._worker.join(timeout)
        self.activity.close()
        return ok

    def __enter__(self) -> Diagnostics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ activity
    def log_activity(
        self, kind: str, message: str, *, level: str = "info", **fields: Any
    ) -> ActivityEntry | None:
        """Append one structured entry (JSON line) to the activity log; thread-safe."""
        return self.activity.log(kind, message, level=level, **fields)

    def recent_activity(
        self, n: int | None = None, *, level: str | None = None, kind: str | None = None
    ) -> list[ActivityEntry]:
        return self.activity.recent(n, level=level, kind=kind)

    def activity_since(self, seq: int) -> list[ActivityEntry]:
        return self.activity.since(seq)

    # ------------------------------------------------------------------ alerts
    def alert(
        self,
        kind: AlertKind,
        title: str,
        body: str = "",
        *,
        key: str | None = None,
        severity: Severity | None = None,
    ) -> AlertDecision:
        """send_alert with the kind's default severity; de-dup key defaults to kind + title."""
        sev = severity or ALERT_SEVERITY.get(kind, Severity.WARNING)
        return self.send_alert(sev, title, body, key=key or f"{kind.value}:{title}", kind=kind)

    def send_alert(
        self,
        severity: Severity | str,
        title: str,
        body: str,
        *,
        key: str | None = None,
        kind: AlertKind | str = AlertKind.OTHER,
    ) -> AlertDecision:
        """Queue an alert for delivery and return at once (delivery is on the worker thread).

        Dropped when below ``min_severity``, when the same ``key`` (default: the title) was sent
        within ``dedup_seconds`` at the same or higher severity, or when more than
        ``rate_limit_per_minute`` alerts went out in the last minute. CRITICAL alerts skip the
        rate limit (a burst of rejections must not hide a halt) but are still de-duplicated.
        """
        sev = Severity(severity)
        kind = str(getattr(kind, "value", kind))
        # An alert goes to chat rooms and phones and waits in the outbox file: no secrets in it.
        title, body = redact_text(title), redact_text(body)
        key = key or title
        if self._closed:
            return AlertDecision.CLOSED
        if sev.rank < Severity(self.cfg.min_severity).rank:
            self.log_activity(
                "alert",
                f"{title}",
                level="debug",
                severity=sev.value,
                decision="below_min_severity",
            )
            return AlertDecision.BELOW_MIN_SEVERITY
        now = self._clock()
        with self._lock:
            last = self._last_by_key.get(key)
            if last is not None and now - last[0] < self.cfg.dedup_seconds and sev.rank <= last[1]:
                self._suppressed += 1
                decision = AlertDecision.DUPLICATE
            else:
                while self._sent_times and now - self._sent_times[0] >= 60.0:
                    self._sent_times.popleft()
                if (
                    sev is not Severity.CRITICAL
                    and len(self._sent_times) >= self.cfg.rate_limit_per_minute
                ):
                    self._suppressed += 1
                    decision = AlertDecision.RATE_LIMITED
                else:
                    self._sent_times.append(now)
                    self._last_by_key[key] = (now, sev.rank)
                    suppressed, self._suppressed = self._suppressed, 0
                    decision = AlertDecision.QUEUED if self.channels else AlertDecision.LOGGED_ONLY
        if decision in (AlertDecision.DUPLICATE, AlertDecision.RATE_LIMITED):
            self.log_activity(
                "alert",
                f"suppressed ({decision.value}): {title}",
                level="info",
                severity=sev.value,
                key=key,
            )
            return decision
        if suppressed:
            body = f"{body}\n\n({suppressed} other alert(s) were suppressed by de-dup/rate limit.)"
        alert = Alert(sev, title, body, key, kind)
        level = "warning" if sev.rank <= Severity.WARNING.rank else "error"
        self.log_activity(
            "alert",
            f"{sev.value.upper()}: {title}",
            level=level,
            key=key,
            alert_kind=kind,
            channels=sorted(self.channels),
        )
        if decision is AlertDecision.QUEUED:
            with self._cond:
                self._pending += 1  # counted now so flush() sees it even before the worker does
            self._inbox.put(alert)
        return decision

    def deliver_now(self, severity: Severity | str, title: str, body: str) -> dict[str, str | None]:
        """Deliver synchronously to every destination, bypassing limits and the outbox.

        For ``fbterm alert-test``: returns {"channel destination": error or None}.
        """
        alert = Alert(Severity(severity), title, body, f"test:{title}", AlertKind.TEST.value)
        out: dict[str, str | None] = {}
        for ch in self.channels.values():
            for dest in ch.destinations():
                label = f"{ch.name} {redact_text(dest)}"
                try:
                    ch.deliver(alert, dest)
                    out[label] = None
                except DeliveryError as e:
                    out[label] = redact_text(str(e))
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Try every queued and pending alert now (ignoring backoff) and wait for the attempt.

        True when the outbox is empty afterwards. For tests and shutdown.
        """
        if self._worker is None or not self._worker.is_alive():
            return self.pending_count() == 0
        with self._cond:
            self._flush_gen += 1
            gen = self._flush_gen
        self._inbox.put(_Flush(gen))
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._flushed_gen < gen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._pending == 0

    def pending_count(self) -> int:
        """Alerts (per destination) not yet delivered, as recorded in the outbox."""
        if self._worker is not None and self._worker.is_alive():
            with self._cond:
                return self._pending
        box = AlertOutbox(self.state_path)
        try:
            return box.count()
        finally:
            box.close()

    # ------------------------------------------------------------------ worker
    def _run(self, ready: threading.Event) -> None:
        box = AlertOutbox(self.state_path)
        with self._cond:
            self._pending = box.count() + self._pending
        ready.set()
        try:
            while True:
                nxt = box.next_due()
                timeout = None if nxt is None else min(max(nxt - time.time(), 0.0), 1.0)
                items = []
                try:
                    items.append(self._inbox.get(timeout=timeout))
                    while True:
                        items.append(self._inbox.get_nowait())
                except queue.Empty:
                    pass
                stop = False
                flush_gen = 0
                for it in items:
                    if it is _STOP:
                        stop = True
                    elif isinstance(it, _Flush):
                        flush_gen = max(flush_gen, it.gen)
                    elif isinstance(it, Alert):
                        # The outbox is a file: it keeps a destination's redacted name, and
                        # the real one (its token included) is looked up again to deliver.
                        targets = [
                            (c.name, redact_text(d))
                            for c in self.channels.values()
                            for d in c.destinations()
                        ]
                        box.add(it, targets, time.time())
                        with self._cond:
                            self._pending += len(targets) - 1
                if not stop:
                    self._deliver(box, force=bool(flush_gen))
                with self._cond:
                    self._pending = box.count()
                    if flush_gen:
                        self._flushed_gen = max(self._flushed_gen, flush_gen)
                    self._cond.notify_all()
                if stop:
                    return
        except Exception:  # the worker must never die silently: say so where operators look
            log.exception("alert worker crashed")
            self.log_activity(
                "alert", "alert worker crashed; alerts stay in the outbox", level="error"
            )
        finally:
            box.close()

    def _deliver(self, box: AlertOutbox, *, force: bool) -> None:
        now = time.time()
        for item in box.items(None if force else now):
            ch = self.channels.get(item.channel)
            if ch is None:
                box.remove(item.id)
                self.log_activity(
                    "alert",
                    f"dropped {item.alert.title!r}: channel {item.channel} no longer enabled",
                    level="warning",
                )
                continue
            destination = _real_destination(ch, item.destination)
            if destination is None:
                box.remove(item.id)
                self.log_activity(
                    "alert",
                    f"dropped {item.alert.title!r}: {item.channel} destination "
                    f"{item.destination} is no longer configured",
                    level="warning",
                )
                continue
            try:
                ch.deliver(item.alert, destination)
            except DeliveryError as e:
                attempts = item.attempts + 1
                if e.permanent or attempts >= self.cfg.retry_max_attempts:
                    box.remove(item.id)
                    why = "permanent error" if e.permanent else f"{attempts} attempts"
                    self.log_activity(
                        "alert",
                        f"gave up on {item.alert.title!r} via {item.channel} ({why}): {e}",
                        level="error",
                        channel=item.channel,
                        destination=item.destination,
                    )
                else:
                    delay = min(self.cfg.retry_initial_delay * 2 ** (attempts - 1), MAX_BACKOFF)
                    box.reschedule(item.id, attempts, time.time() + delay, redact_text(str(e)))
                    self.log_activity(
                        "alert",
                        f"delivery via {item.channel} failed, retry in {delay:.0f}s: {e}",
                        level="warning",
                        channel=item.channel,
                        attempts=attempts,
                    )
                continue
            except Exception as e:  # a bug in a channel must not lose the alert or kill the worker
                box.reschedule(
                    item.id,
                    item.attempts + 1,
                    time.time() + self.cfg.retry_initial_delay,
                    redact_text(repr(e)),
                )
                log.exception("alert channel %s failed unexpectedly", item.channel)
                continue
            box.remove(item.id)
            self.log_activity(
                "alert",
                f"delivered {item.alert.title!r} via {item.channel}",
                channel=item.channel,
                attempts=item.attempts + 1,
            )


def _real_destination(channel: Channel, stored: str) -> str | None:
    """The configured destination an outbox row names by its redacted form (None: gone)."""
    for d in channel.destinations():
        if d == stored or redact_text(d) == stored:
            return d
    return None


__all__ = ["MAX_BACKOFF", "Diagnostics"]
