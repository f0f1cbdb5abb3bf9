"""Helpers for the tests that run real ``fbterm`` processes against one journal.

A busy paper configuration (fast simulated market, one-second bars, short windows, wide
limits) trades within a second or two of starting, so kills land among orders and fills.
The journal and the activity log are read back with plain sqlite3 and json, the way an
operator's own tools would, never through the engine under test.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waiting import wait_until

BUSY_CONFIG = """
[market]
symbols = ["AAPL", "MSFT"]
bar_seconds = 1.0
stale_after = 60.0

[market.simulated]
ticks_per_second = 40.0
time_scale = 1.0
seed = {seed}

[risk]
max_orders_per_second = 1000.0
max_order_value = 1e9
max_position_value = 1e9
max_strategy_position_value = 1e9
max_gross_exposure = 1e10
max_position_qty = 1e9
daily_loss_limit = 1e9
max_drawdown_pct = 99.0
price_collar_pct = 50.0
{risk_extra}

[[strategies]]
name = "sma"
class = "sma_cross"
symbols = ["AAPL", "MSFT"]
params = {{ fast = 2, slow = 3 }}

[[strategies]]
name = "mr"
class = "mean_reversion"
symbols = ["AAPL", "MSFT"]
params = {{ window = 5, entry_z = 0.3 }}

[journal]
path = "{journal}"
synchronous = "{synchronous}"

[log]
path = "{log}"

[control]
socket = "{socket}"
"""


@dataclass
class Paths:
    root: Path
    config: Path = field(init=False)
    journal: Path = field(init=False)
    log: Path = field(init=False)
    socket: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.root / "config.toml"
        self.journal = self.root / "journal.sqlite"
        self.log = self.root / "activity.jsonl"
        self.socket = self.root / "c.sock"


def write_busy_config(
    root: Path, *, seed: int = 7, risk_extra: str = "", synchronous: str = "NORMAL"
) -> Paths:
    p = Paths(root)
    p.config.write_text(
        BUSY_CONFIG.format(
            seed=seed,
            risk_extra=risk_extra,
            journal=p.journal,
            log=p.log,
            socket=p.socket,
            synchronous=synchronous,
        ),
        encoding="utf-8",
    )
    return p


class Child:
    """One ``fbterm`` process; its stderr is collected line by line as it arrives."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        preexec_fn: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fbterm", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.err: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_line(self, text: str, timeout: float = 60.0) -> str:
        def seen() -> str | None:
            hit = next((line for line in list(self.err) if text in line), None)
            if hit is None and self.proc.poll() is not None and not self._t.is_alive():
                raise AssertionError(f"fbterm exited without {text!r}:\n{''.join(self.err)}")
            return hit

        return wait_until(seen, f"{text!r} from fbterm", timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(30)
        self._t.join(10)

    def finish(self, timeout: float = 90.0) -> tuple[int, str, str]:
        """Wait for the exit: (exit code, stdout, stderr). stderr is the reader thread's."""
        self.proc.wait(timeout)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._t.join(10)
        return self.proc.returncode, out, "".join(self.err)


def headless(paths: Paths, *extra: str, **kw: Any) -> Child:
    return Child(["run", "--headless", "--config", str(paths.config), *extra], cwd=paths.root, **kw)


def wait_for(cond: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    wait_until(cond, what, timeout)


# -- reading what was left behind ----------------------------------------------------------
def journal_rows(path: Path, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.execute(sql, tuple(args)))
    finally:
        conn.close()


def journal_ids(path: Path) -> tuple[set[str], set[str]]:
    """(order ids, fill ids) the journal holds."""
    orders = {r[0] for r in journal_rows(path, "SELECT DISTINCT order_id FROM order_events")}
    fills = {r[0] for r in journal_rows(path, "SELECT fill_id FROM fills")}
    return orders, fills


def count_fills(path: Path) -> int:
    return int(journal_rows(path, "SELECT COUNT(*) FROM fills")[0][0])


def log_entries(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of the activity log (a killed writer may leave half a line)."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def log_ids(path: Path) -> tuple[set[str], set[str]]:
    """(order ids, fill ids) the activity log says exist."""
    orders: set[str] = set()
    fills: set[str] = set()
    for e in log_entries(path):
        f = e.get("fields") or {}
        if e.get("kind") == "order" and f.get("order_id"):
            orders.add(f["order_id"])
        if e.get("kind") == "fill" and f.get("fill_id"):
            fills.add(f["fill_id"])
            orders.add(f["order_id"])
    return orders, fills
