"""Secrets out of everything fbterm prints or stores: one redaction rule, used everywhere.

Webhook URLs carry their credential in the URL itself (Slack's ``/services/T../B../<secret>``,
Discord's ``/api/webhooks/<id>/<token>``, ``?token=...``, ``https://user:pass@host``), and an
``Authorization`` header or a ``password=...`` can end up in an error message. The activity
log, the alert outbox, ``check-config``, ``alert-test`` and the command line's error line all
pass their text through :func:`redact_text` (and structured fields through
:func:`redact_fields`) before it is written or printed. Standard library only, and imports
nothing of fbterm, so every layer may use it.

What stays visible is what an operator needs to recognise a destination: the scheme, the host
and the ordinary path words (``https://hooks.slack.com/services/***``).
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

MASK = "***"

# Field and parameter names whose values are secrets.
_SECRET_WORDS = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "signature",
    "credential",
    "private_key",
    "access_key",
)
# Field names that *name* where a secret lives (``password_env = "FBTERM_SMTP_PASSWORD"``):
# the name of an environment variable is not the secret, and hiding it hides the fix.
_NOT_SECRET_SUFFIXES = ("_env",)

# Path segments that are credentials, by host: everything after these path prefixes.
_SECRET_PATHS = {
    "hooks.slack.com": "/services/",
    "discord.com": "/api/webhooks/",
    "discordapp.com": "/api/webhooks/",
    "ptb.discord.com": "/api/webhooks/",
    "canary.discord.com": "/api/webhooks/",
}

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>`]+")
# ``Authorization: Bearer abc``, ``token=abc``, ``"password": "abc"``, ``Basic dXNlcjpw``.
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>\b(?:authorization|x-api-key|api[_-]?key|access[_-]?token|auth[_-]?token"
    r"|token|password|passwd|secret|client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<scheme>(?:bearer|basic|token)\s+)?(?P<value>[^\s\"',;&]+)"
)
_SCHEME_VALUE = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+(?P<value>[A-Za-z0-9._~+/\-]{8,}=*)")
# Words after which a secret may follow; text without any of them is left alone at once.
_TRIGGER = re.compile(r"(?i)authori|token|passw|secret|api|bearer|basic")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.~:+=]+")


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """Whether a field or parameter called ``name`` holds a secret (``smtp_password``: yes;
    ``password_env``, the name of the variable that holds it: no)."""
    k = name.lower()
    if k.endswith(_NOT_SECRET_SUFFIXES):
        return False
    if k in ("sig", "auth"):
        return True
    return any(w in k for w in _SECRET_WORDS if len(w) > 4)


def _looks_like_token(segment: str) -> bool:
    """A path segment that is a credential rather than a word: long, token characters only,
    letters and digits mixed (``B0123ABCD/xoxb8f...``), or very long whatever it holds."""
    if len(segment) < 16 or not _TOKEN_CHARS.fullmatch(segment):
        return False
    if len(segment) >= 32:
        return True
    has_digit = any(c.isdigit() for c in segment)
    has_alpha = any(c.isalpha() for c in segment)
    return has_digit and has_alpha


def redact_url(url: str) -> str:
    """``url`` with its credentials masked: userinfo, secret query values, token path segments.

    Not a URL (or unparsable): returned as :func:`redact_text` would leave it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    host = (parts.hostname or "").lower()
    path = parts.path
    prefix = _SECRET_PATHS.get(host)
    if prefix is not None and path.startswith(prefix) and len(path) > len(prefix):
        path = prefix + MASK
    else:
        path = "/".join(MASK if _looks_like_token(seg) else seg for seg in path.split("/"))
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='')}="
            + (
                MASK
                if is_secret_name(k) or _looks_like_token(v)
                else urllib.parse.quote(v, safe="")
            )
            for k, v in pairs
        )
    fragment = MASK if parts.fragment and _looks_like_token(parts.fragment) else parts.fragment
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL's credentials and every ``key: secret`` masked.

    Cheap on text with nothing to hide (the activity log calls it for every line).
    """
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    if _TRIGGER.search(text) is None:
        return text
    text = _KEY_VALUE.sub(
        lambda m: (
            m.group("key") + (m.group("scheme") or "") + MASK
            if m.group("value") != MASK
            else m.group(0)
        ),
        text,
    )
    return _SCHEME_VALUE.sub(_mask_scheme_value, text)


def _mask_scheme_value(m: re.Match[str]) -> str:
    # "Basic strategies" is prose; "Basic dXNlcjpwYXNz" and "Bearer 8f3a..." are credentials.
    v = m.group("value")
    mixed = any(c.isdigit() for c in v) and any(c.isalpha() for c in v)
    return f"{m.group('scheme')} {MASK}" if len(v) >= 16 or mixed else m.group(0)


def redact_value(value: Any) -> Any:
    """A field's value with secrets masked: strings as text, containers element by element."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_fields(value)
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields with secret-named values replaced by ``***`` and every other value redacted."""
    return {
        k: (MASK if is_secret_name(k) and v not in (None, "") else redact_value(v))
        for k, v in fields.items()
    }


__all__ = [
    "MASK",
    "is_secret_name",
    "redact_fields",
    "redact_text",
    "redact_url",
    "redact_value",
]
