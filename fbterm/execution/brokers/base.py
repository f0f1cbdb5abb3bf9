"""The broker port: what the engine needs from any execution venue.

Calls are synchronous and non-blocking (they send a request and return); everything the venue
says back arrives later as a :data:`BrokerEvent` through the handler given to
:meth:`Broker.set_event_handler`, on the engine thread. Paper and Interactive Brokers are two
adapters behind this one protocol, which is what lets the same engine run in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from fbterm.execution.brokers.fills import MarketUpdate
from fbterm.model import AccountDetails, Fill, Instrument, Order, OrderStatus, OrderType, Side
from fbterm.model.venue import VenueContract

# The strategy id of everything fbterm did not create: positions it found at the venue and
# orders other clients (or a person in TWS) placed. Risk limits and flatten count it.
EXTERNAL = "external"


class ConnectionState(StrEnum):
    """The link to the venue as the operator sees it.

    Orders go out only while CONNECTED. READ_ONLY is connected without orders (configured, or
    the venue refuses them); SYNCING is connected again after a loss while the engine
    re-syncs with the venue's answers; LOST means the gateway is up but cut off from the
    venue (IB 1100); RECONNECTING means the socket to the gateway is gone.
    """

    CONNECTED = "connected"
    READ_ONLY = "read-only"
    SYNCING = "re-syncing"
    LOST = "lost"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"

    @property
    def is_down(self) -> bool:
        """Cut off from the venue: nothing we send arrives, nothing it does reaches us."""
        return self in (
            ConnectionState.LOST,
            ConnectionState.RECONNECTING,
            ConnectionState.DISCONNECTED,
        )

    @property
    def is_up(self) -> bool:
        return self in (ConnectionState.CONNECTED, ConnectionState.READ_ONLY)


@dataclass(frozen=True, slots=True)
class OrderStatusEvent:
    """The venue's word on an order: acknowledged, cancelled, rejected, ..."""

    client_order_id: str
    status: OrderStatus
    reason: str = ""
    broker_order_id: str | None = None
    ts: float = 0.0
    perm_id: str | None = None  # the venue's permanent id, once it gave one
    code: int = 0  # the venue's error code behind a final status (IB 201, 202, ...)


@dataclass(frozen=True, slots=True)
class FillEvent:
    """An execution; it names the venue's ids of its order, which may not be known yet (an
    execution can overtake its order's acknowledgement)."""

    fill: Fill
    broker_order_id: str | None = None
    perm_id: str | None = None


@dataclass(frozen=True, slots=True)
class CommissionEvent:
    """A commission that arrived after its fill (IB sends them separately)."""

    fill_id: str
    commission: float


@dataclass(frozen=True, slots=True)
class ModifyAckEvent:
    """The venue accepted new terms for a working order."""

    client_order_id: str
    quantity: float
    order_type: OrderType
    limit_price: float | None
    stop_price: float | None
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """The link changed state. ``data_lost`` (with SYNCING): the venue dropped every
    subscription, which the adapters renew themselves."""

    state: ConnectionState
    message: str = ""
    ts: float = 0.0
    code: int = 0
    data_lost: bool = False


@dataclass(frozen=True, slots=True)
class BrokerMessage:
    """Anything else the venue says that an operator should see (IB error codes, warnings)."""

    code: int
    message: str
    client_order_id: str | None = None
    level: str = "warning"
    ts: float = 0.0
    alert: bool = False  # the operator must hear of it (an alert, not only a log line)


BrokerEvent = (
    OrderStatusEvent
    | FillEvent
    | CommissionEvent
    | ModifyAckEvent
    | ConnectionEvent
    | BrokerMessage
)
EventHandler = Callable[[BrokerEvent], None]


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    instrument: Instrument
    quantity: float
    avg_cost: float
    account: str = ""
    market_price: float | None = None


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the venue reports it (used to reconcile with the journal)."""

    client_order_id: str | None
    broker_order_id: str
    instrument: Instrument
    side: str
    quantity: float
    filled: float
    order_type: OrderType
    limit_price: float | None
    stop_price: float | None
    status: OrderStatus
    strategy_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    perm_id: str = ""
    owner: str = ""  # who placed it: "fbterm", "client 5", "TWS (manual)"
    cancellable: bool = True  # whether this connection may cancel it
    reason: str = ""  # a completed order: the venue's words for how it ended
    tif: str = "DAY"
    account: str = ""

    @property
    def foreign(self) -> bool:
        """Not placed by fbterm (another client, a manual order, or no fbterm reference)."""
        return self.owner != "fbterm"


@dataclass(frozen=True, slots=True)
class VenueBook:
    """The venue's own answers about the account, asked for together.

    ``asked_at`` is when the questions went out: an order created later may be missing from
    the answers without being lost. ``unsent`` are orders the adapter holds back (a contract
    still being qualified), which the venue cannot know yet.
    """

    account: str
    positions: tuple[BrokerPosition, ...]
    open_orders: tuple[BrokerOrder, ...]
    completed_orders: tuple[BrokerOrder, ...]
    fills: tuple[FillEvent, ...]
    asked_at: float
    unsent: frozenset[str] = frozenset()


class BrokerError(RuntimeError):
    """A broker call could not be made (not connected, read-only, unknown order)."""


@runtime_checkable
class Broker(Protocol):
    """The execution venue port. Implementations: PaperBroker, BrokerIntegration (IB)."""

    name: str

    def set_event_handler(self, handler: EventHandler) -> None: ...

    async def start(self) -> None:
        """Connect (on the engine thread's event loop). Raise ConnectionError if impossible."""

    async def stop(self) -> None: ...

    @property
    def connection_state(self) -> ConnectionState: ...

    def execute_order(self, order: Order) -> None:
        """Send a new order. Acknowledgement, fills or rejection arrive as events."""

    def cancel_order(self, order: Order) -> None: ...

    def modify_order(self, order: Order) -> None:
        """Send new terms for a working order (``order`` carries them)."""

    def query_open_orders(self) -> list[BrokerOrder]: ...

    def query_positions(self) -> list[BrokerPosition]: ...

    def query_account_details(self) -> AccountDetails: ...


class ContractStore(Protocol):
    """Where a venue keeps the contracts it qualified (the journal), so the next session
    starts with them."""

    def venue_contracts(self, venue: str) -> dict[str, VenueContract]: ...

    def save_venue_contract(self, venue: str, contract: VenueContract) -> None: ...


@runtime_checkable
class RemoteVenue(Protocol):
    """A venue outside this process (IB), on top of :class:`Broker`: its book is the truth.

    After every (re)connect it reports SYNCING and accepts no orders until the engine has
    reconciled with :meth:`fetch_book` and called :meth:`end_sync`.
    """

    async def fetch_book(self) -> VenueBook:
        """Ask the venue for positions, open and completed orders and executions."""
        ...

    def end_sync(self) -> None:
        """The engine has reconciled: orders may go out again."""
        ...

    async def qualify(self, instruments: Sequence[Instrument]) -> list[str]:
        """Qualify contracts before the first order; returns one line per problem."""
        ...


@runtime_checkable
class SimulatedVenue(Protocol):
    """A venue simulated inside this process (the paper broker), on top of :class:`Broker`.

    Three things set it apart from a remote venue, and the engine relies on each of them:

    * it answers synchronously, inside :meth:`Broker.execute_order`, and dies with the
      process, so everything one engine step causes (orders, acks, fills) may share one
      journal commit: nothing of it is visible outside before the commit;
    * it has no market data of its own: it fills against the updates the engine hands it;
    * it keeps no book across restarts: the engine rebuilds it from the journal.

    A remote venue (IB) has none of these, which is why the engine asks
    ``isinstance(broker, SimulatedVenue)`` once instead of probing attributes.
    """

    def on_market(self, key: str, u: MarketUpdate) -> list[Fill]:
        """Fill working orders for ``key`` against this market update; returns the fills."""
        ...

    def restore(self, fills: Iterable[Fill], open_orders: Iterable[Order]) -> None:
        """Rebuild cash, positions and the working orders from the journal (after a restart)."""
        ...


@dataclass(frozen=True, slots=True)
class MarginImpact:
    """A venue's what-if answer for one order: initial margin before and after, and the
    buying power the account would have left. Nothing is sent to the market to get it."""

    venue: str
    margin_before: float
    margin_after: float
    buying_power_after: float
    note: str = ""

    def describe(self) -> str:
        change = self.margin_after - self.margin_before
        text = (
            f"what-if ({self.venue}): initial margin {change:+,.0f} -> {self.margin_after:,.0f}; "
            f"buying power after {self.buying_power_after:,.0f}"
        )
        return f"{text} ({self.note})" if self.note else text


@runtime_checkable
class MarginPreview(Protocol):
    """A venue that can say what an order would do to margin before it is sent (TWS calls it
    what-if). Optional: the console says so when a venue offers none."""

    def what_if(
        self, instrument: Instrument, side: Side, quantity: float, price: float
    ) -> MarginImpact: ...
