"""StrategyLevelRisk: one strategy's exits (stop-loss, take-profit, trailing stop) while it trades.

It watches prices against the strategy's positions with the pure rules of
:mod:`fbterm.risk.stops` and, when one fires, emits an ordinary closing order that goes through
the same pre-trade gate as any other (:mod:`fbterm.risk.portfolio`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fbterm.config import StrategyRiskConfig
from fbterm.model import OrderType, Position, Side, Signal
from fbterm.risk.stops import any_stop, stop_loss_hit, take_profit_hit, trailing_stop_hit


@dataclass(slots=True)
class _Watermark:
    quantity: float
    best: float  # highest price while long, lowest while short


class StrategyLevelRisk:
    """Stop-loss, take-profit and trailing stops for one strategy's positions.

    A trigger produces an ordinary market order (a :class:`Signal`) that closes the position;
    it goes through the same pre-trade gate as any other order.
    """

    def __init__(self, strategy_id: str, cfg: StrategyRiskConfig | None = None):
        self.strategy_id = strategy_id
        self.cfg = cfg or StrategyRiskConfig()
        self._marks: dict[str, _Watermark] = {}
        self._exiting: set[str] = set()
        # Read on every tick for every strategy: decided once.
        self.active = any_stop(self.cfg)

    def _exit(self, pos: Position, price: float, reason: str, ts: float | None) -> Signal:
        self._exiting.add(pos.symbol)
        return Signal(
            strategy_id=self.strategy_id,
            instrument=pos.instrument,
            side=Side.SELL if pos.quantity > 0 else Side.BUY,
            quantity=abs(pos.quantity),
            order_type=OrderType.MARKET,
            signal_price=price,
            ts=ts or time.time(),
            reason=reason,
        )

    def apply_stop_loss(
        self, pos: Position, price: float, ts: float | None = None
    ) -> Signal | None:
        """A closing order when the stop-loss (fixed or trailing) is hit, else None."""
        if pos.is_flat:
            self._marks.pop(pos.symbol, None)
            self._exiting.discard(pos.symbol)
            return None
        if pos.symbol in self._exiting:
            return None
        reason = stop_loss_hit(pos, price, self.cfg)
        if reason is None and self.cfg.trailing_stop_pct is not None:
            wm = self._marks.get(pos.symbol)
            if wm is None or wm.quantity * pos.quantity <= 0:
                wm = self._marks[pos.symbol] = _Watermark(
                    pos.quantity,
                    max(price, pos.avg_cost) if pos.quantity > 0 else min(price, pos.avg_cost),
                )
            wm.quantity = pos.quantity
            wm.best = max(wm.best, price) if pos.quantity > 0 else min(wm.best, price)
            reason = trailing_stop_hit(pos.quantity, wm.best, price, self.cfg.trailing_stop_pct)
        return self._exit(pos, price, reason, ts) if reason else None

    def apply_take_profit(
        self, pos: Position, price: float, ts: float | None = None
    ) -> Signal | None:
        if pos.is_flat or pos.symbol in self._exiting:
            return None
        reason = take_profit_hit(pos, price, self.cfg)
        return self._exit(pos, price, reason, ts) if reason else None

    def on_price(self, pos: Position, price: float, ts: float | None = None) -> Signal | None:
        return self.apply_stop_loss(pos, price, ts) or self.apply_take_profit(pos, price, ts)

    def exit_done(self, symbol: str) -> None:
        """The exit order finished (filled or failed): watch the position afresh."""
        self._exiting.discard(symbol)
