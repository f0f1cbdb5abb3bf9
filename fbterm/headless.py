"""``fbterm run --headless``: the engine without the console, then a summary."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

from fbterm.config import Config
from fbterm.snapshot import EngineSnapshot


def build_engine(cfg: Config) -> Any:
    """The engine; it opens its own activity log and alert channels from ``cfg``."""
    from fbterm.engine import Engine

    return Engine(cfg)


def run_headless(cfg: Config, *, duration: float | None = None, as_json: bool = False) -> int:
    engine = build_engine(cfg)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        engine.start(control=True)
        print(
            f"fbterm: engine running on {engine.broker.name}, {len(engine.executor.slots)} strategies, "
            f"symbols {', '.join(engine.symbols)}; journal {cfg.journal_path}",
            file=sys.stderr,
        )
        t_end = time.monotonic() + duration if duration else None
        while not done.is_set() and engine.running:
            left = None if t_end is None else t_end - time.monotonic()
            if left is not None and left <= 0:
                break
            done.wait(min(left, 0.5) if left is not None else 0.5)
        engine.stop_feed()
        time.sleep(0.2)  # let the venue's last answers (IB) arrive before the summary
        snap = engine.build_snapshot_threadsafe()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        engine.stop()
    broker_positions = engine.broker_positions
    print(format_summary(snap, as_json=as_json, broker_positions=broker_positions))
    return 0


def summary_dict(s: EngineSnapshot, broker_positions: list[Any] | None = None) -> dict[str, Any]:
    a = s.account_details
    return {
        "account_positions": [
            {
                "symbol": p.instrument.key,
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "account": p.account,
                "market_price": p.market_price,
            }
            for p in (broker_positions or [])
        ],
        "mode": s.mode,
        "broker": s.broker,
        "account": s.account,
        "connection": s.connection,
        "trading_state": s.risk.state.value,
        "halt_reason": s.risk.halt_reason,
        "ticks_processed": s.ticks_processed,
        "fills": s.fills_total,
        "account_values": None
        if a is None
        else {
            "cash": a.cash,
            "equity": a.equity,
            "buying_power": a.buying_power,
            "margin_used": a.margin_used,
            "realized_pnl": a.realized_pnl,
            "unrealized_pnl": a.unrealized_pnl,
        },
        "positions": [
            {
                "symbol": p.symbol,
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "last": p.last,
                "market_value": p.market_value,
                "unrealized_pnl": p.unrealized_pnl,
                "realized_pnl": p.realized_pnl,
                "strategies": list(p.strategies),
            }
            for p in s.positions
        ],
        "open_orders": [
            {
                "id": o.client_order_id,
                "strategy": o.strategy_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "type": o.order_type.value,
                "quantity": o.quantity,
                "filled": o.filled_quantity,
                "limit": o.limit_price,
                "stop": o.stop_price,
                "status": o.status.value,
            }
            for o in s.open_orders
        ],
        "strategies": [
            {
                "name": r.name,
                "class": r.cls,
                "state": r.state.value,
                "allocation": r.allocation,
                "position": r.position,
                "pnl": r.pnl_total,
                "fills": r.fills,
                "trades": r.trades,
                "error": r.error,
            }
            for r in s.strategies
        ],
        "latency_ms": {"p50": s.latency_ms_p50, "p99": s.latency_ms_p99},
    }


def format_summary(
    s: EngineSnapshot, *, as_json: bool = False, broker_positions: list[Any] | None = None
) -> str:
    d = summary_dict(s, broker_positions)
    if as_json:
        return json.dumps(d, indent=2)
    lines = [
        f"mode {d['mode']}  broker {d['broker']}  account {d['account']}  connection {d['connection']}  "
        f"trading {d['trading_state']}" + (f" ({d['halt_reason']})" if d["halt_reason"] else ""),
        f"ticks {d['ticks_processed']:,}  fills {d['fills']:,}  ack latency p50/p99 "
        f"{_ms(s.latency_ms_p50)}/{_ms(s.latency_ms_p99)}",
    ]
    av = d["account_values"]
    if av:
        lines.append("")
        lines.append("ACCOUNT")
        for k, v in av.items():
            lines.append(f"  {k:<15}{v:>16,.2f}")
    lines.append("")
    lines.append(f"POSITIONS ({len(d['positions'])})")
    if d["positions"]:
        lines.append(
            f"  {'symbol':<22}{'qty':>10}{'avg cost':>12}{'last':>12}{'unrealized':>14}{'realized':>12}"
        )
        for p in d["positions"]:
            last = f"{p['last']:,.2f}" if p["last"] is not None else "-"
            lines.append(
                f"  {p['symbol']:<22}{p['quantity']:>10,.0f}{p['avg_cost']:>12,.2f}{last:>12}"
                f"{p['unrealized_pnl']:>14,.2f}{p['realized_pnl']:>12,.2f}"
            )
    if d["account_positions"]:
        lines.append("")
        lines.append(f"ACCOUNT POSITIONS at {d['broker']} ({len(d['account_positions'])})")
        lines.append(f"  {'symbol':<22}{'qty':>10}{'avg cost':>12}  account")
        for p in d["account_positions"]:
            lines.append(
                f"  {p['symbol']:<22}{p['quantity']:>10,.0f}{p['avg_cost']:>12,.2f}  {p['account']}"
            )
    lines.append("")
    lines.append(f"OPEN ORDERS ({len(d['open_orders'])})")
    for o in d["open_orders"]:
        px = o["limit"] if o["limit"] is not None else o["stop"]
        lines.append(
            f"  {o['id']:<12}{o['strategy']:<16}{o['side']:<5}{o['quantity']:>8,.0f} {o['symbol']:<20}"
            f"{o['type']:<8}{'' if px is None else f'{px:,.2f}':>10}  {o['status']}"
        )
    lines.append("")
    lines.append("STRATEGIES")
    for r in d["strategies"]:
        err = f"  [{r['error']}]" if r["error"] else ""
        lines.append(
            f"  {r['name']:<16}{r['class']:<16}{r['state']:<9}{r['pnl']:>12,.2f}  fills {r['fills']:<5}"
            f"{r['position']}{err}"
        )
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}ms"
