"""Interactive Brokers behind the broker port (the only place besides ``fbterm.data.ib_source``
that imports ib_async).

Modules: :mod:`.adapter` (``BrokerIntegration``: the port, our orders sent to IB),
:mod:`.events` (IB's statuses, fills and error codes as fbterm's events), :mod:`.connection`
(connecting, the state machine, reconnecting), :mod:`.book` (IB's answers as a :class:`VenueBook`), :mod:`.tracking`
(our orders and foreign ones), :mod:`.contracts` (qualified contracts), :mod:`.codes` (IB's
message codes in an operator's words).
"""

from fbterm.execution.brokers.base import EXTERNAL
from fbterm.execution.brokers.ib.adapter import BrokerIntegration
from fbterm.execution.brokers.ib.codes import IB_ERRORS, IBConnectError, describe_ib_error
from fbterm.execution.brokers.ib.contracts import from_ib_contract, to_ib_contract
from fbterm.execution.brokers.ib.tracking import (
    foreign_order_id,
    make_order_ref,
    parse_order_ref,
)

__all__ = [
    "EXTERNAL",
    "IB_ERRORS",
    "BrokerIntegration",
    "IBConnectError",
    "describe_ib_error",
    "foreign_order_id",
    "from_ib_contract",
    "make_order_ref",
    "parse_order_ref",
    "to_ib_contract",
]
