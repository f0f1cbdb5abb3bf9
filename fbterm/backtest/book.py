"""The book of one backtest: cash, positions with their average entry, and the fill log."""

from __future__ import annotations

from fbterm.model import Instrument


class Book:
    """Cash, positions and the fill log of one backtest; every path books its fills here.

    The fill log is kept as parallel lists (bar, instrument key, quantity, price, commission,
    reason) because the result is built from them with numpy in one go.
    """

    __slots__ = (
        "cash", "cost", "fb", "fc", "fk", "fp", "fq", "fr", "insts", "plain", "pos", "wiped_out",
    )  # fmt: skip

    def __init__(self, cash: float):
        self.cash = cash
        self.pos: dict[str, float] = {}
        self.cost: dict[str, float] = {}  # average entry price per instrument
        self.insts: dict[str, Instrument] = {}
        self.fb: list[int] = []
        self.fk: list[str] = []
        self.fq: list[float] = []
        self.fp: list[float] = []
        self.fc: list[float] = []
        self.fr: list[str] = []
        # Every fill is the one symbol's, with no reason: set by the fast path's plain loop,
        # which writes the log itself, so the result skips the per-fill bookkeeping.
        self.plain = False
        # The bar at whose close the account was closed out (equity 0 from then on), or None.
        self.wiped_out: int | None = None

    def fill(
        self,
        i: int,
        inst: Instrument,
        qty: float,
        price: float,
        commission: float,
        reason: str = "",
    ) -> None:
        """Book a fill of ``qty`` (signed) at ``price`` on bar ``i``."""
        key = inst.key
        self.insts[key] = inst
        mult = inst.multiplier
        p0 = self.pos.get(key, 0.0)
        p1 = p0 + qty
        if abs(p1) < 1e-9:
            p1 = 0.0
        self.cash -= qty * price * mult + commission
        if p1 == 0.0:
            self.pos.pop(key, None)
            self.cost.pop(key, None)
        else:
            self.pos[key] = p1
            if p0 == 0.0 or (p0 > 0) != (p1 > 0):
                self.cost[key] = price
            elif abs(p1) > abs(p0):
                self.cost[key] = (self.cost[key] * abs(p0) + price * abs(qty)) / abs(p1)
        self.fb.append(i)
        self.fk.append(key)
        self.fq.append(qty)
        self.fp.append(price)
        self.fc.append(commission)
        self.fr.append(reason)

    def truncate(self, last_bar: int) -> None:
        """Forget every fill after bar ``last_bar`` and rebuild cash and positions from the
        rest (a margin close-out: what would have come later never happens)."""
        import bisect

        # The starting cash: today's cash with every fill's cash flow undone.
        cash0 = self.cash + sum(
            q * p * self.insts[k].multiplier + c
            for k, q, p, c in zip(self.fk, self.fq, self.fp, self.fc, strict=True)
        )
        cut = bisect.bisect_right(self.fb, last_bar)
        kept = list(zip(self.fb, self.fk, self.fq, self.fp, self.fc, self.fr, strict=True))[:cut]
        self.cash, self.pos, self.cost, self.plain = cash0, {}, {}, False
        for log in (self.fb, self.fk, self.fq, self.fp, self.fc, self.fr):
            log.clear()
        # Replayed so positions and average entries are those of the kept fills.
        for b, k, q, p, c, r in kept:
            self.fill(b, self.insts[k], q, p, c, r)
