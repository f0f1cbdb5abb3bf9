"""Futures: key ``ES 20251219 FUT`` (root and last trade date), ``ES FUT`` for the continuous
front month (data and backtests only).

A root's contract terms (exchange, multiplier, tick, currency, listing cycle, last trade day)
come from :data:`FUTURE_SPECS`; a key names only what differs from them
(``XYZ 20251219 FUT x50 @CME``), so every future parses back to the same instrument.
The last-trade-day rules use weekdays only (exchange holidays are not known here): they place
the roll, while the expiry of a traded contract always comes from the broker.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from fbterm.model.instruments.registry import AssetClass, register

# ------------------------------------------------------------------------- last trade days


def _weekday_nth(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _business_days_before(day: dt.date, n: int) -> dt.date:
    while n > 0:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def _last_business_day(year: int, month: int) -> dt.date:
    day = dt.date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def third_friday(year: int, month: int) -> dt.date:
    """Equity index futures: the third Friday of the contract month."""
    return _weekday_nth(year, month, calendar.FRIDAY, 3)


def crude_last_trade(year: int, month: int) -> dt.date:
    """NYMEX crude: 3 business days before the 25th of the month before the contract month
    (4 if the 25th is not a business day)."""
    prior = dt.date(year, month, 1) - dt.timedelta(days=1)
    d25 = prior.replace(day=25)
    return _business_days_before(d25, 3 if d25.weekday() < 5 else 4)


def metals_last_trade(year: int, month: int) -> dt.date:
    """COMEX metals: the third-last business day of the contract month."""
    return _business_days_before(_last_business_day(year, month), 2)


def treasury_last_trade(year: int, month: int) -> dt.date:
    """CBOT Treasury notes: the seventh business day before the last business day."""
    return _business_days_before(_last_business_day(year, month), 7)


def fx_future_last_trade(year: int, month: int) -> dt.date:
    """CME currency futures: two business days before the third Wednesday."""
    return _business_days_before(_weekday_nth(year, month, calendar.WEDNESDAY, 3), 2)


QUARTERLY = (3, 6, 9, 12)
MONTHLY = tuple(range(1, 13))


@dataclass(frozen=True, slots=True)
class FutureSpec:
    root: str
    exchange: str
    multiplier: int
    tick_size: float
    months: tuple[int, ...]
    last_trade: Callable[[int, int], dt.date]
    currency: str = "USD"


FUTURE_SPECS: dict[str, FutureSpec] = {
    s.root: s
    for s in (
        FutureSpec("ES", "CME", 50, 0.25, QUARTERLY, third_friday),
        FutureSpec("MES", "CME", 5, 0.25, QUARTERLY, third_friday),
        FutureSpec("NQ", "CME", 20, 0.25, QUARTERLY, third_friday),
        FutureSpec("MNQ", "CME", 2, 0.25, QUARTERLY, third_friday),
        FutureSpec("RTY", "CME", 50, 0.1, QUARTERLY, third_friday),
        FutureSpec("YM", "CBOT", 5, 1.0, QUARTERLY, third_friday),
        FutureSpec("ZN", "CBOT", 1000, 1 / 64, QUARTERLY, treasury_last_trade),
        FutureSpec("CL", "NYMEX", 1000, 0.01, MONTHLY, crude_last_trade),
        FutureSpec("GC", "COMEX", 100, 0.1, (2, 4, 6, 8, 10, 12), metals_last_trade),
        FutureSpec("6E", "CME", 125000, 0.00005, QUARTERLY, fx_future_last_trade),
    )
}

# --------------------------------------------------------------------------------- future


@dataclass(frozen=True, slots=True)
class Future(AssetClass):
    """One futures contract, or (``expiry`` None) the continuous front month of a root."""

    ASSET_CLASS: ClassVar[str] = "FUT"

    root: str
    expiry: dt.date | None
    multiplier: int = 0  # 0: the root's spec
    exchange: str = ""  # "": the root's spec
    currency: str = ""
    tick_size: float = 0.0
    _key: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        root = self.root.strip().upper()
        spec = FUTURE_SPECS.get(root)
        object.__setattr__(self, "root", root)
        if spec is None and not (self.multiplier and self.exchange):
            raise ValueError(
                f"unknown futures root {root!r}: give its multiplier and exchange "
                f"(e.g. '{root} 20251219 FUT x50 @CME'); known roots: {', '.join(FUTURE_SPECS)}"
            )
        for name, default in (
            ("multiplier", spec.multiplier if spec else 0),
            ("exchange", spec.exchange if spec else ""),
            ("currency", spec.currency if spec else "USD"),
            ("tick_size", spec.tick_size if spec else 0.01),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        if self.multiplier <= 0:
            raise ValueError(f"futures multiplier must be > 0, got {self.multiplier}")
        key = f"{root} {self.expiry:%Y%m%d} FUT" if self.expiry else f"{root} FUT"
        if spec is None or self.multiplier != spec.multiplier:
            key += f" x{self.multiplier}"
        if spec is None or self.exchange != spec.exchange:
            key += f" @{self.exchange}"
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> str:
        return self._key

    @property
    def symbol(self) -> str:
        return self._key

    @property
    def underlying(self) -> str:
        # The contract itself is what ticks (market data and paper fills are keyed by it).
        return self._key

    @property
    def is_continuous(self) -> bool:
        return self.expiry is None


_FUTURE_KEY = re.compile(
    r"^(?P<root>[A-Z0-9]{1,6})(?: (?P<exp>\d{6}(?:\d{2})?))? FUT"
    r"(?: X(?P<mult>\d+))?(?: @(?P<exch>[A-Z]+))?$"
)


def parse_future_key(key: str) -> Future | None:
    """``ES 20251219 FUT``, ``ES 202512 FUT`` (the month, resolved with the root's last trade
    day rule), ``ES FUT`` (continuous) and the spelled-out ``XYZ 20251219 FUT x50 @CME``."""
    m = _FUTURE_KEY.match(" ".join(key.strip().upper().split()))
    if not m:
        return None
    root, exp = m["root"], m["exp"]
    expiry: dt.date | None = None
    if exp and len(exp) == 8:
        expiry = dt.datetime.strptime(exp, "%Y%m%d").date()
    elif exp:
        spec = FUTURE_SPECS.get(root)
        if spec is None:
            raise ValueError(f"{key!r}: give the full last trade date (YYYYMMDD) for {root}")
        expiry = spec.last_trade(int(exp[:4]), int(exp[4:]))
    return Future(root, expiry, multiplier=int(m["mult"] or 0), exchange=m["exch"] or "")


register("FUT", parse_future_key)

# ------------------------------------------------------------------------------- the roll


def contracts(root: str, start: dt.date, end: dt.date) -> list[Future]:
    """The listed contracts of ``root`` whose last trade day falls in ``[start, end + 1 year]``
    in expiry order (enough to cover any front month in ``[start, end]``)."""
    spec = FUTURE_SPECS.get(root.upper())
    if spec is None:
        raise ValueError(f"no listing calendar for futures root {root!r}")
    out: list[Future] = []
    for year in range(start.year, end.year + 2):
        for month in spec.months:
            exp = spec.last_trade(year, month)
            if start <= exp:
                out.append(Future(spec.root, exp))
    return out


def front_month(root: str, day: dt.date, roll_days: int = 5) -> Future:
    """The contract a continuous series holds on ``day``: the nearest one whose last trade day
    is more than ``roll_days`` business days away (positions and data roll before expiry)."""
    for fut in contracts(root, day, day):
        assert fut.expiry is not None
        if _business_days_before(fut.expiry, roll_days) > day:
            return fut
    raise ValueError(f"no {root} contract after {day}")  # pragma: no cover - calendars go on


def roll_schedule(
    root: str, start: dt.date, end: dt.date, roll_days: int = 5
) -> list[tuple[Future, dt.date, dt.date]]:
    """(contract, first day held, last day held) covering ``[start, end]``, in order."""
    out: list[tuple[Future, dt.date, dt.date]] = []
    day = start
    while day <= end:
        fut = front_month(root, day, roll_days)
        assert fut.expiry is not None
        roll = _business_days_before(fut.expiry, roll_days)
        last = min(roll - dt.timedelta(days=1), end)
        out.append((fut, day, last))
        day = last + dt.timedelta(days=1)
    return out
