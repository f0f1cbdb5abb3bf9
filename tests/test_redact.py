"""Secrets stay out of everything fbterm prints or stores: the activity log, the alert outbox,
check-config, alert-test and error lines all go through fbterm.redact. Delivery still uses the
real URL (a loopback HTTP server sees the secret path; the files never do)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from fbterm.cli import main
from fbterm.config import config_from_dict
from fbterm.ops.activity import ActivityLog
from fbterm.ops.diagnostics import Diagnostics
from fbterm.redact import redact_fields, redact_text, redact_url

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("tmp_cwd", "no_proxy")]

SECRET = "xq7TNr2WnV9cBz4LdK1mPa8Y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"https://hooks.slack.com/services/T0123ABCD/B0456EFGH/{SECRET}",
            "https://hooks.slack.com/services/***",
        ),
        (
            f"https://discord.com/api/webhooks/123456789012345678/{SECRET}-{SECRET}",
            "https://discord.com/api/webhooks/***",
        ),
        (
            "https://example.com/hook?token=abc&channel=ops",
            "https://example.com/hook?token=***&channel=ops",
        ),
        ("https://example.com/hook?sig=abc", "https://example.com/hook?sig=***"),
        ("https://bot:hunter2@example.com/x", "https://***@example.com/x"),
        (f"https://example.com/alerts/{SECRET}/send", "https://example.com/alerts/***/send"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***"),
        ("password=hunter2 token: xyz", "password=*** token: ***"),
        ("Basic dXNlcjpwYXNzd29yZA==", "Basic ***"),
        # what must not change: ordinary messages, env var names, prose
        (
            "order FB-000001 BUY 10 AAPL MKT: Submitted",
            "order FB-000001 BUY 10 AAPL MKT: Submitted",
        ),
        (
            "environment variable FBTERM_SMS_TOKEN is not set",
            "environment variable FBTERM_SMS_TOKEN is not set",
        ),
        ("basic strategies keep a token bucket", "basic strategies keep a token bucket"),
        ("https://api.example.com/v1/alerts", "https://api.example.com/v1/alerts"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_fields_by_name_and_value() -> None:
    got = redact_fields(
        {
            "smtp_password": "hunter2",
            "password_env": "FBTERM_SMTP_PASSWORD",
            "destination": f"https://example.com/h?token={SECRET}",
            "key": "alert:halt",
            "nested": {"api_key": "k", "list": [f"https://u:p@h.example/{SECRET}"]},
        }
    )
    assert got == {
        "smtp_password": "***",
        "password_env": "FBTERM_SMTP_PASSWORD",
        "destination": "https://example.com/h?token=***",
        "key": "alert:halt",
        "nested": {"api_key": "***", "list": ["https://***@h.example/***"]},
    }
    assert redact_url("not a url") == "not a url"


def test_the_activity_log_never_holds_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "activity.jsonl"
    log = ActivityLog(path)
    entry = log.log(
        "alert",
        f"delivery to https://hooks.slack.com/services/T1/B2/{SECRET} failed",
        level="warning",
        url=f"https://example.com/hook?token={SECRET}",
        smtp_password=SECRET,
        token_env="FBTERM_SMS_TOKEN",
    )
    log.close()
    text = path.read_text()
    assert SECRET not in text
    assert SECRET not in repr(entry) and SECRET not in repr(log.recent())
    assert "https://hooks.slack.com/services/***" in text and "FBTERM_SMS_TOKEN" in text


class Hook(BaseHTTPRequestHandler):
    paths: ClassVar[list[str]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[type[Hook], str]]:
    handler = type("H", (Hook,), {"paths": [], "status": 200})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/services/T0123ABCD/B0456EFGH/{SECRET}"
    yield handler, url
    srv.shutdown()
    srv.server_close()


def test_the_outbox_keeps_a_redacted_destination_and_delivers_to_the_real_one(
    tmp_path: Path, hook: tuple[type[Hook], str]
) -> None:
    handler, url = hook
    cfg = config_from_dict(
        {"alerts": {"sms": {"enabled": True, "provider": "webhook", "url": url + "?token=abc"}}}
    ).alerts
    outbox = tmp_path / "outbox.sqlite"
    diag = Diagnostics(cfg, tmp_path / "activity.jsonl", outbox, env={})
    handler.status = 503  # down: the alert waits in the outbox
    diag.send_alert("error", "halted", "daily loss limit")
    assert not diag.flush(20)
    with sqlite3.connect(outbox) as conn:
        rows = conn.execute("SELECT destination, last_error FROM outbox").fetchall()
    conn.close()
    [(dest, last_error)] = rows
    assert "503" in last_error
    assert (
        SECRET not in dest and "token=***" in dest and "/services/T0123ABCD/B0456EFGH/***" in dest
    )
    handler.status = 200  # back: delivered to the real URL, secret included
    assert diag.flush(20)
    diag.close()
    assert handler.paths[-1] == f"/services/T0123ABCD/B0456EFGH/{SECRET}?token=abc"
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
        assert b"token=abc" not in f.read_bytes(), f


def test_check_config_and_alert_test_print_no_secret(
    tmp_path: Path, hook: tuple[type[Hook], str], capsys: pytest.CaptureFixture[str]
) -> None:
    _handler, url = hook
    conf = tmp_path / "c.toml"
    conf.write_text(f'[alerts.sms]\nenabled = true\nprovider = "webhook"\nurl = "{url}"\n')
    assert main(["check-config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and 'url = "http://127.0.0.1:' in out and "/B0456EFGH/***" in out
    assert main(["alert-test", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and out.startswith("ok      webhook http://127.0.0.1:")


def test_an_error_line_that_quotes_a_url_hides_its_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'[alerts.sms]\nprovider = "https://hooks.slack.com/services/T1/B2/{SECRET}"\n')
    assert main(["check-config", str(conf)]) == 2
    err = capsys.readouterr().err
    assert SECRET not in err and "alerts.sms.provider: must be one of" in err
