"""The engine's seams: venue registry, simulated-venue port, command table, journal queries."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from fbterm.commands import Command
from fbterm.config import Config, ConfigError, config_from_dict
from fbterm.engine import wiring
from fbterm.engine.commands import HANDLERS
from fbterm.execution.brokers.base import SimulatedVenue
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.journal import Journal
from fbterm.model import Order, Side, Stock


def cfg(tmp_path: Path, **broker: object) -> Config:
    return config_from_dict(
        {
            "broker": broker or {"kind": "paper"},
            "market": {"symbols": ["AAPL"]},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
        }
    )


def test_every_command_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(typing.get_args(Command))


def test_the_paper_venue_is_simulated_and_the_ib_venue_is_not() -> None:
    from fbterm.execution.brokers.ib import BrokerIntegration

    assert isinstance(PaperBroker(), SimulatedVenue)
    assert not isinstance(BrokerIntegration(), SimulatedVenue)


def test_a_venue_is_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = cfg(tmp_path)
    ctx = wiring.VenueContext(c, Journal(c.journal_path), clock=lambda: 0.0)
    assert isinstance(wiring.make_broker(ctx), PaperBroker)
    made: list[wiring.VenueContext] = []

    def other(ctx: wiring.VenueContext) -> PaperBroker:
        made.append(ctx)
        return PaperBroker()

    monkeypatch.setitem(wiring.BROKERS, "paper", other)
    wiring.make_broker(ctx)
    assert made == [ctx]
    ctx.journal.close()


def test_ib_market_data_needs_the_ib_venue(tmp_path: Path) -> None:
    c = config_from_dict(
        {
            "market": {"source": "ib", "symbols": ["AAPL"]},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
            "data": {"dir": str(tmp_path / "data")},
        }
    )
    with pytest.raises(ConfigError, match=r"broker\.kind"):
        wiring.make_source(c, PaperBroker())


def test_the_journal_answers_the_engines_questions(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite")
    assert (j.highest_broker_order_id(), j.count_records()) == (0, 0)
    o = Order("FB-000001", Stock("AAPL"), Side.BUY, 10.0, broker_order_id="41")
    j.record_order("new", o)
    j.record_order("ack", o)
    assert (j.highest_broker_order_id(), j.count_records()) == (41, 2)
    j.close()
