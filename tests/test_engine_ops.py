"""Issue 8 on the real engine: metrics stored in the journal and shown in snapshots, the daily
report, hot updates (parameters and code) that keep positions, a broken update that rolls back
and alerts, and the control socket that `fbterm update` talks to. Real engine, paper broker,
SQLite journal, Unix socket; alerts go to Diagnostics with no channel enabled (logged only)."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fbterm import commands as C
from fbterm.config import Config
from fbterm.engine import Engine
from fbterm.model import Tick

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(90)

T0 = 1_800_000_000.0


@pytest.fixture
def cfg(tmp_path: Path, make_config: ConfigBuilder) -> Callable[..., Config]:
    """``cfg(**sections)``: one SMA on AAPL (of AAPL, MSFT), 1 s bars, every file in tmp_path."""

    def build(**extra: Any) -> Config:
        # As if read from tmp_path/config.toml: its folder is a strategy folder for updates.
        return make_config(
            {
                "market": {"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0},
                "journal": {"path": str(tmp_path / "journal.sqlite")},
                "log": {"path": str(tmp_path / "activity.jsonl")},
                "data": {"dir": str(tmp_path / "data")},
                "control": {"socket": str(tmp_path / "ctl.sock")},
                "risk": {"max_orders_per_second": 1000.0},
                "broker": {"paper": {"participation": 1.0}},
                "strategies": [
                    {
                        "name": "sma",
                        "class": "sma_cross",
                        "symbols": ["AAPL"],
                        "capital": 100_000,
                        "params": {"fast": 2, "slow": 4},
                    },
                ],
            },
            source=str(tmp_path / "config.toml"),
            **extra,
        )

    return build


def drive(e: Engine, prices: list[float], t0: float = T0) -> None:
    for i, p in enumerate(prices):
        e.on_ticks(
            [
                Tick("AAPL", t0 + i, p - 0.01, p + 0.01, p, 1e6),
                Tick("MSFT", t0 + i, 99.99, 100.01, 100.0, 1e6),
            ]
        )


ZIGZAG = [
    100,
    101,
    102,
    103,
    104,
    103,
    101,
    99,
    97,
    96,
    97,
    99,
    102,
    105,
    107,
    106,
    103,
    100,
    97,
    95,
    96,
    99,
    103,
    106,
    108,
]


@pytest.fixture
def engine(cfg: Callable[..., Config]) -> Engine:
    e = Engine(cfg(), warmup_bars=0)
    e.reconcile()
    yield e
    e.stop()


def test_metrics_reach_the_snapshot_the_journal_and_the_daily_report(
    engine: Engine, tmp_path: Path
) -> None:
    drive(engine, ZIGZAG)
    assert engine.oms.fills, "the zigzag must make the SMA cross trade"
    snap = engine.update_metrics(store=True)
    assert "sma" in snap.strategies
    row = next(r for r in engine.build_snapshot().strategies if r.name == "sma")
    # the console shows the same win rate the metrics computed, as a percentage
    assert row.win_rate_pct == pytest.approx(snap.strategies["sma"].win_rate * 100)
    con = sqlite3.connect(tmp_path / "journal.sqlite")
    stored = dict(con.execute("SELECT name, win_rate FROM metrics_snapshots"))
    assert stored["sma"] == pytest.approx(snap.strategies["sma"].win_rate)
    (n_trades,) = con.execute("SELECT COUNT(*) FROM trades").fetchone()
    assert n_trades >= 1
    paths = engine.write_daily_report()
    assert paths and all(p.exists() for p in paths)
    assert any(p.suffix == ".csv" for p in paths)


def test_hot_update_of_parameters_keeps_the_position(engine: Engine) -> None:
    drive(engine, ZIGZAG)
    before = engine.oms.position("AAPL", "sma")
    assert before != 0
    ok, msg = engine.handlers.handle(C.UpdateStrategy(name="sma", params={"fast": 3}))
    assert ok, msg
    assert engine.executor.slots["sma"].strategy.p["fast"] == 3
    assert engine.oms.position("AAPL", "sma") == before
    assert engine.strategy_config("sma").params["fast"] == 3


def test_hot_update_of_code_and_a_broken_one_that_rolls_back(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "userstrats"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mine.py").write_text(
        textwrap.dedent("""
        from fbterm.strategies.sma_cross import SmaCross

        class Mine(SmaCross):
            name = "mine"
    """)
    )
    (pkg / "broken.py").write_text(
        textwrap.dedent("""
        from fbterm.strategies.sma_cross import SmaCross

        class Broken(SmaCross):
            name = "broken"

            def analyze(self, bars):
                raise RuntimeError("this code is broken")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    drive(engine, ZIGZAG)
    pos = engine.oms.position("AAPL", "sma")
    ok, msg = engine.handlers.handle(C.UpdateStrategy(name="sma", cls="userstrats.mine:Mine"))
    assert ok, msg
    assert type(engine.executor.slots["sma"].strategy).__name__ == "Mine"
    assert engine.oms.position("AAPL", "sma") == pos

    ok, msg = engine.handlers.handle(C.UpdateStrategy(name="sma", cls="userstrats.broken:Broken"))
    assert not ok
    assert "broken" in msg.lower()
    assert (
        type(engine.executor.slots["sma"].strategy).__name__ == "Mine"
    )  # rolled back / never swapped
    assert engine.oms.position("AAPL", "sma") == pos
    alerts = [e for e in engine.diagnostics.recent_activity() if e.kind.startswith("alert")]
    assert alerts, "a refused update raises an alert"
    sys.modules.pop("userstrats.mine", None)
    sys.modules.pop("userstrats.broken", None)


def test_fbterm_update_over_the_control_socket(cfg: Callable[..., Config]) -> None:
    from fbterm.control import send_request

    c = cfg(
        market={
            "symbols": ["AAPL", "MSFT"],
            "bar_seconds": 1.0,
            "simulated": {"ticks_per_second": 20.0},
        },
    )
    e = Engine(c)
    e.start(control=True)
    try:
        sock = c.control_socket_path
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        res = send_request(sock, "update", strategy="sma", params={"fast": 3})
        assert res["ok"], res
        assert e.call(lambda: e.executor.slots["sma"].strategy.p["fast"]) == 3
        bad = send_request(sock, "update", strategy="sma", params={"fast": 10})
        assert not bad["ok"]
        status = send_request(sock, "status")
        assert status["mode"] == "PAPER"
    finally:
        e.stop()


@pytest.mark.usefixtures("no_proxy")
def test_a_drawdown_halt_reaches_the_operator_by_email(cfg: Callable[..., Config]) -> None:
    """Engine -> PortfolioLevelRisk breach -> halt -> Diagnostics -> a real SMTP server on loopback."""
    import email
    import email.policy
    import socket

    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self) -> None:
            self.envelopes: list = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 Message accepted"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    c = cfg(
        alerts={
            "email": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "sender": "fbterm@test.local",
                "recipients": ["ops@test.local"],
            }
        },
    )
    e = Engine(c, warmup_bars=0)
    try:
        e.reconcile()
        e.risk.update_equity(1_000_000.0)
        reason = e.risk.update_equity(850_000.0)  # a 15% fall against the 10% limit
        assert reason and reason.startswith("max_drawdown")
        assert e.risk.state.value == "HALTED"
        assert e.diagnostics.flush(10.0)
        subjects = [
            email.message_from_bytes(env.content, policy=email.policy.default)["Subject"]
            for env in inbox.envelopes
        ]
        assert any("halted" in (s or "").lower() for s in subjects), subjects
    finally:
        e.stop()
        smtp.stop()
