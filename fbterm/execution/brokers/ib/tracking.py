"""What the adapter remembers about orders at IB: ours (by orderRef) and everyone else's.

Our ids travel on the wire: every order carries ``fb|<strategy>|<client order id>`` in
``orderRef``, so fills and orders are attributed even after a restart (or from another client
id), when only IB remembers them. Any other order is *foreign*: another API client's, a manual
TWS order, or one of this client id without our reference. Foreign orders are named
``IB-<permId>`` and booked to the ``external`` strategy.
"""

from __future__ import annotations

from dataclasses import dataclass

from fbterm.execution.brokers.base import EXTERNAL
from fbterm.model import Instrument, Order, OrderStatus, OrderType, Side

ORDER_REF_PREFIX = "fb"

IB_TO_STATUS = {
    "PendingSubmit": OrderStatus.PENDING_SUBMIT,
    "ApiPending": OrderStatus.PENDING_SUBMIT,
    "PreSubmitted": OrderStatus.SUBMITTED,
    "Submitted": OrderStatus.SUBMITTED,
    "PendingCancel": OrderStatus.PENDING_CANCEL,
    "ApiCancelled": OrderStatus.CANCELLED,
    "Cancelled": OrderStatus.CANCELLED,
    "Filled": OrderStatus.FILLED,
    "Inactive": OrderStatus.REJECTED,
}


def make_order_ref(strategy_id: str, client_order_id: str) -> str:
    return f"{ORDER_REF_PREFIX}|{strategy_id}|{client_order_id}"


def parse_order_ref(ref: str) -> tuple[str, str] | None:
    """(strategy id, client order id) from an orderRef we wrote, else None."""
    parts = ref.split("|", 2)
    if len(parts) == 3 and parts[0] == ORDER_REF_PREFIX and parts[2]:
        return parts[1], parts[2]
    return None


def foreign_order_id(perm_id: int) -> str:
    return f"IB-{perm_id}"


def owner_of(client_id: int, order_id: int, our_client_id: int, ours: bool) -> str:
    """Who placed an order, as the operator reads it."""
    if ours:
        return "fbterm"
    if client_id == 0 and order_id <= 0:
        return "TWS (manual)"
    if client_id == our_client_id:
        return f"client {client_id} (no fbterm reference)"
    return f"client {client_id}"


def order_type_of(ib_type: str) -> OrderType:
    return OrderType(ib_type) if ib_type in OrderType._value2member_map_ else OrderType.LIMIT


@dataclass(slots=True)
class Tracked:
    """One of our orders at IB, and what we last reported about it."""

    client_order_id: str
    ib_order_id: int
    client_id: int  # the client id that placed it (an earlier session may have used another)
    strategy_id: str
    instrument: Instrument
    side: Side
    quantity: float
    status: OrderStatus = OrderStatus.PENDING_SUBMIT  # the last status we reported
    filled: float = 0.0
    perm_id: int = 0
    pending_modify: Order | None = None
    cancel_requested: bool = False
    sent: bool = False  # placeOrder went out (it waits while the contract is qualified)


@dataclass(slots=True)
class Foreign:
    """An order fbterm did not place, known from IB's answers."""

    perm_id: int
    ib_order_id: int
    client_id: int
    instrument: Instrument
    owner: str
    cancellable: bool

    @property
    def client_order_id(self) -> str:
        return foreign_order_id(self.perm_id)


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose an execution or order is: our order (and strategy), or a foreign one."""

    client_order_id: str
    strategy_id: str
    tracked: Tracked | None
    ours: bool


class Registry:
    """Every order the adapter knows at IB, the executions it reported and their commissions.

    Commissions are kept by execution id whenever they arrive, before or after their
    execution: IB sends them separately and in no promised order.
    """

    def __init__(self, client_id: int) -> None:
        self.client_id = client_id
        self.by_coid: dict[str, Tracked] = {}
        self.by_key: dict[tuple[int, int], Tracked] = {}  # (client id, IB order id)
        self.by_perm: dict[int, Tracked] = {}
        self.foreign: dict[int, Foreign] = {}  # by perm id
        self.seen_exec: set[str] = set()
        self.commissions: dict[str, float] = {}
        self.commission_sent: set[str] = set()
        self.completed_why: dict[int, str] = {}  # perm id -> IB's words for how it ended

    def add(self, tr: Tracked) -> Tracked:
        self.by_coid[tr.client_order_id] = tr
        self.by_key[(tr.client_id, tr.ib_order_id)] = tr
        if tr.perm_id:
            self.by_perm[tr.perm_id] = tr
        return tr

    def set_perm(self, tr: Tracked, perm_id: int) -> bool:
        """Remember IB's perm id for ``tr``; True when it is new."""
        if not perm_id or tr.perm_id == perm_id:
            return False
        tr.perm_id = perm_id
        self.by_perm[perm_id] = tr
        return True

    def find(self, client_id: int, order_id: int, perm_id: int) -> Tracked | None:
        tr = self.by_perm.get(perm_id) if perm_id else None
        if tr is None and order_id > 0:
            tr = self.by_key.get((client_id, order_id))
        return tr

    def attribute(self, client_id: int, order_id: int, perm_id: int, order_ref: str) -> Attribution:
        tr = self.find(client_id, order_id, perm_id)
        if tr is not None:
            return Attribution(tr.client_order_id, tr.strategy_id, tr, True)
        ref = parse_order_ref(order_ref)
        if ref is not None:
            tr = self.by_coid.get(ref[1])
            return Attribution(ref[1], ref[0], tr, True)
        return Attribution(foreign_order_id(perm_id), EXTERNAL, None, False)
