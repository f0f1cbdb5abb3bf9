"""Exchange time: which trading session a moment belongs to, by the exchange's own calendar.

A session (a trading day) is an exchange-calendars session: it ends at the exchange's close,
in the exchange's time zone, daylight saving and early closes included. A moment belongs to
the first session that has not closed yet, so the trading day rolls at the close (16:00 New
York for XNYS: 21:00 UTC in winter, 20:00 UTC in summer), and a weekend or holiday belongs to
the next session. Sessions are named by their date, as exchange-calendars names them.

Used for everything that says "a day": daily returns of intraday backtests, the engine's daily
loss limit and per-strategy day P&L, live "P&L today" and daily reports.

exchange-calendars is imported on first use (it takes a few hundred milliseconds), so modules
that only might need a calendar stay quick to import.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

DEFAULT_CALENDAR = "XNYS"
_NS_PER_DAY = 86_400_000_000_000
_EPOCH = dt.date(1970, 1, 1)
# Calendars are built a decade at a time: one build covers years of data and of live trading.
_SPAN_YEARS = 10

IntArray = npt.NDArray[np.int64]


class CalendarError(ValueError):
    """An unknown calendar name; the message lists a few known ones."""


@functools.lru_cache(maxsize=32)
def _calendar(name: str, first_year: int, last_year: int) -> Any:
    import warnings

    import exchange_calendars as xcals

    try:
        # exchange-calendars trips pandas' own deprecation warnings: noise for our users.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xcals.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    except xcals.errors.InvalidCalendarName:
        known = ", ".join(n for n in ("XNYS", "XNAS", "XLON", "XTKS", "CMES", "24/5", "24/7"))
        raise CalendarError(
            f'unknown exchange calendar {name!r} (e.g. {known}; `python -c "import '
            f'exchange_calendars as x; print(x.get_calendar_names())"` lists all)'
        ) from None


def check_calendar(name: str) -> str:
    """``name`` if exchange-calendars knows it, else a CalendarError naming some that exist."""
    this_decade = dt.date.today().year // _SPAN_YEARS * _SPAN_YEARS
    _calendar(name, this_decade, this_decade + _SPAN_YEARS - 1)
    return name


def calendar_timezone(name: str) -> str:
    """The exchange's time zone (``America/New_York`` for XNYS, ``UTC`` for 24/7)."""
    this_decade = dt.date.today().year // _SPAN_YEARS * _SPAN_YEARS
    return str(_calendar(name, this_decade, this_decade + _SPAN_YEARS - 1).tz)


@functools.lru_cache(maxsize=32)
def _closes(name: str, first_year: int, last_year: int) -> tuple[IntArray, IntArray]:
    """(session closes as ns UTC, session dates as epoch days), both sorted."""
    cal = _calendar(name, first_year, last_year)
    closes = np.asarray(cal.closes.to_numpy(dtype="datetime64[ns]").view(np.int64))
    days = np.asarray(cal.sessions.as_unit("ns").asi8 // _NS_PER_DAY, dtype=np.int64)
    return closes, days


def _decades(lo_ns: int, hi_ns: int) -> tuple[int, int]:
    """The decade-aligned years that cover ``[lo_ns, hi_ns]`` with a margin for the next close."""
    lo = 1970 + math.floor(lo_ns / _NS_PER_DAY / 365.2425) - 1
    hi = 1970 + math.floor(hi_ns / _NS_PER_DAY / 365.2425) + 1
    return lo // _SPAN_YEARS * _SPAN_YEARS, (hi // _SPAN_YEARS + 1) * _SPAN_YEARS - 1


def session_days(ts_ns: npt.ArrayLike, calendar: str = DEFAULT_CALENDAR) -> IntArray:
    """The session each moment (ns since the epoch, UTC) belongs to, as epoch days of the
    session's date. Vectorised: one binary search per moment over the calendar's closes."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    closes, days = _closes(calendar, *_decades(int(ts.min()), int(ts.max())))
    k = np.searchsorted(closes, ts, side="right")
    return days[np.minimum(k, len(days) - 1)]


def session_last_bars(ts_ns: npt.ArrayLike, calendar: str = DEFAULT_CALENDAR) -> IntArray:
    """For sorted moments (a bar index), the position of the last one of each session present:
    where the daily return of an intraday curve is read. One binary search per session close,
    not per moment, so a million bars cost about what their few hundred sessions do."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    closes, _ = _closes(calendar, *_decades(int(ts[0]), int(ts[-1])))
    lo, hi = np.searchsorted(closes, [ts[0], ts[-1]], side="right")
    firsts = np.searchsorted(ts, closes[lo:hi], side="left")  # first moment at/after each close
    last = np.unique(np.r_[firsts - 1, ts.size - 1])
    return np.asarray(last[last >= 0], dtype=np.int64)


def session_date(days: int) -> dt.date:
    """An epoch-day number from :func:`session_days` as a date."""
    return _EPOCH + dt.timedelta(days=int(days))


def sessions_per_year(calendar: str, ts_ns: int) -> float:
    """How many sessions a year ``calendar`` has around ``ts_ns`` (about 252 for XNYS, 365.25
    for 24/7): the annualisation of returns bucketed by session."""
    _, days = _closes(calendar, *_decades(ts_ns, ts_ns))
    return float(len(days) / ((int(days[-1]) - int(days[0]) + 1) / 365.2425))


class TradingDay:
    """``trading_day(ts)`` for one calendar, for callers that ask about "now" many times a
    second (the engine's timers): the current session's bounds are remembered, so most calls
    are two comparisons."""

    __slots__ = ("_day", "_hi", "_lo", "calendar")

    def __init__(self, calendar: str = DEFAULT_CALENDAR):
        self.calendar = calendar
        self._lo = self._hi = 0.0
        self._day = _EPOCH

    def __call__(self, ts: float) -> dt.date:
        if self._lo <= ts < self._hi:
            return self._day
        ns = int(ts * 1e9)
        closes, days = _closes(self.calendar, *_decades(ns, ns))
        k = int(np.searchsorted(closes, ns, side="right"))
        k = min(k, len(days) - 1)
        self._lo = float(closes[k - 1]) / 1e9 if k > 0 else -math.inf
        self._hi = float(closes[k]) / 1e9
        self._day = session_date(int(days[k]))
        return self._day


@functools.lru_cache(maxsize=32)
def trading_day_clock(calendar: str = DEFAULT_CALENDAR) -> TradingDay:
    """The shared :class:`TradingDay` of ``calendar``."""
    return TradingDay(calendar)


def trading_day(ts: float, calendar: str = DEFAULT_CALENDAR) -> dt.date:
    """The trading session an epoch timestamp belongs to (the day rolls at the exchange's close)."""
    return trading_day_clock(calendar)(ts)


__all__ = [
    "DEFAULT_CALENDAR",
    "CalendarError",
    "TradingDay",
    "calendar_timezone",
    "check_calendar",
    "session_date",
    "session_days",
    "session_last_bars",
    "sessions_per_year",
    "trading_day",
    "trading_day_clock",
]
