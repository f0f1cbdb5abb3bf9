"""Fixtures shared by the whole suite.

- ``fbterm_home`` (autouse): every test gets its own FBTERM_HOME, so nothing a test runs (the
  engine's journal, activity log, alert outbox, control socket, data dir) touches the real
  home or another test's files. Subprocesses inherit it through the environment.
- ``tmp_cwd``: run from tmp_path, for commands that would otherwise pick up a ``./config.toml``
  from wherever pytest was started.
- ``no_proxy``: loopback HTTP/SMTP in the alert tests must not be sent to a proxy the machine
  happens to configure.
- ``fake_clock``: time that moves only when the test moves it (or something sleeps on it), so
  rate limits, staleness and pacing are tested without waiting.
- ``make_config``: a Config from TOML-shaped sections, validated exactly as a file is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from fbterm.config import Config

T0 = 1_700_000_000.0  # 2023-11-14 22:13 UTC: a real epoch, so day boundaries and zones work

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def fbterm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FBTERM_HOME for this test: ``tmp_path / "home"`` (created on first use by fbterm)."""
    home = tmp_path / "home"
    monkeypatch.setenv("FBTERM_HOME", str(home))
    return home


@pytest.fixture
def tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from tmp_path: no stray ./config.toml, and relative outputs land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables: requests to 127.0.0.1 go straight to the test's own server."""
    for v in PROXY_VARS:
        monkeypatch.delenv(v, raising=False)


class FakeClock:
    """A clock for the ``clock=`` parameters: ``clock()`` reads ``t``; the test moves ``t``.

    ``sleep`` is the matching async sleep: it returns at once and moves the clock instead, and
    records what was asked (``sleeps``) so a test can check how long something would have waited.
    """

    def __init__(self, t: float = T0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    """A FakeClock at T0."""
    return FakeClock()


class ConfigBuilder(Protocol):
    def __call__(
        self, data: Mapping[str, Any] | None = None, /, *, source: str = ..., **sections: Any
    ) -> Config: ...


@pytest.fixture
def make_config() -> ConfigBuilder:
    """Build a Config the way a config.toml would: ``make_config(market={...}, risk={...})``.

    Nothing is added behind the test's back (some tests compare configs section by section):
    what is not given takes the built-in default, and the paths default into ``fbterm_home``.
    ``data`` (a whole TOML-shaped document, e.g. ``to_dict(default_config())`` or a test file's
    base) is applied first, then ``sections``; a table given for a table updates it key by key
    (like editing that table in the file), anything else replaces. Invalid input raises
    ConfigError, as a bad file would.
    """
    from fbterm.config import config_from_dict

    def build(
        data: Mapping[str, Any] | None = None, /, *, source: str = "<dict>", **sections: Any
    ) -> Config:
        doc: dict[str, Any] = {}
        for layer in (data or {}, sections):
            for key, value in layer.items():
                if isinstance(value, Mapping) and isinstance(doc.get(key), Mapping):
                    doc[key] = {**doc[key], **value}
                else:
                    doc[key] = value
        return config_from_dict(doc, source)

    return build
