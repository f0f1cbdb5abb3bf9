"""Alerts as a JSON POST to a URL (``[alerts.sms] provider = "webhook"``)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fbterm.ops.channels.base import http_post

if TYPE_CHECKING:
    from fbterm.config import AlertsConfig, SMSAlertConfig
    from fbterm.ops.alerts import Alert


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
        http_post(
            destination,
            json.dumps(payload).encode(),
            headers,
            self.cfg.timeout,
            [token],
            self.ssl_context,
        )


def from_config(
    cfg: AlertsConfig, env: Mapping[str, str], ssl_context: ssl.SSLContext | None
) -> WebhookChannel | None:
    # The [alerts.sms] section carries the webhook too: SMS gateways and chat bridges are
    # configured alike, and the config allows only "twilio" or "webhook" as provider.
    enabled = cfg.sms.enabled and cfg.sms.provider != "twilio"
    return WebhookChannel(cfg.sms, env, ssl_context) if enabled else None
