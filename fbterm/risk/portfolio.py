"""PortfolioLevelRisk: the account-wide pre-trade gate, trading states, drawdown and daily-loss halts.

Strategy-level exits (stop-loss, take-profit, trailing stops) are in
:mod:`fbterm.risk.strategy`, their pure rules in :mod:`fbterm.risk.stops`.

Risk is a gate, not a report: every order passes :meth:`PortfolioLevelRisk.check_order` before
it reaches a venue, and a refusal names the rule and the numbers
(``max_order_value: 25,300 > 20,000``). Trading has three states, as in NautilusTrader's risk
engine: ACTIVE, REDUCING (only orders that shrink a position) and HALTED (nothing new). Leaving
REDUCING or HALTED is always an explicit command.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fbterm.config import RiskConfig
from fbterm.model import MarginImpact, Order, OrderType, TradingState
from fbterm.model.greeks import Greeks
from fbterm.risk.greeks import GreekInputs, check_greek_limits
from fbterm.risk.stops import money
from fbterm.sessions import DEFAULT_CALENDAR, trading_day_clock
from fbterm.snapshot import Gauge

# ------------------------------------------------------------------------------ the maths


def max_drawdown(equity: Sequence[float] | np.ndarray) -> float:
    """The largest peak-to-trough fall of an equity curve, as a fraction (0.25 = 25%)."""
    eq = np.asarray(equity, dtype="float64")
    if eq.size == 0:
        return 0.0
    peaks = np.maximum.accumulate(eq)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peaks > 0, 1.0 - eq / peaks, 0.0)
    return float(max(dd.max(), 0.0))


def drawdown_now(equity: float, peak: float) -> float:
    return 0.0 if peak <= 0 else max(1.0 - equity / peak, 0.0)


# Money limits are met to the half cent: 100,000 -> 90,000 is 9.999999999999998% in floats,
# and a halt set at 10% must fire there.
HALF_CENT = 0.005


def reaches(amount: float, limit: float) -> bool:
    """Whether a money ``amount`` (a loss) reaches ``limit``, exact at the limit."""
    return amount >= limit - HALF_CENT


def drawdown_breached(equity: float, peak: float, max_pct: float) -> bool:
    """Whether ``equity`` has fallen ``max_pct`` percent or more below ``peak``, compared in
    money (the fall against the allowed fall) so that exactly the limit breaches."""
    return peak > 0 and reaches(peak - equity, peak * max_pct / 100)


def reduces_position(current: float, signed_qty: float) -> bool:
    """True when an order moves a position toward zero without crossing it."""
    after = current + signed_qty
    return abs(after) < abs(current) - 1e-12 and current * after >= 0


def level_of(value: float, limit: float, warn_fraction: float) -> str:
    if limit <= 0:
        return "ok"
    if value >= limit:
        return "breach"
    if value >= limit * warn_fraction:
        return "warn"
    return "ok"


# ------------------------------------------------------------------------ portfolio level


class RiskInputs(Protocol):
    """What the pre-trade gate reads from the engine's state."""

    def last_price(self, key: str) -> float | None: ...

    def position(self, key: str) -> float: ...

    def strategy_position(self, strategy_id: str, key: str) -> float: ...

    def gross_exposure(self) -> float: ...

    def stale_age(self, symbol: str) -> float | None:
        """Seconds since the last update when the feed is stale, else None."""


@dataclass(slots=True)
class RiskStatus:
    state: TradingState
    reason: str
    equity: float
    peak: float
    day_start_equity: float
    drawdown: float  # fraction
    max_drawdown_seen: float
    daily_pnl: float
    orders_per_second: float
    curve: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RiskBaselines:
    """What the gate must not forget across a restart: the trading state and why, and the
    equities the loss limits are measured from (the journal keeps them)."""

    state: TradingState
    reason: str
    # The trading session day_start_equity belongs to, as a date ordinal (the journal's integer).
    day: int | None
    day_start_equity: float | None
    peak: float


class PortfolioLevelRisk:
    """The account-wide gate: trading state, limits, drawdown and daily loss."""

    def __init__(
        self,
        cfg: RiskConfig | None = None,
        inputs: RiskInputs | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_state_change: Callable[[TradingState, str], None] | None = None,
        calendar: str = DEFAULT_CALENDAR,
    ):
        self.cfg = cfg or RiskConfig()
        # The daily loss limit's day: the exchange's session, rolling at its close.
        self.trading_day = trading_day_clock(calendar)
        self.inputs = inputs
        self.clock = clock
        self.on_state_change = on_state_change
        # Set by the engine once its positions and marks exist (the delta and vega limits).
        self.greeks: GreekInputs | None = None
        self.state = TradingState.ACTIVE
        self.reason = ""
        self.equity = 0.0
        self.peak = 0.0
        self.day_start_equity: float | None = None
        self._day: dt.date | None = None
        self.curve: deque[float] = deque(maxlen=100_000)
        self._accepted: deque[float] = deque()

    # -- trading state -------------------------------------------------------------------
    def halt_trading(self, reason: str) -> bool:
        """Stop all new orders. Returns False when already halted."""
        if self.state is TradingState.HALTED:
            return False
        self._set(TradingState.HALTED, reason)
        return True

    def reduce_only(self, reason: str) -> bool:
        if self.state is not TradingState.ACTIVE:
            return False
        self._set(TradingState.REDUCING, reason)
        return True

    def resume(self) -> bool:
        if self.state is TradingState.ACTIVE:
            return False
        # A resume starts a new drawdown watch: without it a breach would halt again at once.
        self.peak = self.equity
        self._set(TradingState.ACTIVE, "")
        return True

    def _set(self, state: TradingState, reason: str) -> None:
        self.state, self.reason = state, reason
        if self.on_state_change:
            self.on_state_change(state, reason)

    def baselines(self) -> RiskBaselines:
        day = None if self._day is None else self._day.toordinal()
        return RiskBaselines(self.state, self.reason, day, self.day_start_equity, self.peak)

    def restore(self, b: RiskBaselines) -> None:
        """Take up where an earlier session left off. Nothing changes state here, so nothing
        reacts: the caller says what was restored."""
        self.state, self.reason = b.state, b.reason
        self._day = None if b.day is None else dt.date.fromordinal(b.day)
        self.day_start_equity, self.peak = b.day_start_equity, b.peak

    # -- equity --------------------------------------------------------------------------
    def calculate_max_drawdown(self, equity: Sequence[float] | None = None) -> float:
        """Max drawdown (fraction) of ``equity`` or of the live equity curve seen so far."""
        return max_drawdown(list(self.curve) if equity is None else equity)

    def update_equity(self, equity: float, ts: float | None = None) -> str | None:
        """Record the account's equity; halts and returns the reason when a limit is breached."""
        now = ts or self.clock()
        day = self.trading_day(now)
        if self._day != day or self.day_start_equity is None:
            self._day, self.day_start_equity = day, equity
        self.equity = equity
        self.peak = max(self.peak, equity)
        self.curve.append(equity)
        if self.state is TradingState.HALTED:
            return None
        if drawdown_breached(equity, self.peak, self.cfg.max_drawdown_pct):
            dd = drawdown_now(equity, self.peak)
            reason = f"max_drawdown: {dd * 100:.2f}% >= {self.cfg.max_drawdown_pct:g}%"
            self.halt_trading(reason)
            return reason
        loss = self.day_start_equity - equity
        if reaches(loss, self.cfg.daily_loss_limit):
            reason = f"daily_loss_limit: {money(loss)} >= {money(self.cfg.daily_loss_limit)}"
            self.halt_trading(reason)
            return reason
        return None

    @property
    def daily_pnl(self) -> float:
        return 0.0 if self.day_start_equity is None else self.equity - self.day_start_equity

    def orders_per_second(self) -> float:
        self._trim(self.clock())
        return float(len(self._accepted))

    def _trim(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()

    # -- the gate ------------------------------------------------------------------------
    def check_order(self, order: Order, *, operator: bool = False) -> str | None:
        """None when ``order`` may go out, else the rule and the numbers that stop it.

        ``operator`` marks the operator's own flatten/exit orders: they may reduce positions
        even while HALTED (getting flat is what a halt is for).
        """
        inputs = self.inputs
        key = order.instrument.key
        mult = order.multiplier
        current = inputs.position(key) if inputs else 0.0
        if operator and inputs:
            # The operator's exit closes one strategy's position and is judged on that
            # position alone: flattening one strategy can grow the account's net position when
            # another holds the other side, and an order that grows or flips the strategy's
            # own position is no exit, whatever it does to the account.
            own = inputs.strategy_position(order.strategy_id, key)
            reducing = reduces_position(own, order.signed_quantity)
        else:
            reducing = reduces_position(current, order.signed_quantity)
        if self.state is TradingState.HALTED and not (operator and reducing):
            return f"halted: trading is HALTED ({self.reason or 'operator'})"
        if self.state is TradingState.REDUCING and not reducing:
            return f"reduce_only: order would grow {key} from {current:g} to {current + order.signed_quantity:g}"
        last = inputs.last_price(key) if inputs else None
        price = order.reference_price() or last
        if order.order_type is not OrderType.MARKET and last:
            for label, px in (("limit", order.limit_price), ("stop", order.stop_price)):
                if px is None:
                    continue
                dist = abs(px - last) / last * 100
                if dist > self.cfg.price_collar_pct:
                    return (
                        f"price_collar: {label} {px:,.2f} is {dist:.1f}% from last {last:,.2f} "
                        f"> {self.cfg.price_collar_pct:g}%"
                    )
        now = self.clock()
        self._trim(now)
        if len(self._accepted) + 1 > self.cfg.max_orders_per_second:
            return f"max_orders_per_second: {len(self._accepted) + 1} > {self.cfg.max_orders_per_second:g}"
        if not reducing:
            stale = inputs.stale_age(order.instrument.underlying) if inputs else None
            if stale is not None:
                return (
                    f"stale_data: {order.instrument.underlying} has had no update for {stale:.1f} s"
                )
            if price is None or not math.isfinite(price) or price <= 0:
                return f"no_price: no last price for {key} to value the order"
            value = order.quantity * price * mult
            if value > self.cfg.max_order_value:
                return f"max_order_value: {money(value)} > {money(self.cfg.max_order_value)}"
            new_qty = current + order.signed_quantity
            if abs(new_qty) > self.cfg.max_position_qty:
                return f"max_position_qty: {key} {abs(new_qty):,.0f} > {self.cfg.max_position_qty:,.0f}"
            pos_value = abs(new_qty) * price * mult
            if pos_value > self.cfg.max_position_value:
                return f"max_position_value: {key} {money(pos_value)} > {money(self.cfg.max_position_value)}"
            if inputs:
                s_now = inputs.strategy_position(order.strategy_id, key)
                s_value = abs(s_now + order.signed_quantity) * price * mult
                if s_value > self.cfg.max_strategy_position_value and abs(
                    s_now + order.signed_quantity
                ) > abs(s_now):
                    return (
                        f"max_strategy_position_value: {order.strategy_id} {key} {money(s_value)} "
                        f"> {money(self.cfg.max_strategy_position_value)}"
                    )
                gross = inputs.gross_exposure()
                added = (abs(new_qty) - abs(current)) * price * mult
                if gross + added > self.cfg.max_gross_exposure:
                    return f"max_gross_exposure: {money(gross + added)} > {money(self.cfg.max_gross_exposure)}"
            greek_limits = self.cfg.max_portfolio_delta > 0 or self.cfg.max_portfolio_vega > 0
            if self.greeks is not None and greek_limits:
                why = check_greek_limits(
                    self.greeks.portfolio_greeks(),
                    self.greeks.order_greeks(order),
                    self.cfg.max_portfolio_delta,
                    self.cfg.max_portfolio_vega,
                )
                if why:
                    return why
        self._accepted.append(now)
        return None

    def check_margin(self, impact: MarginImpact) -> str | None:
        """The margin limit on a broker's what-if answer: None when the order may go out."""
        limit = self.cfg.max_margin_pct
        if limit <= 0:
            return None
        if impact.equity_with_loan <= 0:
            return "max_margin_pct: the broker reported no equity with loan to check margin against"
        pct = impact.init_margin_after / impact.equity_with_loan * 100
        if pct > limit and impact.init_margin_change > 0:
            return (
                f"max_margin_pct: initial margin after the order {money(impact.init_margin_after)} "
                f"is {pct:.1f}% of equity with loan {money(impact.equity_with_loan)} > {limit:g}%"
            )
        return None

    # -- the view ------------------------------------------------------------------------
    def gauges(self, gross_exposure: float, greeks: Greeks | None = None) -> tuple[Gauge, ...]:
        c, w = self.cfg, self.cfg.warn_fraction
        extra: list[Gauge] = []
        if greeks is not None:
            for name, value, limit, unit in (
                ("delta $", abs(greeks.dollar_delta), c.max_portfolio_delta, ""),
                ("vega", abs(greeks.vega), c.max_portfolio_vega, "/pt"),
            ):
                if limit > 0:
                    extra.append(
                        Gauge(
                            name,
                            value,
                            limit,
                            level_of(value, limit, w),
                            f"{money(value)} / {money(limit)}{unit}",
                        )
                    )
        dd = drawdown_now(self.equity, self.peak) * 100
        dd_level = (
            "breach"
            if drawdown_breached(self.equity, self.peak, c.max_drawdown_pct)
            else level_of(dd, c.max_drawdown_pct, w)
        )
        loss = max(-self.daily_pnl, 0.0)
        ops = self.orders_per_second()
        return (
            Gauge(
                "drawdown",
                dd,
                c.max_drawdown_pct,
                dd_level,
                f"{dd:.2f}% / {c.max_drawdown_pct:g}%",
            ),
            Gauge(
                "daily loss",
                loss,
                c.daily_loss_limit,
                level_of(loss, c.daily_loss_limit, w),
                f"{money(loss)} / {money(c.daily_loss_limit)}",
            ),
            Gauge(
                "gross exposure",
                gross_exposure,
                c.max_gross_exposure,
                level_of(gross_exposure, c.max_gross_exposure, w),
                f"{money(gross_exposure)} / {money(c.max_gross_exposure)}",
            ),
            Gauge(
                "orders/s",
                ops,
                c.max_orders_per_second,
                level_of(ops, c.max_orders_per_second, w),
                f"{ops:.0f} / {c.max_orders_per_second:g}",
            ),
            *extra,
        )
