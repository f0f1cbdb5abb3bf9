"""The TWS API wire protocol as the gateway speaks it: message ids, framing, field formats.

Text protocol, server version 178: after the ``API\\0`` handshake every message is a 4-byte
big-endian length followed by NUL-terminated fields. Written from the protocol, not from a
client library: nothing here imports ``ib_async``.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

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
REQ_AUTO_OPEN_ORDERS = 15
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
CONTRACT_DATA = 10
EXECUTION_DATA = 11
MANAGED_ACCTS = 15
HISTORICAL_DATA = 17
CURRENT_TIME = 49
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
COMPLETED_ORDER = 101
COMPLETED_ORDERS_END = 102

# Tick types for reqMktData answers.
TICK_BID, TICK_ASK, TICK_LAST, TICK_VOLUME = 1, 2, 4, 8

# IB's own words for the messages the fault knobs send (as TWS/IB Gateway phrase them).
TEXT_1100 = "Connectivity between IB and Trader Workstation has been lost."
TEXT_1101 = "Connectivity between IB and Trader Workstation has been restored - data lost."
TEXT_1102 = "Connectivity between IB and Trader Workstation has been restored - data maintained."
TEXT_321_READ_ONLY = (
    "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode."
)
TEXT_326 = "Unable to connect as the client id is already in use. Retry with a unique client id."

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
    tz: dt.tzinfo = dt.UTC
    if len(parts) > 2 and parts[2].upper() not in ("UTC", "GMT"):
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(parts[2])
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


def ib_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d %H:%M:%S UTC")


# Where a stock is listed: the primary exchange a qualified contract names.
PRIMARY_EXCHANGE = {"SPY": "ARCA", "IWM": "ARCA", "QQQ": "NASDAQ", "IBM": "NYSE"}


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
        return contract_id(self.key)

    @property
    def listing(self) -> str:
        """The primary exchange IB would name for this contract."""
        if self.sec_type == "OPT":
            return "CBOE"
        return PRIMARY_EXCHANGE.get(self.symbol, "NASDAQ")

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


def contract_id(key: tuple[str, str, str, float, str]) -> int:
    """A stable id per instrument so positions and executions line up across sessions."""
    return zlib.crc32("|".join(map(str, key)).encode()) & 0x7FFFFFFF


def stock(symbol: str) -> ContractFields:
    return ContractFields(symbol=symbol)


def read_contract(f: list[str], i: int) -> ContractFields:
    """The 12 contract fields a request carries from index ``i``."""
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
