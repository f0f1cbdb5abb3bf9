"""``IBTestServer``: the gateway with the knobs a test turns, including its faults.

Every knob is thread-safe (it runs on the server's loop) and returns once the server has acted.
The faults are the ones IB users meet (see IB's message codes): the link to IB's servers lost
and restored (1100/1101/1102), the socket dropped, the API in read-only mode (321), orders
rejected before or after their acknowledgement (201), cancelled by IB (202), unknown or already
final when cancelled (10147/10148), executions overtaking their order or their commission,
historical-data pacing (162/366), a client id already in use (326), orders and positions of
other clients, and orders that end while no client is connected.
"""

from __future__ import annotations

import time
from typing import Any, Self

from fbterm.testing.ibserver import encoders as enc
from fbterm.testing.ibserver.protocol import (
    TEXT_1100,
    TEXT_1101,
    TEXT_1102,
    ContractFields,
    stock,
)
from fbterm.testing.ibserver.requests import RequestHandlers
from fbterm.testing.ibserver.state import ServerExecution, ServerOrder, ServerPosition

PACING_TEXT = {
    162: "Historical Market Data Service error message:Historical data request pacing violation",
    366: "No historical data query found for ticker id:",
}


class IBTestServer(RequestHandlers):
    """A TWS-protocol gateway on 127.0.0.1 backed by one simulated account.

    Run from a test::

        with IBTestServer(market_fill_price=101.0) as srv:   # binds 127.0.0.1:<ephemeral>
            cfg = IBConfig(port=srv.port)
            ...
            srv.fill_order(order_id, price=99.5)
    """

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the account and its orders --------------------------------------------------------
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
            o = self._working(order_id, client_id)
            px = (
                price
                if price is not None
                else (o.lmt_price or o.aux_price or self._market_price(o))
            )
            return self._fill(o, quantity if quantity is not None else o.remaining, px)

        return self._call(go)  # type: ignore[no-any-return]

    def set_position(
        self, symbol: str, quantity: float, avg_cost: float, account: str | None = None
    ) -> None:
        """Set a stock position as IB holds it (e.g. one bought before fbterm ever ran)."""

        def go() -> None:
            acct = account or self.accounts[0]
            c = stock(symbol)
            p = ServerPosition(c, float(quantity), float(avg_cost), acct)
            self.positions[(acct, *c.key)] = p
            for s in self._sessions:
                if s.positions_sub:
                    enc.send_position(s, p)

        self._call(go)

    def add_foreign_order(
        self,
        client_id: int,
        symbol: str,
        action: str = "BUY",
        quantity: float = 10.0,
        order_type: str = "LMT",
        limit_price: float | None = 90.0,
        order_ref: str = "",
        account: str | None = None,
    ) -> ServerOrder:
        """A working order placed by another API client (client 0 with order id 0: a manual
        order typed into TWS). Only that client hears of it as it happens."""

        def go() -> ServerOrder:
            if client_id == 0:
                oid = 0
            else:
                oid = max(self._max_order_id.get(client_id, 0) + 1, 1000 + client_id * 100)
                self._max_order_id[client_id] = oid
            o = ServerOrder(
                client_id,
                oid,
                self._new_perm_id(),
                ContractFields(symbol),
                action,
                float(quantity),
                order_type,
                limit_price if order_type in ("LMT", "STP LMT") else None,
                None,
                "GTC",
                account or self.accounts[0],
                order_ref,
            )
            self.orders[o.perm_id] = o
            for s in self._order_watchers(o):
                enc.send_open_order(s, o)
                enc.send_order_status(s, o)
            return o

        return self._call(go)  # type: ignore[no-any-return]

    def fill_foreign_order(self, perm_id: int, price: float, quantity: float | None = None) -> Any:
        """Fill any order by its perm id (another client's, or a manual one)."""

        def go() -> ServerExecution:
            o = self.orders[perm_id]
            return self._fill(o, quantity if quantity is not None else o.remaining, price)

        return self._call(go)

    def open_orders(self) -> list[ServerOrder]:
        return list(self._call(lambda: [o for o in self.orders.values() if o.is_open]))

    def order(self, perm_id: int) -> ServerOrder:
        return self._call(lambda: self.orders[perm_id])  # type: ignore[no-any-return]

    def _working(self, order_id: int, client_id: int | None) -> ServerOrder:
        o = self._find(order_id, client_id)
        if o is None or not o.is_open:
            raise KeyError(f"no working order {order_id}")
        return o

    # -- market data ------------------------------------------------------------------------
    def push_quote(
        self, symbol: str, bid: float, ask: float, last: float, size: float = 100.0
    ) -> int:
        """Send one quote to every market-data subscriber of ``symbol``; returns how many."""

        def go() -> int:
            n = 0
            if self.faults.ib_lost:
                return 0
            for s in self._sessions:
                for req_id, sym in s.mkt.items():
                    if sym == symbol:
                        enc.send_quote(s, req_id, bid, ask, last, size)
                        n += 1
            return n

        return int(self._call(go))

    def subscriptions(self) -> dict[str, int]:
        """Market-data subscriptions per symbol, over every session."""

        def go() -> dict[str, int]:
            out: dict[str, int] = {}
            for s in self._sessions:
                for sym in s.mkt.values():
                    out[sym] = out.get(sym, 0) + 1
            return out

        return self._call(go)  # type: ignore[no-any-return]

    def account_subscribers(self) -> int:
        return int(self._call(lambda: sum(1 for s in self._sessions if s.account_sub)))

    # -- introspection ----------------------------------------------------------------------
    def sessions(self) -> int:
        return int(self._call(lambda: len(self._sessions)))

    def received_messages(self) -> list[tuple[int, float]]:
        """(message id, monotonic arrival time) of every message from every session so far."""
        return list(self._call(lambda: list(self._received_all)))

    # -- faults: connection ----------------------------------------------------------------
    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        """Send an error/info message (e.g. 2104) to every connected client."""

        def go() -> None:
            for s in self._sessions:
                enc.send_error(s, req_id, code, message)

        self._call(go)

    def lose_ib(self) -> None:
        """1100: the gateway loses IB's servers. Until :meth:`restore_ib`, nothing that happens
        at IB (fills, order changes, quotes) reaches a client."""

        def go() -> None:
            self.faults.ib_lost = True
            for s in self._sessions:
                enc.send_error(s, -1, 1100, TEXT_1100)

        self._call(go)

    def restore_ib(self, *, data_lost: bool = False) -> None:
        """1102 (data maintained) or, with ``data_lost``, 1101: every market-data and account
        subscription is gone and the client must ask again."""

        def go() -> None:
            self.faults.ib_lost = False
            for s in self._sessions:
                if data_lost:
                    s.mkt.clear()
                    s.account_sub = False
                enc.send_error(
                    s, -1, 1101 if data_lost else 1102, TEXT_1101 if data_lost else TEXT_1102
                )

        self._call(go)

    def drop_connections(self, refuse_for: float = 0.0) -> int:
        """Abort every client socket; optionally refuse reconnects for ``refuse_for`` seconds."""
        return int(self._call(lambda: self._drop_all(refuse_for)))

    def refuse_connections(self, seconds: float) -> None:
        def go() -> None:
            self.faults.refuse_until = time.monotonic() + seconds

        self._call(go)

    def drop_on_next_order(self, refuse_for: float = 0.0) -> None:
        """Drop the connection when the next placeOrder arrives, without acting on it."""

        def go() -> None:
            self.faults.drop_next_order = refuse_for

        self._call(go)

    def occupy_client_id(self, client_id: int, occupied: bool = True) -> None:
        """Another application holds ``client_id``: connecting with it gets 326."""

        def go() -> None:
            ids = self.faults.occupied_client_ids
            if occupied:
                ids.add(client_id)
            else:
                ids.discard(client_id)

        self._call(go)

    def set_read_only_api(self, read_only: bool = True) -> None:
        """TWS's "Read-Only API" setting (its default): orders and cancels get 321."""

        def go() -> None:
            self.faults.read_only = read_only

        self._call(go)

    # -- faults: orders ----------------------------------------------------------------------
    def reject_next_order(self, reason: str = "Insufficient buying power") -> None:
        """201 before the acknowledgement: the next new order never works."""
        self._call(lambda: self.faults.reject_next.append(reason))

    def reject_order(self, order_id: int, reason: str, client_id: int | None = None) -> None:
        """201 after the acknowledgement: IB rejects a working order (margin, a later check)."""

        def go() -> None:
            o = self._working(order_id, client_id)
            self._end_order(o, "Cancelled", f"Rejected: {reason}")
            for s in self._order_watchers(o):
                enc.send_error(s, o.order_id, 201, f"Order rejected - reason:{reason}")
                enc.send_order_status(s, o)

        self._call(go)

    def cancel_at_ib(self, order_id: int, reason: str = "", client_id: int | None = None) -> None:
        """IB cancels a working order on its own (202 with its reason, then the status);
        whoever is not connected learns of it from the completed orders."""

        def go() -> None:
            o = self._working(order_id, client_id)
            self._end_order(
                o, "Cancelled", f"Cancelled by System: {reason}" if reason else "Cancelled"
            )
            for s in self._order_watchers(o):
                enc.send_error(s, o.order_id, 202, f"Order Canceled - reason:{reason}")
                enc.send_order_status(s, o)

        self._call(go)

    def forget_order(self, order_id: int, client_id: int | None = None) -> None:
        """IB loses a working order without a word (a cancel then gets 10147)."""

        def go() -> None:
            o = self._working(order_id, client_id)
            del self.orders[o.perm_id]

        self._call(go)

    def finish_silently(
        self,
        order_id: int,
        status: str = "Filled",
        price: float | None = None,
        client_id: int | None = None,
    ) -> None:
        """The order ends at IB but the client is not told (a cancel then gets 10148): filled
        at ``price``, or cancelled."""

        def go() -> None:
            o = self._working(order_id, client_id)
            if status == "Filled":
                px = price if price is not None else (o.lmt_price or self._market_price(o))
                self._fill(o, o.remaining, px, tell=False)
            else:
                self._end_order(o, status, status)

        self._call(go)

    def fill_before_ack(self, orders: int = 1) -> None:
        """The next ``orders`` market orders are executed before their openOrder is sent."""

        def go() -> None:
            self.faults.fill_before_ack = orders

        self._call(go)

    def set_commission_timing(self, timing: str) -> None:
        """When commission reports go out: ``after`` the execution (IB's usual order),
        ``before`` it, or ``held`` until :meth:`release_commissions`."""
        if timing not in ("after", "before", "held"):
            raise ValueError(f"commission timing: after, before or held, got {timing!r}")

        def go() -> None:
            self.faults.commission_timing = timing

        self._call(go)

    def release_commissions(self) -> int:
        """Send the held commission reports to the clients of their orders."""

        def go() -> int:
            held, self.faults.held_commissions = self.faults.held_commissions, []
            for e in held:
                for s in self._order_watchers(e.order):
                    enc.send_commission(s, e)
            return len(held)

        return int(self._call(go))

    def pace_historical(self, requests: int = 1, code: int = 162) -> None:
        """The next ``requests`` historical-data requests get pacing errors (162 or 366)."""

        def go() -> None:
            self.faults.historical_errors += [(code, PACING_TEXT[code])] * requests

        self._call(go)
