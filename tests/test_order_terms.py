"""Order terms as text (the ticket's Terms field), and the ticket sending a bracket."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from test_tui_flows import Console, console, snap, type_text, wait_for  # noqa: F401 - fixture
from tui_support import run_async

from fbterm.model import OrderError, OrderType, TimeInForce
from fbterm.model.order_terms import parse_order_terms
from fbterm.tui.ticket import OrderTicket, TransmitDialog

pytestmark = pytest.mark.timeout(90)


def test_terms_parse_into_options_and_bracket_prices() -> None:
    t = parse_order_terms("tp=110 sl=95.5 trail=2% outside-rth algo=adaptive:patient")
    assert (t.take_profit, t.stop_loss, t.tif) == (110.0, 95.5, None)
    o = t.options
    assert (o.trail_percent, o.trail_amount, o.outside_rth) == (2.0, None, True)
    assert (o.algo, o.algo_priority) == ("Adaptive", "Patient")
    g = parse_order_terms("gtd=2026-01-02T16:00 trail=1.25")
    assert g.tif is TimeInForce.GTD and g.options.trail_amount == 1.25
    assert g.options.good_till == dt.datetime(2026, 1, 2, 16, tzinfo=dt.UTC).timestamp()
    assert parse_order_terms("tif=ioc").tif is TimeInForce.IOC
    assert parse_order_terms("") == parse_order_terms("   ")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tp=abc", "tp: not a number"),
        ("sl=-3", "sl: must be > 0"),
        ("tif=FOK", "tif must be one of DAY, GTC, IOC, GTD"),
        ("gtd=tomorrow", "gtd: not a date and time"),
        ("algo=twap", "algo must be adaptive"),
        ("algo=adaptive:fast", "algo priority must be one of Urgent, Normal, Patient"),
        ("hedge=1", "unknown term 'hedge=1'"),
        ("tp", "'tp' needs a value"),
    ],
)
def test_bad_terms_name_the_term(text: str, words: str) -> None:
    with pytest.raises(OrderError, match=words):
        parse_order_terms(text)


@run_async
async def test_ticket_sends_a_bracket_and_refuses_bad_terms(console: Console) -> None:  # noqa: F811
    async with console(strategies=False) as (app, pilot, engine, _notes):
        last = snap(app).last_prices["AAPL"]
        await pilot.press("2")
        await pilot.press("n")
        assert isinstance(app.screen, OrderTicket)
        await type_text(pilot, "AAPL")
        await pilot.press("tab", "tab", "tab")  # Side BUY, Type MKT
        await type_text(pilot, "10")
        app.screen.query_one("#terms").value = "tp=1 sl=2"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: str(app.screen.query_one("#error").render()).strip(), "the inline error"
        )
        assert isinstance(app.screen, OrderTicket)  # refused inline: tp below sl for a buy
        err = str(app.screen.query_one("#error").render())
        assert "take-profit 1 must be above its stop-loss 2" in err
        tp, sl = round(last * 1.5, 2), round(last * 0.5, 2)
        app.screen.query_one("#terms").value = f"tp={tp} sl={sl}"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, TransmitDialog), "transmit step")
        words = str(app.screen.query_one("#words").render())
        assert f"take-profit {tp:,.2f}, stop-loss {sl:,.2f}" in words, words
        await pilot.press("t")
        await wait_for(pilot, lambda: not isinstance(app.screen, TransmitDialog), "ticket closed")

        def exits() -> list[Any]:
            return [o for o in snap(app).open_orders if o.parent_id]

        await wait_for(pilot, lambda: len(exits()) == 2, "bracket exits working")
        kinds = sorted((o.order_type, o.limit_price or o.stop_price) for o in exits())
        assert kinds == sorted([(OrderType.LIMIT, tp), (OrderType.STOP, sl)])
        # The exits are acknowledged (held at the venue) before the entry fills on the next
        # market update: wait for the fill rather than race it.
        await wait_for(pilot, lambda: engine.oms.position("AAPL") == 10, "the entry filled")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "trail=1.5",
        "trail=2.25%",
        "gtd=2026-01-02T21:00:00+00:00",
        "outside-rth algo=adaptive:urgent",
        "trail=0.05 gtd=2099-12-31T23:59:59+00:00 outside-rth algo=adaptive:normal",
    ],
)
def test_an_orders_terms_read_back_as_they_were(text: str) -> None:
    from fbterm.model.order_terms import terms_text

    options = parse_order_terms(text).options
    assert terms_text(options) == text
    assert parse_order_terms(terms_text(options)).options == options


def test_the_prices_given_make_the_order_type() -> None:
    from fbterm.model import OrderType
    from fbterm.model.order_terms import order_type_for

    assert order_type_for(None, None, trailing=False) is OrderType.MARKET
    assert order_type_for(1.0, None, trailing=False) is OrderType.LIMIT
    assert order_type_for(None, 1.0, trailing=False) is OrderType.STOP
    assert order_type_for(1.0, 2.0, trailing=False) is OrderType.STOP_LIMIT
    assert order_type_for(None, 2.0, trailing=True) is OrderType.TRAIL


@run_async
async def test_ticket_sends_a_trailing_stop_with_its_first_level(console: Console) -> None:  # noqa: F811
    """TRAIL in the ticket: the distance in Terms, an optional first level in Stop; a distance
    typed into Stop is refused with where it belongs."""
    from fbterm.tui.ticket import TICKET_TYPES

    async with console(strategies=False) as (app, pilot, engine, _notes):
        last = snap(app).last_prices["AAPL"]
        await pilot.press("2")
        await pilot.press("n")
        ticket = app.screen
        assert isinstance(ticket, OrderTicket)
        await type_text(pilot, "AAPL")
        ticket.query_one("#side").index = 1  # type: ignore[attr-defined]
        ticket.query_one("#type").index = TICKET_TYPES.index(OrderType.TRAIL)  # type: ignore[attr-defined]
        ticket.query_one("#quantity").value = "10"  # type: ignore[attr-defined]
        ticket.query_one("#stop").value = "trail=1%"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: str(ticket.query_one("#error").render()).strip(), "error")
        err = str(ticket.query_one("#error").render())
        assert "not a number" in err and "a trailing distance goes in Terms" in err
        level = round(last * 0.97, 2)
        ticket.query_one("#stop").value = str(level)  # type: ignore[attr-defined]
        ticket.query_one("#terms").value = "trail=1% outside-rth"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, TransmitDialog), "transmit step")
        # The question names every term that goes out, not only the type and the prices.
        words = str(app.screen.query_one("#words").render())
        assert f"stop {level:,.2f}" in words and "terms trail=1% outside-rth" in words, words
        await pilot.press("t")
        await wait_for(pilot, lambda: not isinstance(app.screen, TransmitDialog), "sent")

        def trails() -> list[Any]:
            return [o for o in snap(app).open_orders if o.order_type is OrderType.TRAIL]

        await wait_for(pilot, lambda: len(trails()) == 1, "the trailing stop working")
        [o] = trails()
        ours = engine.oms.orders[o.client_order_id]
        assert ours.options.trail_percent == 1.0 and ours.side.value == "SELL"
        # It starts from the level given, or tighter if the price has already moved up since.
        assert ours.stop_price is not None and ours.stop_price >= level
