"""What every alert channel is and shares: the Channel protocol, DeliveryError, and the helpers
for channels that speak HTTP.

A channel delivers one :class:`~fbterm.ops.alerts.Alert` to one destination and raises
:class:`DeliveryError` when it cannot; retries, backoff and de-dup are the outbox's and
Diagnostics' business, not the channel's.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from fbterm.redact import redact_text

if TYPE_CHECKING:
    from fbterm.config import AlertsConfig
    from fbterm.ops.alerts import Alert


class DeliveryError(Exception):
    """A delivery failed; ``permanent`` means retrying cannot help (e.g. a refused recipient)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    name: str

    def destinations(self) -> list[str]: ...

    def deliver(self, alert: Alert, destination: str) -> None: ...


def scrub(text: str, secrets: Sequence[str | None]) -> str:
    """``text`` with every known secret replaced by ``***``, then redacted as everything fbterm
    writes is (tokens in URLs, auth headers): error messages reach the activity log."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return redact_text(text)


# Builds a channel from the [alerts] config when that config enables it, else returns None.
ChannelFactory = Callable[
    ["AlertsConfig", Mapping[str, str], ssl.SSLContext | None], "Channel | None"
]


def http_post(
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    timeout: float,
    secrets: Sequence[str | None],
    ssl_context: ssl.SSLContext | None,
) -> None:
    """POST ``data``; raise DeliveryError (permanent for a 4xx that retrying cannot fix)."""
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
            scrub(f"HTTP {e.code} {e.reason}: {detail}", secrets), permanent=permanent
        ) from None
    except (urllib.error.URLError, OSError) as e:
        raise DeliveryError(scrub(f"{type(e).__name__}: {e}", secrets)) from None
