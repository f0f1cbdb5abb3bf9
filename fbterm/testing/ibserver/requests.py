"""The gateway's answer to each client request, one method per message id."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import pandas as pd

from fbterm.testing.ibserver import encoders as enc
from fbterm.testing.ibserver.gateway import Gateway, Handler
from fbterm.testing.ibserver.protocol import (
    ACCOUNT_SUMMARY,
    ACCOUNT_SUMMARY_END,
    ACCOUNT_UPDATE_MULTI,
    ACCOUNT_UPDATE_MULTI_END,
    ACCT_DOWNLOAD_END,
    ACCT_UPDATE_TIME,
    ACCT_VALUE,
    CANCEL_ACCOUNT_SUMMARY,
    CANCEL_ACCOUNT_UPDATES_MULTI,
    CANCEL_HISTORICAL_DATA,
    CANCEL_MKT_DATA,
    CANCEL_ORDER,
    CANCEL_POSITIONS,
    COMPLETED_ORDERS_END,
    CURRENT_TIME,
    EXECUTION_DATA_END,
    HISTORICAL_DATA,
    MANAGED_ACCTS,
    NEXT_VALID_ID,
    OPEN_ORDER_END,
    PLACE_ORDER,
    POSITION_END,
    REQ_ACCOUNT_SUMMARY,
    REQ_ACCOUNT_UPDATES_MULTI,
    REQ_ACCT_DATA,
    REQ_ALL_OPEN_ORDERS,
    REQ_AUTO_OPEN_ORDERS,
    REQ_COMPLETED_ORDERS,
    REQ_CONTRACT_DATA,
    REQ_CURRENT_TIME,
    REQ_EXECUTIONS,
    REQ_HISTORICAL_DATA,
    REQ_IDS,
    REQ_MARKET_DATA_TYPE,
    REQ_MKT_DATA,
    REQ_OPEN_ORDERS,
    REQ_POSITIONS,
    START_API,
    TEXT_321_READ_ONLY,
    TEXT_326,
    ib_time,
    parse_bar_size,
    parse_duration,
    parse_end_time,
    read_contract,
)
from fbterm.testing.ibserver.state import HistoricalRequest, ServerOrder, Session


class RequestHandlers(Gateway):
    """The gateway with its request handlers (see :data:`_handlers`)."""

    # -- session ----------------------------------------------------------------------------
    def _on_start_api(self, s: Session, f: list[str]) -> None:
        cid = int(f[2])
        taken = cid in self.faults.occupied_client_ids or any(
            o is not s and o.client_id == cid for o in self._sessions
        )
        if taken:
            # TWS says why and hangs up; the client never gets nextValidId.
            enc.send_error(s, -1, 326, TEXT_326)
            self._sessions.remove(s)
            s.writer.close()
            return
        s.client_id = cid
        s.send(NEXT_VALID_ID, 1, max(self.next_valid_id, self._max_order_id.get(cid, 0) + 1))
        s.send(MANAGED_ACCTS, 1, ",".join(self.accounts))
        if self.connect_messages:
            enc.send_error(s, -1, 2104, "Market data farm connection is OK:usfarm")
            enc.send_error(s, -1, 2106, "HMDS data farm connection is OK:ushmds")

    def _on_req_ids(self, s: Session, f: list[str]) -> None:
        s.send(
            NEXT_VALID_ID, 1, max(self.next_valid_id, self._max_order_id.get(s.client_id, 0) + 1)
        )

    def _on_req_current_time(self, s: Session, f: list[str]) -> None:
        s.send(CURRENT_TIME, 1, int(time.time()))

    # -- account ----------------------------------------------------------------------------
    def _on_req_positions(self, s: Session, f: list[str]) -> None:
        s.positions_sub = True
        for p in self.positions.values():
            enc.send_position(s, p)
        s.send(POSITION_END, 1)

    def _on_cancel_positions(self, s: Session, f: list[str]) -> None:
        s.positions_sub = False

    def _on_req_account_updates(self, s: Session, f: list[str]) -> None:
        subscribe = f[2] == "1"
        s.account_sub = subscribe
        if not subscribe:
            return
        acct = f[3] or self.accounts[0]
        for tag, val in self._values().items():
            s.send(ACCT_VALUE, 2, tag, val, "USD", acct)
        for p in self.positions.values():
            if p.account == acct:
                enc.send_portfolio(s, p, self._mark(p))
        s.send(ACCT_UPDATE_TIME, 1, time.strftime("%H:%M"))
        s.send(ACCT_DOWNLOAD_END, 1, acct)

    def _on_req_account_updates_multi(self, s: Session, f: list[str]) -> None:
        req_id, acct, model = int(f[2]), f[3] or self.accounts[0], f[4]
        for tag, val in self._values().items():
            s.send(ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, tag, val, "USD")
        s.send(ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _on_req_account_summary(self, s: Session, f: list[str]) -> None:
        req_id, tags = int(f[2]), set(f[4].split(","))
        for acct in self.accounts:
            for tag, val in self._values().items():
                if tag in tags or "$LEDGER:ALL" in tags:
                    s.send(ACCOUNT_SUMMARY, 1, req_id, acct, tag, val, "USD")
        s.send(ACCOUNT_SUMMARY_END, 1, req_id)

    # -- orders: what is and was -----------------------------------------------------------
    def _on_req_open_orders(self, s: Session, f: list[str]) -> None:
        everyone = int(f[0]) == REQ_ALL_OPEN_ORDERS or s.client_id == 0
        for o in self.orders.values():
            if o.is_open and (everyone or o.client_id == s.client_id):
                enc.send_open_order(s, o)
                enc.send_order_status(s, o)
        s.send(OPEN_ORDER_END, 1)

    def _on_req_completed_orders(self, s: Session, f: list[str]) -> None:
        api_only = f[1] == "1"
        for o in self.orders.values():
            if o.is_open or (api_only and o.client_id == 0 and o.order_id == 0):
                continue
            enc.send_completed_order(s, o)
        s.send(COMPLETED_ORDERS_END)

    def _on_req_executions(self, s: Session, f: list[str]) -> None:
        req_id, client_filter = int(f[2]), int(f[3] or 0)
        symbol = f[6]
        for e in self.executions:
            if client_filter and e.order.client_id != client_filter:
                continue
            if symbol and e.order.contract.symbol != symbol:
                continue
            enc.send_execution(s, req_id, e)
            enc.send_commission(s, e)
        s.send(EXECUTION_DATA_END, 1, req_id)

    # -- orders: changes -------------------------------------------------------------------
    def _on_place_order(self, s: Session, f: list[str]) -> None:
        order_id = int(f[1])
        self.place_fields[(s.client_id, order_id)] = list(f)
        c = read_contract(f, 2)
        action, qty, otype = f[16], float(f[17]), f[18]
        lmt = float(f[19]) if f[19] else None
        aux = float(f[20]) if f[20] else None
        tif, account, order_ref = f[21], f[23] or self.accounts[0], f[26]
        faults = self.faults
        if faults.drop_next_order is not None:
            refuse, faults.drop_next_order = faults.drop_next_order, None
            self._drop_all(refuse)
            return
        if faults.read_only:
            enc.send_error(s, order_id, 321, TEXT_321_READ_ONLY)
            return
        self.placed.append((s.client_id, order_id))
        existing = self._find(order_id, s.client_id)
        if existing is not None:
            self._modify(s, existing, qty, otype, lmt, aux, tif)
            return
        if order_id <= self._max_order_id.get(s.client_id, 0):
            enc.send_error(s, order_id, 103, "Duplicate order id")
            return
        self._max_order_id[s.client_id] = order_id
        if faults.reject_next:
            enc.send_error(s, order_id, 201, f"Order rejected - reason:{faults.reject_next.pop(0)}")
            return
        if otype not in ("MKT", "LMT", "STP", "STP LMT") or qty <= 0:
            enc.send_error(
                s, order_id, 201, f"Order rejected - reason:unsupported order {otype} x {qty:g}"
            )
            return
        o = ServerOrder(
            s.client_id,
            order_id,
            self._new_perm_id(),
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
        self.orders[o.perm_id] = o
        fill_now = otype == "MKT" and self.auto_fill_market
        if fill_now and faults.fill_before_ack > 0:
            # The execution (and its commission) overtakes the order's acknowledgement.
            faults.fill_before_ack -= 1
            self._fill(o, qty, self._market_price(o))
            for w in self._order_watchers(o):
                enc.send_open_order(w, o)
            return
        for w in self._order_watchers(o):
            enc.send_open_order(w, o)
            enc.send_order_status(w, o)
        if fill_now:
            self._fill(o, qty, self._market_price(o))

    def _modify(
        self,
        s: Session,
        o: ServerOrder,
        qty: float,
        otype: str,
        lmt: float | None,
        aux: float | None,
        tif: str,
    ) -> None:
        """A placeOrder for an order id the client already used: a modification."""
        if not o.is_open:
            enc.send_error(s, o.order_id, 103, "Duplicate order id")
            return
        if qty < o.filled:
            enc.send_error(
                s,
                o.order_id,
                10147,
                "OrderId that needs to be modified cannot be modified: quantity below filled",
            )
            return
        o.total_qty, o.order_type = qty, otype
        o.lmt_price, o.aux_price, o.tif = lmt, aux, tif
        enc.send_open_order(s, o)
        enc.send_order_status(s, o)
        if otype == "MKT" and self.auto_fill_market:
            self._fill(o, o.remaining, self._market_price(o))

    def _on_cancel_order(self, s: Session, f: list[str]) -> None:
        order_id = int(f[2])
        if self.faults.read_only:
            enc.send_error(s, order_id, 321, TEXT_321_READ_ONLY)
            return
        o = self._find(order_id, s.client_id)
        if o is None:
            enc.send_error(
                s, order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found."
            )
            return
        if not o.is_open:
            enc.send_error(
                s,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {o.status}.",
            )
            return
        self._end_order(o, "Cancelled", "Cancelled by Trader")
        enc.send_order_status(s, o)
        enc.send_error(s, order_id, 202, "Order Canceled - reason:")

    # -- contracts and market data ---------------------------------------------------------
    def _on_req_contract_data(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        c = read_contract(f, 3)
        # Futures and currency pairs are listed whatever the bar data: IB lists them all.
        if c.sec_type not in ("STK", "OPT", "FUT", "CONTFUT", "CASH") or (
            c.sec_type == "STK" and self._frame(c.symbol) is None
        ):
            enc.send_error(s, req_id, 200, "No security definition has been found for the request")
            return
        enc.send_contract_data(
            s, req_id, c, c.multiplier or ("100" if c.sec_type == "OPT" else "1")
        )

    def _on_req_mkt_data(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        c = read_contract(f, 3)
        s.mkt[req_id] = c.symbol
        frame = self._frame(c.symbol)
        if frame is None or frame.empty:
            enc.send_error(s, req_id, 200, "No security definition has been found for the request")
            return
        px = float(frame["close"].iloc[-1])
        enc.send_quote(s, req_id, px - 0.01, px + 0.01, px, 100.0)

    def _on_cancel_mkt_data(self, s: Session, f: list[str]) -> None:
        s.mkt.pop(int(f[2]), None)

    def _on_req_historical(self, s: Session, f: list[str]) -> None:
        req_id = int(f[1])
        c = read_contract(f, 2)
        end_s, bar_size, duration = f[15], f[16], f[17]
        use_rth, what, fmt = f[18] == "1", f[19], int(f[20] or 1)
        req = HistoricalRequest(
            req_id, c.symbol, end_s, duration, bar_size, what, use_rth, fmt, time.monotonic()
        )
        self.historical_requests.append(req)
        if self.faults.historical_errors:
            code, text = self.faults.historical_errors.pop(0)
            enc.send_error(s, req_id, code, text)
            return
        if self._paced(req):
            enc.send_error(
                s,
                req_id,
                162,
                "Historical Market Data Service error message:"
                "Historical data request pacing violation",
            )
            return
        frame = self._frame(c.symbol)
        if frame is None:
            enc.send_error(s, req_id, 200, "No security definition has been found for the request")
            return
        end = parse_end_time(end_s)
        start = end - dt.timedelta(seconds=parse_duration(duration))
        sel = _bars_between(frame, start, end, parse_bar_size(bar_size))
        if sel.empty:
            enc.send_error(
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
            ib_time(start.timestamp()),
            ib_time(end.timestamp()),
            len(sel),
        ]
        daily = parse_bar_size(bar_size) >= 86_400
        rows: Iterable[Any] = sel.itertuples(index=False)  # pandas types the fields loosely
        for ts, row in zip(sel.index, rows, strict=True):
            date = (
                ts.strftime("%Y%m%d")
                if daily
                else (str(int(ts.timestamp())) if fmt == 2 else ib_time(ts.timestamp()))
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

    def _paced(self, req: HistoricalRequest) -> bool:
        """IB's rule against an identical request within ``pacing_window`` seconds."""
        if self.pacing_window <= 0:
            return False
        same = (req.symbol, req.end, req.duration, req.bar_size, req.what_to_show)
        for prev in reversed(self.historical_requests[:-1]):
            if req.received - prev.received > self.pacing_window:
                return False
            if (prev.symbol, prev.end, prev.duration, prev.bar_size, prev.what_to_show) == same:
                return True
        return False

    def _on_ignore(self, s: Session, f: list[str]) -> None:
        pass

    _handlers: ClassVar[dict[int, Handler]] = {
        START_API: _on_start_api,
        REQ_IDS: _on_req_ids,
        REQ_POSITIONS: _on_req_positions,
        CANCEL_POSITIONS: _on_cancel_positions,
        REQ_OPEN_ORDERS: _on_req_open_orders,
        REQ_ALL_OPEN_ORDERS: _on_req_open_orders,
        REQ_AUTO_OPEN_ORDERS: _on_ignore,
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


def _bars_between(
    frame: pd.DataFrame, start: dt.datetime, end: dt.datetime, step: int
) -> pd.DataFrame:
    """The frame's bars in [start, end), resampled up to ``step`` seconds if coarser."""
    sel = frame[(frame.index >= pd.Timestamp(start)) & (frame.index < pd.Timestamp(end))]
    native = (
        int(frame.index.to_series().diff().dropna().min().total_seconds())
        if len(frame) > 1
        else step
    )
    if step > native and len(sel):
        sel = (
            sel.resample(f"{step}s", origin="epoch", label="left", closed="left")
            .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
            .dropna()
        )
    return sel
