"""Strategies pane: keyed by strategy name."""

from __future__ import annotations

from fbterm.model import StrategyState
from fbterm.snapshot import EngineSnapshot, StrategyRow
from fbterm.tui import fmt
from fbterm.tui.table import Column, KeyedTable, Row

_STATE_TONE = {
    StrategyState.RUNNING: "ok",
    StrategyState.PAUSED: "warn",
    StrategyState.HALTED: "breach",
    StrategyState.ERROR: "bad",
}


class StrategiesTable(KeyedTable):
    COLUMNS = (
        Column("name", "Name", 8, prio=0, grow=10, fit=True),
        Column("state", "State", 8, prio=1),
        Column("alloc", "Alloc", 8, right=True, prio=7),
        Column("position", "Position", 14, prio=3, grow=22),
        Column("pnl", "P&L today", 11, right=True, prio=2),
        Column("trades", "Trades", 6, right=True, prio=6),
        Column("signal", "Last signal", 10, prio=4, grow=14),
    )
    DEFAULT_SORT = "name"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.strategies: dict[str, StrategyRow] = {}

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        self.strategies = {s.name: s for s in snap.strategies}
        self.set_rows(strategy_rows(snap))

    @property
    def selected_strategy(self) -> StrategyRow | None:
        key = self.selected_key
        return self.strategies.get(key) if key else None


def _short_position(text: str) -> str:
    """'AAPL +400, AAPL 20261218 C200 -4' -> 'AAPL +400, AAPL 26DEC 200C -4'."""
    parts = []
    for part in text.split(", "):
        name, _, qty = part.rpartition(" ")
        parts.append(f"{fmt.contract(name)} {qty}" if name else part)
    return ", ".join(parts)


def strategy_rows(snap: EngineSnapshot) -> list[Row]:
    rows = []
    for s in snap.strategies:
        state = s.state.value + ("!" if s.error else "")
        rows.append(
            Row(
                key=s.name,
                cells={
                    "name": (s.name, ""),
                    "state": (state, _STATE_TONE.get(s.state, "")),
                    "alloc": (fmt.short_money(s.allocation), ""),
                    "position": (
                        _short_position(s.position) or "flat",
                        "" if s.position else "muted",
                    ),
                    "pnl": (fmt.pnl(s.pnl_today), fmt.tone(s.pnl_today)),
                    "trades": (str(s.trades), ""),
                    "signal": (s.error or s.last_signal or fmt.DASH, "bad" if s.error else ""),
                },
                sort={
                    "name": s.name,
                    "state": s.state.value,
                    "alloc": s.allocation,
                    "position": s.position,
                    "pnl": s.pnl_today,
                    "trades": s.trades,
                    "signal": s.last_signal,
                },
            )
        )
    return rows
