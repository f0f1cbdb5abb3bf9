"""The gateway's core: accounts and orders, connections, dispatch, and how a fill happens.

:class:`Gateway` holds the simulated account and the fault switches (:class:`Faults`); the
request handlers (:mod:`.requests`) and the public knobs (:mod:`.server`) build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from fbterm.testing.ibserver import encoders as enc
from fbterm.testing.ibserver.protocol import (
    MIN_CLIENT_VERSION,
    SERVER_VERSION,
    ContractFields,
    encode,
    stock,
)
from fbterm.testing.ibserver.state import (
    DEFAULT_ACCOUNT_VALUES,
    HistoricalRequest,
    ServerExecution,
    ServerOrder,
    ServerPosition,
    Session,
    synthetic_bars,
)

log = logging.getLogger("fbterm.testing.ibserver")


@dataclass
class Faults:
    """What the gateway does wrong, switched on per test through the knobs."""

    reject_next: list[str] = field(default_factory=list)  # 201 before the acknowledgement
    drop_next_order: float | None = None  # drop the socket on the next placeOrder
    refuse_until: float = 0.0  # monotonic time until which connections are refused
    read_only: bool = False  # 321: the API is in read-only mode
    fill_before_ack: int = 0  # this many market orders fill before their openOrder
    commission_timing: str = "after"  # after / before the execution, or held until released
    held_commissions: list[ServerExecution] = field(default_factory=list)
    historical_errors: list[tuple[int, str]] = field(default_factory=list)  # (code, text)
    ib_lost: bool = False  # 1100: the gateway is cut off from IB's servers
    occupied_client_ids: set[int] = field(default_factory=set)  # 326 for these


Handler = Callable[[Any, Session, list[str]], None]


class Gateway:
    """A TWS-protocol gateway on 127.0.0.1 backed by one simulated account.

    Every public method is thread-safe: it runs on the server's own event loop (its background
    thread after :meth:`start`) and returns when the server has acted.
    """

    _handlers: ClassVar[dict[int, Handler]] = {}

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Iterable[str] = ("DU1234567",),
        next_valid_id: int = 1,
        market_fill_price: float | None = None,
        auto_fill_market: bool = True,
        bars: dict[str, pd.DataFrame] | pd.DataFrame | None = None,
        positions: Iterable[tuple[str, float, float]] = (),
        account_values: dict[str, float] | None = None,
        commission_per_share: float = 0.005,
        commission_minimum: float = 1.0,
        pacing_window: float = 0.0,
        tick_interval: float | None = None,
        connect_messages: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self.accounts = list(accounts)
        self.next_valid_id = next_valid_id
        self.market_fill_price = market_fill_price
        self.auto_fill_market = auto_fill_market
        if isinstance(bars, pd.DataFrame):
            self._bars_default: pd.DataFrame | None = bars
            self.bars: dict[str, pd.DataFrame] = {}
        else:
            self._bars_default = None
            self.bars = dict(bars) if bars is not None else synthetic_bars()
        self.positions: dict[tuple[Any, ...], ServerPosition] = {}
        for sym, qty, cost in positions:
            c = stock(sym)
            self.positions[(self.accounts[0], *c.key)] = ServerPosition(
                c, float(qty), float(cost), self.accounts[0]
            )
        self.account_values = dict(
            DEFAULT_ACCOUNT_VALUES if account_values is None else account_values
        )
        self.commission_per_share = commission_per_share
        self.commission_minimum = commission_minimum
        self.pacing_window = pacing_window
        self.tick_interval = tick_interval
        self.connect_messages = connect_messages

        self.orders: dict[int, ServerOrder] = {}  # by perm id
        self.executions: list[ServerExecution] = []
        self.historical_requests: list[HistoricalRequest] = []
        self.placed: list[tuple[int, int]] = []  # (client id, order id) of every placeOrder
        # The raw fields of each placeOrder, for tests of order terms the server does not model.
        self.place_fields: dict[tuple[int, int], list[str]] = {}
        self.connections_accepted = 0
        self.faults = Faults()
        self._max_order_id: dict[int, int] = {}
        self._perm_seq = 1_000_000
        self._exec_seq = 0
        self._sessions: list[Session] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker_task: asyncio.Task[None] | None = None
        self._received_all: list[tuple[int, float]] = []

    # -- life cycle -----------------------------------------------------------------------
    async def serve(self) -> None:
        """Bind and accept connections on the running loop (use :meth:`start` for a thread)."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_interval:
            self._ticker_task = asyncio.create_task(self._tick_loop(self.tick_interval))

    async def close(self) -> None:
        if self._ticker_task:
            self._ticker_task.cancel()
        if self._server:
            self._server.close()
        for s in list(self._sessions):
            s.writer.transport.abort()
        self._sessions.clear()
        if self._server:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def start(self, timeout: float = 5.0) -> Any:
        """Run the server on its own event loop in a daemon thread; returns once it listens."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve())
            except BaseException as e:  # surfaced to the caller of start()
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(
            target=run, name=f"ibserver:{self._requested_port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("IB test server did not start")
        if errors:
            raise errors[0]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._thread = None

    def _call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` on the server loop and return its result (thread-safe)."""
        loop = self._loop
        if loop is None:
            return fn()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()

        async def wrapped() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout)

    # -- connections ----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.faults.refuse_until:
            writer.transport.abort()
            return
        session = Session(writer)
        try:
            prefix = await reader.readexactly(4)
            if prefix != b"API\0":
                writer.close()
                return
            n = struct.unpack(">I", await reader.readexactly(4))[0]
            versions = (await reader.readexactly(n)).decode()
            _lo, hi = versions.lstrip("v").split()[0].split("..")
            if int(hi) < MIN_CLIENT_VERSION:
                writer.close()
                return
            version = min(int(hi), SERVER_VERSION)
            writer.write(encode(version, dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")))
            self._sessions.append(session)
            self.connections_accepted += 1
            while True:
                n = struct.unpack(">I", await reader.readexactly(4))[0]
                raw = await reader.readexactly(n)
                fields = raw.decode(errors="replace").split("\0")[:-1]
                if not fields:
                    continue
                self._dispatch(session, fields)
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if session in self._sessions:
                self._sessions.remove(session)
            writer.transport.abort()

    def _dispatch(self, s: Session, f: list[str]) -> None:
        msg_id = int(f[0])
        now = time.monotonic()
        s.received.append((msg_id, now))
        self._received_all.append((msg_id, now))
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.debug("ignored message %s", f)
            return
        try:
            handler(self, s, f)
        except Exception:  # a malformed request must not kill the session
            log.exception("cannot handle %s", f)
            enc.send_error(s, -1, 320, f"Server error when reading an API client request: {f[0]}")

    def _drop_all(self, refuse_for: float) -> int:
        n = len(self._sessions)
        self.faults.refuse_until = time.monotonic() + refuse_for
        for s in list(self._sessions):
            s.writer.transport.abort()
        self._sessions.clear()
        return n

    def _session_of(self, client_id: int) -> list[Session]:
        return [s for s in self._sessions if s.client_id == client_id]

    def _order_watchers(self, o: ServerOrder) -> list[Session]:
        """Who hears of an order's life as it happens: the client that placed it (client 0
        for manual TWS orders). Nobody while the gateway is cut off from IB's servers."""
        if self.faults.ib_lost:
            return []
        return [s for s in self._sessions if s.client_id == o.client_id]

    # -- the account ----------------------------------------------------------------------
    def _frame(self, symbol: str) -> pd.DataFrame | None:
        return self.bars.get(symbol, self._bars_default)

    def _find(self, order_id: int, client_id: int | None) -> ServerOrder | None:
        """A client's order by its id (``client_id`` None: any client's working order)."""
        for o in self.orders.values():
            if o.order_id != order_id:
                continue
            if client_id is None and o.is_open:
                return o
            if client_id is not None and o.client_id == client_id:
                return o
        return None

    def _market_price(self, o: ServerOrder) -> float:
        if self.market_fill_price is not None:
            return self.market_fill_price
        frame = self._frame(o.contract.symbol)
        if frame is not None and not frame.empty:
            return float(frame["close"].iloc[-1])
        return 100.0

    def _mark(self, p: ServerPosition) -> float:
        frame = self._frame(p.contract.symbol)
        if frame is not None and not frame.empty and p.contract.sec_type == "STK":
            return float(frame["close"].iloc[-1])
        return p.avg_cost / p.contract.mult if p.quantity else 0.0

    def _values(self) -> dict[str, str]:
        vals = dict(self.account_values)
        gross = sum(abs(p.quantity) * p.avg_cost for p in self.positions.values())
        vals["GrossPositionValue"] = gross
        return {k: f"{v:.2f}" for k, v in vals.items()}

    def _new_perm_id(self) -> int:
        self._perm_seq += 1
        return self._perm_seq

    def _fill(
        self, o: ServerOrder, qty: float, price: float, *, tell: bool = True
    ) -> ServerExecution:
        """Execute ``qty`` of ``o`` at ``price``; ``tell`` False keeps the client in the dark
        (an execution it only learns of by asking: reqExecutions)."""
        qty = min(qty, o.remaining)
        self._exec_seq += 1
        prev = o.filled
        o.filled = prev + qty
        o.avg_price = (o.avg_price * prev + price * qty) / o.filled
        o.last_fill_price = price
        if o.remaining <= 1e-9:
            o.status = "Filled"
            o.completed_status = f"Filled Size: {o.filled:g}"
            o.completed_ts = time.time()
        commission = max(self.commission_per_share * qty, self.commission_minimum)
        e = ServerExecution(
            exec_id=f"0000e0d5.{o.perm_id:08x}.{self._exec_seq:02d}.01",
            order=o,
            shares=qty,
            price=price,
            ts=time.time(),
            cum_qty=o.filled,
            avg_price=o.avg_price,
            commission=commission,
        )
        self.executions.append(e)
        pos = self._apply_position(o, qty, price)
        if not tell or self.faults.ib_lost:
            return e
        timing = self.faults.commission_timing
        for s in self._order_watchers(o):
            if timing == "before":
                enc.send_commission(s, e)
            enc.send_execution(s, -1, e)
            enc.send_order_status(s, o)
            if timing == "after":
                enc.send_commission(s, e)
        if timing == "held":
            self.faults.held_commissions.append(e)
        for s in self._sessions:
            if s.positions_sub:
                enc.send_position(s, pos)
            if s.account_sub:
                enc.send_portfolio(s, pos, self._mark(pos))
        return e

    def _apply_position(self, o: ServerOrder, qty: float, price: float) -> ServerPosition:
        c = o.contract
        key = (o.account, *c.key)
        p = self.positions.get(key) or ServerPosition(c, 0.0, 0.0, o.account)
        signed = qty if o.action == "BUY" else -qty
        unit = price * c.mult
        new_q = p.quantity + signed
        if abs(new_q) < 1e-9:
            p.quantity, p.avg_cost = 0.0, 0.0
        elif p.quantity == 0 or (p.quantity > 0) == (signed > 0):
            p.avg_cost = (p.avg_cost * abs(p.quantity) + unit * abs(signed)) / abs(new_q)
            p.quantity = new_q
        else:
            if (new_q > 0) != (p.quantity > 0):
                p.avg_cost = unit
            p.quantity = new_q
        self.positions[key] = p
        cash = self.account_values.get("TotalCashValue", 0.0) - signed * unit
        self.account_values["TotalCashValue"] = cash
        return p

    def _end_order(self, o: ServerOrder, status: str, why: str) -> None:
        o.status = status
        o.completed_status = why
        o.completed_ts = time.time()

    # -- the demo feed --------------------------------------------------------------------
    async def _tick_loop(self, interval: float) -> None:
        """Replay bar closes as quotes to subscribers (the demo's live feed)."""
        while True:
            await asyncio.sleep(interval)
            if self.faults.ib_lost:
                continue
            for s in list(self._sessions):
                for req_id, sym in list(s.mkt.items()):
                    frame = self._frame(sym)
                    if frame is None or frame.empty:
                        continue
                    i = s.cursors.get(req_id, 0) % len(frame)
                    s.cursors[req_id] = i + 1
                    px = float(frame["close"].iloc[i])
                    enc.send_quote(
                        s,
                        req_id,
                        round(px - 0.01, 2),
                        round(px + 0.01, 2),
                        round(px, 2),
                        float(frame["volume"].iloc[i]),
                    )


__all__ = ["ContractFields", "Faults", "Gateway"]
