"""Start-up against the gateway's faults: historical-data pacing (162/366) during warm-up, a
client id already in use (326), several managed accounts, an unknown account. The engine
starts without waiting for history; the refusals are one clear line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from ib_support import Rig, ib_config, wait

from fbterm.data.ib_source import IBSource, PacingGate
from fbterm.engine import Engine
from fbterm.testing.ibserver import IBTestServer, synthetic_bars

pytestmark = pytest.mark.timeout(120)

SMA = [
    {
        "name": "sma",
        "class": "sma_cross",
        "symbols": ["AAPL"],
        "capital": 100_000,
        "params": {"fast": 2, "slow": 4},
    }
]


def recent_bars() -> dict[str, pd.DataFrame]:
    """One-second bars for the last hour: what a warm-up asks a real gateway for."""
    now = pd.Timestamp.now(tz="UTC").floor("1s")
    start = str((now - pd.Timedelta(hours=1)).tz_localize(None))
    return synthetic_bars(("AAPL",), start=start, periods=3600, freq="1s")


def short_identical_window(engine: Engine) -> None:
    """IB's rule "no identical history request within 15 s" at 0.5 s, so a test need not
    wait 15 s per retry (the gate itself is tested with a fake clock in test_ib_data.py)."""
    src = engine.retrieval.historical if engine.retrieval is not None else None
    assert isinstance(src, IBSource)
    src.pacing = PacingGate(identical_window=0.5)


def fbterm(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fbterm", "run", "--headless", "--broker", "ib", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_pacing_during_warm_up_is_waited_out_while_the_engine_already_runs(
    tmp_path: Path,
) -> None:
    with IBTestServer(bars=recent_bars(), tick_interval=0.05, market_fill_price=100.0) as server:
        server.pace_historical(2, code=162)
        server.pace_historical(1, code=366)
        cfg = ib_config(
            server.port,
            tmp_path,
            ib={"pacing_retry_delay": 0.3},
            market={"bar_seconds": 1.0},
            strategies=SMA,
        )
        rig = Rig(server, cfg)
        try:
            rig.start(prepare=short_identical_window)  # returns at once, before any history
            assert not rig.call(lambda: rig.e.warmup.complete)
            assert "warming 0/1" in rig.summary()
            wait(lambda: rig.call(lambda: rig.e.warmup.complete), timeout=30, what="warm")
            lines = rig.log_lines()
            waits = [ln for ln in lines if ln.startswith("warm-up: AAPL:") and "before retry" in ln]
            assert any("IB 162" in ln and "retry 1 of 6" in ln for ln in waits), lines
            assert any("IB 366" in ln and "retry 3 of 6" in ln for ln in waits), lines
            warm_at = rig.call(
                lambda: next(ln.ts for ln in rig.e.activity.lines if "AAPL warm on" in ln.message)
            )
            # It trades, and only after it was warm.
            wait(lambda: rig.call(lambda: len(rig.e.oms.orders)) > 0, timeout=40, what="a trade")
            created = rig.call(lambda: [o.created_ts for o in rig.e.oms.orders.values()])
            assert min(created) >= warm_at
            text = rig.summary()
            assert "warm-up: warm (1 symbols" in text
            assert "Traceback" not in text
        finally:
            rig.stop()


def test_client_id_in_use_is_said_with_another_id_to_try(tmp_path: Path) -> None:
    with IBTestServer() as server:
        first = Rig(server, ib_config(server.port, tmp_path / "a"))
        try:
            first.start()  # client 21 is taken by a running fbterm
            second = Engine(ib_config(server.port, tmp_path / "b"))
            with pytest.raises(ConnectionError) as info:
                second.start(timeout=30)
            msg = str(info.value)
            assert "IB client id 21 is already in use" in msg and "--client-id 22" in msg
            assert "timed out" not in msg and "not reachable" not in msg
        finally:
            first.stop()

        server.occupy_client_id(31)  # another program holds it
        r = fbterm(tmp_path, "--port", str(server.port), "--client-id", "31", "--duration", "1")
        assert r.returncode != 0 and "Traceback" not in r.stderr
        (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert "IB client id 31 is already in use" in line and "--client-id 32" in line


@pytest.fixture
def two_accounts() -> Iterator[IBTestServer]:
    with IBTestServer(accounts=("DU111", "DU222"), positions=[("AAPL", 10, 150.0)]) as srv:
        yield srv


def test_several_managed_accounts_without_account_are_listed_not_guessed(
    two_accounts: IBTestServer, tmp_path: Path
) -> None:
    port = str(two_accounts.port)
    r = fbterm(tmp_path, "--port", port, "--client-id", "41", "--duration", "1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "manages 2 accounts (DU111, DU222)" in line and "--account" in line

    ok = fbterm(
        tmp_path, "--port", port, "--client-id", "42", "--account", "DU222", "--duration", "1"
    )
    assert ok.returncode == 0, ok.stderr
    assert "account DU222" in ok.stdout


def test_an_unknown_account_says_which_accounts_the_login_manages(
    two_accounts: IBTestServer, tmp_path: Path
) -> None:
    r = fbterm(tmp_path, "--port", str(two_accounts.port), "--client-id", "43", "--account", "U999")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "IB account U999 is not managed" in line and "(managed: DU111, DU222)" in line
    assert "not reachable" not in line
