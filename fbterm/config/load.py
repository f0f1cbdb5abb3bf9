"""Loading a config: the file (read, decoded, parsed as TOML), the built-in defaults with the
demo strategies, and overrides from the command line, each validated by :mod:`.parse`."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from fbterm.config.parse import config_from_dict, to_dict
from fbterm.config.sections import Config, ConfigError


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; None gives the built-in defaults (with demo strategies)."""
    if path is None:
        return default_config()
    p = Path(path)
    name = str(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name}: not valid TOML: {e}") from None
    return config_from_dict(data, name)


# The demo. Bars are 5 market seconds (market.bar_seconds) and the simulated market runs 20x
# (4 bars a second), so windows are counted in hundreds of bars: sma_fast crosses a 5-minute
# over a 15-minute average, meanrev_spy fades 3-sigma moves of a 20-minute band, breakout_nvda
# trades 30-minute channel breaks. Shorter windows trade the bid/ask bounce and pay the spread
# and commission on every flip (the demo used to lose ~$3k a minute that way).
DEFAULT_STRATEGIES: list[dict[str, Any]] = [
    {
        "name": "sma_fast",
        "class": "sma_cross",
        "symbols": ["AAPL", "MSFT"],
        "capital": 200_000,
        "params": {"fast": 60, "slow": 180},
    },
    {
        "name": "meanrev_spy",
        "class": "mean_reversion",
        "symbols": ["SPY"],
        "capital": 150_000,
        "params": {"window": 240, "entry_z": 3.0, "exit_z": 0.5},
        "risk": {"stop_loss_pct": 2.0, "take_profit_pct": 3.0},
    },
    {
        "name": "breakout_nvda",
        "class": "breakout",
        "symbols": ["NVDA"],
        "capital": 150_000,
        "params": {"window": 360, "exit_window": 180},
        "risk": {"trailing_stop_pct": 1.5},
    },
    {
        "name": "covered_aapl",
        "class": "covered_call",
        "symbols": ["AAPL"],
        "capital": 100_000,
        "params": {},
    },
]


def default_config() -> Config:
    """The embedded default: paper broker, simulated market, four demo strategies."""
    return config_from_dict({"strategies": DEFAULT_STRATEGIES}, "<defaults>")


def with_overrides(cfg: Config, **paths: Any) -> Config:
    """Return cfg with dotted-path overrides applied (``broker.ib.port=4002``), re-validated."""
    data = to_dict(cfg)
    for dotted, value in paths.items():
        if value is None:
            continue
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return config_from_dict(data, cfg.source)
