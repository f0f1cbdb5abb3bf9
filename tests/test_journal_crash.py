"""SIGKILL in the middle of a burst of orders loses nothing that was acknowledged.

A child process trades against a journal file and prints each acknowledgement (order accepted,
fill booked, cancel confirmed) only after the call that produced it returned, flushed. The
parent kills it with SIGKILL mid-burst, opens the same file in a new OrderManagement, and must
find every acknowledged order, fill and cancel, with positions that match the fills.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import defaultdict
from pathlib import Path

import pytest

import fbterm
from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import OrderStatus, Side, Signal, Stock

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(os.name != "posix", reason="SIGKILL")]

CHILD = textwrap.dedent(
    """
    import sys
    from fbterm.execution.brokers.paper import PaperBroker
    from fbterm.config import PaperBrokerConfig
    from fbterm.journal import Journal
    from fbterm.model import OrderStatus, OrderType, Side, Signal, Stock, Tick
    from fbterm.execution.orders import OrderManagement

    journal = Journal(sys.argv[1])
    broker = PaperBroker(PaperBrokerConfig(cash=1e12), symbols=["AAPL", "MSFT"], participation=None)
    oms = OrderManagement(broker, journal)
    out = sys.stdout

    def on_event(kind, obj):
        if kind == "fill":  # emitted after the fill's transaction committed
            out.write(f"FILL {obj.fill_id} {obj.client_order_id} {obj.signed_quantity:g} {obj.price!r}\\n")
            out.flush()

    oms.subscribe(on_event)
    out.write(f"START {len(oms.orders)}\\n")
    out.flush()
    resting = []
    i = 0
    px = 100.0
    while True:
        i += 1
        sym = "AAPL" if i % 3 else "MSFT"
        side = Side.BUY if i % 4 else Side.SELL
        if i % 5 == 0:  # a limit far from the market: it rests
            sig = Signal("rest", Stock(sym), Side.BUY, 1 + i % 7, OrderType.LIMIT, limit_price=1.0)
        else:
            sig = Signal("s%d" % (i % 2), Stock(sym), side, 1 + i % 9)
        o = oms.create_order(sig)
        out.write(f"ACK {o.client_order_id} {o.status.value}\\n")
        out.flush()
        if o.status is OrderStatus.SUBMITTED and o.order_type is OrderType.LIMIT:
            resting.append(o.client_order_id)
        if i % 7 == 0 and resting:
            oid = resting.pop(0)
            c = oms.cancel_order(oid)
            out.write(f"CANCEL {oid} {c.status.value}\\n")
            out.flush()
        px += 0.01
        broker.on_tick(Tick(sym, 4e9 + i, px - 0.01, px + 0.01, px, 0.0))
    """
)


def test_sigkill_mid_burst_loses_nothing_acknowledged(tmp_path: Path):
    path = tmp_path / "journal.sqlite"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    # The child imports the same fbterm as this process (a mutation run tests a copy).
    here = str(Path(fbterm.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": here}

    def burst(min_acks: int) -> list[str]:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        watchdog = threading.Timer(60, proc.kill)  # never hang the suite
        watchdog.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if sum(ln.startswith("ACK") for ln in lines) >= min_acks:
                    os.kill(proc.pid, signal.SIGKILL)  # mid-burst: it is writing as fast as it can
                    break
            rest = proc.stdout.read()  # whatever it wrote before dying
            lines.extend(rest.splitlines(keepends=True))
            proc.wait(10)
        finally:
            watchdog.cancel()
            proc.kill()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        return [ln.rstrip("\n") for ln in lines if ln.endswith("\n")]  # a torn last line is no ack

    def check(lines: list[str], slack: int = 1) -> OrderManagement:
        acked = [ln.split() for ln in lines if ln.startswith("ACK")]
        fills = [ln.split() for ln in lines if ln.startswith("FILL")]
        cancels = [ln.split() for ln in lines if ln.startswith("CANCEL")]
        j = Journal(path)
        oms = OrderManagement(PaperBroker(PaperBrokerConfig(), symbols=["AAPL", "MSFT"]), j)
        for _, oid, status in acked:
            assert oid in oms.orders, f"acknowledged order {oid} missing from the journal"
            assert oms.orders[oid].status is not OrderStatus.PENDING_SUBMIT
            if status == OrderStatus.SUBMITTED.value:
                assert oms.orders[oid].status in (
                    OrderStatus.SUBMITTED,
                    OrderStatus.FILLED,
                    OrderStatus.CANCELLED,
                    OrderStatus.PENDING_CANCEL,
                )
        by_id = {f.fill_id: f for f in oms.fills}
        for _, fid, oid, qty, price in fills:
            assert fid in by_id, f"acknowledged fill {fid} missing from the journal"
            f = by_id[fid]
            assert (f.client_order_id, f.signed_quantity, f.price) == (
                oid,
                float(qty),
                float(price),
            )
        for _, oid, status in cancels:
            assert oms.orders[oid].status.value == status
        # At most the one step in flight when the kill landed is journaled but unacknowledged.
        assert len(oms.fills) - len(fills) <= slack
        assert len(oms.orders) - len(acked) <= slack
        signed: dict[str, float] = defaultdict(float)
        for f in oms.fills:
            signed[f.instrument.key] += f.signed_quantity
            assert oms.orders[f.client_order_id].filled_quantity >= f.quantity
        for key, q in signed.items():
            assert oms.positions[key].quantity == pytest.approx(q)
        for (sid, key), p in oms.strategy_positions.items():
            assert p.quantity == pytest.approx(
                sum(
                    f.signed_quantity
                    for f in oms.fills
                    if f.strategy_id == sid and f.instrument.key == key
                )
            )
        return oms

    first = burst(400)
    assert first[0] == "START 0"
    assert len([ln for ln in first if ln.startswith("FILL")]) > 100
    oms = check(first)
    n_orders = len(oms.orders)
    # The restored books keep numbering after the last journaled id: no duplicate ids.
    o = oms.create_order(Signal("after", Stock("AAPL"), Side.BUY, 1))
    assert o.client_order_id not in {k for k in list(oms.orders)[:-1]}
    oms.journal.close()  # type: ignore[union-attr]

    # A second crash on top of the recovered journal: still nothing acknowledged is lost.
    second = burst(200)
    assert second[0] == f"START {n_orders + 1}"
    check(first + second, slack=3)  # two kills in flight + the order placed in between
