"""The operator shell's text output: the shapes of :mod:`fbterm.ops.shell` as lines and tables.

Plain text for a terminal over SSH: fixed columns, no colour, no box drawing, one fact per line,
so ``grep`` and ``awk`` work on it too (scripts should prefer ``--json``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any


def _num(v: Any, places: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer() and places == 0:
        return f"{int(v):,}"
    return f"{v:,.{places}f}"


def _qty(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:g}"


def _when(ts: Any) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")


def _source_line(doc: Mapping[str, Any]) -> str:
    if doc.get("source") == "journal":
        return f"no engine running; from the journal at {doc['journal']}\n"
    return ""


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Columns as wide as their widest cell; ``right`` holds the numeric columns."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip() + "\n"

    return line(headers) + "".join(line(r) for r in rows)


def status(doc: Mapping[str, Any]) -> str:
    out = [_source_line(doc)]
    if doc.get("running"):
        out.append(
            f"engine: running (pid {doc.get('pid')}), {doc.get('broker')} {doc.get('mode')}, "
            f"{doc.get('connection')}\n"
        )
        state = doc.get("trading_state")
        why = doc.get("halt_reason")
        out.append(f"trading: {state}" + (f" ({why})" if why and state != "ACTIVE" else "") + "\n")
        a = doc.get("account_values") or {}
        if a:
            out.append(
                f"equity {_num(a.get('equity'))}  cash {_num(a.get('cash'))}  "
                f"realized {_num(a.get('realized_pnl'))}  unrealized {_num(a.get('unrealized_pnl'))}\n"
            )
        out.append(
            f"open orders {doc.get('open_orders')}  positions {doc.get('positions')}  "
            f"fills {doc.get('fills')}  ticks {doc.get('ticks_processed')}\n"
        )
        strategies = doc.get("strategies") or []
        if strategies:
            names = ", ".join(f"{s['name']} {s['state']}" for s in strategies)
            out.append(f"strategies: {names}\n")
    else:
        out.append(
            f"orders {doc.get('orders')} ({doc.get('open_orders')} working)  "
            f"positions {doc.get('positions')}  fills {doc.get('fills')}\n"
        )
        out.append(f"last event: {_when(doc.get('last_event_ts'))}\n")
    out.append(f"journal: {doc.get('journal')}\n")
    return "".join(out)


ORDER_HEADERS = (
    "ID", "STRATEGY", "SIDE", "QTY", "SYMBOL", "TYPE", "LIMIT", "STOP", "FILLED", "AVG",
    "TIF", "STATUS", "UPDATED", "REASON", "TERMS",
)  # fmt: skip


def order_rows(orders: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            o["id"],
            o["strategy"],
            o["side"],
            _qty(o["quantity"]),
            o["symbol"],
            o["type"],
            _num(o["limit"]),
            _num(o["stop"]),
            _qty(o["filled"]),
            _num(o["avg_fill_price"]),
            o["tif"],
            o["status"],
            _when(o["updated_ts"]),
            o["reason"] or "",
            " ".join(filter(None, [o["terms"], f"parent={o['parent']}" if o["parent"] else ""])),
        ]
        for o in orders
    ]


def orders(doc: Mapping[str, Any], *, include_done: bool) -> str:
    rows = order_rows(doc["orders"])
    head = _source_line(doc)
    if not rows:
        return head + ("no orders\n" if include_done else "no working orders\n")
    return head + table(ORDER_HEADERS, rows, right={3, 6, 7, 8, 9})


def positions(doc: Mapping[str, Any]) -> str:
    head = _source_line(doc)
    rows = [
        [
            p["symbol"],
            _qty(p["quantity"]),
            _num(p["avg_cost"]),
            _num(p["last"]),
            _num(p["market_value"]),
            _num(p["unrealized_pnl"]),
            _num(p["realized_pnl"]),
            ",".join(p["strategies"]),
        ]
        for p in doc["positions"]
    ]
    if not rows:
        return head + "no open positions\n"
    headers = ("SYMBOL", "QTY", "AVG COST", "LAST", "VALUE", "UNREAL", "REALIZED", "STRATEGIES")
    return head + table(headers, rows, right={1, 2, 3, 4, 5, 6})


def result(doc: Mapping[str, Any]) -> str:
    """A command's answer: the engine's sentence, then the orders it touched."""
    out = ("" if doc.get("ok") else "REFUSED: ") + str(doc.get("message", "")) + "\n"
    orders_ = doc.get("orders") or []
    if len(orders_) > 1:
        out += table(ORDER_HEADERS, order_rows(orders_), right={3, 6, 7, 8, 9})
    return out
