"""What check-config and order creation refuse (issue 12): non-finite and absurd numbers with the
key path, "none" as the one spelling of "no limit", windows the history cannot hold, journal
paths and CSV sources that cannot work, fractional shares and contracts, bool quantities; and
every start-up failure is one line, never a traceback."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fbterm.cli import main
from fbterm.config import ConfigError, config_from_dict, dump_toml, load_config, to_dict
from fbterm.model import (
    Option,
    Order,
    OrderError,
    OrderType,
    Right,
    Side,
    Signal,
    Stock,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("tmp_cwd")]


def err(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data, "config.toml")
    return str(e.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"risk": {"max_order_value": math.inf}},
            'config.toml: risk.max_order_value: must be a finite number, got inf; write "none" for no limit',
        ),
        (
            {"risk": {"daily_loss_limit": -math.inf}},
            "config.toml: risk.daily_loss_limit: must be a finite number, got -inf",
        ),
        (
            {"risk": {"max_gross_exposure": math.nan}},
            "config.toml: risk.max_gross_exposure: must be a number, got nan",
        ),
        (
            {"risk": {"max_order_value": "unlimited"}},
            "config.toml: risk.max_order_value: expected a number, got str 'unlimited'; write \"none\"",
        ),
        (
            {"risk": {"max_order_value": True}},
            "config.toml: risk.max_order_value: expected a number, got bool True",
        ),
        (
            {"risk": {"max_drawdown_pct": "none"}},
            "config.toml: risk.max_drawdown_pct: expected a number, got str 'none'",
        ),
        (
            {"broker": {"paper": {"cash": math.inf}}},
            "config.toml: broker.paper.cash: must be a finite number, got inf",
        ),
        (
            {"broker": {"paper": {"cash": 1e300}}},
            "config.toml: broker.paper.cash: must be <= 1e+12, got 1e+300",
        ),
        (
            {"strategies": [{"name": "s", "class": "sma_cross", "capital": math.inf}]},
            "config.toml: strategies[0].capital: must be a finite number, got inf",
        ),
        (
            {"market": {"simulated": {"prices": {"AAPL": math.inf}}}},
            "config.toml: market.simulated.prices.AAPL: must be a finite number, got inf",
        ),
        (
            {"market": {"simulated": {"prices": {"AAPL": True}}}},
            "config.toml: market.simulated.prices.AAPL: expected a number, got bool True",
        ),
        (
            {"market": {"bar_seconds": math.inf}},
            "config.toml: market.bar_seconds: must be a finite number, got inf",
        ),
        (
            {"market": {"bar_seconds": 1e-300}},
            "config.toml: market.bar_seconds: must be >= 0.01, got 1e-300",
        ),
        (
            {"market": {"history_bars": 2**63 - 1}},
            "config.toml: market.history_bars: must be <= 1000000, got 9223372036854775807",
        ),
        (
            {"market": {"history_bars": True}},
            "config.toml: market.history_bars: expected an integer, got bool True",
        ),
        (
            {"journal": {"path": "/tmp/a\0b"}},
            "config.toml: journal.path: a path must not contain a NUL character",
        ),
        (
            {"market": {"simulated": {"time_scale": 1e300}}},
            "config.toml: market.simulated.time_scale: must be <= 100000, got 1e+300",
        ),
    ],
)
def test_impossible_numbers_are_refused_with_the_key(data: dict[str, Any], expected: str) -> None:
    assert err(data).startswith(expected)


def test_none_is_the_one_way_to_say_no_limit(
    tmp_path: Path, make_config: Callable[..., Any]
) -> None:
    import time

    from fbterm import commands as C
    from fbterm.engine import Engine
    from fbterm.model import Tick

    cfg = config_from_dict(
        {"risk": {"max_order_value": "none", "max_orders_per_second": "none"}}, "c.toml"
    )
    assert cfg.risk.max_order_value == math.inf and cfg.risk.max_orders_per_second == math.inf
    assert cfg.risk.max_position_value == 500_000.0  # the others keep their limits
    text = dump_toml(to_dict(cfg))
    assert 'max_order_value = "none"' in text
    f = tmp_path / "again.toml"
    f.write_text(text)
    assert load_config(f).risk == cfg.risk  # what check-config prints loads back

    def order_value_rule(limit: Any) -> str:
        limits = {"max_position_value": "none", "max_strategy_position_value": "none"}
        e = Engine(
            make_config(
                journal={"path": str(tmp_path / f"j{limit}.sqlite")},
                log={"path": str(tmp_path / "a.jsonl")},
                risk={**limits, "max_order_value": limit},
            )
        )
        try:
            now = time.time()
            e.on_ticks([Tick("AAPL", now, 189.99, 190.01, 190.0, 1e6)])
            e.submit(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=3000))  # 570,000
            e._drain_commands()
            [res] = list(e._results)
            return res.message
        finally:
            e.stop()

    assert "max_order_value" in order_value_rule(400_000)
    assert "rejected" not in order_value_rule("none")


def test_a_window_longer_than_the_history_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for slow in (10_000_000, 2**62):
        conf = tmp_path / "c.toml"
        conf.write_text(
            f'[[strategies]]\nname = "s"\nclass = "sma_cross"\nsymbols = ["AAPL"]\n'
            f"params = {{ fast = 5, slow = {slow} }}\n"
        )
        for argv in (["check-config", str(conf)], ["run", "--headless", "--config", str(conf)]):
            assert main(argv) == 2
            [line] = capsys.readouterr().err.splitlines()
            assert line == (
                f"fbterm: {conf}: strategies[0].params.slow: needs {slow + 1:,} bars of history, "
                "more than market.history_bars = 500"
            )


def test_a_hot_update_cannot_lengthen_a_window_past_the_history(
    make_config: Callable[..., Any], tmp_path: Path
) -> None:
    from fbterm import commands as C
    from fbterm.engine import Engine

    cfg = make_config(
        journal={"path": str(tmp_path / "j.sqlite")},
        log={"path": str(tmp_path / "a.jsonl")},
        strategies=[{"name": "sma", "class": "sma_cross", "symbols": ["AAPL"]}],
    )
    e = Engine(cfg)
    try:
        ok, msg = e.handlers.handle(C.UpdateStrategy(name="sma", params={"slow": 10_000_000}))
        assert not ok and "sma.slow: needs 10,000,001 bars of history" in msg
        assert e.strategy_config("sma").params == {}
    finally:
        e.stop()


@pytest.mark.parametrize(
    ("journal", "why"),
    [
        ("/proc/fbterm/journal.sqlite", "a journal cannot live under /proc"),
        ("/sys/journal.sqlite", "a journal cannot live under /sys"),
        ("{tmp}", "not a file"),
        ("{tmp}/notes.txt", "not an SQLite file"),
        ("{tmp}/damaged.sqlite", "journal is damaged or not an fbterm journal"),
    ],
)
def test_journal_paths_that_cannot_work_are_refused(
    journal: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "damaged.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x07" * 300)
    path = journal.format(tmp_path=tmp_path, tmp=tmp_path)
    conf = tmp_path / "c.toml"
    conf.write_text(f'[journal]\npath = "{path}"\n')
    for argv in (["check-config", str(conf)], ["run", "--headless", "--config", str(conf)]):
        assert main(argv) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"fbterm: {conf}: journal.path: ") and why in line
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


def test_a_journal_failure_at_start_is_one_line(tmp_path: Path) -> None:
    # Past every check (it exists, it is a readable SQLite file on a writable disk) and still
    # unusable when the engine opens it: the start fails with one line and exit 1.
    import sqlite3

    j = tmp_path / "j.sqlite"
    with sqlite3.connect(j) as conn:
        conn.execute("CREATE TABLE order_events (something_else TEXT)")
    conn.close()
    conf = tmp_path / "c.toml"
    conf.write_text(f'[journal]\npath = "{j}"\n[log]\npath = "{tmp_path / "a.jsonl"}"\n')
    r = subprocess.run(
        [sys.executable, "-m", "fbterm", "run", "--headless", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("fbterm: ") and str(j) in line


def csv_rows(*rows: str) -> str:
    return "Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize(
    ("files", "symbols", "path", "why"),
    [
        ({}, ["AAPL"], "missing.csv", "missing.csv does not exist"),
        (
            {"AAPL.csv": csv_rows("2024-01-02,1,2,0.5,1.5,100", "2024-01-03,1,0.5,2,1.5,100")},
            ["AAPL"],
            "AAPL.csv",
            "line 3: high < low",
        ),
        (
            {"AAPL.csv": csv_rows("2024-01-02,1,2,0.5,1.5,100")},
            ["AAPL", "MSFT"],
            "AAPL.csv",
            "holds AAPL bars, not MSFT",
        ),
        ({"AAPL.csv": "Date,Open,High,Low,Close,Volume\n"}, ["AAPL"], "AAPL.csv", ""),
    ],
    ids=["missing", "bad-rows", "other-symbol", "empty"],
)
def test_a_csv_source_must_exist_and_parse(
    files: dict[str, str],
    symbols: list[str],
    path: str,
    why: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    conf = tmp_path / "c.toml"
    conf.write_text(
        f'[market]\nsource = "csv"\nsymbols = {symbols!r}\n'.replace("'", '"')
        + f'[market.csv]\npath = "{tmp_path / path}"\n'
    )
    assert main(["check-config", str(conf)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fbterm: {conf}: market.csv.path: ") and why in line


def test_a_good_csv_source_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "AAPL.csv").write_text(csv_rows("2024-01-02,1,2,0.5,1.5,100"))
    conf = tmp_path / "c.toml"
    conf.write_text(
        f'[market]\nsource = "csv"\nsymbols = ["AAPL"]\n[market.csv]\npath = "{tmp_path / "AAPL.csv"}"\n'
    )
    assert main(["check-config", str(conf)]) == 0, capsys.readouterr().err


# ------------------------------------------------------------------ orders


OPT = Option("AAPL", Right.CALL, 200.0, __import__("datetime").date(2099, 12, 18))


@pytest.mark.parametrize(
    ("instrument", "qty", "why"),
    [
        (Stock("AAPL"), 0.5, "AAPL trades in whole shares; got a quantity of 0.5"),
        (OPT, 1.5, "trades in whole option contracts; got a quantity of 1.5"),
        (Stock("AAPL"), True, "quantity must be a number, got True"),
        (Stock("AAPL"), math.nan, "quantity must be > 0, got nan"),
        (Stock("AAPL"), 0, "quantity must be > 0, got 0"),
    ],
)
def test_impossible_quantities_are_refused_at_order_creation(
    instrument: Any, qty: Any, why: str
) -> None:
    with pytest.raises(OrderError, match=why.replace("(", r"\(")):
        Signal("manual", instrument, Side.BUY, qty)


@pytest.mark.parametrize(
    ("symbol", "why"),
    [
        ("AAPL 2025011 C150", "not an instrument key"),
        ("AAPL 20251340 C150", "unconverted data remains"),
        ("AAPL 20261218 C0", "option strike must be > 0"),
    ],
)
def test_malformed_contracts_are_refused_by_the_cli(
    symbol: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["order", "buy", symbol, "1"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fbterm: order: '{symbol}' is not a symbol (AAPL), an option")
    assert why in line


def test_modifying_to_a_fraction_is_refused_and_journaled_fractions_still_load() -> None:
    o = Order("FB-1", Stock("AAPL"), Side.BUY, 10, OrderType.LIMIT, limit_price=100.0)
    with pytest.raises(OrderError, match="whole shares"):
        o.modified(quantity=2.5)
    # What an older journal recorded stays readable: the rule is for new orders.
    old = Order.from_dict({**o.to_dict(), "qty": 0.5})
    assert old.quantity == 0.5


def test_a_bool_quantity_sent_to_the_engine_is_refused(
    make_config: Callable[..., Any], tmp_path: Path
) -> None:
    from fbterm import commands as C
    from fbterm.engine import Engine

    cfg = make_config(
        journal={"path": str(tmp_path / "j.sqlite")}, log={"path": str(tmp_path / "a.jsonl")}
    )
    e = Engine(cfg)
    try:
        e.submit(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=True))
        e._drain_commands()  # no engine thread here: the test plays its part
        [res] = list(e._results)
        assert not res.ok and "quantity must be a number, got True" in res.message
        assert e.oms.orders == {}
    finally:
        e.stop()
