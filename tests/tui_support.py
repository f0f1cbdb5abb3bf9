"""Helpers for the console tests: a fixed engine snapshot and an engine that serves it.

The snapshot tests render this fixed snapshot into the real widgets (the real app, real
panes, real dialogs): prices, clock and order ages come from the snapshot, so the SVGs are the
same on every run. Flow tests use the real paper engine instead (see test_tui_flows.py).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from fbterm.commands import Command, CommandResult
from fbterm.model import (
    AccountDetails,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Stock,
    StrategyState,
    TradingState,
)
from fbterm.snapshot import (
    EngineSnapshot,
    FeedStatus,
    Gauge,
    LogLine,
    PositionRow,
    RiskView,
    StrategyRow,
)

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC; tests run with TZ=UTC


def fixed_snapshot(
    state: TradingState = TradingState.ACTIVE, mode: str = "PAPER"
) -> EngineSnapshot:
    positions = (
        PositionRow("AAPL", 300, 187.25, 189.10, 56_730.0, 555.0, 120.5, strategies=("sma_fast",)),
        PositionRow("MSFT", -120, 411.80, 414.35, -49_722.0, -306.0, 0.0, strategies=("sma_fast",)),
        PositionRow(
            "SPY", 150, 512.40, 511.95, 76_792.5, -67.5, -42.0, strategies=("meanrev_spy",)
        ),
        PositionRow(
            "AAPL 20260220 C195",
            -3,
            4.10,
            3.85,
            -1_155.0,
            75.0,
            0.0,
            multiplier=100,
            delta=0.41,
            strategies=("covered_aapl",),
        ),
    )
    orders = (
        Order(
            "O-1001",
            Stock("NVDA"),
            Side.BUY,
            50,
            OrderType.LIMIT,
            limit_price=131.5,
            strategy_id="breakout_nvda",
            status=OrderStatus.SUBMITTED,
            created_ts=T0 - 95,
        ),
        Order(
            "O-1002",
            Stock("AAPL"),
            Side.SELL,
            100,
            OrderType.STOP,
            stop_price=182.0,
            strategy_id="manual",
            status=OrderStatus.SUBMITTED,
            created_ts=T0 - 30,
        ),
        Order(
            "O-1003",
            Stock("SPY"),
            Side.BUY,
            200,
            OrderType.LIMIT,
            limit_price=510.0,
            strategy_id="meanrev_spy",
            status=OrderStatus.PARTIALLY_FILLED,
            filled_quantity=80,
            created_ts=T0 - 3700,
        ),
    )
    strategies = (
        StrategyRow(
            "sma_fast",
            "sma_cross",
            StrategyState.RUNNING,
            200_000,
            ("AAPL", "MSFT"),
            "AAPL +300, MSFT -120",
            249.0,
            1_204.5,
            14,
            "AAPL long",
            equity=201_204.5,
            drawdown_pct=1.2,
            sharpe=1.4,
            win_rate_pct=57.0,
            params=(("fast", 5), ("slow", 12)),
        ),
        StrategyRow(
            "meanrev_spy",
            "mean_reversion",
            StrategyState.PAUSED,
            150_000,
            ("SPY",),
            "SPY +150",
            -109.5,
            -880.0,
            9,
            "SPY z=-1.3",
            equity=149_120.0,
            drawdown_pct=2.8,
            sharpe=-0.3,
            win_rate_pct=44.0,
        ),
        StrategyRow(
            "breakout_nvda",
            "breakout",
            StrategyState.RUNNING,
            150_000,
            ("NVDA",),
            "",
            0.0,
            0.0,
            0,
            "flat",
            equity=150_000.0,
        ),
        StrategyRow(
            "covered_aapl",
            "covered_call",
            StrategyState.ERROR,
            100_000,
            ("AAPL",),
            "AAPL C195 -3",
            75.0,
            75.0,
            1,
            "",
            error="chain unavailable",
            equity=100_075.0,
        ),
    )
    halted = state is TradingState.HALTED
    risk = RiskView(
        state=state,
        halt_reason="operator" if state is not TradingState.ACTIVE else "",
        equity=1_000_399.5,
        peak_equity=1_004_100.0,
        drawdown_pct=0.37,
        daily_pnl=256.5,
        gross_exposure=184_399.5,
        orders_per_second=0.4,
        gauges=(
            Gauge("drawdown", 0.37, 10.0, "ok", "0.4/10%"),
            Gauge("daily loss", 42_000.0, 50_000.0, "warn", "42k/50k"),
            Gauge("gross", 184_399.5, 2_000_000.0, "ok", "0.18M/2M"),
            Gauge(
                "orders/s",
                22.0 if halted else 0.4,
                20.0,
                "breach" if halted else "ok",
                "22/20" if halted else "0.4/20",
            ),
        ),
    )
    log = tuple(
        LogLine(i + 1, T0 - 60 + i * 5, lv, kind, msg)
        for i, (lv, kind, msg) in enumerate(
            [
                ("info", "engine", "engine started: paper broker, simulated market (4 symbols)"),
                ("info", "order", "O-1001 BUY 50 NVDA LMT 131.50 submitted"),
                ("info", "fill", "SPY BUY 80 @ 510.00 (O-1003)"),
                ("warning", "risk", "daily loss at 84% of limit"),
                ("error", "strategy", "covered_aapl: option chain unavailable"),
                ("info", "command", "#7 pause meanrev_spy: accepted"),
            ]
        )
    )
    feeds = (
        FeedStatus("AAPL", T0 - 0.2, 0.2, False),
        FeedStatus("MSFT", T0 - 0.3, 0.3, False),
        FeedStatus("SPY", T0 - 0.1, 0.1, False),
        FeedStatus("NVDA", T0 - 14.0, 14.0, True),
    )
    return EngineSnapshot(
        seq=42,
        ts=T0,
        mode=mode,
        broker="paper" if mode == "PAPER" else "ib",
        account="DU1234567",
        connection="connected",
        connection_message="",
        account_details=AccountDetails("DU1234567", 815_000.0, 1_000_399.5, 2_000_799.0, ts=T0),
        positions=positions,
        open_orders=orders,
        strategies=strategies,
        risk=risk,
        feeds=feeds,
        log=log,
        latency_ms_p50=3.2,
        latency_ms_p99=11.8,
        last_prices={"AAPL": 189.10, "MSFT": 414.35, "SPY": 511.95, "NVDA": 132.40},
        quotes={
            "AAPL": (189.08, 189.12),
            "MSFT": (414.30, 414.38),
            "SPY": (511.93, 511.97),
            "NVDA": (132.37, 132.42),
            "AAPL 20260220 C195": (3.80, 3.90),
        },
        ticks_processed=123_456,
        fills_total=17,
    )


class FrozenEngine:
    """Serves one fixed snapshot at the requested rate and records commands (never executes)."""

    def __init__(self, snap: EngineSnapshot | None = None) -> None:
        self.snap = snap or fixed_snapshot()
        self.commands: list[Command] = []
        self._subs: list[tuple[Callable[[EngineSnapshot], None], threading.Event]] = []
        self._ok = True

    def submit(self, cmd: Command) -> int:
        self.commands.append(cmd)
        if self._ok:
            r = CommandResult(cmd.command_id, True, "accepted", self.snap.ts)
            self.snap = dataclasses.replace(
                self.snap, results=(*self.snap.results, r), seq=self.snap.seq + 1
            )
        return cmd.command_id

    def subscribe(
        self, callback: Callable[[EngineSnapshot], None], hz: float = 10.0
    ) -> Callable[[], None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(1.0 / hz):
                callback(self.snap)

        threading.Thread(target=loop, daemon=True, name="frozen-engine").start()
        self._subs.append((callback, stop))
        return stop.set

    def latest(self) -> EngineSnapshot | None:
        return self.snap

    def stop(self, timeout: float = 5.0) -> None:
        for _, ev in self._subs:
            ev.set()


def screen_text(app: object, styles: bool = False) -> str:
    """The current screen as plain text (what an operator would read); with ``styles``, as
    the ANSI text a terminal would receive."""
    import io

    from rich.console import Console

    width, height = app.size  # type: ignore[attr-defined]
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    render = app.screen._compositor.render_update(  # type: ignore[attr-defined]
        full=True,
        screen_stack=app._background_screens,  # type: ignore[attr-defined]
    )
    console.print(render)
    return console.export_text(styles=styles)


def run_async(fn):  # type: ignore[no-untyped-def]
    """Run an async test with asyncio.run: no pytest async plugin is required."""
    import asyncio
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def burst(app: object, keys: list[str]) -> None:
    """Queue ``keys`` all at once, as one read from a terminal delivers a paste or keys typed
    over a laggy link: every key is waiting before the app has handled the first. (Pilot's
    ``press`` waits for the app to go idle after each key, which hides ordering bugs.)"""
    from textual import events
    from textual.keys import _character_to_key

    driver = app._driver  # type: ignore[attr-defined]
    for k in keys:
        char = k if len(k) == 1 else {"space": " "}.get(k)
        name = _character_to_key(k) if len(k) == 1 and not k.isalnum() else k
        event = events.Key(name, char)
        event.set_sender(app)  # type: ignore[arg-type]
        driver.send_message(event)


def _quiet(app: object) -> bool:
    """Nothing queued for the app, its screens or any of their widgets."""
    pumps = [app]
    for screen in app.screen_stack:  # type: ignore[attr-defined]
        pumps.extend(screen.walk_children(with_self=True))
    return all(p._message_queue.empty() for p in pumps)  # type: ignore[attr-defined]


async def settle(pilot: object, app: object, until: object = None, bound: float = 10.0) -> None:
    """Let the app work through what is queued: wait (bounded) for ``until()`` if given, then
    until no message is queued anywhere, three polls in a row.

    Not ``pilot.pause``: it waits for the current screen's widgets, and a burst that closes
    a dialog removes them with the wait still pending.
    """
    import time

    from waiting import poll_pause

    deadline = time.monotonic() + bound
    while until is not None and not until() and time.monotonic() < deadline:  # type: ignore[operator]
        await poll_pause()
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        await poll_pause()
        quiet = quiet + 1 if _quiet(app) else 0


def terminal_env(fbterm_home: object, tmp_path: object, term: str = "xterm") -> dict[str, str]:
    """The whole environment of a console started in a real terminal (tmux, a pty): only
    what a login gives, in UTC, UTF-8, and the import path of the checkout under test."""
    import os

    env = {
        "FBTERM_HOME": str(fbterm_home),
        "TERM": term,
        "TZ": "UTC",
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env
