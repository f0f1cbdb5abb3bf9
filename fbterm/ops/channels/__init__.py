"""Alert channels and their registry.

Adding a channel is one new module here (the class, with ``name``, ``destinations()`` and
``deliver()``, plus a ``from_config`` that returns it when the ``[alerts]`` config enables it)
and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fbterm.ops.channels import smtp, twilio, webhook
from fbterm.ops.channels.base import Channel, ChannelFactory, DeliveryError
from fbterm.ops.channels.smtp import EmailChannel
from fbterm.ops.channels.twilio import TwilioChannel
from fbterm.ops.channels.webhook import WebhookChannel

if TYPE_CHECKING:
    from fbterm.config import AlertsConfig

# Build order is delivery order: Diagnostics tries channels in this order.
REGISTRY: dict[str, ChannelFactory] = {
    "email": smtp.from_config,
    "twilio": twilio.from_config,
    "webhook": webhook.from_config,
}


def build_channels(
    cfg: AlertsConfig, env: Mapping[str, str], ssl_context: ssl.SSLContext | None = None
) -> list[Channel]:
    """Every registered channel that ``cfg`` enables, in registry order."""
    return [ch for make in REGISTRY.values() if (ch := make(cfg, env, ssl_context)) is not None]


__all__ = [
    "REGISTRY",
    "Channel",
    "ChannelFactory",
    "DeliveryError",
    "EmailChannel",
    "TwilioChannel",
    "WebhookChannel",
    "build_channels",
]
