"""Position greeks in money terms, summable across positions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Greeks:
    """The sensitivities of a position (or a sum of positions).

    ``delta``: underlying units held-equivalent (shares, contracts x multiplier, base currency);
    ``dollar_delta``: money made per 1.00 relative move, i.e. delta x underlying price (the
    figure that adds up across underlyings); ``gamma``: change of ``delta`` per 1.00 move of the
    underlying; ``vega``: money per one volatility point; ``theta``: money per calendar day.
    """

    delta: float = 0.0
    dollar_delta: float = 0.0
    gamma: float = 0.0
    vega: float = 0.0
    theta: float = 0.0

    def __add__(self, other: Greeks) -> Greeks:
        return Greeks(
            self.delta + other.delta,
            self.dollar_delta + other.dollar_delta,
            self.gamma + other.gamma,
            self.vega + other.vega,
            self.theta + other.theta,
        )


@dataclass(frozen=True, slots=True)
class GreekRow:
    """Greeks summed over the positions on one underlying."""

    underlying: str
    greeks: Greeks
    positions: int
    unpriced: tuple[str, ...] = ()  # options without a volatility to price them with
