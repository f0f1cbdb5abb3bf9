"""The engine: strategies -> risk -> orders -> paper broker, driven tick by tick on the test's
thread (Engine.on_ticks), plus a few runs on the real engine thread."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from waiting import wait_until

from fbterm import commands as C
from fbterm.config import Config
from fbterm.engine import Engine
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import Bar, OrderStatus, OrderType, Side, StrategyState, Tick, TradingState
from fbterm.snapshot import EngineSnapshot
from fbterm.strategies.base import Sizing, StrategyInterface, signal_frame

if TYPE_CHECKING:
    from conftest import ConfigBuilder, FakeClock

pytestmark = pytest.mark.timeout(120)


class Scripted(StrategyInterface):
    """A strategy whose targets are a script: one entry per closed bar (NaN: no opinion)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, targets: list[float], strategy_id: str | None = None):
        self.script = list(targets)
        self.bars_seen = 0
        super().__init__(strategy_id)

    def analyze(self, bars):
        return signal_frame(bars.index, math.nan)

    def on_bar(self, bar: Bar) -> float:
        self.bars_seen += 1
        return self.script.pop(0) if self.script else math.nan


class Boom(Scripted):
    name: ClassVar[str] = "boom"

    def on_bar(self, bar: Bar) -> float:
        if self.bars_seen >= 2:
            raise ZeroDivisionError("strategy bug")
        return super().on_bar(bar)


@pytest.fixture
def config(tmp_path: Path, make_config: ConfigBuilder) -> Callable[..., Config]:
    """``config(**risk)``: AAPL and MSFT, 1 s bars, no strategies, no order-rate limit."""

    def build(**risk: Any) -> Config:
        return make_config(
            market={"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0, "stale_after": 10.0},
            journal={"path": str(tmp_path / "journal.sqlite")},
            risk={"max_orders_per_second": 1000.0, **risk},
            strategies=[],
        )

    return build


class Rig:
    """An engine (not started) on a controllable clock, fed by hand."""

    def __init__(self, cfg: Config, clock: FakeClock, journal_path: Path):
        self.clock = clock
        self.cfg = cfg
        self.journal_path = journal_path
        self.engine = Engine(
            self.cfg, journal=Journal(self.journal_path), clock=self.clock, warmup_bars=0
        )
        self.px = {"AAPL": 100.0, "MSFT": 50.0}
        self.sent: list[str] = []

    def add(
        self, name: str, strat: StrategyInterface, units: float = 10, symbols=("AAPL",)
    ) -> None:
        self.engine.add_strategy(name, strat, list(symbols), 100_000, sizing=Sizing("fixed", units))

    def ticks(self, n: int = 1, symbols=("AAPL", "MSFT"), move: float = 0.0) -> None:
        """n rounds of one tick per symbol, half a second apart (a 1 s bar closes every 2)."""
        for _ in range(n):
            self.clock.t += 0.5
            batch = []
            for s in symbols:
                self.px[s] = round(self.px[s] * (1 + move), 4)
                p = self.px[s]
                batch.append(Tick(s, self.clock.t, p - 0.01, p + 0.01, p, 1000.0))
            self.engine.on_ticks(batch)

    def command(self, cmd: C.Command) -> C.CommandResult:
        # The engine thread drains its queue with _drain_commands(); with no thread running
        # the test plays that role on its own thread.
        self.engine.submit(cmd)
        self.engine._drain_commands()
        snap = self.engine.latest()
        assert snap is not None
        (res,) = [r for r in snap.results if r.command_id == cmd.command_id]
        return res

    def fills_by_strategy(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = defaultdict(float)
        for f in self.engine.oms.fills:
            out[(f.strategy_id, f.instrument.key)] += f.signed_quantity
        return out

    def close(self) -> None:
        self.engine.stop()


@pytest.fixture
def make_rig(
    tmp_path: Path, config: Callable[..., Config], fake_clock: FakeClock
) -> Callable[..., Rig]:
    """``make_rig(**risk)``: a Rig on ``config(**risk)``, its journal in tmp_path."""
    return lambda **risk: Rig(config(**risk), fake_clock, tmp_path / "journal.sqlite")


@pytest.fixture
def rig(make_rig: Callable[..., Rig]):
    r = make_rig()
    yield r
    r.close()


def strategy_qty(engine: Engine, sid: str, key: str = "AAPL") -> float:
    return engine.oms.position(key, sid)


# ------------------------------------------------------------------------ attribution


def test_two_strategies_on_one_symbol_keep_their_own_positions(rig: Rig):
    rig.add("long", Scripted([1, math.nan, math.nan, 0.5, math.nan, -1]), units=10)
    rig.add("short", Scripted([-1, math.nan, 1]), units=7)
    rig.ticks(20)
    e = rig.engine
    assert strategy_qty(e, "long") == -10  # +10, then +5, then -10
    assert strategy_qty(e, "short") == 7  # -7, then +7
    assert e.oms.position("AAPL") == -3
    per = rig.fills_by_strategy()
    for (sid, key), q in per.items():
        assert e.oms.strategy_positions[(sid, key)].quantity == pytest.approx(q)
    assert {f.strategy_id for f in e.oms.fills} == {"long", "short"}
    # The journal agrees, attribution included.
    e.journal.close()
    j = Journal(rig.journal_path)
    again = OrderManagement(PaperBroker(rig.cfg.broker.paper), j)
    assert {k: p.quantity for k, p in again.strategy_positions.items()} == {
        k: p.quantity for k, p in e.oms.strategy_positions.items()
    }
    j.close()


def test_strategy_that_raises_is_put_in_error_while_another_keeps_trading(rig: Rig):
    rig.add("boom", Boom([1, math.nan, math.nan, -1]))
    rig.add("steady", Scripted([1, math.nan, math.nan, -1, math.nan, 1]))
    rig.ticks(16)
    e = rig.engine
    boom = e.executor.slots["boom"]
    assert boom.state is StrategyState.ERROR
    assert boom.error.startswith("ZeroDivisionError: strategy bug at test_engine.py:")
    assert strategy_qty(e, "boom") == 10  # its first order went through, then it stopped
    assert strategy_qty(e, "steady") == 10  # +10, -10, +10: still trading after the error
    assert sum(1 for f in e.oms.fills if f.strategy_id == "steady") == 3
    snap = e.build_snapshot()
    rows = {r.name: r for r in snap.strategies}
    assert rows["boom"].state is StrategyState.ERROR and "strategy bug" in rows["boom"].error
    assert rows["steady"].state is StrategyState.RUNNING
    assert any("boom stopped" in ln.message for ln in snap.log)


# ------------------------------------------------------------------------- risk states


class CountingPaperBroker(PaperBroker):
    """The real PaperBroker, counting the orders that reach it (nothing else changed)."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.received: list[str] = []

    def execute_order(self, order):
        self.received.append(order.client_order_id)
        super().execute_order(order)


def test_halted_engine_submits_nothing(
    tmp_path: Path, config: Callable[..., Config], fake_clock: FakeClock
):
    clock = fake_clock
    cfg = config()
    broker = CountingPaperBroker(cfg.broker.paper, symbols=cfg.market.symbols, clock=clock)
    e = Engine(
        cfg, broker=broker, journal=Journal(tmp_path / "j.sqlite"), clock=clock, warmup_bars=0
    )
    r = Rig.__new__(Rig)
    r.clock, r.cfg, r.engine, r.px, r.journal_path = (
        clock,
        cfg,
        e,
        {"AAPL": 100.0, "MSFT": 50.0},
        tmp_path / "j.sqlite",
    )
    try:
        r.add("flip", Scripted([1, -1] * 20), units=5)
        r.ticks(4)
        n = len(broker.received)
        assert n >= 1
        assert r.command(C.Halt(reason="test")).ok
        assert e.executor.slots["flip"].state is StrategyState.HALTED
        r.ticks(20)
        res = r.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=1))
        assert not res.ok and "halted: trading is HALTED (test)" in res.message
        assert len(broker.received) == n  # not one order reached the venue
        assert not r.command(C.ResumeStrategy(name="flip")).ok
        assert r.command(C.Resume()).ok
        assert e.executor.slots["flip"].state is StrategyState.RUNNING
        r.ticks(4)
        assert len(broker.received) > n
    finally:
        e.stop()


@pytest.mark.parametrize("cancel_on_halt", [True, False])
def test_halt_cancels_open_orders_when_configured(
    make_rig: Callable[..., Rig], cancel_on_halt: bool
):
    r = make_rig(cancel_orders_on_halt=cancel_on_halt)
    try:
        r.ticks(1)
        ids = []
        for px in (99.0, 98.0):
            res = r.command(
                C.NewOrder(
                    symbol="AAPL",
                    side=Side.BUY,
                    quantity=5,
                    order_type=OrderType.LIMIT,
                    limit_price=px,
                )
            )
            assert res.ok, res.message
            ids.append(res.message.split()[2])
        assert r.command(C.Halt(reason="drill")).ok
        statuses = [r.engine.oms.orders[i].status for i in ids]
        want = OrderStatus.CANCELLED if cancel_on_halt else OrderStatus.SUBMITTED
        assert statuses == [want, want]
        assert (len(r.engine.broker.orders) == 0) == cancel_on_halt
    finally:
        r.close()


def test_reduce_only_blocks_growth(rig: Rig):
    rig.ticks(1)
    assert rig.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=10)).ok
    rig.ticks(1)
    assert rig.engine.oms.position("AAPL") == 10
    assert rig.command(C.ReduceOnly(reason="risk desk")).ok
    res = rig.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=5))
    assert not res.ok and "reduce_only: order would grow AAPL from 10 to 15" in res.message
    res = rig.command(C.NewOrder(symbol="AAPL", side=Side.SELL, quantity=11))
    assert not res.ok and "reduce_only" in res.message  # crossing through zero grows a short
    assert not rig.command(C.NewOrder(symbol="MSFT", side=Side.SELL, quantity=1)).ok
    assert rig.command(C.NewOrder(symbol="AAPL", side=Side.SELL, quantity=4)).ok
    rig.ticks(1)
    assert rig.engine.oms.position("AAPL") == 6
    assert rig.engine.build_snapshot().risk.state is TradingState.REDUCING


def test_flatten_closes_every_strategy_position_even_when_halted(rig: Rig):
    rig.add("a", Scripted([1]), units=10)
    rig.add("b", Scripted([-1]), units=7)
    rig.add("m", Scripted([1]), units=3, symbols=("MSFT",))
    rig.ticks(4)
    assert rig.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=2)).ok  # manual
    rig.ticks(1)
    e = rig.engine
    held = {k: p.quantity for k, p in e.oms.strategy_positions.items() if not p.is_flat}
    assert held == {("a", "AAPL"): 10, ("b", "AAPL"): -7, ("m", "MSFT"): 3, ("manual", "AAPL"): 2}
    rig.command(
        C.NewOrder(
            symbol="MSFT", side=Side.BUY, quantity=1, order_type=OrderType.LIMIT, limit_price=49.0
        )
    )  # a working order, cancelled by the halt (risk.cancel_orders_on_halt)
    assert rig.command(C.Halt()).ok
    res = rig.command(C.FlattenAll())
    assert res.ok and res.message == (
        "flatten all: 4 closing orders sent, 0 orders cancelled; paused a, b, m"
    )
    rig.ticks(2)
    assert all(p.is_flat for p in e.oms.strategy_positions.values())
    assert all(p.is_flat for p in e.oms.positions.values())
    assert e.oms.open == {}
    assert e.risk.state is TradingState.HALTED  # flatten does not resume trading
    for (sid, key), q in rig.fills_by_strategy().items():
        assert q == pytest.approx(0.0), (sid, key)


def test_cancel_and_modify_commands_report_outcomes(rig: Rig):
    rig.ticks(1)
    res = rig.command(
        C.NewOrder(
            symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.LIMIT, limit_price=98.0
        )
    )
    assert res.ok and res.message.endswith(": Submitted")
    oid = res.message.split()[2]
    res = rig.command(C.ModifyOrder(client_order_id=oid, quantity=20, limit_price=99.0))
    assert res.ok and res.message == f"modify {oid}: 20 LMT lmt 99"
    assert rig.engine.broker.orders[oid].limit_price == 99.0
    res = rig.command(C.ModifyOrder(client_order_id=oid, limit_price=150.0))
    assert not res.ok and "price_collar: limit 150.00" in res.message
    assert rig.engine.oms.orders[oid].limit_price == 99.0
    res = rig.command(C.ModifyOrder(client_order_id="FB-999999", quantity=1))
    assert not res.ok and "unknown order 'FB-999999'" in res.message
    res = rig.command(C.CancelOrder(client_order_id=oid))
    assert res.ok and res.message == f"cancel {oid}: Cancelled"
    res = rig.command(C.CancelOrder(client_order_id=oid))
    assert not res.ok and "illegal transition Cancelled -> PendingCancel" in res.message
    res = rig.command(C.ModifyOrder(client_order_id=oid, quantity=5))
    assert not res.ok and "only a working order can be modified" in res.message
    res = rig.command(C.NewOrder(symbol="TSLA", side=Side.BUY, quantity=1))
    assert not res.ok and "unknown symbol 'TSLA'" in res.message
    hist = [ev for _, ev, _ in rig.engine.oms.monitor_order(oid).history]
    assert hist == ["new", "Submitted", "modified", "cancel-request", "Cancelled"]


def test_stop_loss_closes_through_the_gate(make_rig: Callable[..., Rig]):
    r = make_rig()
    try:
        from fbterm.config import StrategyRiskConfig

        r.engine.add_strategy(
            "sl",
            Scripted([1]),
            ["AAPL"],
            100_000,
            sizing=Sizing("fixed", 10),
            risk=StrategyRiskConfig(stop_loss_pct=2.0),
        )
        r.ticks(3)
        assert strategy_qty(r.engine, "sl") == 10
        r.ticks(10, move=-0.005)  # about -5% over the path
        assert strategy_qty(r.engine, "sl") == 0
        exits = [o for o in r.engine.oms.orders.values() if o.side is Side.SELL]
        assert len(exits) == 1 and exits[0].status is OrderStatus.FILLED
    finally:
        r.close()


# ------------------------------------------------------------------- the engine thread


class SilentSource:
    """A market-data port that connects and then goes quiet (a feed that stopped).

    The test pushes ticks itself through ``engine.call``; this adapter only lets the engine
    run without the simulated market producing updates behind the test's back."""

    name = "silent"

    async def stream(self, symbols):
        await asyncio.Event().wait()
        yield []


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    return wait_until(pred, what or "a condition", timeout)


def result_of(engine: Engine, cmd: C.Command) -> C.CommandResult:
    cid = engine.submit(cmd)

    def find():
        snap = engine.latest()
        return next((r for r in (snap.results if snap else ()) if r.command_id == cid), None)

    return wait_for(find, what=f"result of {cmd}")


def test_stale_data_blocks_new_entries(
    tmp_path: Path, config: Callable[..., Config], fake_clock: FakeClock
):
    clock = fake_clock
    cfg = config()
    e = Engine(cfg, source=SilentSource(), journal=Journal(tmp_path / "j.sqlite"), clock=clock)
    e.start()
    try:

        def tick(sym: str, p: float) -> None:
            e.on_ticks([Tick(sym, clock.t, p - 0.01, p + 0.01, p, 100.0)])

        e.call(lambda: (tick("AAPL", 100.0), tick("MSFT", 50.0)))
        assert result_of(e, C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=1)).ok
        clock.t += 30.0  # no update for 30 s > stale_after
        e.call(lambda: tick("MSFT", 50.0))
        wait_for(lambda: "AAPL" in e.build_snapshot_threadsafe().stale_feeds, what="AAPL stale")
        assert "MSFT" not in e.build_snapshot_threadsafe().stale_feeds
        res = result_of(e, C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=1))
        assert not res.ok and "stale_data: AAPL has had no update for 30.0 s" in res.message
        assert result_of(e, C.NewOrder(symbol="MSFT", side=Side.BUY, quantity=1)).ok
        e.call(lambda: tick("AAPL", 100.0))  # data resumes: entries pass again
        assert result_of(e, C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=1)).ok
        assert any(
            "AAPL: market data resumed" in ln.message for ln in e.build_snapshot_threadsafe().log
        )
    finally:
        e.stop()
    assert not e.running


def test_threaded_commands_and_snapshots(
    tmp_path: Path, config: Callable[..., Config], fake_clock: FakeClock
):
    clock = fake_clock
    e = Engine(config(), source=SilentSource(), journal=Journal(tmp_path / "j.sqlite"), clock=clock)
    snaps: list[EngineSnapshot] = []
    e.subscribe(snaps.append, hz=50)
    e.start()
    try:
        e.call(lambda: e.on_ticks([Tick("AAPL", clock.t, 99.99, 100.01, 100.0, 100.0)]))
        res = result_of(
            e,
            C.NewOrder(
                symbol="AAPL",
                side=Side.BUY,
                quantity=3,
                order_type=OrderType.LIMIT,
                limit_price=99.5,
            ),
        )
        oid = res.message.split()[2]
        assert result_of(e, C.ModifyOrder(client_order_id=oid, quantity=4)).ok
        clock.t += 1
        e.call(lambda: e.on_ticks([Tick("AAPL", clock.t, 99.0, 99.2, 99.1, 100.0)]))
        assert result_of(e, C.Halt(reason="x")).ok
        snap = e.build_snapshot_threadsafe()
        assert snap.halted and snap.risk.halt_reason == "x"
        assert [p.quantity for p in snap.positions] == [4]
        assert snaps and all(isinstance(s, EngineSnapshot) for s in snaps)
        with pytest.raises(Exception):  # noqa: B017 - a frozen snapshot cannot be edited
            snap.positions = ()  # type: ignore[misc]
    finally:
        e.stop()
    assert snaps[-1].running is False


def test_headless_engine_run_ends_with_positions_equal_to_journal_fills(
    tmp_path: Path, make_config: ConfigBuilder
):
    cfg = make_config(
        journal={"path": str(tmp_path / "journal.sqlite")},
        risk={"max_orders_per_second": 1000.0},
        strategies=[
            {
                "name": "sma",
                "class": "sma_cross",
                "symbols": ["AAPL", "MSFT"],
                "params": {"fast": 2, "slow": 4},
            },
            {
                "name": "mr",
                "class": "mean_reversion",
                "symbols": ["AAPL", "SPY"],
                "params": {"window": 10, "entry_z": 0.5},
            },
        ],
    )
    e = Engine(cfg, pace=False)  # the simulated market as fast as the engine takes it
    e.start()
    try:
        wait_for(
            lambda: e.ticks_processed > 3000 and len(e.oms.fills) >= 5, timeout=60, what="fills"
        )
    finally:
        e.stop()
    assert not e.running
    live = {k: p.quantity for k, p in e.oms.positions.items() if not p.is_flat}
    live_s = {k: p.quantity for k, p in e.oms.strategy_positions.items() if not p.is_flat}
    venue = {p.instrument.key: p.quantity for p in e.broker.query_positions()}
    j = Journal(cfg.journal_path)
    try:
        fills = j.load().fills
    finally:
        j.close()
    assert len(fills) == len(e.oms.fills)
    signed: dict[str, float] = defaultdict(float)
    signed_s: dict[tuple[str, str], float] = defaultdict(float)
    for f in fills:
        signed[f.instrument.key] += f.signed_quantity
        signed_s[(f.strategy_id, f.instrument.key)] += f.signed_quantity
    assert {k: q for k, q in signed.items() if q} == pytest.approx(live)
    assert {k: q for k, q in signed_s.items() if q} == pytest.approx(live_s)
    assert venue == pytest.approx(live)


def test_cli_headless_run_prints_json(tmp_path: Path, fbterm_home: Path):
    r = subprocess.run(  # the child inherits FBTERM_HOME
        [sys.executable, "-m", "fbterm", "run", "--headless", "--duration", "3", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["mode"] == "PAPER" and d["broker"] == "paper" and d["trading_state"] == "ACTIVE"
    assert d["ticks_processed"] > 0
    from fbterm.config import DEFAULT_STRATEGIES

    assert {s["name"] for s in d["strategies"]} == {s["name"] for s in DEFAULT_STRATEGIES}
    assert all(s["state"] == "running" for s in d["strategies"]), d["strategies"]
    # What it printed is what the journal holds. The summary snapshot is taken while the
    # engine still runs (fills can follow it before stop()), so it must equal the journal's
    # first ``fills`` fills.
    j = Journal(fbterm_home / "journal.sqlite")
    try:
        fills = j.load().fills
    finally:
        j.close()
    assert 0 < d["fills"] <= len(fills)

    def fold(fs) -> dict[str, float]:
        signed: dict[str, float] = defaultdict(float)
        for f in fs:
            signed[f.instrument.key] += f.signed_quantity
        return {k: q for k, q in signed.items() if q}

    assert {p["symbol"]: p["quantity"] for p in d["positions"]} == fold(fills[: d["fills"]])
