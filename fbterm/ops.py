"""Maintenance and monitoring: alerts, the activity log, and live strategy updates.

``Diagnostics.send_alert`` never blocks the engine: it decides (severity floor, de-dup, rate
limit) under a lock and hands the alert to a worker thread, which writes it to a small SQLite
outbox *before* trying to deliver, so an alert that cannot be delivered (SMTP down, no network)
survives a restart and is retried with exponential backoff. ``log_activity`` appends one JSON
line per event to a rotating file and keeps the latest entries in memory for the UI's log pane.

``UpdatesManagement.apply_update`` swaps a strategy's parameters or code while the engine runs,
against the :class:`UpdatableEngine` protocol; it validates before touching anything and rolls
back on any failure.

Only the standard library is used (smtplib, urllib, sqlite3, logging.handlers) so that this
module stays cheap to import from the CLI.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import logging.handlers
import os
import queue
import smtplib
import socket
import sqlite3
import ssl
import sys
import threading
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fbterm.config import (
        AlertsConfig,
        Config,
        EmailAlertConfig,
        LogConfig,
        SMSAlertConfig,
        StrategyConfig,
    )

log = logging.getLogger(__name__)

# ================================================================================ severity


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


# ============================================================================ activity log

LEVELS = ("debug", "info", "warning", "error")
_LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}
_SECRET_WORDS = ("password", "passwd", "token", "secret", "api_key", "apikey")


def _level_rank(level: str) -> int:
    try:
        return _LEVEL_RANK[level.lower()]
    except KeyError:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}") from None


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    ts: float
    level: str
    kind: str
    message: str
    fields: dict[str, Any]
    seq: int = 0  # position in this process's in-memory log; 0 when read from a file

    def to_json(self) -> str:
        when = dt.datetime.fromtimestamp(self.ts, dt.UTC).isoformat(timespec="milliseconds")
        return json.dumps(
            {
                "ts": when,
                "level": self.level,
                "kind": self.kind,
                "message": self.message,
                "fields": self.fields,
            },
            default=str,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, line: str) -> ActivityEntry:
        d = json.loads(line)
        ts = d["ts"]
        ts = dt.datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else float(ts)
        return cls(
            ts,
            d.get("level", "info"),
            d.get("kind", ""),
            d.get("message", ""),
            d.get("fields") or {},
        )

    def format(self) -> str:
        when = dt.datetime.fromtimestamp(self.ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{when} {self.level.upper():<7} {self.kind:<16} {self.message}" + (
            f"  {extra}" if extra else ""
        )


@functools.lru_cache(maxsize=1024)
def _is_secret(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in _SECRET_WORDS)


def _redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    # A secret handed to the log by mistake must not reach a file an operator may share.
    return {k: ("***" if _is_secret(k) else v) for k, v in fields.items()}


class _RotatingWriter:
    """Appends lines to a file and rotates it by size (``name.1`` ... ``name.N``).

    Written directly rather than through logging handlers: the engine logs every order event
    and fill, and a LogRecord plus a stat per line was a third of its fill path. Each line
    is flushed so ``fbterm log --follow`` sees it at once. ``backups=0`` truncates instead
    (the stdlib handler would never roll over and the file would grow without bound).
    """

    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._f: Any = None
        self._size = 0

    def write(self, line: str) -> None:
        data = line + "\n"
        n = len(data.encode("utf-8")) if not data.isascii() else len(data)
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._size = self._f.tell()
        if self._size and self._size + n > self.max_bytes:
            self._rotate()
        self._f.write(data)
        self._f.flush()
        self._size += n

    def _rotate(self) -> None:
        self._f.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class ActivityLog:
    """JSON-lines activity log: a rotating file plus the latest ``memory`` entries in memory.

    Thread-safe: the engine, the alert worker and the UI may all log at once.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 10_000_000,
        backups: int = 5,
        level: str = "info",
        memory: int = 1000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.min_rank = _level_rank(level)
        self._writer = _RotatingWriter(self.path, max_bytes, backups)
        self._lock = threading.Lock()
        self._recent: deque[ActivityEntry] = deque(maxlen=memory)
        self._seq = 0
        self.write_errors = 0

    def log(
        self, kind: str, message: str, *, level: str = "info", **fields: Any
    ) -> ActivityEntry | None:
        if _level_rank(level) < self.min_rank:
            return None
        with self._lock:
            self._seq += 1
            entry = ActivityEntry(
                time.time(), level.lower(), kind, message, _redact(fields), self._seq
            )
            self._recent.append(entry)
            try:
                self._writer.write(entry.to_json())
            except OSError:
                self.write_errors += (
                    1  # a full disk must not stop trading; the entry stays in memory
                )
        return entry

    def recent(
        self, n: int | None = None, *, level: str | None = None, kind: str | None = None
    ) -> list[ActivityEntry]:
        with self._lock:
            items = list(self._recent)
        items = _filter(items, level, [kind] if kind else None)
        return items[-n:] if n else items

    def since(self, seq: int) -> list[ActivityEntry]:
        """Entries newer than ``seq``: lets a UI pane append only what is new each refresh."""
        with self._lock:
            return [e for e in self._recent if e.seq > seq]

    def close(self) -> None:
        with self._lock:
            self._writer.close()


def _filter(
    entries: list[ActivityEntry], level: str | None, kinds: Sequence[str] | None
) -> list[ActivityEntry]:
    if level:
        r = _level_rank(level)
        entries = [e for e in entries if _LEVEL_RANK.get(e.level, 1) >= r]
    if kinds:
        ks = set(kinds)
        entries = [e for e in entries if e.kind in ks]
    return entries


def activity_log_files(path: Path | str) -> list[Path]:
    """The log and its rotated backups, oldest first (``path.N`` ... ``path.1``, ``path``)."""
    p = Path(path)
    backups = []
    for b in p.parent.glob(p.name + ".*"):
        suffix = b.name[len(p.name) + 1 :]
        if suffix.isdigit():
            backups.append((int(suffix), b))
    return [b for _, b in sorted(backups, reverse=True)] + ([p] if p.exists() else [])


def _parse_lines(lines: Iterator[str]) -> Iterator[ActivityEntry]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            yield ActivityEntry.from_json(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash, or a foreign line: skip, don't die


def _reverse_lines(path: Path, block: int = 65536) -> Iterator[str]:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        rest = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                yield line.decode("utf-8", "replace")
        if rest:
            yield rest.decode("utf-8", "replace")


def read_activity_log(
    path: Path | str,
    *,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    tail: int | None = None,
) -> list[ActivityEntry]:
    """Entries from the log and its backups, oldest first; ``tail`` keeps the last N matches
    and reads backwards, so ``fbterm log`` stays fast on a large log."""
    files = activity_log_files(path)
    if tail is None:
        out: list[ActivityEntry] = []
        for f in files:
            with f.open(encoding="utf-8", errors="replace") as fh:
                out.extend(_filter(list(_parse_lines(iter(fh))), level, kinds))
        return out
    if tail <= 0:
        return []
    found: list[ActivityEntry] = []
    for f in reversed(files):
        for e in _parse_lines(_reverse_lines(f)):
            if _filter([e], level, kinds):
                found.append(e)
                if len(found) >= tail:
                    return found[::-1]
    return found[::-1]


def follow_activity_log(
    path: Path | str,
    *,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    poll: float = 0.25,
    stop: threading.Event | None = None,
    from_start: bool = False,
) -> Iterator[ActivityEntry]:
    """Yield entries as they are appended, across rotations (``tail -F`` semantics)."""
    p = Path(path)
    stop = stop or threading.Event()
    fh = None
    ino = None
    buf = ""
    first = True
    while not stop.is_set():
        if fh is None:
            try:
                fh = p.open(encoding="utf-8", errors="replace")
                ino = os.fstat(fh.fileno()).st_ino
                if first and not from_start:
                    fh.seek(0, os.SEEK_END)
                buf = ""
            except FileNotFoundError:
                fh = None
            first = False
        if fh is not None:
            chunk = fh.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                yield from _filter(list(_parse_lines(iter(lines))), level, kinds)
                continue
            try:
                st = p.stat()
                rotated = st.st_ino != ino or st.st_size < fh.tell()
            except FileNotFoundError:
                rotated = True
            if rotated:
                # The old file is complete (rotation renames it); read the new one from its start.
                fh.close()
                fh = None
                continue
        stop.wait(poll)
    if fh is not None:
        fh.close()


# =============================================================================== channels


class DeliveryError(Exception):
    """A delivery failed; ``permanent`` means retrying cannot help (e.g. a refused recipient)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    name: str

    def destinations(self) -> list[str]: ...

    def deliver(self, alert: Alert, destination: str) -> None: ...


def _scrub(text: str, secrets: Sequence[str | None]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class EmailChannel:
    """SMTP with STARTTLS, implicit TLS or none; the password comes from an env var."""

    name = "email"

    def __init__(
        self,
        cfg: EmailAlertConfig,
        env: Mapping[str, str],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.ssl_context = ssl_context

    def destinations(self) -> list[str]:
        # One message to all recipients: SMTP accepts or refuses it as a whole for our purposes.
        return [",".join(self.cfg.recipients)] if self.cfg.recipients else []

    def deliver(self, alert: Alert, destination: str) -> None:
        cfg = self.cfg
        password = self.env.get(cfg.password_env) if cfg.username else None
        if cfg.username and password is None:
            raise DeliveryError(f"email: environment variable {cfg.password_env} is not set")
        msg = EmailMessage()
        msg["Subject"] = alert.subject
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(destination.split(","))
        msg["Date"] = formatdate(alert.ts)
        msg["Message-ID"] = make_msgid(domain="fbterm.local")
        msg["X-Fbterm-Severity"] = alert.severity.value
        msg.set_content(alert.text())
        ctx = self.ssl_context or ssl.create_default_context()
        try:
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ctx
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            try:
                if cfg.security == "starttls":
                    smtp.starttls(context=ctx)
                if cfg.username:
                    smtp.login(cfg.username, password or "")
                smtp.send_message(msg, to_addrs=destination.split(","))
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as e:
            raise DeliveryError(_scrub(f"email refused: {e}", [password]), permanent=True) from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(_scrub(f"email: {type(e).__name__}: {e}", [password])) from None


def _http_post(
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    timeout: float,
    secrets: Sequence[str | None],
    ssl_context: ssl.SSLContext | None,
) -> None:
    req = urllib.request.Request(url, data=data, headers=dict(headers), method="POST")
    # A fresh opener per call (not urlopen's process-wide one) so proxy settings are read from
    # the environment when we send, not frozen at the first urlopen anywhere in the process.
    handlers: list[urllib.request.BaseHandler] = []
    if ssl_context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as e:
        # 4xx means the request itself is wrong (bad number, bad credentials): retrying the
        # same request cannot succeed, except for timeouts and throttling.
        permanent = 400 <= e.code < 500 and e.code not in (408, 425, 429)
        detail = e.read(300).decode("utf-8", "replace") if e.fp else ""
        raise DeliveryError(
            _scrub(f"HTTP {e.code} {e.reason}: {detail}", secrets), permanent=permanent
        ) from None
    except (urllib.error.URLError, OSError) as e:
        raise DeliveryError(_scrub(f"{type(e).__name__}: {e}", secrets)) from None


class TwilioChannel:
    """SMS through Twilio's Messages API (or anything that speaks its shape)."""

    name = "sms"
    DEFAULT_URL = "https://api.twilio.com"

    def __init__(
        self, cfg: SMSAlertConfig, env: Mapping[str, str], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.ssl_context = ssl_context

    def destinations(self) -> list[str]:
        # One row per number so a failure for one recipient never re-texts the others.
        return list(self.cfg.recipients)

    def deliver(self, alert: Alert, destination: str) -> None:
        cfg = self.cfg
        token = self.env.get(cfg.token_env)
        if token is None:
            raise DeliveryError(f"sms: environment variable {cfg.token_env} is not set")
        base = (cfg.url or self.DEFAULT_URL).rstrip("/")
        sid = urllib.parse.quote(cfg.account_sid, safe="")
        url = f"{base}/2010-04-01/Accounts/{sid}/Messages.json"
        data = urllib.parse.urlencode(
            {"To": destination, "From": cfg.sender, "Body": alert.short()}
        ).encode()
        auth = base64.b64encode(f"{cfg.account_sid}:{token}".encode()).decode()
        headers = {
            "Authorization": f"Basic {auth}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        _http_post(url, data, headers, cfg.timeout, [token, auth], self.ssl_context)


class WebhookChannel:
    """A JSON POST to a URL (chat bridges, paging services); bearer token from an env var."""

    name = "webhook"

    def __init__(
        self, cfg: SMSAlertConfig, env: Mapping[str, str], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.ssl_context = ssl_context

    def destinations(self) -> list[str]:
        return [self.cfg.url] if self.cfg.url else []

    def deliver(self, alert: Alert, destination: str) -> None:
        token = self.env.get(self.cfg.token_env)
        payload = {
            "source": "fbterm",
            "severity": alert.severity.value,
            "kind": alert.kind,
            "title": alert.title,
            "body": alert.body,
            "key": alert.key,
            "ts": alert.ts,
            "text": alert.short(),
            "recipients": list(self.cfg.recipients),
        }
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        _http_post(
            destination,
            json.dumps(payload).encode(),
            headers,
            self.cfg.timeout,
            [token],
            self.ssl_context,
        )


# ================================================================================= outbox

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    key TEXT NOT NULL,
    created_ts REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ts REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    channel: str
    destination: str
    alert: Alert
    attempts: int
    next_ts: float
    last_error: str


class AlertOutbox:
    """The retry queue: one row per (alert, channel, destination) until delivered or given up."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=5.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_OUTBOX_SCHEMA)

    def add(self, alert: Alert, targets: Sequence[tuple[str, str]], now: float) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT INTO outbox (channel, destination, severity, kind, title, body, key, created_ts, next_ts)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        c,
                        d,
                        alert.severity.value,
                        alert.kind,
                        alert.title,
                        alert.body,
                        alert.key,
                        alert.ts,
                        now,
                    )
                    for c, d in targets
                ],
            )

    def items(self, due_before: float | None = None) -> list[OutboxItem]:
        q = "SELECT id, channel, destination, severity, kind, title, body, key, created_ts, attempts, next_ts, last_error FROM outbox"
        args: tuple[Any, ...] = ()
        if due_before is not None:
            q += " WHERE next_ts <= ?"
            args = (due_before,)
        rows = self.conn.execute(q + " ORDER BY id", args).fetchall()
        return [
            OutboxItem(
                r[0],
                r[1],
                r[2],
                Alert(Severity(r[3]), r[5], r[6], r[7], r[4], r[8]),
                r[9],
                r[10],
                r[11],
            )
            for r in rows
        ]

    def remove(self, item_id: int) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def reschedule(self, item_id: int, attempts: int, next_ts: float, error: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE outbox SET attempts = ?, next_ts = ?, last_error = ? WHERE id = ?",
                (attempts, next_ts, error, item_id),
            )

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def next_due(self) -> float | None:
        v = self.conn.execute("SELECT MIN(next_ts) FROM outbox").fetchone()[0]
        return None if v is None else float(v)

    def close(self) -> None:
        self.conn.close()


# ============================================================================ diagnostics

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
            built: list[Channel] = []
            if cfg.email.enabled:
                built.append(EmailChannel(cfg.email, env, ssl_context))
            if cfg.sms.enabled:
                cls = TwilioChannel if cfg.sms.provider == "twilio" else WebhookChannel
                built.append(cls(cfg.sms, env, ssl_context))
            channels = built
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
                label = f"{ch.name} {dest}"
                try:
                    ch.deliver(alert, dest)
                    out[label] = None
                except DeliveryError as e:
                    out[label] = str(e)
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
                        targets = [
                            (c.name, d) for c in self.channels.values() for d in c.destinations()
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
            try:
                ch.deliver(item.alert, item.destination)
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
                    box.reschedule(item.id, attempts, time.time() + delay, str(e))
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
                    item.id, item.attempts + 1, time.time() + self.cfg.retry_initial_delay, repr(e)
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


# ========================================================================= live updates


@runtime_checkable
class UpdatableEngine(Protocol):
    """What :class:`UpdatesManagement` needs from the engine. All calls come from one thread,
    the engine thread (the control socket handler must marshal the request there)."""

    def strategy_names(self) -> list[str]:
        """Names of the strategies currently loaded."""
        ...

    def strategy_config(self, name: str) -> StrategyConfig:
        """The config the running strategy was built from; KeyError if unknown."""
        ...

    def strategy(self, name: str) -> Any:
        """The live strategy object; KeyError if unknown."""
        ...

    def build_strategy(self, config: StrategyConfig) -> Any:
        """A new, not yet running strategy from a config (resolving ``config.cls`` through
        ``importlib.import_module``, so a freshly loaded module is picked up). Raise on bad params."""
        ...

    def validate_strategy(self, name: str, strategy: Any) -> None:
        """Dry-run a candidate (e.g. ``analyze`` on the strategy's recent bars) without sending
        orders; raise to reject it."""
        ...

    def pause_strategy(self, name: str) -> None:
        """Stop feeding the strategy and taking its signals; positions and orders stay."""
        ...

    def resume_strategy(self, name: str) -> None: ...

    def replace_strategy(self, name: str, new_strategy: Any, config: StrategyConfig) -> Any:
        """Swap the object under ``name`` (positions, open orders and capital stay keyed by the
        name) and record ``config`` as its config; return the old object."""
        ...


class UpdateError(Exception):
    """An update was refused (invalid) before anything changed."""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    ok: bool
    kind: str  # "params", "code" or "config"
    strategies: tuple[str, ...]
    message: str
    rolled_back: bool = False
    not_applied: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_fresh_module(name: str) -> types.ModuleType:
    """Import module ``name`` anew from its source file without touching ``sys.modules``.

    ``importlib.reload`` re-executes into the *same* module dict, so a broken new version would
    half-overwrite the running one and the old strategy's functions would see the new globals.
    A separate module object keeps the old version intact until we decide to switch. Source is
    compiled directly, not via __pycache__, whose mtime check can miss an edit made within the
    same second.
    """
    parent, _, _leaf = name.rpartition(".")
    path = None
    if parent:
        pkg = importlib.import_module(parent)
        path = getattr(pkg, "__path__", None)
    importlib.invalidate_caches()
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise UpdateError(f"cannot find source for module {name!r}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    module = importlib.util.module_from_spec(spec)
    try:
        code = compile(source, spec.origin, "exec")
        exec(code, module.__dict__)
    except Exception as e:
        raise UpdateError(f"module {name} failed to load: {type(e).__name__}: {e}") from e
    return module


class UpdatesManagement:
    """Hot updates of strategy parameters, strategy code, or strategy config sections."""

    def __init__(self, diagnostics: Diagnostics | None = None) -> None:
        self.diagnostics = diagnostics

    def apply_update(
        self,
        engine: UpdatableEngine,
        *,
        strategy: str | None = None,
        params: Mapping[str, Any] | None = None,
        code: str | None = None,
        config: Config | str | Path | None = None,
    ) -> UpdateResult:
        """Validate, pause, swap, resume; roll back and alert on failure.

        Either ``strategy`` with ``params`` (merged into its current params) and/or ``code``
        (``package.module:Class``, re-loaded from disk), or ``config`` (a Config or a path):
        every strategy whose section differs from the running one is swapped, all or nothing.
        Changes outside ``[[strategies]]`` are reported in ``not_applied`` (they need a restart).
        Call on the engine thread.
        """
        if config is not None and (strategy or params or code):
            return self._refused(
                "config", (), "give either a config or a strategy update, not both"
            )
        try:
            if config is not None:
                kind = "config"
                plan, not_applied, reload_specs = self._plan_config(engine, config)
            elif strategy:
                kind = "code" if code else "params"
                plan, not_applied, reload_specs = self._plan_strategy(
                    engine, strategy, params or {}, code
                )
            else:
                return self._refused("params", (), "nothing to update: name a strategy or a config")
        except UpdateError as e:
            return self._refused(
                "config" if config is not None else ("code" if code else "params"),
                (strategy,) if strategy else (),
                str(e),
            )
        names = tuple(n for n, _ in plan)
        if not plan:
            msg = "no strategy changes"
            if not_applied:
                msg += "; needs a restart: " + ", ".join(not_applied)
            self._log(msg, update=kind)
            return UpdateResult(True, kind, (), msg, not_applied=tuple(not_applied))

        saved_modules = {}
        try:
            # --- validate: nothing the engine runs changes in this phase ---
            fresh = {}
            for spec in reload_specs:
                mod_name, _, cls_name = spec.partition(":")
                if mod_name not in fresh:
                    fresh[mod_name] = load_fresh_module(mod_name)
                cls = getattr(fresh[mod_name], cls_name, None)
                if not isinstance(cls, type):
                    raise UpdateError(f"{spec}: no class {cls_name!r} in {mod_name}")
                for meth in ("analyze", "execute"):
                    if not callable(getattr(cls, meth, None)):
                        raise UpdateError(f"{spec}: class has no {meth}() method")
            for mod_name, mod in fresh.items():
                saved_modules[mod_name] = sys.modules.get(mod_name)
                sys.modules[mod_name] = mod
            candidates = {}
            for name, new_cfg in plan:
                try:
                    obj = engine.build_strategy(new_cfg)
                    engine.validate_strategy(name, obj)
                except Exception as e:
                    raise UpdateError(f"{name}: {type(e).__name__}: {e}") from e
                candidates[name] = obj
        except UpdateError as e:
            self._restore_modules(saved_modules)
            return self._refused(kind, names, f"invalid update: {e}")

        # --- swap ---
        old_cfgs = {n: engine.strategy_config(n) for n in names}
        swapped: list[tuple[str, Any]] = []
        current = ""
        stage = ""
        try:
            for name, new_cfg in plan:
                current, stage = name, "pause"
                engine.pause_strategy(name)
                stage = "replace"
                old = engine.replace_strategy(name, candidates[name], new_cfg)
                swapped.append((name, old))
                stage = "resume"
                engine.resume_strategy(name)
                stage = ""
        except Exception as e:
            failure = f"{current}: {stage} failed: {type(e).__name__}: {e}"
            problems = self._roll_back(engine, swapped, old_cfgs, current, stage)
            self._restore_modules(saved_modules)
            msg = f"update failed and was rolled back ({failure})"
            if problems:
                msg += "; rollback problems: " + "; ".join(problems)
            self._log(msg, level="error", update=kind, strategies=list(names))
            self._alert(
                Severity.CRITICAL if problems else Severity.ERROR,
                f"update of {', '.join(names)} failed",
                msg,
            )
            return UpdateResult(
                False, kind, names, msg, rolled_back=True, not_applied=tuple(not_applied)
            )
        msg = f"updated {', '.join(names)}"
        if not_applied:
            msg += "; needs a restart: " + ", ".join(not_applied)
        self._log(msg, update=kind, strategies=list(names))
        return UpdateResult(True, kind, names, msg, not_applied=tuple(not_applied))

    def handle_request(self, engine: UpdatableEngine, request: Mapping[str, Any]) -> dict[str, Any]:
        """The control-socket ``update`` command: {strategy, params, code} or {config}."""
        result = self.apply_update(
            engine,
            strategy=request.get("strategy"),
            params=request.get("params") or None,
            code=request.get("code"),
            config=request.get("config"),
        )
        return result.to_dict()

    # ------------------------------------------------------------------ planning
    def _plan_strategy(
        self, engine: UpdatableEngine, name: str, params: Mapping[str, Any], code: str | None
    ) -> tuple[list[tuple[str, StrategyConfig]], list[str], list[str]]:
        try:
            old = engine.strategy_config(name)
        except KeyError:
            raise UpdateError(
                f"no strategy named {name!r} (running: {', '.join(engine.strategy_names())})"
            ) from None
        if code is not None and ":" not in code:
            raise UpdateError(f"--code must be 'package.module:ClassName', got {code!r}")
        if not params and code is None:
            raise UpdateError("nothing to update: give parameters and/or code")
        new = dataclasses.replace(old, params={**old.params, **params}, cls=code or old.cls)
        return [(name, new)], [], [code] if code else []

    def _plan_config(
        self, engine: UpdatableEngine, config: Config | str | Path
    ) -> tuple[list[tuple[str, StrategyConfig]], list[str], list[str]]:
        from fbterm.config import Config, ConfigError, load_config, to_dict

        if not isinstance(config, Config):
            try:
                config = load_config(config)
            except ConfigError as e:
                raise UpdateError(str(e)) from None
        running = set(engine.strategy_names())
        wanted = {s.name: s for s in config.strategies}
        plan: list[tuple[str, StrategyConfig]] = []
        reload_specs: list[str] = []
        not_applied: list[str] = [f"strategy {n} added" for n in sorted(set(wanted) - running)]
        not_applied += [f"strategy {n} removed" for n in sorted(running - set(wanted))]
        for name in sorted(running & set(wanted)):
            old, new = engine.strategy_config(name), wanted[name]
            if old != new:
                plan.append((name, new))
                if new.cls != old.cls and ":" in new.cls:
                    reload_specs.append(new.cls)
        current = getattr(engine, "config", None)
        if isinstance(current, Config):
            a, b = to_dict(current), to_dict(config)
            not_applied += [
                f"[{k}]" for k in sorted(a) if k != "strategies" and a.get(k) != b.get(k)
            ]
        return plan, not_applied, reload_specs

    # ------------------------------------------------------------------ rollback
    def _roll_back(
        self,
        engine: UpdatableEngine,
        swapped: list[tuple[str, Any]],
        old_cfgs: Mapping[str, StrategyConfig],
        current: str,
        stage: str,
    ) -> list[str]:
        problems: list[str] = []
        done = {n for n, _ in swapped}
        if current and current not in done and stage in ("pause", "replace"):
            # Paused (or half-paused) but never swapped: resuming restores the old state.
            try:
                engine.resume_strategy(current)
            except Exception as e:
                problems.append(f"{current}: resume failed: {e}; it stays paused")
        for name, old in reversed(swapped):
            try:
                try:
                    engine.pause_strategy(name)
                except Exception as e:  # already paused after a failed resume is fine
                    log.debug("pause during rollback of %s: %s", name, e)
                engine.replace_strategy(name, old, old_cfgs[name])
                engine.resume_strategy(name)
            except Exception as e:
                problems.append(
                    f"{name}: rollback failed: {type(e).__name__}: {e}; it stays paused"
                )
        return problems

    @staticmethod
    def _restore_modules(saved: Mapping[str, types.ModuleType | None]) -> None:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod

    # ------------------------------------------------------------------ reporting
    def _refused(self, kind: str, names: tuple[str, ...], msg: str) -> UpdateResult:
        self._log(msg, level="warning", update=kind, strategies=list(names))
        self._alert(Severity.WARNING, f"update of {', '.join(names) or 'config'} refused", msg)
        return UpdateResult(False, kind, names, msg)

    def _log(self, message: str, *, level: str = "info", **fields: Any) -> None:
        getattr(log, "warning" if level == "warning" else "error" if level == "error" else "info")(
            message
        )
        if self.diagnostics is not None:
            self.diagnostics.log_activity("update", message, level=level, **fields)

    def _alert(self, severity: Severity, title: str, body: str) -> None:
        if self.diagnostics is not None:
            self.diagnostics.alert(
                AlertKind.UPDATE_FAILED, title, body, severity=severity, key=f"update:{title}"
            )


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
