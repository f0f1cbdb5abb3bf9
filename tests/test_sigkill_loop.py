"""SIGKILL a busy headless paper run again and again: the activity log never runs ahead of the
journal, and a restart never gives an order id to a different order.

Each round starts ``fbterm run --headless`` on the same journal (one-second bars, a fast
simulated market, short strategy windows), lets it trade for a random while and kills it with
SIGKILL. After every kill, every order and fill id the activity log mentions must be in the
journal, and every order id in the journal must name one order (same instrument, side,
strategy and creation time in every event), including the ids the log saw before the kill.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from durable_support import (
    count_fills,
    headless,
    journal_ids,
    journal_rows,
    log_entries,
    log_ids,
    write_busy_config,
)

pytestmark = [pytest.mark.timeout(600)]

ROUNDS = 12


def _order_identities(journal: Path) -> dict[str, set[tuple[object, ...]]]:
    rows = journal_rows(
        journal,
        "SELECT order_id, json_extract(data, '$.instrument'), json_extract(data, '$.side'), "
        "json_extract(data, '$.strategy'), json_extract(data, '$.created') "
        "FROM order_events",
    )
    out: dict[str, set[tuple[object, ...]]] = {}
    for oid, *identity in rows:
        out.setdefault(oid, set()).add(tuple(identity))
    return out


def _logged_identities(log: Path) -> dict[str, tuple[object, ...]]:
    """What the log said each order was (symbol, side, strategy) when it first mentioned it."""
    out: dict[str, tuple[object, ...]] = {}
    for e in log_entries(log):
        f = e.get("fields") or {}
        if e.get("kind") == "order" and f.get("order_id"):
            out.setdefault(f["order_id"], (f.get("symbol"), f.get("side"), f.get("strategy")))
    return out


def _kill_when_log_grows(log: Path, pid: int, after_lines: int) -> None:
    """SIGKILL ``pid`` as soon as the log has grown by ``after_lines`` order or fill lines."""
    deadline = time.monotonic() + 60
    size = log.stat().st_size if log.exists() else 0
    grown = 0
    while time.monotonic() < deadline:  # a busy poll: the kill must land within the step
        now = log.stat().st_size if log.exists() else 0
        if now > size:
            with log.open("rb") as fh:
                fh.seek(size)
                chunk = fh.read(now - size)
            size = now
            grown += chunk.count(b'"kind": "fill"') + chunk.count(b'"kind": "order"')
            if grown >= after_lines:
                os.kill(pid, signal.SIGKILL)
                return
    raise AssertionError("the run logged no orders or fills")


def test_sigkill_loop_log_never_ahead_of_journal_and_ids_never_reused(tmp_path: Path):
    rng = random.Random(12)
    # FULL: every commit waits for the disk, the widest window between a step's first log
    # line and its commit (where a log written before its commit would be caught).
    paths = write_busy_config(tmp_path, synchronous="FULL")
    fills_seen: list[int] = []
    for round_no in range(ROUNDS):
        run = headless(paths)
        run.wait_line("engine running")
        if round_no % 2 == 0:
            # A random moment to kill at (not a synchronisation: any moment must be safe).
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(rng.uniform(0.2, 2.5))
        else:
            # The riskiest moment: the instant the log grows, mid-step, before or after the
            # step's commit (a log written before its commit is caught here).
            _kill_when_log_grows(paths.log, run.proc.pid, rng.randint(1, 40))
        run.kill()
        assert run.proc.returncode == -9, "".join(run.err)
        fills_seen.append(count_fills(paths.journal))

        j_orders, j_fills = journal_ids(paths.journal)
        l_orders, l_fills = log_ids(paths.log)
        assert l_fills <= j_fills, f"round {round_no}: log ahead of journal: {l_fills - j_fills}"
        assert l_orders <= j_orders, (
            f"round {round_no}: log ahead of journal: {sorted(l_orders - j_orders)[:5]}"
        )
        identities = _order_identities(paths.journal)
        reused = {oid: ids for oid, ids in identities.items() if len(ids) > 1}
        assert not reused, f"round {round_no}: order ids naming two orders: {reused}"
        inst = {oid: next(iter(ids)) for oid, ids in identities.items()}
        for oid, (symbol, side, strategy) in _logged_identities(paths.log).items():
            assert (inst[oid][0], inst[oid][1], inst[oid][2]) == (symbol, side, strategy), oid
    assert fills_seen[-1] > fills_seen[0] > 0, "the runs must have traded"
