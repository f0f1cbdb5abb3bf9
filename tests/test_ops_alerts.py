"""Alerts end to end: a real SMTP server (aiosmtpd) and a real HTTP endpoint, both on loopback."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from fbterm.config import config_from_dict
from fbterm.ops.activity import read_activity_log
from fbterm.ops.alerts import Alert, AlertDecision, AlertKind, Severity
from fbterm.ops.diagnostics import Diagnostics

# Loopback requests must not be sent to a proxy.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_proxy")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alerts_cfg(**over):
    base = {
        "min_severity": "warning",
        "rate_limit_per_minute": 10,
        "dedup_seconds": 300.0,
        "retry_max_attempts": 5,
        "retry_initial_delay": 30.0,  # long: only flush() retries inside these tests
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return config_from_dict({"alerts": base}).alerts


def email_cfg(port, **over):
    e = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "fbterm@test.local",
        "recipients": ["ops@test.local", "risk@test.local"],
        "timeout": 5.0,
    }
    e.update(over)
    return alerts_cfg(email=e)


class Inbox:
    """aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self):
        return [
            email.message_from_bytes(e.content, policy=email.policy.default) for e in self.envelopes
        ]


def smtp_server(inbox, port, **kw) -> Controller:
    c = Controller(inbox, hostname="127.0.0.1", port=port, **kw)
    c.start()
    return c


def make_diag(tmp_path, cfg, **kw) -> Diagnostics:
    return Diagnostics(cfg, tmp_path / "activity.jsonl", tmp_path / "outbox.sqlite", **kw)


# ------------------------------------------------------------------ email


def test_alert_reaches_loopback_smtp_with_subject_and_body(tmp_path):
    inbox, port = Inbox(), free_port()
    server = smtp_server(inbox, port)
    diag = make_diag(tmp_path, email_cfg(port))
    try:
        d = diag.alert(AlertKind.HALT, "Trading halted", "max drawdown 10.5% breached (limit 10%)")
        assert d is AlertDecision.QUEUED
        assert diag.flush(20)
    finally:
        diag.close()
        server.stop()
    [msg] = inbox.messages()
    assert msg["Subject"] == "[fbterm CRITICAL] Trading halted"
    assert msg["From"] == "fbterm@test.local"
    assert sorted(inbox.envelopes[0].rcpt_tos) == ["ops@test.local", "risk@test.local"]
    body = msg.get_content()
    assert "max drawdown 10.5% breached (limit 10%)" in body
    assert "severity: critical" in body and "kind: halt" in body
    assert diag.pending_count() == 0


class Authenticator:
    def __init__(self, user, password):
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user,
            self.password,
        )
        return AuthResult(success=ok)


def test_smtp_auth_password_from_env_is_never_logged(tmp_path):
    inbox, port = Inbox(), free_port()
    server = smtp_server(
        inbox, port, authenticator=Authenticator("alerts", "s3cret-pw"), auth_require_tls=False
    )
    # A refused login makes smtplib fall through its mechanisms until the server gives up on
    # it; a short timeout keeps that quick.
    cfg = email_cfg(port, username="alerts", password_env="TEST_SMTP_PW", timeout=2.0)
    try:
        good = make_diag(tmp_path / "good", cfg, env={"TEST_SMTP_PW": "s3cret-pw"})
        good.send_alert(Severity.ERROR, "Broker disconnected", "IB gateway went away")
        assert good.flush(20)
        good.close()
        assert len(inbox.envelopes) == 1

        bad = make_diag(tmp_path / "bad", cfg, env={"TEST_SMTP_PW": "wrong-pw"})
        bad.send_alert(Severity.ERROR, "Broker disconnected", "IB gateway went away")
        assert not bad.flush(20)  # refused: stays queued for a retry
        assert bad.pending_count() == 1
        bad.close(flush=False)
        missing = make_diag(tmp_path / "missing", cfg, env={})
        missing.send_alert(Severity.ERROR, "x", "y")
        assert not missing.flush(20)
        missing.close(flush=False)
    finally:
        server.stop()
    assert len(inbox.envelopes) == 1
    for sub in ("good", "bad", "missing"):
        text = (tmp_path / sub / "activity.jsonl").read_text()
        assert "s3cret-pw" not in text and "wrong-pw" not in text
    failures = [
        e for e in read_activity_log(tmp_path / "bad" / "activity.jsonl") if "failed" in e.message
    ]
    assert failures and failures[0].level == "warning" and failures[0].fields["channel"] == "email"
    assert any(
        "TEST_SMTP_PW is not set" in e.message
        for e in read_activity_log(tmp_path / "missing" / "activity.jsonl")
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_smtp_over_tls_with_auth(tmp_path, tls_files, security):
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))  # trust only our test CA
    inbox, port = Inbox(), free_port()
    if security == "starttls":
        kw = {"tls_context": server_ctx, "require_starttls": True}
    else:
        # aiosmtpd cannot tell that an implicit-TLS session is encrypted, so it would hide AUTH.
        kw = {"ssl_context": server_ctx, "auth_require_tls": False}
    server = smtp_server(inbox, port, authenticator=Authenticator("u", "pw"), **kw)
    diag = make_diag(
        tmp_path,
        email_cfg(port, security=security, username="u"),
        env={"FBTERM_SMTP_PASSWORD": "pw"},
        ssl_context=client_ctx,
    )
    try:
        diag.send_alert(Severity.CRITICAL, "Max drawdown breached", f"over {security}")
        assert diag.flush(20)
    finally:
        diag.close()
        server.stop()
    [msg] = inbox.messages()
    assert msg["Subject"] == "[fbterm CRITICAL] Max drawdown breached"
    assert f"over {security}" in msg.get_content()


def test_retry_after_smtp_server_comes_back_and_after_restart(tmp_path):
    port = free_port()
    cfg = email_cfg(port)
    diag = make_diag(tmp_path, cfg)
    diag.alert(
        AlertKind.STRATEGY_ERROR, "Strategy sma_fast crashed", "ZeroDivisionError in analyze"
    )
    assert not diag.flush(20)  # nobody listening
    assert diag.pending_count() == 1
    inbox = Inbox()
    server = smtp_server(inbox, port)
    try:
        assert diag.flush(20)
        diag.close()
        [msg] = inbox.messages()
        assert msg["Subject"] == "[fbterm ERROR] Strategy sma_fast crashed"
        log = read_activity_log(tmp_path / "activity.jsonl", kinds=["alert"])
        assert any("retry in" in e.message for e in log)
        assert any(e.message.startswith("delivered") and e.fields["attempts"] == 2 for e in log)

        # An undelivered alert survives a restart of fbterm: new process, same outbox file.
        server.stop()
        first = make_diag(tmp_path, cfg)
        first.alert(AlertKind.BROKER_DISCONNECT, "IB disconnected", "no heartbeat for 30s")
        assert not first.flush(20)
        first.close(flush=False)
        server = smtp_server(inbox, port)
        second = make_diag(tmp_path, cfg)
        assert second.pending_count() == 1
        assert second.flush(20)
        second.close()
    finally:
        server.stop()
    assert [m["Subject"] for m in inbox.messages()][-1] == "[fbterm ERROR] IB disconnected"
    assert len(inbox.envelopes) == 2


def test_gives_up_after_max_attempts(tmp_path):
    cfg = alerts_cfg(
        retry_max_attempts=2,
        email={
            "enabled": True,
            "host": "127.0.0.1",
            "port": free_port(),
            "security": "none",
            "recipients": ["a@b"],
            "timeout": 2.0,
        },
    )
    diag = make_diag(tmp_path, cfg)
    diag.send_alert("error", "t", "b")
    assert not diag.flush(10)
    assert diag.flush(10)  # second failure is the last attempt: dropped, and said so
    diag.close()
    assert any(
        "gave up" in e.message and e.level == "error"
        for e in read_activity_log(tmp_path / "activity.jsonl")
    )


# ------------------------------------------------------------------ limits (recording channel)


class RecordingChannel:
    """A real Channel implementation that keeps alerts in memory instead of sending them."""

    name = "record"

    def __init__(self):
        self.sent: list[Alert] = []

    def destinations(self):
        return ["mem"]

    def deliver(self, alert, destination):
        self.sent.append(alert)


def test_rate_limit_per_minute_and_critical_bypass(tmp_path, fake_clock):
    clock, ch = fake_clock, RecordingChannel()
    diag = make_diag(tmp_path, alerts_cfg(rate_limit_per_minute=3), channels=[ch], clock=clock)
    decisions = [
        diag.send_alert("warning", f"rejected #{i}", "risk: max order value") for i in range(5)
    ]
    assert decisions == [AlertDecision.QUEUED] * 3 + [AlertDecision.RATE_LIMITED] * 2
    assert (
        diag.alert(AlertKind.HALT, "halted", "drawdown") is AlertDecision.QUEUED
    )  # critical skips the limit
    clock.t += 61
    assert diag.send_alert("warning", "rejected #5", "again") is AlertDecision.QUEUED
    assert diag.flush(10)
    diag.close()
    assert [a.title for a in ch.sent] == [
        "rejected #0",
        "rejected #1",
        "rejected #2",
        "halted",
        "rejected #5",
    ]
    assert "2 other alert(s) were suppressed" in ch.sent[3].body


def test_dedup_by_key_within_window_unless_escalated(tmp_path, fake_clock):
    clock, ch = fake_clock, RecordingChannel()
    diag = make_diag(tmp_path, alerts_cfg(dedup_seconds=300), channels=[ch], clock=clock)
    assert diag.send_alert("error", "feed stale", "AAPL", key="stale:AAPL") is AlertDecision.QUEUED
    clock.t += 10
    assert (
        diag.send_alert("error", "feed stale", "AAPL again", key="stale:AAPL")
        is AlertDecision.DUPLICATE
    )
    assert (
        diag.send_alert("warning", "feed stale", "AAPL", key="stale:AAPL")
        is AlertDecision.DUPLICATE
    )
    assert diag.send_alert("error", "feed stale", "MSFT", key="stale:MSFT") is AlertDecision.QUEUED
    assert (
        diag.send_alert("critical", "feed stale", "AAPL worse", key="stale:AAPL")
        is AlertDecision.QUEUED
    )
    clock.t += 301
    assert (
        diag.send_alert("critical", "feed stale", "AAPL still", key="stale:AAPL")
        is AlertDecision.QUEUED
    )
    assert diag.send_alert("info", "fyi", "below the floor") is AlertDecision.BELOW_MIN_SEVERITY
    assert diag.flush(10)
    diag.close()
    assert [a.body.split("\n")[0] for a in ch.sent] == ["AAPL", "MSFT", "AAPL worse", "AAPL still"]


def test_send_alert_does_not_wait_for_delivery(tmp_path):
    class SlowChannel(RecordingChannel):
        def __init__(self):
            super().__init__()
            self.release = threading.Event()

        def deliver(self, alert, destination):
            assert self.release.wait(20)
            super().deliver(alert, destination)

    ch = SlowChannel()
    diag = make_diag(tmp_path, alerts_cfg(), channels=[ch])
    assert diag.send_alert("error", "slow", "x") is AlertDecision.QUEUED
    assert (
        diag.send_alert("error", "slow 2", "x") is AlertDecision.QUEUED
    )  # returned while delivery blocks
    assert ch.sent == []
    ch.release.set()
    assert diag.flush(20)
    diag.close()
    assert [a.title for a in ch.sent] == ["slow", "slow 2"]


# ------------------------------------------------------------------ SMS / webhook over loopback HTTP


class Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list] = []
    status = 201

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        type(self).requests.append((self.path, dict(self.headers), self.rfile.read(n)))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"sid": "SM1"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def http_endpoint():
    handler = type("H", (Recorder,), {"requests": [], "status": 201})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_twilio_sms_shape(tmp_path, http_endpoint):
    handler, url = http_endpoint
    cfg = alerts_cfg(
        sms={
            "enabled": True,
            "provider": "twilio",
            "url": url,
            "account_sid": "AC123",
            "token_env": "TEST_TW_TOKEN",
            "sender": "+15550000",
            "recipients": ["+15551111", "+15552222"],
        }
    )
    diag = make_diag(tmp_path, cfg, env={"TEST_TW_TOKEN": "tok-xyz"})
    diag.alert(AlertKind.ORDER_REJECTED, "Order rejected", "o-17 BUY 100 AAPL: max order value")
    assert diag.flush(20)
    diag.close()
    assert len(handler.requests) == 2
    for (path, headers, body), to in zip(handler.requests, ["+15551111", "+15552222"], strict=True):
        assert path == "/2010-04-01/Accounts/AC123/Messages.json"
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok-xyz").decode()
        form = urllib.parse.parse_qs(body.decode())
        assert form["To"] == [to] and form["From"] == ["+15550000"]
        assert form["Body"] == ["[WARNING] Order rejected: o-17 BUY 100 AAPL: max order value"]
    assert "tok-xyz" not in (tmp_path / "activity.jsonl").read_text()


def test_webhook_json_and_error_handling(tmp_path, http_endpoint):
    handler, url = http_endpoint
    cfg = alerts_cfg(
        sms={"enabled": True, "provider": "webhook", "url": url + "/hook", "token_env": "TEST_HOOK"}
    )
    diag = make_diag(tmp_path, cfg, env={"TEST_HOOK": "bearer-1"})
    diag.send_alert("critical", "Halted", "daily loss limit", key="halt")
    assert diag.flush(20)
    path, headers, body = handler.requests[0]
    payload = json.loads(body)
    assert path == "/hook" and headers["Authorization"] == "Bearer bearer-1"
    assert (payload["severity"], payload["title"], payload["body"], payload["key"]) == (
        "critical",
        "Halted",
        "daily loss limit",
        "halt",
    )

    handler.status = 503  # server trouble: keep it for a retry
    diag.send_alert("error", "retry me", "x")
    assert not diag.flush(20) and diag.pending_count() == 1
    handler.status = 200
    assert diag.flush(20)

    handler.status = 400  # the request itself is wrong: retrying cannot help
    diag.send_alert("error", "bad request", "x")
    assert diag.flush(20) and diag.pending_count() == 0
    diag.close()
    assert [json.loads(b)["title"] for _, _, b in handler.requests] == [
        "Halted",
        "retry me",
        "retry me",
        "bad request",
    ]
    assert any(
        "gave up" in e.message and "HTTP 400" in e.message
        for e in read_activity_log(tmp_path / "activity.jsonl")
    )


# ------------------------------------------------------------------ fbterm alert-test / from_config


@pytest.mark.usefixtures("tmp_cwd")
def test_fbterm_alert_test_delivers_now_and_reports(tmp_path, fbterm_home, capsys):
    from fbterm.cli import main

    inbox, port = Inbox(), free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[alerts.email]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'recipients = ["ops@test.local"]\ntimeout = 5.0\n'
    )
    server = smtp_server(inbox, port)
    try:
        assert main(["--config", str(cfg), "alert-test", "--message", "hello from the test"]) == 0
    finally:
        server.stop()
    assert capsys.readouterr().out.strip() == "ok      email ops@test.local"
    [msg] = inbox.messages()
    assert (
        msg["Subject"] == "[fbterm INFO] test alert" and "hello from the test" in msg.get_content()
    )
    # Server gone: the failure is reported per destination, exit 1, nothing left to retry later.
    assert main(["alert-test", "--config", str(cfg)]) == 1
    assert capsys.readouterr().out.startswith("FAILED  email ops@test.local: email:")
    assert not (fbterm_home / "alerts-outbox.sqlite").exists()


@pytest.mark.usefixtures("tmp_cwd")
def test_fbterm_alert_test_without_channels(capsys):
    from fbterm.cli import main

    assert main(["alert-test"]) == 2
    assert "no alert channel is enabled" in capsys.readouterr().err


def test_from_config_puts_log_and_outbox_in_fbterm_home(fbterm_home, make_config):
    cfg = make_config()
    diag = Diagnostics.from_config(cfg)
    try:
        diag.log_activity("command", "started")
        assert diag.send_alert("error", "x", "y") is AlertDecision.LOGGED_ONLY  # no channel enabled
    finally:
        diag.close()
    assert (fbterm_home / "activity.jsonl").exists()
    assert (fbterm_home / "alerts-outbox.sqlite").exists()
    assert [e.message for e in read_activity_log(fbterm_home / "activity.jsonl")] == [
        "started",
        "ERROR: x",
    ]


def test_a_registered_channel_is_built_and_used(tmp_path, monkeypatch):
    """A new channel is a module with a from_config plus one REGISTRY line: nothing else."""
    from fbterm.ops import channels

    delivered: list[tuple[str, str]] = []

    class Pager:
        name = "pager"

        def destinations(self) -> list[str]:
            return ["on-call"]

        def deliver(self, alert: Alert, destination: str) -> None:
            delivered.append((alert.title, destination))

    monkeypatch.setitem(channels.REGISTRY, "pager", lambda cfg, env, ssl_context: Pager())
    assert [c.name for c in channels.build_channels(alerts_cfg(), {})] == ["pager"]
    diag = Diagnostics(alerts_cfg(), tmp_path / "activity.jsonl", tmp_path / "outbox.sqlite")
    try:
        assert list(diag.channels) == ["pager"]
        assert diag.send_alert("error", "disk full", "97%") is AlertDecision.QUEUED
        assert diag.flush()
    finally:
        diag.close()
    assert delivered == [("disk full", "on-call")]
