"""IB's message codes in an operator's words, and the connection errors fbterm explains.

IB reports almost everything through one ``error`` callback: real errors, order outcomes
(201 rejected, 202 cancelled), connectivity (1100/1101/1102) and farm status (2104...).
:func:`describe_ib_error` turns any of them into one line; the sets below say which codes end
an order and which move the connection.
"""

from __future__ import annotations

READ_ONLY_API = "TWS/Gateway is in read-only API mode"
READ_ONLY_HOW = (
    "orders are refused; untick 'Read-Only API' in TWS/Gateway "
    "(Configure > API > Settings) and reconnect"
)

# code -> (level, what it means for an operator). IB's own text is appended to the message.
IB_ERRORS: dict[int, tuple[str, str]] = {
    103: ("error", "duplicate order id: IB already used this id"),
    135: ("warning", "IB does not know this order"),
    162: ("warning", "historical data request failed"),
    165: ("info", "historical data service message"),
    200: ("error", "no security definition: IB does not know this contract"),
    201: ("error", "order rejected by IB"),
    202: ("info", "order cancelled"),
    203: ("error", "security not available or not allowed for this account"),
    321: ("error", "IB refused the request"),
    326: ("error", "client id already in use at the gateway"),
    354: ("warning", "no market data subscription for this contract"),
    366: ("warning", "historical data request unknown to IB (pacing or already finished)"),
    502: ("error", "cannot connect to TWS/IB Gateway"),
    504: ("error", "not connected to TWS/IB Gateway"),
    1100: ("error", "IB Gateway lost its connection to IB's servers: orders and data paused"),
    1101: ("warning", "IB connection restored, market data lost: resubscribing and re-syncing"),
    1102: ("warning", "IB connection restored, data kept: re-syncing"),
    1300: ("warning", "TWS socket port was reset: reconnecting"),
    2103: ("warning", "market data farm disconnected"),
    2104: ("info", "market data farm connected"),
    2105: ("warning", "historical data farm disconnected"),
    2106: ("info", "historical data farm connected"),
    2107: ("info", "historical data farm inactive, available on demand"),
    2108: ("info", "market data farm inactive, available on demand"),
    2110: ("error", "TWS lost its connection to IB's servers"),
    2157: ("warning", "security definition data farm disconnected"),
    2158: ("info", "security definition data farm connected"),
    10147: ("error", "order to cancel or modify not found at IB"),
    10148: ("warning", "order can no longer be cancelled (already final at IB)"),
    10197: ("warning", "no market data: a competing live session holds the subscription"),
}

# The gateway is cut off from IB's servers (it says so again with 1101/1102 when it is back).
LINK_LOST = frozenset({1100, 2110})
LINK_RESTORED_DATA_LOST = 1101
LINK_RESTORED = 1102
# Codes that end a working order at IB; each maps to a final status with IB's text.
ORDER_ENDING = frozenset({201, 202, 10147, 10148})
PACING = frozenset({162, 366})


def is_read_only(code: int, text: str) -> bool:
    """IB's 321 for an API in read-only mode (TWS's default), as opposed to a bad request."""
    return code == 321 and "read-only" in text.lower()


def describe_ib_error(code: int, text: str) -> tuple[str, str]:
    """(level, one clear line) for an IB error/info code and IB's own message."""
    if is_read_only(code, text):
        meaning: tuple[str, str] = ("error", f"{READ_ONLY_API}: {READ_ONLY_HOW}")
    else:
        meaning = IB_ERRORS.get(code, ("info" if 2100 <= code < 2200 else "warning", "IB message"))
    level, words = meaning
    text = " ".join(text.split()).rstrip(":")
    return level, f"IB {code}: {words}" + (f" ({text})" if text else "")


class IBConnectError(ConnectionError):
    """fbterm reached the gateway but cannot use it as configured; the message says what to
    change. Retrying with the same settings would fail the same way."""


def client_id_in_use(host: str, port: int, client_id: int, text: str) -> IBConnectError:
    return IBConnectError(
        f"IB client id {client_id} is already in use at {host}:{port} "
        f"(IB 326: {text.strip() or 'client id in use'}): another fbterm or API program is "
        f"connected with it; start with another id, e.g. --client-id {client_id + 1} "
        "(or broker.ib.client_id in config.toml)"
    )


def unknown_account(host: str, port: int, account: str, managed: list[str]) -> IBConnectError:
    return IBConnectError(
        f"IB account {account} is not managed by the login at {host}:{port} "
        f"(managed: {', '.join(managed) or 'none'}): check --account or broker.ib.account"
    )


def several_accounts(host: str, port: int, managed: list[str]) -> IBConnectError:
    return IBConnectError(
        f"the IB login at {host}:{port} manages {len(managed)} accounts "
        f"({', '.join(managed)}): choose one with --account or broker.ib.account"
    )


# IB order statuses that mean the order is no longer working there.
ENDED_STATUSES = ("Cancelled", "ApiCancelled", "Inactive")


def ib_text(message: str) -> str:
    """IB's own words from an ib_async error line ("Error 201, reqId 7: Order rejected...")."""
    return message.split(": ", 1)[1] if ": " in message else message
