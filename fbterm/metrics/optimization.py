"""Half-Kelly capital allocation: :class:`Optimization` turns each strategy's Kelly fraction
(from :mod:`fbterm.stats`) into capital moves through the strategy executor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from fbterm.stats import finite, kelly_continuous, kelly_discrete, win_rate_and_payoff

log = logging.getLogger(__name__)

# Float dust in fractions and capital: a difference below this is rounding, not a decision.
_EPS = 1e-9


def half_kelly_allocations(
    kelly_fractions: Mapping[str, float], cap: float, budget: float = 1.0
) -> dict[str, float]:
    """Halve each Kelly fraction, clamp it to [0, cap] and scale all down if the sum exceeds budget.

    Negative Kelly (no edge) becomes 0 rather than a short allocation: a strategy cannot be
    given negative capital. NaN is treated as "no information" and also becomes 0.
    """
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap!r}")
    budget = max(0.0, budget)
    out: dict[str, float] = {}
    for name, k in kelly_fractions.items():
        half = 0.0 if k is None or math.isnan(k) else k / 2.0
        out[name] = min(max(half, 0.0), cap)
    total = sum(out.values())
    if total > budget:
        # Proportional scaling keeps the strategies' relative sizes (their relative edges).
        scale = budget / total
        out = {n: v * scale for n, v in out.items()}
    return out


@dataclass(frozen=True, slots=True)
class StrategyHistory:
    """What Kelly is computed from. ``returns``: per-period returns (continuous Kelly);
    ``trade_pnls``: per-trade P&L (discrete Kelly). ``auto`` prefers returns when there are
    enough of them, else trades."""

    returns: tuple[float, ...] = ()
    trade_pnls: tuple[float, ...] = ()
    method: Literal["auto", "continuous", "discrete"] = "auto"


class ScalesStrategies(Protocol):
    def scale_strategy(self, name: str, capital: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class KellyDecision:
    strategy: str
    method: str  # "continuous", "discrete" or "skipped"
    observations: int
    kelly: float  # full Kelly (NaN when skipped)
    fraction: float  # the allocated share of total capital
    old_capital: float
    new_capital: float
    reason: str
    applied: bool = False


@dataclass(frozen=True, slots=True)
class RebalanceResult:
    applied: bool
    total_capital: float
    decisions: tuple[KellyDecision, ...]
    reason: str
    errors: tuple[str, ...] = ()

    @property
    def old_allocations(self) -> dict[str, float]:
        return {d.strategy: d.old_capital for d in self.decisions}

    @property
    def new_allocations(self) -> dict[str, float]:
        return {d.strategy: d.new_capital for d in self.decisions}


def kelly_for(
    history: StrategyHistory | Sequence[float], min_observations: int
) -> tuple[str, int, float, str]:
    """(method, observations, full Kelly, reason); method "skipped" when history is too short."""
    if not isinstance(history, StrategyHistory):
        history = StrategyHistory(returns=tuple(history), method="continuous")
    rets = finite(history.returns)
    pnls = finite(history.trade_pnls)
    method = history.method
    if method == "auto":
        method = "continuous" if rets.size >= min_observations or pnls.size == 0 else "discrete"
    if method == "continuous":
        if rets.size < min_observations:
            return (
                "skipped",
                int(rets.size),
                math.nan,
                f"{rets.size} returns < {min_observations} needed",
            )
        k = kelly_continuous(rets)
        return "continuous", int(rets.size), k, f"mean/var of {rets.size} returns"
    if pnls.size < min_observations:
        return (
            "skipped",
            int(pnls.size),
            math.nan,
            f"{pnls.size} trades < {min_observations} needed",
        )
    w, r = win_rate_and_payoff(pnls)
    k = w if math.isinf(r) else kelly_discrete(w, r)
    return "discrete", int(pnls.size), k, f"W={w:.3f} R={r:.3f} over {pnls.size} trades"


class Optimization:
    """Half-Kelly rebalancing of capital across strategies.

    ``activity`` is an optional ``log_activity(kind, message, **fields)`` (Diagnostics has one)
    so old -> new allocations land in the operator's activity log, not only the Python log.
    """

    def __init__(
        self,
        cap: float = 0.25,
        min_observations: int = 30,
        *,
        activity: Callable[..., Any] | None = None,
        tolerance: float = 0.005,
    ) -> None:
        self.cap = cap
        self.min_observations = min_observations
        self.activity = activity
        # Moves smaller than this share of the old capital are skipped: churn for nothing.
        self.tolerance = tolerance

    def apply_half_kelly(
        self,
        executor_or_callback: ScalesStrategies | Callable[[str, float], Any],
        histories: Mapping[str, StrategyHistory | Sequence[float]],
        cap: float | None = None,
        min_observations: int | None = None,
        *,
        current: Mapping[str, float],
        total_capital: float | None = None,
    ) -> RebalanceResult:
        """Rebalance ``current`` allocations by half Kelly; returns what changed and why.

        ``total_capital`` defaults to the sum of ``current``. Strategies with too little history
        keep their capital; the others share what is left, each getting
        ``clamp(kelly / 2, 0, cap) * total`` (scaled down together if they would exceed what is
        left). With no strategy eligible nothing is called (a no-op).
        """
        cap = self.cap if cap is None else cap
        min_obs = self.min_observations if min_observations is None else min_observations
        scale = getattr(executor_or_callback, "scale_strategy", executor_or_callback)
        if not callable(scale):
            raise TypeError(
                "executor_or_callback needs scale_strategy(name, capital) or to be callable"
            )
        total = float(sum(current.values()) if total_capital is None else total_capital)
        names = sorted(set(current) | set(histories))
        infos = {n: kelly_for(histories.get(n, ()), min_obs) for n in names}
        eligible = {n: k for n, (m, _, k, _) in infos.items() if m != "skipped"}
        if not eligible or total <= 0:
            why = "no strategy has enough history" if total > 0 else "no capital to allocate"
            decisions = tuple(
                KellyDecision(
                    n,
                    infos[n][0],
                    infos[n][1],
                    infos[n][2],
                    current.get(n, 0.0) / total if total > 0 else 0.0,
                    current.get(n, 0.0),
                    current.get(n, 0.0),
                    infos[n][3],
                )
                for n in names
            )
            self._log(f"half-Kelly rebalance skipped: {why}", why=why)
            return RebalanceResult(False, total, decisions, why)
        kept = sum(current.get(n, 0.0) for n in names if n not in eligible)
        budget = max(0.0, (total - kept) / total)
        fractions = half_kelly_allocations(eligible, cap, budget)
        decisions_l: list[KellyDecision] = []
        errors: list[str] = []
        for n in names:
            method, obs, k, reason = infos[n]
            old = float(current.get(n, 0.0))
            if n not in fractions:
                decisions_l.append(KellyDecision(n, method, obs, k, old / total, old, old, reason))
                continue
            frac = fractions[n]
            new = frac * total
            if not k > 0:
                reason += "; no edge"
            elif k / 2 > cap:
                reason += f"; capped at {cap:g}"
            if 0 < frac < min(k / 2, cap) - _EPS:
                reason += "; scaled down to fit the budget"
            applied = False
            if abs(new - old) > self.tolerance * max(old, _EPS) or (old == 0) != (new == 0):
                try:
                    scale(n, new)
                    applied = True
                    self._log(
                        f"rebalance {n}: {old:,.2f} -> {new:,.2f} (half Kelly {frac:.4f})",
                        strategy=n,
                        old=old,
                        new=new,
                        kelly=k,
                        fraction=frac,
                    )
                except Exception as e:  # one refusal must not stop the others being rebalanced
                    errors.append(f"{n}: {e}")
                    reason += f"; scale_strategy failed: {e}"
                    new = old
            else:
                new = old
                reason += "; change below tolerance"
            decisions_l.append(KellyDecision(n, method, obs, k, frac, old, new, reason, applied))
        result = RebalanceResult(
            applied=any(d.applied for d in decisions_l),
            total_capital=total,
            decisions=tuple(decisions_l),
            reason="rebalanced" if not errors else "rebalanced with errors",
            errors=tuple(errors),
        )
        return result

    def _log(self, message: str, **fields: Any) -> None:
        log.info(message)
        if self.activity is not None:
            self.activity("rebalance", message, **fields)


__all__ = [
    "KellyDecision",
    "Optimization",
    "RebalanceResult",
    "ScalesStrategies",
    "StrategyHistory",
    "half_kelly_allocations",
    "kelly_for",
]
