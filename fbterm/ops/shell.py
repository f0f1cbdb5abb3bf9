"""The operator shell's data: the stable JSON of status, orders, positions and command results.

``fbterm status|orders|positions|halt|resume|flatten|order|cancel --json`` print these shapes,
whether the answer comes from a running engine (over the control socket) or, for the read-only
commands, from the journal when no engine runs. Keys are only ever added, never renamed or
removed; ``schema`` says which version a script is reading. Every document carries ``source``
(``"engine"`` or ``"journal"``) and ``journal`` (its path), so a script can tell a live answer
from a reading of the file.

Standard library and :mod:`fbterm.model` only: the engine's control handlers build the same
shapes the CLI builds from the journal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fbterm.model import Fill, Order, positions_from_fills
from fbterm.model.order_terms import terms_text

SCHEMA = 1

# The columns of one order, in this order, in ``fbterm orders --json`` and command results.
ORDER_KEYS = (
    "id",
    "strategy",
    "symbol",
    "side",
    "type",
    "quantity",
    "filled",
    "avg_fill_price",
    "limit",
    "stop",
    "tif",
    "terms",
    "parent",
    "status",
    "reason",
    "created_ts",
    "updated_ts",
)
POSITION_KEYS = (
    "symbol",
    "quantity",
    "avg_cost",
    "last",
    "market_value",
    "unrealized_pnl",
    "realized_pnl",
    "strategies",
)


def order_json(o: Order) -> dict[str, Any]:
    """One order as the shell shows it (ORDER_KEYS)."""
    return {
        "id": o.client_order_id,
        "strategy": o.strategy_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "type": o.order_type.value,
        "quantity": o.quantity,
        "filled": o.filled_quantity,
        "avg_fill_price": o.avg_fill_price if o.filled_quantity else None,
        "limit": o.limit_price,
        "stop": o.stop_price,
        "tif": o.tif.value,
        "terms": terms_text(o.options),  # trail, gtd, outside-rth, algo: the ticket's syntax
        "parent": o.parent_id,  # a bracket's exit names its entry
        "status": o.status.value,
        "reason": o.reason,
        "created_ts": o.created_ts,
        "updated_ts": o.updated_ts,
    }


def select_orders(orders: Iterable[Order], *, include_done: bool, limit: int) -> list[Order]:
    """Working orders (or, with ``include_done``, every order), the newest ``limit``, oldest
    first. ``orders`` are in creation order."""
    chosen = [o for o in orders if include_done or o.is_live]
    return chosen[-limit:] if limit > 0 else chosen


def positions_from_journal(fills: Sequence[Fill]) -> list[dict[str, Any]]:
    """Open positions folded from the journal's fills: no market here, so no marks."""
    totals = positions_from_fills(list(fills))
    by_strategy = positions_from_fills(list(fills), by_strategy=True)
    out = []
    for key, p in sorted(totals.items()):
        if p.is_flat:
            continue
        holders = sorted(sid for (sid, k), sp in by_strategy.items() if k == key and not sp.is_flat)
        out.append(
            {
                "symbol": key,
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "last": None,
                "market_value": None,
                "unrealized_pnl": None,
                "realized_pnl": p.realized_pnl,
                "strategies": holders,
            }
        )
    return out


def positions_from_summary(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The engine's positions (``summary_dict``'s rows) in POSITION_KEYS."""
    return [{k: row.get(k) for k in POSITION_KEYS} for row in summary.get("positions", ())]


def envelope(source: str, journal: str, **body: Any) -> dict[str, Any]:
    """A shell document: its schema, where it came from, then its body."""
    return {"schema": SCHEMA, "source": source, "journal": journal, **body}


__all__ = [
    "ORDER_KEYS",
    "POSITION_KEYS",
    "SCHEMA",
    "envelope",
    "order_json",
    "positions_from_journal",
    "positions_from_summary",
    "select_orders",
]
