"""A loopback server that speaks the TWS API wire protocol, for tests and demos.

IB Gateway cannot run in CI, so this is an independent implementation of the gateway side of
the socket protocol (text protocol, server version 178): the ``API\\0`` handshake, 4-byte
big-endian length-prefixed messages of NUL-terminated fields, ``startApi`` -> ``nextValidId`` +
``managedAccounts``, and the requests an API client makes at start-up and while trading. It is
written from the protocol, not from a client library: nothing here imports ``ib_async``.

It keeps one simulated account: orders (market orders fill at once, limit/stop orders when
told), executions, positions, account values and bar data for historical and streaming
requests. Knobs let a test send an error, reject the next order, drop every connection, refuse
new ones for a while, or roll ``nextValidId`` back as a restarted gateway may.

Run from a test::

    with IBTestServer(market_fill_price=101.0) as srv:   # binds 127.0.0.1:<ephemeral>
        cfg = IBConfig(port=srv.port)
        ...
        srv.fill_order(order_id, price=99.5)

or standalone for a demo: ``python -m fbterm.testing.ibserver --port 4002``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import math
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

log = logging.getLogger("fbterm.testing.ibserver")

SERVER_VERSION = 178
MIN_CLIENT_VERSION = 157

# Incoming message ids (client -> server).
REQ_MKT_DATA = 1
CANCEL_MKT_DATA = 2
PLACE_ORDER = 3
CANCEL_ORDER = 4
REQ_OPEN_ORDERS = 5
REQ_ACCT_DATA = 6
REQ_EXECUTIONS = 7
REQ_IDS = 8
REQ_CONTRACT_DATA = 9
REQ_ALL_OPEN_ORDERS = 16
REQ_HISTORICAL_DATA = 20
CANCEL_HISTORICAL_DATA = 25
REQ_CURRENT_TIME = 49
REQ_MARKET_DATA_TYPE = 59
REQ_POSITIONS = 61
REQ_ACCOUNT_SUMMARY = 62
CANCEL_ACCOUNT_SUMMARY = 63
CANCEL_POSITIONS = 64
START_API = 71
REQ_ACCOUNT_UPDATES_MULTI = 76
CANCEL_ACCOUNT_UPDATES_MULTI = 77
REQ_COMPLETED_ORDERS = 99

# Outgoing message ids (server -> client).
TICK_PRICE = 1
TICK_SIZE = 2
ORDER_STATUS = 3
ERR_MSG = 4
OPEN_ORDER = 5
ACCT_VALUE = 6
PORTFOLIO_VALUE = 7
ACCT_UPDATE_TIME = 8
NEXT_VALID_ID = 9
EXECUTION_DATA = 11
MANAGED_ACCTS = 15
HISTORICAL_DATA = 17
CURRENT_TIME = 49
CONTRACT_DATA = 10
CONTRACT_DATA_END = 52
OPEN_ORDER_END = 53
ACCT_DOWNLOAD_END = 54
EXECUTION_DATA_END = 55
COMMISSION_REPORT = 59
POSITION_DATA = 61
POSITION_END = 62
ACCOUNT_SUMMARY = 63
ACCOUNT_SUMMARY_END = 64
ACCOUNT_UPDATE_MULTI = 73
ACCOUNT_UPDATE_MULTI_END = 74
COMPLETED_ORDERS_END = 102

# Tick types for reqMktData answers.
TICK_BID, TICK_ASK, TICK_LAST, TICK_VOLUME = 1, 2, 4, 8

DEFAULT_ACCOUNT_VALUES: dict[str, float] = {
    "NetLiquidation": 1_000_000.0,
    "TotalCashValue": 1_000_000.0,
    "BuyingPower": 4_000_000.0,
    "AvailableFunds": 1_000_000.0,
    "ExcessLiquidity": 1_000_000.0,
    "InitMarginReq": 0.0,
    "MaintMarginReq": 0.0,
    "GrossPositionValue": 0.0,
    "RealizedPnL": 0.0,
    "UnrealizedPnL": 0.0,
}

_UNIT_SECONDS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}
_BAR_UNIT_SECONDS = {
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86_400,
    "days": 86_400,
    "week": 7 * 86_400,
    "weeks": 7 * 86_400,
    "month": 30 * 86_400,
    "months": 30 * 86_400,
}


def parse_duration(s: str) -> int:
    """IB duration string (``"3600 S"``, ``"2 D"``, ``"1 W"``) -> seconds."""
    n, unit = s.split()
    return int(n) * _UNIT_SECONDS[unit.upper()]


def parse_bar_size(s: str) -> int:
    """IB bar size setting (``"5 secs"``, ``"1 min"``, ``"1 day"``) -> seconds."""
    n, unit = s.split()
    return int(n) * _BAR_UNIT_SECONDS[unit.lower()]


def parse_end_time(s: str) -> dt.datetime:
    """The endDateTime of a historical request; empty means now."""
    s = s.strip()
    if not s:
        return dt.datetime.now(dt.UTC)
    if "-" in s[:9] and len(s) >= 17:  # 20240105-15:30:00 (UTC)
        return dt.datetime.strptime(s[:17], "%Y%m%d-%H:%M:%S").replace(tzinfo=dt.UTC)
    parts = s.split()
    when = dt.datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
    tz = dt.UTC
    if len(parts) > 2 and parts[2].upper() not in ("UTC", "GMT"):
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(parts[2])  # type: ignore[assignment]
    return when.replace(tzinfo=tz).astimezone(dt.UTC)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(v)
    return str(v)


def encode(*fields: Any) -> bytes:
    """One framed message: 4-byte big-endian length, then NUL-terminated fields."""
    body = "".join(_fmt(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(body)) + body


def _ib_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class ContractFields:
    """The contract fields the protocol carries, as the client sent them."""

    symbol: str
    sec_type: str = "STK"
    last_trade: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    con_id: int = 0

    @property
    def key(self) -> tuple[str, str, str, float, str]:
        return (self.symbol, self.sec_type, self.last_trade, self.strike, self.right)

    @property
    def conid(self) -> int:
        if self.con_id:
            return self.con_id
        # A stable id per instrument so positions and executions line up across sessions.
        return zlib.crc32("|".join(map(str, self.key)).encode()) & 0x7FFFFFFF

    @property
    def mult(self) -> float:
        return float(self.multiplier) if self.multiplier else 1.0

    def fields(self, *, with_exchange: bool = True, primary: bool = False) -> list[Any]:
        out: list[Any] = [
            self.conid,
            self.symbol,
            self.sec_type,
            self.last_trade,
            self.strike,
            self.right,
            self.multiplier,
        ]
        if primary:
            out.append(self.primary_exchange)
        elif with_exchange:
            out.append(self.exchange)
        out += [self.currency, self.local_symbol or self.symbol, self.trading_class]
        return out


def stock(symbol: str) -> ContractFields:
    return ContractFields(symbol=symbol)


@dataclass(slots=True)
class ServerOrder:
    client_id: int
    order_id: int
    perm_id: int
    contract: ContractFields
    action: str
    total_qty: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    avg_price: float = 0.0
    last_fill_price: float = 0.0

    @property
    def remaining(self) -> float:
        return max(self.total_qty - self.filled, 0.0)

    @property
    def is_open(self) -> bool:
        return self.status in ("PreSubmitted", "Submitted", "PendingCancel")


@dataclass(slots=True)
class ServerExecution:
    exec_id: str
    order: ServerOrder
    shares: float
    price: float
    ts: float
    cum_qty: float
    avg_price: float
    commission: float


@dataclass(slots=True)
class ServerPosition:
    contract: ContractFields
    quantity: float
    avg_cost: float  # per unit times multiplier, as IB reports it


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """What a client asked for (tests assert on the requests a pager made)."""

    req_id: int
    symbol: str
    end: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int
    received: float


@dataclass
class _Session:
    writer: asyncio.StreamWriter
    client_id: int = -1
    positions_sub: bool = False
    account_sub: bool = False
    mkt: dict[int, str] = field(default_factory=dict)
    cursors: dict[int, int] = field(default_factory=dict)
    received: list[tuple[int, float]] = field(default_factory=list)  # (msg id, monotonic time)

    def send(self, *fields: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(*fields))


def synthetic_bars(
    symbols: Iterable[str] = ("AAPL", "MSFT", "SPY", "NVDA"),
    *,
    start: str = "2024-01-02 14:30",
    periods: int = 3 * 390,
    freq: str = "1min",
    seed: int = 11,
) -> dict[str, pd.DataFrame]:
    """Deterministic random-walk bars in fbterm's bar shape, one frame per symbol."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=periods, freq=freq, tz="UTC", name="ts").as_unit("ns")
    out: dict[str, pd.DataFrame] = {}
    for i, sym in enumerate(symbols):
        base = 100.0 + 50.0 * i
        close = base * np.exp(np.cumsum(rng.normal(0, 0.001, periods)))
        open_ = np.concatenate([[base], close[:-1]])
        spread = np.abs(rng.normal(0, 0.0005, periods)) * close
        out[sym] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.integers(100, 5000, periods).astype(float),
            },
            index=idx,
        )
    return out


# -------------------------------------------------------------------------------- server


class IBTestServer:
    """A TWS-protocol gateway on 127.0.0.1 backed by one simulated account.

    All knob methods are thread-safe: they run on the server's own event loop (its background
    thread after :meth:`start`) and return when the server has acted.
    """

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
            self.positions[c.key] = ServerPosition(c, float(qty), float(cost))
        self.account_values = dict(
            DEFAULT_ACCOUNT_VALUES if account_values is None else account_values
        )
        self.commission_per_share = commission_per_share
        self.commission_minimum = commission_minimum
        self.pacing_window = pacing_window
        self.tick_interval = tick_interval
        self.connect_messages = connect_messages

        self.orders: dict[tuple[int, int], ServerOrder] = {}
        self.executions: list[ServerExecution] = []
        self.historical_requests: list[HistoricalRequest] = []
        self.placed: list[tuple[int, int]] = []  # (client id, order id) of every placeOrder
        # The raw fields of each placeOrder, for tests of order terms the server does not model.
        self.place_fields: dict[tuple[int, int], list[str]] = {}
        self.connections_accepted = 0
        self._max_order_id: dict[int, int] = {}
        self._perm_seq = 1_000_000
        self._exec_seq = 0
        self._reject_next: list[str] = []
        self._drop_next_order: float | None = None
        self._refuse_until = 0.0
        self._sessions: list[_Session] = []
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

    def start(self, timeout: float = 5.0) -> IBTestServer:
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

    def __enter__(self) -> IBTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    # -- knobs ----------------------------------------------------------------------------
    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        """Send an error/info message (e.g. 1100, 1102, 2104) to every connected client."""

        def go() -> None:
            for s in self._sessions:
                self._send_error(s, req_id, code, message)

        self._call(go)

    def drop_connections(self, refuse_for: float = 0.0) -> int:
        """Abort every client socket; optionally refuse reconnects for ``refuse_for`` seconds."""

        def go() -> int:
            n = len(self._sessions)
            self._refuse_until = time.monotonic() + refuse_for
            for s in list(self._sessions):
                s.writer.transport.abort()
            self._sessions.clear()
            return n

        return int(self._call(go))

    def refuse_connections(self, seconds: float) -> None:
        def go() -> None:
            self._refuse_until = time.monotonic() + seconds

        self._call(go)

    def reject_next_order(self, reason: str = "Insufficient buying power") -> None:
        self._call(lambda: self._reject_next.append(reason))

    def drop_on_next_order(self, refuse_for: float = 0.0) -> None:
        """Drop the connection when the next placeOrder arrives, without acting on it."""

        def go() -> None:
            self._drop_next_order = refuse_for

        self._call(go)

    def set_market_fill_price(self, price: float | None) -> None:
        def go() -> None:
            self.market_fill_price = price

        self._call(go)

    def set_next_valid_id(self, order_id: int) -> None:
        """What the next connection is told; lower it to mimic a gateway restart."""

        def go() -> None:
            self.next_valid_id = order_id
            self._max_order_id.clear()

        self._call(go)

    def fill_order(
        self,
        order_id: int,
        price: float | None = None,
        quantity: float | None = None,
        client_id: int | None = None,
    ) -> ServerExecution:
        """Fill a working order (all of it unless ``quantity``), e.g. a limit order on command."""

        def go() -> ServerExecution:
            o = self._find(order_id, client_id)
            if o is None or not o.is_open:
                raise KeyError(f"no working order {order_id}")
            px = (
                price
                if price is not None
                else (o.lmt_price or o.aux_price or self._market_price(o))
            )
            return self._fill(o, quantity if quantity is not None else o.remaining, px)

        return self._call(go)  # type: ignore[no-any-return]

    def push_quote(
        self, symbol: str, bid: float, ask: float, last: float, size: float = 100.0
    ) -> int:
        """Send one quote to every market-data subscriber of ``symbol``; returns how many."""

        def go() -> int:
            n = 0
            for s in self._sessions:
                for req_id, sym in s.mkt.items():
                    if sym == symbol:
                        self._send_quote(s, req_id, bid, ask, last, size)
                        n += 1
            return n

        return int(self._call(go))

    def open_orders(self) -> list[ServerOrder]:
        return list(self._call(lambda: [o for o in self.orders.values() if o.is_open]))

    def sessions(self) -> int:
        return int(self._call(lambda: len(self._sessions)))

    def received_messages(self) -> list[tuple[int, float]]:
        """(message id, monotonic arrival time) of every message from every session so far."""
        return list(self._call(lambda: list(self._received_all)))

    # -- connection -----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.transport.abort()
            return
        session = _Session(writer)
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

    def _dispatch(self, s: _Session, f: list[str]) -> None:
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
            self._send_error(s, -1, 320, f"Server error when reading an API client request: {f[0]}")

    # -- request handlers -------------------------------------------------------------------
    def _on_start_api(self, s: _Session, f: list[str]) -> None:
        s.client_id = int(f[2])
        s.send(
            NEXT_VALID_ID, 1, max(self.next_valid_id, self._max_order_id.get(s.client_id, 0) + 1)
        )
        s.send(MANAGED_ACCTS, 1, ",".join(self.accounts))
        if self.connect_messages:
            self._send_error(s, -1, 2104, "Market data farm connection is OK:usfarm")
            self._send_error(s, -1, 2106, "HMDS data farm connection is OK:ushmds")

    def _on_req_ids(self, s: _Session, f: list[str]) -> None:
        s.send(
            NEXT_VALID_ID, 1, max(self.next_valid_id, self._max_order_id.get(s.client_id, 0) + 1)
        )

    def _on_req_positions(self, s: _Session, f: list[str]) -> None:
        s.positions_sub = True
        for p in self.positions.values():
            self._send_position(s, p)
        s.send(POSITION_END, 1)

    def _on_cancel_positions(self, s: _Session, f: list[str]) -> None:
        s.positions_sub = False

    def _on_req_open_orders(self, s: _Session, f: list[str]) -> None:
        everyone = int(f[0]) == REQ_ALL_OPEN_ORDERS or s.client_id == 0
        for o in self.orders.values():
            if o.is_open and (everyone or o.client_id == s.client_id):
                self._send_open_order(s, o)
                self._send_order_status(s, o)
        s.send(OPEN_ORDER_END, 1)

    def _on_req_completed_orders(self, s: _Session, f: list[str]) -> None:
        # Completed orders are not replayed; executions (reqExecutions) carry every fill.
        s.send(COMPLETED_ORDERS_END)

    def _on_req_account_updates(self, s: _Session, f: list[str]) -> None:
        subscribe = f[2] == "1"
        s.account_sub = subscribe
        if not subscribe:
            return
        acct = f[3] or self.accounts[0]
        for tag, val in self._values().items():
            s.send(ACCT_VALUE, 2, tag, val, "USD", acct)
        for p in self.positions.values():
            self._send_portfolio(s, p, acct)
        s.send(ACCT_UPDATE_TIME, 1, time.strftime("%H:%M"))
        s.send(ACCT_DOWNLOAD_END, 1, acct)

    def _on_req_account_updates_multi(self, s: _Session, f: list[str]) -> None:
        req_id, acct, model = int(f[2]), f[3] or self.accounts[0], f[4]
        for tag, val in self._values().items():
            s.send(ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, tag, val, "USD")
        s.send(ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _on_req_account_summary(self, s: _Session, f: list[str]) -> None:
        req_id, tags = int(f[2]), set(f[4].split(","))
        for acct in self.accounts:
            for tag, val in self._values().items():
                if tag in tags or "$LEDGER:ALL" in tags:
                    s.send(ACCOUNT_SUMMARY, 1, req_id, acct, tag, val, "USD")
        s.send(ACCOUNT_SUMMARY_END, 1, req_id)

    def _on_req_executions(self, s: _Session, f: list[str]) -> None:
        req_id, client_filter = int(f[2]), int(f[3] or 0)
        symbol = f[6]
        for e in self.executions:
            if client_filter and e.order.client_id != client_filter:
                continue
            if symbol and e.order.contract.symbol != symbol:
                continue
            self._send_execution(s, req_id, e)
            self._send_commission(s, e)
        s.send(EXECUTION_DATA_END, 1, req_id)

    def _on_req_current_time(self, s: _Session, f: list[str]) -> None:
        s.send(CURRENT_TIME, 1, int(time.time()))

    def _on_req_contract_data(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        c = self._contract(f, 3)
        if c.sec_type not in ("STK", "OPT") or (
            c.sec_type == "STK" and self._frame(c.symbol) is None
        ):
            self._send_error(
                s, req_id, 200, "No security definition has been found for the request"
            )
            return
        mult = c.multiplier or ("100" if c.sec_type == "OPT" else "1")
        # Field order of CONTRACT_DATA at server version >= 164 (no version field).
        s.send(
            CONTRACT_DATA,
            req_id,
            c.symbol,
            c.sec_type,
            c.last_trade,
            c.strike,
            c.right,
            "SMART",
            c.currency or "USD",
            c.local_symbol or c.symbol,
            c.symbol,
            c.trading_class or c.symbol,
            c.conid,
            0.01,
            mult,
            "LMT,MKT,STP,STP LMT",
            "SMART,ISLAND",
            1,
            0,
            c.symbol,
            "NASDAQ",
            "",
            "",
            "",
            "",
            "US/Eastern",
            "",
            "",
            "",
            "",
            0,
            1,
            c.symbol if c.sec_type == "OPT" else "",
            "STK" if c.sec_type == "OPT" else "",
            "26",
            c.last_trade,
            "COMMON",
            1,
            1,
            1,
        )
        s.send(CONTRACT_DATA_END, 1, req_id)

    def _on_place_order(self, s: _Session, f: list[str]) -> None:
        order_id = int(f[1])
        self.place_fields[(s.client_id, order_id)] = list(f)
        c = self._contract(f, 2)
        action, qty, otype = f[16], float(f[17]), f[18]
        lmt = float(f[19]) if f[19] else None
        aux = float(f[20]) if f[20] else None
        tif, account, order_ref = f[21], f[23] or self.accounts[0], f[26]
        if self._drop_next_order is not None:
            self._refuse_until = time.monotonic() + self._drop_next_order
            self._drop_next_order = None
            for sess in list(self._sessions):
                sess.writer.transport.abort()
            self._sessions.clear()
            return
        self.placed.append((s.client_id, order_id))
        existing = self.orders.get((s.client_id, order_id))
        if existing is not None:
            if not existing.is_open:
                self._send_error(s, order_id, 103, "Duplicate order id")
                return
            # A placeOrder for a working id is a modification.
            if qty < existing.filled:
                self._send_error(
                    s,
                    order_id,
                    10147,
                    "OrderId that needs to be modified cannot be modified: quantity below filled",
                )
                return
            existing.total_qty, existing.order_type = qty, otype
            existing.lmt_price, existing.aux_price, existing.tif = lmt, aux, tif
            self._send_open_order(s, existing)
            self._send_order_status(s, existing)
            if otype == "MKT" and self.auto_fill_market:
                self._fill(existing, existing.remaining, self._market_price(existing))
            return
        if order_id <= self._max_order_id.get(s.client_id, 0):
            self._send_error(s, order_id, 103, "Duplicate order id")
            return
        self._max_order_id[s.client_id] = order_id
        if self._reject_next:
            reason = self._reject_next.pop(0)
            self._send_error(s, order_id, 201, f"Order rejected - reason:{reason}")
            return
        if otype not in ("MKT", "LMT", "STP", "STP LMT") or qty <= 0:
            self._send_error(
                s, order_id, 201, f"Order rejected - reason:unsupported order {otype} x {qty:g}"
            )
            return
        self._perm_seq += 1
        o = ServerOrder(
            s.client_id,
            order_id,
            self._perm_seq,
            c,
            action,
            qty,
            otype,
            lmt,
            aux,
            tif or "DAY",
            account,
            order_ref,
        )
        self.orders[(s.client_id, order_id)] = o
        self._send_open_order(s, o)
        self._send_order_status(s, o)
        if otype == "MKT" and self.auto_fill_market:
            self._fill(o, qty, self._market_price(o))

    def _on_cancel_order(self, s: _Session, f: list[str]) -> None:
        order_id = int(f[2])
        o = self.orders.get((s.client_id, order_id))
        if o is None:
            self._send_error(s, order_id, 135, f"Can't find order with id ={order_id}")
            return
        if not o.is_open:
            self._send_error(
                s,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {o.status}.",
            )
            return
        o.status = "Cancelled"
        self._send_order_status(s, o)
        self._send_error(s, order_id, 202, "Order Canceled - reason:")

    def _on_req_historical(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[1])
        c = self._contract(f, 2)
        end_s, bar_size, duration = f[15], f[16], f[17]
        use_rth, what, fmt = f[18] == "1", f[19], int(f[20] or 1)
        req = HistoricalRequest(
            req_id, c.symbol, end_s, duration, bar_size, what, use_rth, fmt, time.monotonic()
        )
        if self.pacing_window > 0:
            for prev in reversed(self.historical_requests):
                if req.received - prev.received > self.pacing_window:
                    break
                if (prev.symbol, prev.end, prev.duration, prev.bar_size, prev.what_to_show) == (
                    req.symbol,
                    req.end,
                    req.duration,
                    req.bar_size,
                    req.what_to_show,
                ):
                    self.historical_requests.append(req)
                    self._send_error(
                        s,
                        req_id,
                        162,
                        "Historical Market Data Service error message:"
                        "Historical data request pacing violation",
                    )
                    return
        self.historical_requests.append(req)
        frame = self._frame(c.symbol)
        if frame is None:
            self._send_error(
                s, req_id, 200, "No security definition has been found for the request"
            )
            return
        end = parse_end_time(end_s)
        start = end - dt.timedelta(seconds=parse_duration(duration))
        sel = frame[(frame.index >= pd.Timestamp(start)) & (frame.index < pd.Timestamp(end))]
        step = parse_bar_size(bar_size)
        native = (
            int(frame.index.to_series().diff().dropna().min().total_seconds())
            if len(frame) > 1
            else step
        )
        if step > native and len(sel):
            sel = (
                sel.resample(f"{step}s", origin="epoch", label="left", closed="left")
                .agg(
                    {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
                )
                .dropna()
            )
        if sel.empty:
            self._send_error(
                s,
                req_id,
                162,
                "Historical Market Data Service error message:"
                f"HMDS query returned no data: {c.symbol}@SMART {what}",
            )
            return
        out: list[Any] = [
            HISTORICAL_DATA,
            req_id,
            _ib_time(start.timestamp()),
            _ib_time(end.timestamp()),
            len(sel),
        ]
        daily = step >= 86_400
        rows: Iterable[Any] = sel.itertuples(index=False)  # pandas types the fields loosely
        for ts, row in zip(sel.index, rows, strict=True):
            date = (
                ts.strftime("%Y%m%d")
                if daily
                else (str(int(ts.timestamp())) if fmt == 2 else _ib_time(ts.timestamp()))
            )
            out += [
                date,
                float(row.open),
                float(row.high),
                float(row.low),
                float(row.close),
                float(row.volume),
                float(row.close),
                1,
            ]
        s.send(*out)

    def _on_req_mkt_data(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        c = self._contract(f, 3)
        s.mkt[req_id] = c.symbol
        frame = self._frame(c.symbol)
        if frame is None or frame.empty:
            self._send_error(
                s, req_id, 200, "No security definition has been found for the request"
            )
            return
        px = float(frame["close"].iloc[-1])
        self._send_quote(s, req_id, px - 0.01, px + 0.01, px, 100.0)

    def _on_cancel_mkt_data(self, s: _Session, f: list[str]) -> None:
        s.mkt.pop(int(f[2]), None)

    def _on_ignore(self, s: _Session, f: list[str]) -> None:
        pass

    _handlers: ClassVar[dict[int, Callable[[IBTestServer, _Session, list[str]], None]]] = {
        START_API: _on_start_api,
        REQ_IDS: _on_req_ids,
        REQ_POSITIONS: _on_req_positions,
        CANCEL_POSITIONS: _on_cancel_positions,
        REQ_OPEN_ORDERS: _on_req_open_orders,
        REQ_ALL_OPEN_ORDERS: _on_req_open_orders,
        REQ_COMPLETED_ORDERS: _on_req_completed_orders,
        REQ_ACCT_DATA: _on_req_account_updates,
        REQ_ACCOUNT_UPDATES_MULTI: _on_req_account_updates_multi,
        CANCEL_ACCOUNT_UPDATES_MULTI: _on_ignore,
        REQ_ACCOUNT_SUMMARY: _on_req_account_summary,
        CANCEL_ACCOUNT_SUMMARY: _on_ignore,
        REQ_EXECUTIONS: _on_req_executions,
        REQ_CURRENT_TIME: _on_req_current_time,
        REQ_CONTRACT_DATA: _on_req_contract_data,
        PLACE_ORDER: _on_place_order,
        CANCEL_ORDER: _on_cancel_order,
        REQ_HISTORICAL_DATA: _on_req_historical,
        CANCEL_HISTORICAL_DATA: _on_ignore,
        REQ_MKT_DATA: _on_req_mkt_data,
        CANCEL_MKT_DATA: _on_cancel_mkt_data,
        REQ_MARKET_DATA_TYPE: _on_ignore,
    }

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _contract(f: list[str], i: int) -> ContractFields:
        return ContractFields(
            con_id=int(f[i] or 0),
            symbol=f[i + 1],
            sec_type=f[i + 2],
            last_trade=f[i + 3],
            strike=float(f[i + 4] or 0),
            right=f[i + 5],
            multiplier=f[i + 6],
            exchange=f[i + 7],
            primary_exchange=f[i + 8],
            currency=f[i + 9],
            local_symbol=f[i + 10],
            trading_class=f[i + 11],
        )

    def _frame(self, symbol: str) -> pd.DataFrame | None:
        return self.bars.get(symbol, self._bars_default)

    def _find(self, order_id: int, client_id: int | None) -> ServerOrder | None:
        if client_id is not None:
            return self.orders.get((client_id, order_id))
        for (_cid, oid), o in self.orders.items():
            if oid == order_id and o.is_open:
                return o
        return None

    def _market_price(self, o: ServerOrder) -> float:
        if self.market_fill_price is not None:
            return self.market_fill_price
        frame = self._frame(o.contract.symbol)
        if frame is not None and not frame.empty:
            return float(frame["close"].iloc[-1])
        return 100.0

    def _values(self) -> dict[str, str]:
        vals = dict(self.account_values)
        gross = sum(abs(p.quantity) * p.avg_cost for p in self.positions.values())
        vals["GrossPositionValue"] = gross
        return {k: f"{v:.2f}" for k, v in vals.items()}

    def _session_of(self, client_id: int) -> list[_Session]:
        return [s for s in self._sessions if s.client_id == client_id]

    def _fill(self, o: ServerOrder, qty: float, price: float) -> ServerExecution:
        qty = min(qty, o.remaining)
        self._exec_seq += 1
        prev = o.filled
        o.filled = prev + qty
        o.avg_price = (o.avg_price * prev + price * qty) / o.filled
        o.last_fill_price = price
        if o.remaining <= 1e-9:
            o.status = "Filled"
        commission = max(self.commission_per_share * qty, self.commission_minimum)
        e = ServerExecution(
            exec_id=f"0000e0d5.{self._perm_seq:08x}.{self._exec_seq:02d}.01",
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
        for s in self._session_of(o.client_id):
            self._send_execution(s, -1, e)
            self._send_order_status(s, o)
            self._send_commission(s, e)
        for s in self._sessions:
            if s.positions_sub:
                self._send_position(s, pos)
            if s.account_sub:
                self._send_portfolio(s, pos, o.account)
        return e

    def _apply_position(self, o: ServerOrder, qty: float, price: float) -> ServerPosition:
        c = o.contract
        p = self.positions.get(c.key) or ServerPosition(c, 0.0, 0.0)
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
        self.positions[c.key] = p
        cash = self.account_values.get("TotalCashValue", 0.0) - signed * unit
        self.account_values["TotalCashValue"] = cash
        return p

    # -- encoders ---------------------------------------------------------------------------
    def _send_error(self, s: _Session, req_id: int, code: int, msg: str) -> None:
        s.send(ERR_MSG, 2, req_id, code, msg, "")

    def _send_position(self, s: _Session, p: ServerPosition) -> None:
        s.send(POSITION_DATA, 3, self.accounts[0], *p.contract.fields(), p.quantity, p.avg_cost)

    def _send_portfolio(self, s: _Session, p: ServerPosition, acct: str) -> None:
        mark = p.avg_cost / p.contract.mult if p.quantity else 0.0
        frame = self._frame(p.contract.symbol)
        if frame is not None and not frame.empty and p.contract.sec_type == "STK":
            mark = float(frame["close"].iloc[-1])
        value = p.quantity * mark * p.contract.mult
        unreal = value - p.quantity * p.avg_cost
        s.send(
            PORTFOLIO_VALUE,
            8,
            *p.contract.fields(primary=True),
            p.quantity,
            mark,
            value,
            p.avg_cost,
            unreal,
            0.0,
            acct,
        )

    def _send_order_status(self, s: _Session, o: ServerOrder) -> None:
        s.send(
            ORDER_STATUS,
            o.order_id,
            o.status,
            o.filled,
            o.remaining,
            o.avg_price,
            o.perm_id,
            0,
            o.last_fill_price,
            o.client_id,
            "",
            0.0,
        )

    def _send_execution(self, s: _Session, req_id: int, e: ServerExecution) -> None:
        o = e.order
        side = "BOT" if o.action == "BUY" else "SLD"
        s.send(
            EXECUTION_DATA,
            req_id,
            o.order_id,
            *o.contract.fields(),
            e.exec_id,
            _ib_time(e.ts),
            o.account,
            "ISLAND",
            side,
            e.shares,
            e.price,
            o.perm_id,
            o.client_id,
            0,
            e.cum_qty,
            e.avg_price,
            o.order_ref,
            "",
            "",
            "",
            1,
            0,
        )

    def _send_commission(self, s: _Session, e: ServerExecution) -> None:
        s.send(COMMISSION_REPORT, 1, e.exec_id, e.commission, "USD", "", "", "")

    def _send_quote(
        self, s: _Session, req_id: int, bid: float, ask: float, last: float, size: float
    ) -> None:
        s.send(TICK_PRICE, 6, req_id, TICK_BID, bid, size, 0)
        s.send(TICK_PRICE, 6, req_id, TICK_ASK, ask, size, 0)
        s.send(TICK_PRICE, 6, req_id, TICK_LAST, last, size, 0)

    def _send_open_order(self, s: _Session, o: ServerOrder) -> None:
        c = o.contract
        f: list[Any] = [
            OPEN_ORDER,
            o.order_id,
            *c.fields(),
            o.action,
            o.total_qty,
            o.order_type,
            o.lmt_price,
            o.aux_price,
            o.tif,
            "",
            o.account,
            "O",
            0,
            o.order_ref,
            o.client_id,
            o.perm_id,
            0,
            0,
            0.0,
            "",
            "",
            "",
            "",
            "",
            # modelCode .. deltaNeutralAuxPrice
            "",
            "",
            "",
            "",
            "",
            0,
            "",
            "",
            0,
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            0,
            0,
            "",
            3,
            0,
            0,
            "",
            0,
            0,
            "",
            0,
            "",
            "",
            # continuousUpdate .. comboLegsDescrip, then no legs, no order legs, no params
            0,
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            0,
            0,
            # scale fields, hedgeType
            "",
            "",
            "",
            "",
            # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, no delta-neutral
            0,
            "",
            "",
            0,
            0,
            # algoStrategy
            "",
            # solicited, whatIf, order state ...
            0,
            0,
            o.status,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            0,
            # no conditions
            0,
            # adjusted order fields .. usePriceMgmtAlgo
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            0,
            "",
            "",
            "",
            "",
            0,
            0,
            "",
            "",
            # duration, postToAts, autoCancelParent (v159+), min trade qty .. mid offsets (v170+)
            "",
            "",
            0,
            "",
            "",
            "",
            "",
            "",
        ]
        s.send(*f)

    async def _tick_loop(self, interval: float) -> None:
        """Replay bar closes as quotes to subscribers (the demo's live feed)."""
        while True:
            await asyncio.sleep(interval)
            for s in list(self._sessions):
                for req_id, sym in list(s.mkt.items()):
                    frame = self._frame(sym)
                    if frame is None or frame.empty:
                        continue
                    i = s.cursors.get(req_id, 0) % len(frame)
                    s.cursors[req_id] = i + 1
                    px = float(frame["close"].iloc[i])
                    self._send_quote(
                        s,
                        req_id,
                        round(px - 0.01, 2),
                        round(px + 0.01, 2),
                        round(px, 2),
                        float(frame["volume"].iloc[i]),
                    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fbterm.testing.ibserver",
        description="A loopback TWS-protocol gateway for demos and tests.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4002)
    p.add_argument("--account", default="DU1234567")
    p.add_argument(
        "--fill-price",
        type=float,
        default=None,
        help="market orders fill here (default: the symbol's last bar close)",
    )
    p.add_argument(
        "--tick-interval", type=float, default=0.25, help="seconds between streamed quotes"
    )
    p.add_argument(
        "--csv", help="bars CSV (columns ts,open,high,low,close,volume) served for every symbol"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    bars: Any = None
    if args.csv:
        bars = pd.read_csv(args.csv, index_col=0, parse_dates=True)
        bars.index = pd.DatetimeIndex(
            bars.index, tz="UTC" if bars.index.tz is None else None, name="ts"
        )
    else:
        # Two hours of 5-second bars ending now: a client asking for recent history (fbterm
        # warming its strategies up) gets some, as it would from a real gateway.
        now = pd.Timestamp.now(tz="UTC").floor("5s")
        bars = synthetic_bars(
            start=str((now - pd.Timedelta(hours=2)).tz_localize(None)), periods=1440, freq="5s"
        )
    srv = IBTestServer(
        host=args.host,
        port=args.port,
        accounts=[args.account],
        market_fill_price=args.fill_price,
        tick_interval=args.tick_interval,
        bars=bars,
    )

    async def run() -> None:
        await srv.serve()
        print(
            f"IB test gateway listening on {args.host}:{srv.port} (account {args.account}); Ctrl-C stops",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await srv.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
