"""Real ``fbterm run --headless`` processes on one journal: one engine per journal, a halt that
survives SIGKILL and SIGHUP, a read-only run that never trades, and the sessions each start
reports.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from durable_support import Child, count_fills, headless, journal_rows, wait_for, write_busy_config

from fbterm.control import send_request

pytestmark = [pytest.mark.timeout(240)]


def _status(sock: Path) -> dict[str, object]:
    result = send_request(sock, "status", timeout=10)
    assert isinstance(result, dict)
    return result


def test_a_second_engine_on_the_same_journal_says_who_holds_it_and_exits(tmp_path: Path):
    paths = write_busy_config(tmp_path)
    first = headless(paths)
    try:
        first.wait_line("engine running")
        second = headless(paths, "--duration", "5")
        code, out, err = second.finish(timeout=90)
        assert code == 1, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines == [lines[0]] and "Traceback" not in err
        assert lines[0].startswith(f"fbterm: journal {paths.journal} is in use by another fbterm")
        assert f"(pid {first.pid}, started " in lines[0]
        assert out == ""
        # A reader does not need the writer lock: the log reads while the engine writes.
        r = subprocess.run(
            [sys.executable, "-m", "fbterm", "log", "--file", str(paths.log), "-n", "5"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert first.proc.poll() is None  # the first engine never noticed
    finally:
        first.kill()
    # SIGKILL released the lock with the process: the next engine starts at once.
    third = headless(paths, "--duration", "1", "--json")
    code, out, err = third.finish(timeout=90)
    assert code == 0, err
    assert (
        "previous session ended uncleanly (no clean shutdown recorded)"
        in json.loads(out)["previous_session"]
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_a_halt_survives_any_exit_and_needs_a_resume(tmp_path: Path, sig: signal.Signals):
    paths = write_busy_config(tmp_path)
    run = headless(paths)
    try:
        run.wait_line("engine running")
        wait_for(lambda: count_fills(paths.journal) >= 3, 60, "the first fills")
        send_request(paths.socket, "command", name="halt", timeout=10)
        wait_for(lambda: _status(paths.socket)["trading_state"] == "HALTED", 30, "HALTED")
    finally:
        run.kill(sig)
    fills = count_fills(paths.journal)

    again = headless(paths)
    try:
        note = again.wait_line("previous session")
        assert "previous session ended uncleanly (no clean shutdown recorded)" in note
        assert "trading HALTED (operator)" in note and "until you resume" in note
        assert _status(paths.socket)["trading_state"] == "HALTED"
        wait_for(lambda: int(_status(paths.socket)["ticks_processed"]) > 400, 60, "ticks")
        assert count_fills(paths.journal) == fills  # halted: nothing traded
        send_request(paths.socket, "command", name="resume", timeout=10)
        wait_for(lambda: count_fills(paths.journal) > fills, 60, "trading after resume")
        send_request(paths.socket, "command", name="halt", timeout=10)
        wait_for(lambda: _status(paths.socket)["trading_state"] == "HALTED", 30, "HALTED")
    finally:
        again.kill(signal.SIGTERM)  # a clean stop this time
    assert again.proc.returncode == 0

    last = headless(paths, "--duration", "1", "--json")
    code, out, err = last.finish(timeout=90)
    assert code == 0, err
    d = json.loads(out)
    assert d["trading_state"] == "HALTED"
    assert d["previous_session"].startswith("previous session ended HALTED (operator)")
    sessions = journal_rows(paths.journal, "SELECT ended_ts IS NOT NULL FROM sessions ORDER BY id")
    assert [bool(r[0]) for r in sessions] == [False, True, True]


def test_read_only_never_trades_on_the_paper_venue(tmp_path: Path):
    paths = write_busy_config(tmp_path)
    run = headless(paths, "--read-only", "--duration", "6", "--json")
    code, out, err = run.finish(timeout=90)
    assert code == 0, err
    d = json.loads(out)
    assert d["mode"] == "READ-ONLY" and d["fills"] == 0 and d["open_orders"] == []
    assert count_fills(paths.journal) == 0
    reasons = {
        r[0]
        for r in journal_rows(
            paths.journal, "SELECT json_extract(data, '$.reason') FROM order_events"
        )
    }
    assert reasons, "the strategies must have tried to trade"
    assert all(r.startswith("read-only session") for r in reasons), reasons


def test_the_console_refuses_a_journal_in_use_before_it_draws_anything(tmp_path: Path):
    paths = write_busy_config(tmp_path)
    first = headless(paths)
    try:
        first.wait_line("engine running")
        # Past the terminal check (stdout is a pipe here), the journal check must stop it.
        console = Child(
            ["--config", str(paths.config)], cwd=tmp_path, env={"FBTERM_FORCE_TUI": "1"}
        )
        code, out, err = console.finish(timeout=60)
        assert code == 1, err
        assert err.strip().startswith(f"fbterm: journal {paths.journal} is in use by another")
        assert f"(pid {first.pid}, " in err and "Traceback" not in err
        assert "\x1b[" not in out  # nothing drawn
    finally:
        first.kill()
