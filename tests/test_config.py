"""config.toml -> typed config: every kind of bad input fails with the file, the key path and why."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fbterm.config import (
    Config,
    ConfigError,
    config_from_dict,
    default_config,
    dump_toml,
    load_config,
    to_dict,
    with_overrides,
)

REPO = Path(__file__).resolve().parents[1]


def err(data: dict, source: str = "config.toml") -> str:
    with pytest.raises(ConfigError) as ei:
        config_from_dict(data, source)
    msg = str(ei.value)
    assert "\n" not in msg  # one line, for the operator
    return msg


def strat(**kw) -> dict:
    return {"name": "s1", "class": "sma_cross", **kw}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # unknown keys, with a suggestion when one is close
        (
            {"risk": {"max_order_vale": 5}},
            "config.toml: risk.max_order_vale: unknown key (did you mean 'max_order_value'?)",
        ),
        ({"brokr": {}}, "config.toml: brokr: unknown key (did you mean 'broker'?)"),
        ({"risk": {"zzz": 1}}, "config.toml: risk.zzz: unknown key"),
        (
            {"strategies": [strat(paramz={})]},
            "config.toml: strategies[0].paramz: unknown key (did you mean 'params'?)",
        ),
        # wrong types
        (
            {"risk": {"max_order_value": "x"}},
            "config.toml: risk.max_order_value: expected a number, got str 'x'",
        ),
        (
            {"risk": {"max_order_value": True}},
            "config.toml: risk.max_order_value: expected a number, got bool True",
        ),
        (
            {"broker": {"ib": {"port": 4002.5}}},
            "config.toml: broker.ib.port: expected an integer, got float 4002.5",
        ),
        (
            {"broker": {"ib": {"read_only": "yes"}}},
            "config.toml: broker.ib.read_only: expected true or false, got str 'yes'",
        ),
        (
            {"market": {"symbols": "AAPL"}},
            "config.toml: market.symbols: expected list of str, got str 'AAPL'",
        ),
        (
            {"market": {"symbols": ["AAPL", 5]}},
            "config.toml: market.symbols[1]: expected a string, got int 5",
        ),
        ({"risk": 5}, "config.toml: risk: expected a table, got int 5"),
        (
            {"strategies": {"name": "x"}},
            "config.toml: strategies: expected list of table, got a table",
        ),
        # negative / zero / out-of-range limits
        (
            {"risk": {"max_order_value": -5}},
            "config.toml: risk.max_order_value: must be > 0, got -5",
        ),
        (
            {"risk": {"max_drawdown_pct": 0}},
            "config.toml: risk.max_drawdown_pct: must be > 0, got 0",
        ),
        (
            {"risk": {"price_collar_pct": 150}},
            "config.toml: risk.price_collar_pct: must be <= 100, got 150",
        ),
        (
            {"risk": {"daily_loss_limit": float("nan")}},
            "config.toml: risk.daily_loss_limit: must be a number, got nan",
        ),
        ({"broker": {"paper": {"cash": 0}}}, "config.toml: broker.paper.cash: must be > 0, got 0"),
        (
            {"broker": {"paper": {"leverage": 0.5}}},
            "config.toml: broker.paper.leverage: must be >= 1, got 0.5",
        ),
        ({"market": {"history_bars": 5}}, "config.toml: market.history_bars: must be > 10, got 5"),
        (
            {"strategies": [strat(capital=-1)]},
            "config.toml: strategies[0].capital: must be > 0, got -1",
        ),
        (
            {"market": {"simulated": {"prices": {"AAPL": -3}}}},
            "config.toml: market.simulated.prices.AAPL: must be > 0, got -3",
        ),
        # bad choices
        (
            {"broker": {"kind": "etrade"}},
            "config.toml: broker.kind: must be one of 'paper', 'ib', got 'etrade'",
        ),
        (
            {"journal": {"synchronous": "sometimes"}},
            "config.toml: journal.synchronous: must be one of 'OFF', 'NORMAL', 'FULL', got 'sometimes'",
        ),
        (
            {"strategies": [strat(sizing="yolo")]},
            "config.toml: strategies[0].sizing: must be one of 'fixed', 'cash', 'fraction', 'all_in', got 'yolo'",
        ),
        # strategies: unknown class, duplicates, symbols not traded, required keys
        (
            {"strategies": [strat(**{"class": "sma_crosss"})]},
            "config.toml: strategies[0].class: unknown strategy 'sma_crosss'",
        ),
        (
            {"strategies": [strat(), strat()]},
            "config.toml: strategies[1].name: duplicate strategy name 's1'",
        ),
        (
            {"strategies": [strat(symbols=["TSLA"])]},
            "config.toml: strategies[0].symbols: 'TSLA' is not in market.symbols",
        ),
        ({"strategies": [{"class": "sma_cross"}]}, "config.toml: strategies[0].name: is required"),
        ({"strategies": [{"name": "x"}]}, "config.toml: strategies[0].class: is required"),
        ({"strategies": [strat(name=" ")]}, "config.toml: strategies[0].name: must not be empty"),
        # whole-config rules
        ({"market": {"symbols": ["AAPL", "AAPL"]}}, "config.toml: market.symbols: has duplicates"),
        (
            {"market": {"symbols": ["aapl"]}},
            "config.toml: market.symbols: symbols are upper-case tickers, got 'aapl'",
        ),
        (
            {"market": {"timezone": "Mars/Olympus"}},
            "config.toml: market.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            {"market": {"source": "csv"}},
            "config.toml: market.csv.path: is required when market.source = 'csv'",
        ),
        (
            {"broker": {"ib": {"reconnect_initial_delay": 5.0, "reconnect_max_delay": 1.0}}},
            "config.toml: broker.ib.reconnect_max_delay: must be >= broker.ib.reconnect_initial_delay",
        ),
    ],
)
def test_bad_config_names_the_key_and_the_reason(data, expected):
    assert err(data).startswith(expected)


def test_good_config_is_typed_and_frozen():
    cfg = config_from_dict(
        {
            "broker": {"paper": {"cash": 50_000}},  # an integer where a float is expected is fine
            "market": {"symbols": ["AAPL", "SPY"]},
            "risk": {"max_order_value": 20_000},
            "strategies": [
                strat(symbols=["SPY"], params={"fast": 3, "slow": 9}),
                {"name": "mine", "class": "my_pkg.mod:MyStrategy"},
            ],
        }
    )
    assert cfg.broker.paper.cash == 50_000.0 and isinstance(cfg.broker.paper.cash, float)
    assert cfg.risk.max_order_value == 20_000.0
    assert [s.cls for s in cfg.strategies] == ["sma_cross", "my_pkg.mod:MyStrategy"]
    assert cfg.strategies[0].params == {"fast": 3, "slow": 9}
    with pytest.raises(AttributeError):
        cfg.risk.max_order_value = 1  # type: ignore[misc]
    assert default_config().strategies  # the embedded default has demo strategies


def test_file_errors(tmp_path: Path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk\nmax_order_value = 5\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML: "):
        load_config(bad)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[broker.paper]\naccount = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin\.toml: not UTF-8 text \(invalid continuation byte at byte \d+\)"
    ):
        load_config(latin)
    a_dir = tmp_path / "adir"
    a_dir.mkdir()
    with pytest.raises(ConfigError, match=r"adir: cannot read"):
        load_config(a_dir)
    neg = tmp_path / "neg.toml"
    neg.write_text("[risk]\nmax_order_value = -5\n")
    with pytest.raises(ConfigError) as ei:
        load_config(neg)
    assert str(ei.value) == f"{neg}: risk.max_order_value: must be > 0, got -5"


def test_with_overrides_revalidates():
    cfg = with_overrides(default_config(), **{"broker.ib.port": 7497, "journal.path": None})
    assert cfg.broker.ib.port == 7497
    with pytest.raises(ConfigError, match=r"broker\.ib\.port: must be <= 65535, got 70000"):
        with_overrides(cfg, **{"broker.ib.port": 70_000})


def roundtrip(cfg: Config) -> Config:
    return config_from_dict(tomllib.loads(dump_toml(to_dict(cfg))), cfg.source)


def test_effective_config_dump_round_trips():
    cfg = config_from_dict(
        {
            "strategies": [strat(params={"fast": 3, "slow": 9}, risk={"stop_loss_pct": 2.0})],
            "ui": {"keys": {"halt": "ctrl+h"}, "confirm": {"flatten": False}},
        }
    )
    assert roundtrip(cfg) == cfg
    assert roundtrip(default_config()) == default_config()


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=2000)
@given(
    st.text(max_size=30),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=10), max_size=3),
)
def test_dump_round_trips_any_string(account, keys):
    # Operators put any text in strings (accounts, paths, key names): check-config must print
    # TOML that reads back to the same config.
    cfg = config_from_dict({"broker": {"paper": {"account": account}}, "ui": {"keys": keys}})
    assert roundtrip(cfg) == cfg


# ------------------------------------------------------------------------------ the CLI


def fbterm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m fbterm``; the child inherits the test's FBTERM_HOME (conftest)."""
    return subprocess.run(
        [sys.executable, "-m", "fbterm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_prints_the_effective_config(tmp_path: Path):
    p = tmp_path / "config.toml"
    p.write_text(
        '[risk]\nmax_order_value = 12345\n\n[[strategies]]\nname = "a"\nclass = "sma_cross"\n'
    )
    r = fbterm("check-config", str(p), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# {p}: OK\n")
    printed = tomllib.loads(r.stdout)  # the comments are TOML comments: the rest is the config
    assert printed["risk"]["max_order_value"] == 12345.0
    assert printed["risk"]["max_drawdown_pct"] == 10.0  # defaults are shown too
    assert config_from_dict(printed, str(p)) == load_config(p)


def test_check_config_fails_with_one_line_and_exit_2(tmp_path: Path):
    p = tmp_path / "config.toml"
    p.write_text("[risk]\nmax_order_value = -5\n")
    r = fbterm("check-config", str(p), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == f"fbterm: {p}: risk.max_order_value: must be > 0, got -5\n"
    r = fbterm("check-config", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "file not found" in r.stderr
    # With no path, ./config.toml is used.
    r = fbterm("check-config", cwd=tmp_path)
    assert r.returncode == 2 and "config.toml: risk.max_order_value" in r.stderr


def test_shipped_config_loads():
    cfg = load_config(REPO / "config.toml")
    assert cfg.market.symbols
    assert roundtrip(cfg) == cfg
