"""An engine on the IB venue against the TWS-protocol test server, and what it told people.

Everything is real: the engine built from a config (IB broker, IB market data, DataRetrieval),
the journal file, the activity log, and alerts through :class:`Diagnostics` into a channel that
keeps them in memory instead of mailing them (the one stand-in: there is no mail server here).
Tests inject the gateway's faults through the server's knobs and assert on the journal, the
alerts and the headless summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waiting import wait_until

from fbterm.commands import Command, CommandResult, NewOrder
from fbterm.config import Config, config_from_dict
from fbterm.engine import Engine
from fbterm.engine.headless import headless_summary
from fbterm.journal import JournalState
from fbterm.journal_files import read_journal
from fbterm.model import Order, OrderStatus, OrderType, Side
from fbterm.ops.alerts import Alert
from fbterm.ops.diagnostics import Diagnostics
from fbterm.testing.ibserver import IBTestServer

ACCOUNT = "DU1234567"


class RecordingChannel:
    """A real alert Channel that keeps what it is given (no mail server in tests)."""

    name = "record"

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def destinations(self) -> list[str]:
        return ["memory"]

    def deliver(self, alert: Alert, destination: str) -> None:
        self.sent.append(alert)


def wait(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it is truthy (a generous deadline; never a bare sleep)."""
    return wait_until(pred, what, timeout)


def ib_config(port: int, tmp_path: Path, **sections: Any) -> Config:
    """IB broker and market data at the test server: quick reconnects, one symbol, no
    strategies unless given; every file under ``tmp_path``."""
    ib = {
        "port": port,
        "client_id": 21,
        "connect_timeout": 5.0,
        "request_timeout": 5.0,
        "reconnect_initial_delay": 0.1,
        "reconnect_max_delay": 0.4,
        "reconcile_interval": 0.0,
        "pacing_retry_delay": 0.1,
    }
    ib.update(sections.pop("ib", {}))
    market = {"source": "ib", "symbols": ["AAPL"], "bar_seconds": 0.1, "stale_after": 30.0}
    market.update(sections.pop("market", {}))
    data: dict[str, Any] = {
        "broker": {"kind": "ib", "ib": ib},
        "market": market,
        "journal": {"path": str(tmp_path / "journal.sqlite")},
        "data": {"dir": str(tmp_path / "data")},
        "log": {"path": str(tmp_path / "activity.jsonl")},
        "alerts": {"rate_limit_per_minute": 1000, "dedup_seconds": 0.0},
        "strategies": sections.pop("strategies", []),
    }
    data.update(sections)
    return config_from_dict(data, "test")


@dataclass
class Rig:
    """One engine at a time on ``server``; restartable on the same journal."""

    server: IBTestServer
    cfg: Config
    channel: RecordingChannel = field(default_factory=RecordingChannel)
    engine: Engine | None = None

    def start(
        self, cfg: Config | None = None, *, prepare: Callable[[Engine], None] | None = None
    ) -> Engine:
        """Build the engine from the config and start it; ``prepare`` sees it in between."""
        self.cfg = cfg or self.cfg
        diag = Diagnostics.from_config(self.cfg, channels=[self.channel])
        self.engine = Engine(self.cfg, diagnostics=diag)
        if prepare is not None:
            prepare(self.engine)
        self.engine.start(timeout=30)
        return self.engine

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            self.engine = None

    @property
    def e(self) -> Engine:
        assert self.engine is not None, "engine not started"
        return self.engine

    # -- asking the engine -------------------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> Any:
        return self.e.call(fn)

    def command(self, cmd: Command, timeout: float = 10.0) -> CommandResult:
        self.e.submit(cmd)

        def answered() -> CommandResult | None:
            snap = self.e.latest()
            return (
                next((r for r in snap.results if r.command_id == cmd.command_id), None)
                if snap
                else None
            )

        result: CommandResult = wait(answered, timeout, f"result of {type(cmd).__name__}")
        return result

    def order(self, coid: str) -> Order:
        return self.call(lambda: self.e.oms.orders[coid])  # type: ignore[no-any-return]

    def working_limit(self, qty: float = 10) -> str:
        """A working BUY limit on AAPL 1% under the last price, acknowledged; its id."""
        px = wait(lambda: self.call(lambda: self.e.market_state.prices.get("AAPL")), what="a price")
        res = self.command(
            NewOrder(
                symbol="AAPL",
                side=Side.BUY,
                quantity=qty,
                order_type=OrderType.LIMIT,
                limit_price=round(px * 0.99, 2),
            )
        )
        assert res.ok, res.message
        coid = res.message.split()[2]
        wait(lambda: self.order(coid).status is OrderStatus.SUBMITTED, what=f"{coid} acknowledged")
        return coid

    def connection(self) -> str:
        return str(self.call(lambda: self.e.link.state.value))

    def summary(self, *, as_json: bool = False) -> str:
        return headless_summary(self.e, as_json=as_json)

    # -- what was recorded and said -----------------------------------------------------------
    def journal(self) -> JournalState:
        """The journal file as a second reader sees it: read-only, beside the running engine."""
        return read_journal(self.cfg.journal_path)

    def history(self, coid: str) -> list[tuple[float, str, Order]]:
        """One order's journaled events, asked of the engine's own journal (its thread)."""
        return self.call(lambda: self.e.journal.order_history(coid))  # type: ignore[no-any-return]

    def alerts(self, title: str = "") -> list[Alert]:
        return [a for a in list(self.channel.sent) if title.lower() in a.title.lower()]

    def wait_alert(self, title: str, timeout: float = 20.0, body: str = "") -> Alert:
        def found() -> Alert | None:
            return next((a for a in self.alerts(title) if body.lower() in a.body.lower()), None)

        alert: Alert = wait(found, timeout, f"an alert {title!r} {body!r}")
        return alert

    def log_lines(self) -> list[str]:
        return [ln.message for ln in self.call(lambda: list(self.e.activity.lines))]
