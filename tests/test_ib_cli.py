"""`fbterm run --headless --broker ib` against the TWS-protocol server, as an operator runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_until

import fbterm.engine.headless  # an import error here must fail, not skip
from fbterm.testing.ibserver import IBTestServer
from fbterm.testing.ibserver.protocol import REQ_MKT_DATA

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(positions=[("AAPL", 10, 150.0)], tick_interval=0.05) as srv:
        yield srv


def fbterm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m fbterm`` from tmp_path; the child inherits the test's FBTERM_HOME (conftest)."""
    return subprocess.run(
        [sys.executable, "-m", "fbterm", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_headless_ib_run_prints_positions_orders_and_account(
    server: IBTestServer, tmp_path: Path
) -> None:
    r = fbterm(
        tmp_path,
        "run",
        "--headless",
        "--broker",
        "ib",
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--client-id",
        "31",
        "--duration",
        "2",
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "DU1234567" in out
    assert "OPEN ORDERS" in out.upper()
    # The account's positions as IB reports them (the server holds 10 AAPL), not only the
    # engine's own fills.
    # The section headings start their lines ("1 positions" and "open orders at the venue"
    # also occur in the status lines above them).
    section = out.upper().split("\nPOSITIONS", 1)[1].split("\nOPEN ORDERS", 1)[0]
    assert any("AAPL" in ln and "10" in ln for ln in section.splitlines()), out


def test_unreachable_gateway_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = fbterm(
        tmp_path,
        "run",
        "--headless",
        "--broker",
        "ib",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--client-id",
        "31",
        "--duration",
        "2",
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(port) in lines[0]


def test_headless_run_through_a_gateway_outage_reports_it_in_the_summary(
    server: IBTestServer, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[broker]\n"
        'kind = "ib"\n'
        "[broker.ib]\n"
        f"port = {server.port}\n"
        "client_id = 51\n"
        "reconnect_initial_delay = 0.2\n"
        "reconnect_max_delay = 0.5\n"
        'on_connection_lost = "halt"\n'
        "[market]\n"
        'source = "ib"\n'
        'symbols = ["AAPL"]\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fbterm", "run", "--headless", "--duration", "10"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Trading: the engine asked for market data once its start-up re-sync was done.
        wait_until(
            lambda: (
                proc.poll() is not None
                or any(mid == REQ_MKT_DATA for mid, _ in server.received_messages())
            ),
            "fbterm asking for market data",
            60,
        )
        assert proc.poll() is None, "fbterm did not start"
        server.drop_connections(refuse_for=2.0)  # the gateway is gone for two seconds
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "CRITICAL Broker connection lost" in out and "trading is now HALTED" in out, out
    assert "Broker connection restored" in out and "trading resumed (ACTIVE)" in out, out
    states = {"re-syncing", "connected", "reconnecting", "lost"}
    history = [
        w[1]
        for ln in out.split("reconciliation:")[0].splitlines()
        if len(w := ln.split()) > 1 and w[1] in states
    ]
    assert "reconnecting" in history and history[-1] == "connected", out
    assert "trading ACTIVE" in out.splitlines()[0]
