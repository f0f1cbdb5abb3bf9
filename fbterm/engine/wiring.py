"""An engine's outside parts built from the configuration: venue, market data, diagnostics.

Venues and market-data sources come from registries (name -> factory), so a new venue is one
adapter module plus one line in :data:`BROKERS`. A factory imports its adapter only when it is
called: the engine never loads ``ib_async`` unless the configuration asks for IB.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from fbterm.config import Config, ConfigError
from fbterm.engine.market import TickSource
from fbterm.execution.brokers.base import Broker
from fbterm.journal import Journal
from fbterm.model import Option, OptionQuote, Tick

if TYPE_CHECKING:
    from fbterm.data.retrieval import DataRetrieval, HistoricalSource, RealtimeSource
    from fbterm.data.simulated import SimulatedMarket
    from fbterm.ops.diagnostics import Diagnostics


@dataclass(frozen=True, slots=True)
class VenueContext:
    """What a venue factory may draw on besides the configuration.

    ``option_pricer`` quotes options when the market is simulated (None otherwise).
    """

    config: Config
    journal: Journal
    clock: Callable[[], float]
    option_pricer: Callable[[Option], OptionQuote | None] | None = None


BrokerFactory = Callable[[VenueContext], Broker]


def paper_broker(ctx: VenueContext) -> Broker:
    from fbterm.execution.brokers.paper import PaperBroker

    cfg = ctx.config
    return PaperBroker(
        cfg.broker.paper,
        symbols=list(cfg.market.symbols),
        option_pricer=ctx.option_pricer,
        clock=ctx.clock,
    )


def ib_broker(ctx: VenueContext) -> Broker:
    from fbterm.execution.brokers.ib import BrokerIntegration

    # IB order ids must never go backwards, even if the gateway's nextValidId does after a
    # restart: start above every id the journal has seen.
    min_order_id = ctx.journal.highest_broker_order_id() + 1
    ib = ctx.config.broker.ib
    if ctx.config.broker.read_only and not ib.read_only:
        ib = dataclasses.replace(ib, read_only=True)  # and connect without order rights
    # Qualified contracts live in the journal: the next session starts with them.
    return BrokerIntegration(ib, min_order_id=min_order_id, contracts=ctx.journal)


def read_only_reason(cfg: Config) -> str | None:
    """Why this session may not send, change or cancel orders, on any venue (None: it may).

    Refused at the engine's boundary with the venue, so a read-only run never trades whatever
    the venue would allow (the paper broker allows everything).
    """
    if cfg.broker.read_only or (cfg.broker.kind == "ib" and cfg.broker.ib.read_only):
        return "read-only session (--read-only / broker.read_only): no orders are sent, changed or cancelled"
    return None


BROKERS: dict[str, BrokerFactory] = {
    "paper": paper_broker,
    "ib": ib_broker,
}


def make_broker(ctx: VenueContext) -> Broker:
    """The venue ``broker.kind`` names."""
    kind = ctx.config.broker.kind
    factory = BROKERS.get(kind)
    if factory is None:
        raise ConfigError(
            f"{ctx.config.source}: broker.kind: unknown venue {kind!r} (known: {', '.join(BROKERS)})"
        )
    return factory(ctx)


@dataclass(frozen=True, slots=True)
class SourceHooks:
    """What a market-data source may tell the engine while it works.

    ``on_pacing_wait(symbol, why, seconds, retry)``: history is waiting out the venue's pacing.
    """

    on_pacing_wait: Callable[[str, str, float, int], None] | None = None


# A source factory answers (realtime source, historical source or None) for the config.
SourceFactory = Callable[
    [Config, Broker, SourceHooks], "tuple[RealtimeSource, HistoricalSource | None]"
]


def csv_source(
    cfg: Config, broker: Broker, hooks: SourceHooks
) -> tuple[RealtimeSource, HistoricalSource | None]:
    from fbterm.data.retrieval import CSVSource

    csv = cfg.market.csv
    return CSVSource(csv.path, csv.speed, timezone=cfg.market.timezone), None


def ib_source(
    cfg: Config, broker: Broker, hooks: SourceHooks
) -> tuple[RealtimeSource, HistoricalSource | None]:
    """IB market data over the IB venue's own connection; it also serves history (for
    warming strategies up). Without the IB venue there is no connection to carry it."""
    from fbterm.data.ib_source import IBSource
    from fbterm.execution.brokers.ib import BrokerIntegration

    if not isinstance(broker, BrokerIntegration):
        raise ConfigError(
            f"{cfg.source}: market.source: 'ib' market data comes over the IB broker's "
            f"connection; broker.kind is {cfg.broker.kind!r}"
        )
    ib = cfg.broker.ib
    src = IBSource(
        broker,
        market_data_type=ib.market_data_type,
        delayed_fallback=ib.delayed_fallback,
        request_timeout=ib.request_timeout,
        max_retries=ib.pacing_max_retries,
        retry_delay=ib.pacing_retry_delay,
        on_wait=hooks.on_pacing_wait,
    )
    # IBSource.fetch_bars is a coroutine function; DataRetrieval awaits what it returns.
    return src, cast("HistoricalSource", src)


SOURCES: dict[str, SourceFactory] = {
    "csv": csv_source,
    "ib": ib_source,
}


class _RetrievalFeed:
    """A :class:`TickSource` reading through :class:`DataRetrieval` (which caches history)."""

    def __init__(self, name: str, retrieval: DataRetrieval) -> None:
        self.name = name
        self.retrieval = retrieval

    def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]:
        return self.retrieval.fetch_realtime_data(symbols)


def make_source(
    cfg: Config, broker: Broker, hooks: SourceHooks | None = None
) -> tuple[TickSource, DataRetrieval]:
    """Market data for ``market.source`` (csv, ib, ...) through the seed's DataRetrieval."""
    from fbterm.data.retrieval import DataRetrieval
    from fbterm.data.storage import DataStorage

    factory = SOURCES.get(cfg.market.source)
    if factory is None:
        raise ConfigError(
            f"{cfg.source}: market.source: unknown source {cfg.market.source!r} "
            f"(known: simulated, {', '.join(SOURCES)})"
        )
    storage = DataStorage(cfg.data_dir, cfg.market.timezone)
    realtime, historical = factory(cfg, broker, hooks or SourceHooks())
    retrieval = DataRetrieval(storage, historical=historical, realtime=realtime)
    return _RetrievalFeed(realtime.name, retrieval), retrieval


def simulated_market(cfg: Config, symbols: Sequence[str]) -> SimulatedMarket:
    from fbterm.data.simulated import SimulatedMarket

    return SimulatedMarket(list(symbols), cfg.market.simulated)


def default_diagnostics(cfg: Config) -> Diagnostics | None:
    """The activity log and alert channels from config (None if they cannot be opened)."""
    try:
        from fbterm.ops.diagnostics import Diagnostics

        return Diagnostics.from_config(cfg)
    except Exception:
        return None
