"""The link to TWS/IB Gateway: connecting with clear errors, the connection state machine,
and reconnecting with exponential backoff.

States (:class:`~fbterm.execution.brokers.base.ConnectionState`)::

    DISCONNECTED --start--> SYNCING --end_sync--> CONNECTED / READ_ONLY
    CONNECTED --1100--> LOST --1101/1102--> SYNCING --end_sync--> CONNECTED
    any --socket drop--> RECONNECTING --reconnected--> SYNCING
    CONNECTED --321 read-only--> READ_ONLY (until the next connection)

Every change is a :class:`ConnectionEvent`; the engine alerts on the ones that cut us off and
reconciles on SYNCING. Orders go out only while CONNECTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from ib_async import IB
from ib_async.ib import StartupFetch

from fbterm.config import IBConfig
from fbterm.execution.brokers.base import BrokerError, ConnectionEvent, ConnectionState
from fbterm.execution.brokers.ib.codes import (
    READ_ONLY_API,
    IBConnectError,
    client_id_in_use,
    several_accounts,
    unknown_account,
)

log = logging.getLogger("fbterm.execution.brokers.ib")

# Orders, completed orders and executions come from the engine's re-sync (IB's answers);
# asking for them while connecting too would only fill ib_async's caches twice.
_STARTUP_FETCH = (
    StartupFetch.POSITIONS | StartupFetch.ACCOUNT_UPDATES | StartupFetch.SUB_ACCOUNT_UPDATES
)


def reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the gateway running and the API port open?)"
    return str(e) or type(e).__name__


class Link:
    """One IB connection and its state. Lives on the engine thread's loop.

    ``emit`` hands events to the broker's handler; ``prepare`` runs on every new connection
    before anything else is sent (order-id floor, throttle).
    """

    def __init__(
        self,
        config: IBConfig,
        emit: Callable[[ConnectionEvent], None],
        prepare: Callable[[IB], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._emit = emit
        self._prepare = prepare
        self._sleep = sleep
        self.ib: IB | None = None
        self.state = ConnectionState.DISCONNECTED
        self.message = ""
        self.account = ""
        self.reconnects = 0
        self.api_read_only = False  # IB answered 321 "read-only mode" on this connection
        self._stopping = False
        self._connecting = False
        self._refusal: tuple[int, str] | None = None  # (code, text) IB gave while connecting
        self._reconnect_task: asyncio.Task[None] | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def up_state(self) -> ConnectionState:
        read_only = self.config.read_only or self.api_read_only
        return ConnectionState.READ_ONLY if read_only else ConnectionState.CONNECTED

    def set_state(
        self, state: ConnectionState, message: str, *, code: int = 0, data_lost: bool = False
    ) -> None:
        changed = state is not self.state
        self.state, self.message = state, message
        if changed or state in (ConnectionState.RECONNECTING, ConnectionState.SYNCING):
            log.info("IB connection %s: %s", state.value, message)
            self._emit(ConnectionEvent(state, message, time.time(), code, data_lost))

    def lost(self, code: int, message: str) -> None:
        """IB 1100/2110: the gateway is cut off from IB's servers (the socket is still up)."""
        if self.state is not ConnectionState.RECONNECTING:
            self.set_state(ConnectionState.LOST, message, code=code)

    def restored(self, code: int, message: str, *, data_lost: bool) -> None:
        """IB 1101/1102: IB's servers are back; the engine re-syncs before orders go out."""
        if self.ib is not None and self.ib.isConnected():
            self.set_state(ConnectionState.SYNCING, message, code=code, data_lost=data_lost)

    def read_only_detected(self, message: str) -> None:
        self.api_read_only = True
        if self.state is ConnectionState.CONNECTED:
            self.set_state(ConnectionState.READ_ONLY, message, code=321)

    def end_sync(self) -> None:
        if self.state is ConnectionState.SYNCING:
            self.set_state(self.up_state, f"re-synced with IB; {self.describe()}")

    def describe(self) -> str:
        cfg = self.config
        text = f"{cfg.host}:{cfg.port} as client {cfg.client_id}, account {self.account}"
        if self.up_state is ConnectionState.READ_ONLY:
            text += " (read-only: configured)" if cfg.read_only else f" ({READ_ONLY_API})"
        return text

    def refusal(self, code: int, text: str) -> None:
        """An IB error during the handshake that explains a refused connection (326)."""
        if self._connecting:
            self._refusal = (code, text)

    def check_can_trade(self, what: str) -> IB:
        if self.config.read_only:
            raise BrokerError(f"IB read-only mode (configured): {what} refused")
        if self.api_read_only:
            raise BrokerError(f"{READ_ONLY_API}: {what} refused")
        if (
            self.state is not ConnectionState.CONNECTED
            or self.ib is None
            or not self.ib.isConnected()
        ):
            raise BrokerError(f"{what}: not connected to IB ({self.state.value})")
        return self.ib

    # -- connecting -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect for the first time; raise ConnectionError with the reason if impossible."""
        self._stopping = False
        cfg = self.config
        try:
            await self._connect()
        except IBConnectError as e:
            self.set_state(ConnectionState.DISCONNECTED, str(e))
            raise
        except (OSError, TimeoutError, ConnectionError) as e:
            self.set_state(ConnectionState.DISCONNECTED, f"cannot connect: {reason(e)}")
            raise ConnectionError(
                f"IB Gateway/TWS not reachable at {cfg.host}:{cfg.port} "
                f"(client id {cfg.client_id}): {reason(e)}"
            ) from None
        self.set_state(ConnectionState.SYNCING, f"connected to {self.describe()}; re-syncing")

    async def close(self) -> None:
        self._stopping = True
        task = self._reconnect_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ib is not None and self.ib.isConnected():
            self.ib.disconnect()
        self.set_state(ConnectionState.DISCONNECTED, "stopped")

    async def _connect(self) -> None:
        ib, cfg = self.ib, self.config
        assert ib is not None
        self._connecting = True
        self._refusal = None
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_closed(msg: str) -> None:
            # ib_async notes a socket closed during the handshake and then waits out its
            # whole timeout; a gateway that hangs up has refused us, and we may know why.
            if not refused.done():
                refused.set_result(msg or "connection closed during the handshake")

        ib.client.apiError += on_closed
        ib.client.conn.disconnected += on_closed
        connect = asyncio.ensure_future(
            ib.connectAsync(
                cfg.host,
                cfg.port,
                clientId=cfg.client_id,
                timeout=cfg.connect_timeout,
                readonly=cfg.read_only,
                account=cfg.account,
                fetchFields=_STARTUP_FETCH,
            )
        )
        try:
            await asyncio.wait({connect, refused}, return_when=asyncio.FIRST_COMPLETED)
            if not connect.done():
                connect.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await connect
                ib.disconnect()
                code, text = self._refusal or (0, refused.result())
                if code == 326 or "already in use" in text:
                    raise client_id_in_use(cfg.host, cfg.port, cfg.client_id, text)
                raise ConnectionError(f"the gateway closed the connection ({text})")
            connect.result()
            self._check_account(ib)
            self.api_read_only = False
            self._prepare(ib)
            await asyncio.wait_for(ib.reqAccountSummaryAsync(), cfg.request_timeout)
        finally:
            ib.client.apiError -= on_closed
            ib.client.conn.disconnected -= on_closed
            self._connecting = False

    def _check_account(self, ib: IB) -> None:
        cfg = self.config
        managed = ib.managedAccounts()
        if cfg.account and cfg.account not in managed:
            ib.disconnect()
            raise unknown_account(cfg.host, cfg.port, cfg.account, managed)
        if not cfg.account and len(managed) > 1:
            ib.disconnect()
            raise several_accounts(cfg.host, cfg.port, managed)
        self.account = cfg.account or (managed[0] if managed else "")

    # -- reconnecting ---------------------------------------------------------------------------
    def on_disconnected(self) -> None:
        if self._stopping or self._connecting:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            return
        self.set_state(
            ConnectionState.RECONNECTING, "connection to IB Gateway/TWS lost; reconnecting"
        )
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop())

    def _stop_requested(self) -> bool:
        # A call, not the attribute: a type checker would keep the loop condition's answer
        # across the await, where stop() can change it.
        return self._stopping

    async def _reconnect_loop(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_initial_delay
        attempt = 0
        down_since = time.monotonic()
        while not self._stopping:
            attempt += 1
            await self._sleep(delay)
            if self._stop_requested():  # stop() may have run while we slept
                return
            try:
                await self._connect()
            except (OSError, TimeoutError, ConnectionError) as e:
                nxt = min(delay * 2, cfg.reconnect_max_delay)
                self.set_state(
                    ConnectionState.RECONNECTING,
                    f"down {time.monotonic() - down_since:.0f} s; reconnect attempt {attempt} "
                    f"failed ({reason(e)}); next in {nxt:g} s",
                )
                delay = nxt
                continue
            self.reconnects += 1
            self.set_state(
                ConnectionState.SYNCING,
                f"reconnected after {time.monotonic() - down_since:.0f} s to {self.describe()}; "
                "re-syncing",
                data_lost=True,
            )
            return
