"""Options in a backtest: bars carry no option quotes, so options are priced from the bars.

Black–Scholes on the underlying's realised volatility (the covered-call strategy's own model),
for three uses: the chain a strategy picks from, fills of option orders, and marking held
options in the equity curve. Expired options settle at intrinsic value.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from fbterm.backtest.book import Book
from fbterm.model import Option, OptionQuote
from fbterm.pricing import YEAR_SECONDS, bs_call, expiry_ts
from fbterm.strategies.covered_call import periods_per_year, realised_vol, synthetic_chain

FloatArray = np.ndarray[tuple[int], np.dtype[np.float64]]


class OptionMarks:
    """Synthetic option prices on one underlying's bars; the volatility is computed on first use."""

    def __init__(
        self,
        index: pd.Index,
        open_: FloatArray,
        close: FloatArray,
        ts: FloatArray,
        *,
        rate: float,
        vol_window: int,
    ):
        self.index = index
        self.open = open_
        self.close = close
        self.ts = ts
        self.rate = rate
        self.vol_window = vol_window
        self._vol: FloatArray | None = None

    def vol_at(self, i: int) -> float:
        """Realised volatility known at the close of bar ``i`` (NaN before bar 0)."""
        if self._vol is None:
            self._vol = np.asarray(
                realised_vol(self.close, self.vol_window, periods_per_year(self.index)),
                dtype=np.float64,
            )
        return float(self._vol[i]) if i >= 0 else math.nan

    def price(self, opt: Option, spot: float, ts: float, vol_bar: int) -> float:
        """``opt`` at ``spot`` and time ``ts``, with the volatility known at ``vol_bar``."""
        t = (expiry_ts(opt.expiry) - ts) / YEAR_SECONDS
        vol = self.vol_at(vol_bar)
        if not vol > 0:
            # Warm-up: borrow the first defined volatility rather than price at zero vol.
            vol = (
                self.vol_at(int(np.nanargmax(np.isfinite(self._vol))))
                if self._vol is not None
                else 0.2
            )
        if opt.right.value == "C":
            return bs_call(spot, opt.strike, t, vol, self.rate)
        # put by parity
        return (
            bs_call(spot, opt.strike, t, vol, self.rate)
            - spot
            + opt.strike * math.exp(-self.rate * max(t, 0.0))
        )

    def chain(self, i: int) -> Callable[[str], list[OptionQuote]]:
        """The option chain a strategy sees at bar ``i``'s open."""

        def chain(symbol: str) -> list[OptionQuote]:
            return synthetic_chain(
                symbol, float(self.open[i]), float(self.ts[i]), self.vol_at(i - 1), self.rate
            )

        return chain

    def settle_expired(self, book: Book, i: int) -> None:
        """Close every held option that expired before bar ``i`` at its intrinsic value."""
        for key in [
            k for k, inst in book.insts.items() if isinstance(inst, Option) and k in book.pos
        ]:
            opt = book.insts[key]
            assert isinstance(opt, Option)
            if expiry_ts(opt.expiry) <= self.ts[i]:
                spot = self.close[i - 1] if i > 0 else self.open[i]
                intrinsic = (
                    max(spot - opt.strike, 0.0)
                    if opt.right.value == "C"
                    else max(opt.strike - spot, 0.0)
                )
                book.fill(i, opt, -book.pos[key], intrinsic, 0.0, "expired")
