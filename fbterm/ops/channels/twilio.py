"""Alerts by SMS through Twilio's Messages API (``[alerts.sms] provider = "twilio"``)."""

from __future__ import annotations

import base64
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fbterm.ops.channels.base import DeliveryError, http_post

if TYPE_CHECKING:
    from fbterm.config import AlertsConfig, SMSAlertConfig
    from fbterm.ops.alerts import Alert


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
        http_post(url, data, headers, cfg.timeout, [token, auth], self.ssl_context)


def from_config(
    cfg: AlertsConfig, env: Mapping[str, str], ssl_context: ssl.SSLContext | None
) -> TwilioChannel | None:
    enabled = cfg.sms.enabled and cfg.sms.provider == "twilio"
    return TwilioChannel(cfg.sms, env, ssl_context) if enabled else None
