"""The TWS test server, extended: what-if orders (margin and commission previews), market
data subscriptions (error 354 for ``no_subscription`` symbols until delayed data is asked
for) and option chains (``reqSecDefOptParams``: monthly expiries and strikes around the last
price; option quotes priced by Black–Scholes at ``option_vol``).

A subclass of :class:`~fbterm.testing.ibserver.IBTestServer` so the base server stays as it is:
a placeOrder with the whatIf flag is answered with an openOrder carrying the margin figures,
computed at ``margin_rate`` of the notional (``maint_rate`` for maintenance), and places
nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from fbterm.data.simulated import monthly_expiries, strike_step
from fbterm.pricing import bs_price, years_to_expiry
from fbterm.testing.ibserver import ContractFields, IBTestServer, ServerOrder
from fbterm.testing.ibserver import encoders as enc
from fbterm.testing.ibserver.protocol import (
    PLACE_ORDER,
    REQ_MARKET_DATA_TYPE,
    REQ_MKT_DATA,
    read_contract,
)
from fbterm.testing.ibserver.state import Session

Handler = Callable[[IBTestServer, Session, list[str]], None]
REQ_SEC_DEF_OPT_PARAMS = 78
SEC_DEF_OPT_PARAMS = 75
SEC_DEF_OPT_PARAMS_END = 76
WHAT_IF_FIELD = 84  # the whatIf flag's position in a placeOrder message (server version 176+)
STATUS_MARK = "__what_if__"


class _Capture:
    """Stands in for a session to capture what the base encoder would send."""

    def __init__(self) -> None:
        self.fields: list[Any] = []

    def send(self, *fields: Any) -> None:
        self.fields = list(fields)


class ExtendedIBTestServer(IBTestServer):
    def __init__(
        self,
        *,
        margin_rate: float = 0.25,
        maint_rate: float = 0.20,
        no_subscription: Iterable[str] = (),
        option_vol: float = 0.3,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.margin_rate = margin_rate
        self.maint_rate = maint_rate
        self.what_ifs: list[tuple[str, str, float]] = []  # (symbol, action, quantity) asked
        self.no_subscription = set(no_subscription)
        self.data_types: dict[int, int] = {}  # client id -> the market data type it asked for
        self.option_vol = option_vol
        self.chain_requests: list[str] = []  # underlyings asked for

    def _on_req_sec_def_opt_params(self: IBTestServer, s: Session, f: list[str]) -> None:
        assert isinstance(self, ExtendedIBTestServer)
        req_id, symbol, con_id = int(f[1]), f[2], f[5]
        self.chain_requests.append(symbol)
        frame = self._frame(symbol)
        if frame is None or frame.empty:
            s.send(SEC_DEF_OPT_PARAMS_END, req_id)
            return
        spot = float(frame["close"].iloc[-1])
        step = strike_step(spot)
        atm = round(spot / step) * step
        strikes = [atm + i * step for i in range(-10, 11) if atm + i * step > 0]
        today = dt.datetime.now(dt.UTC).date()
        exps = [f"{d:%Y%m%d}" for d in monthly_expiries(today, 4)]
        s.send(
            SEC_DEF_OPT_PARAMS, req_id, "SMART", con_id, symbol, "100",
            len(exps), *exps, len(strikes), *strikes,
        )  # fmt: skip
        s.send(SEC_DEF_OPT_PARAMS_END, req_id)

    def _option_price(self, c: ContractFields, spot: float) -> float:
        expiry = dt.datetime.strptime(c.last_trade[:8], "%Y%m%d").date()
        t = max(years_to_expiry(expiry, time.time()), 1e-6)
        return max(bs_price(c.right, spot, c.strike, t, self.option_vol, 0.04), 0.01)

    def _market_price(self, o: ServerOrder) -> float:
        # Options fill at their model price, not at the underlying's.
        frame = self._frame(o.contract.symbol)
        if o.contract.sec_type == "OPT" and frame is not None and not frame.empty:
            return round(self._option_price(o.contract, float(frame["close"].iloc[-1])), 2)
        return super()._market_price(o)

    def _on_req_market_data_type(self: IBTestServer, s: Session, f: list[str]) -> None:
        assert isinstance(self, ExtendedIBTestServer)
        self.data_types[s.client_id] = int(f[2])

    def _on_req_mkt_data_sub(self: IBTestServer, s: Session, f: list[str]) -> None:
        assert isinstance(self, ExtendedIBTestServer)
        c = read_contract(f, 3)
        symbol = c.symbol
        if c.sec_type == "OPT":
            frame = self._frame(symbol)
            if frame is None or frame.empty:
                IBTestServer._on_req_mkt_data(self, s, f)
                return
            theo = self._option_price(c, float(frame["close"].iloc[-1]))
            half = max(0.01, 0.02 * theo) / 2
            enc.send_quote(s, int(f[2]), max(theo - half, 0.01), theo + half, theo, 10.0)
            return
        if symbol in self.no_subscription and self.data_types.get(s.client_id, 1) in (1, 2):
            enc.send_error(
                s,
                int(f[2]),
                354,
                "Requested market data is not subscribed. Delayed market data is available.",
            )
            return
        IBTestServer._on_req_mkt_data(self, s, f)

    def _on_place_order_what_if(self: IBTestServer, s: Session, f: list[str]) -> None:
        assert isinstance(self, ExtendedIBTestServer)
        if len(f) <= WHAT_IF_FIELD or f[WHAT_IF_FIELD] != "1":
            IBTestServer._on_place_order(self, s, f)
            return
        c = read_contract(f, 2)
        action, qty = f[16], float(f[17])
        lmt = float(f[19]) if f[19] else None
        o = ServerOrder(
            s.client_id, int(f[1]), 0, c, action, qty, f[18], lmt, None, f[21], "", f[26]
        )
        price = lmt if lmt is not None else self._market_price(o)
        notional = qty * price * c.mult
        gross = sum(abs(p.quantity) * p.avg_cost for p in self.positions.values())
        init_before, maint_before = gross * self.margin_rate, gross * self.maint_rate
        init_change, maint_change = notional * self.margin_rate, notional * self.maint_rate
        ewl = self.account_values.get("EquityWithLoanValue", self.account_values["NetLiquidation"])
        commission = max(self.commission_per_share * qty, self.commission_minimum)
        self.what_ifs.append((c.symbol, action, qty))
        o.status = STATUS_MARK
        cap = _Capture()
        enc.send_open_order(cap, o)  # type: ignore[arg-type]
        out = cap.fields
        i = out.index(STATUS_MARK)
        out[i - 1] = 1  # whatIf
        out[i] = "PreSubmitted"
        out[i + 1 : i + 15] = [
            f"{init_before:.2f}",
            f"{maint_before:.2f}",
            f"{ewl:.2f}",
            f"{init_change:.2f}",
            f"{maint_change:.2f}",
            "0.00",
            f"{init_before + init_change:.2f}",
            f"{maint_before + maint_change:.2f}",
            f"{ewl:.2f}",
            commission,
            commission,
            commission,
            "USD",
            "",
        ]
        s.send(*out)

    _handlers: ClassVar[dict[int, Handler]] = {
        **IBTestServer._handlers,
        PLACE_ORDER: _on_place_order_what_if,
        REQ_MKT_DATA: _on_req_mkt_data_sub,
        REQ_MARKET_DATA_TYPE: _on_req_market_data_type,
        REQ_SEC_DEF_OPT_PARAMS: _on_req_sec_def_opt_params,
    }
