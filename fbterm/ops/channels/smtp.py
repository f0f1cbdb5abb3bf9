"""Alerts by email: SMTP with STARTTLS, implicit TLS or none."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from fbterm.ops.channels.base import DeliveryError, scrub

if TYPE_CHECKING:
    from fbterm.config import AlertsConfig, EmailAlertConfig
    from fbterm.ops.alerts import Alert


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
            raise DeliveryError(scrub(f"email refused: {e}", [password]), permanent=True) from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(scrub(f"email: {type(e).__name__}: {e}", [password])) from None


def from_config(
    cfg: AlertsConfig, env: Mapping[str, str], ssl_context: ssl.SSLContext | None
) -> EmailChannel | None:
    return EmailChannel(cfg.email, env, ssl_context) if cfg.email.enabled else None
