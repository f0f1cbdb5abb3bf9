"""A loopback server that speaks the TWS API wire protocol, for tests and demos.

IB Gateway cannot run in CI, so this is an independent implementation of the gateway side of
the socket protocol (text protocol, server version 178): the ``API\\0`` handshake, 4-byte
big-endian length-prefixed messages of NUL-terminated fields, ``startApi`` -> ``nextValidId`` +
``managedAccounts``, and the requests an API client makes at start-up and while trading. It is
written from the protocol, not from a client library: nothing here imports ``ib_async``.

It keeps one simulated account: orders (market orders fill at once, limit/stop orders when
told), executions, positions, account values and bar data for historical and streaming
requests. Knobs on :class:`IBTestServer` inject the faults IB users meet (see its module).

Modules: :mod:`.protocol` (message ids, framing), :mod:`.state` (orders, executions, sessions),
:mod:`.encoders` (the answers' fields), :mod:`.gateway` (connections, dispatch, fills),
:mod:`.requests` (one handler per request), :mod:`.server` (the knobs). Standalone for a
demo: ``python -m fbterm.testing.ibserver --port 4002``.
"""

from fbterm.testing.ibserver.protocol import (
    SERVER_VERSION,
    ContractFields,
    encode,
    parse_bar_size,
    parse_duration,
    parse_end_time,
    stock,
)
from fbterm.testing.ibserver.server import IBTestServer
from fbterm.testing.ibserver.state import (
    DEFAULT_ACCOUNT_VALUES,
    HistoricalRequest,
    ServerExecution,
    ServerOrder,
    ServerPosition,
    synthetic_bars,
)

__all__ = [
    "DEFAULT_ACCOUNT_VALUES",
    "SERVER_VERSION",
    "ContractFields",
    "HistoricalRequest",
    "IBTestServer",
    "ServerExecution",
    "ServerOrder",
    "ServerPosition",
    "encode",
    "parse_bar_size",
    "parse_duration",
    "parse_end_time",
    "stock",
    "synthetic_bars",
]
