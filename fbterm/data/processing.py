"""Cleaning and transforming bars: pure functions on DataFrames, and a DataProcessing facade.

``clean_data`` sorts, drops duplicate timestamps (last wins), handles gaps per policy, removes
impossible rows, flags outliers and can keep only regular trading hours. ``transform_data``
resamples with proper OHLCV aggregation and adds returns and indicator columns. Neither looks
ahead: each output row depends on its own and earlier input rows (outlier *flags* are the one
exception, being a report about the whole series, not a value a strategy sees).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from fbterm.data import indicators as ind
from fbterm.data.bars import (
    BAR_COLUMNS,
    PRICE_COLUMNS,
    DataError,
    bar_index,
    bar_timedelta,
    canonical_bar_size,
)

GapPolicy = Literal["keep", "drop", "ffill"]
_DAY = pd.Timedelta(days=1)


@dataclass
class CleanReport:
    """What :func:`clean_data` changed. ``outliers`` are flagged, not removed."""

    rows_in: int = 0
    rows_out: int = 0
    unsorted: bool = False
    duplicates: int = 0
    missing_rows: int = 0  # rows with a missing value (dropped or filled per gap policy)
    impossible: int = 0  # rows removed: non-positive price, high < low, negative volume...
    filled_bars: int = 0  # bars inserted by gap_policy="ffill"
    outside_session: int = 0
    gaps: pd.DataFrame = field(default_factory=lambda: _gap_frame([], [], []))
    outliers: pd.DatetimeIndex = field(
        default_factory=lambda: pd.DatetimeIndex([], tz="UTC", name="ts")
    )

    def summary(self) -> str:
        parts = [f"{self.rows_in} rows in, {self.rows_out} out"]
        for name, n in (
            ("duplicates dropped", self.duplicates), ("rows with missing values", self.missing_rows),
            ("impossible rows removed", self.impossible), ("bars filled", self.filled_bars),
            ("outside session", self.outside_session), ("gaps", len(self.gaps)),
            ("outliers flagged", len(self.outliers)),
        ):  # fmt: skip
            if n:
                parts.append(f"{n} {name}")
        if self.unsorted:
            parts.append("sorted")
        return "; ".join(parts)


def _gap_frame(start: Any, end: Any, missing: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "start": pd.DatetimeIndex(start, tz="UTC") if not len(start) else start,
            "end": pd.DatetimeIndex(end, tz="UTC") if not len(end) else end,
            "missing": np.asarray(missing, dtype=np.int64),
        }
    )


# ---------------------------------------------------------------------------- bar step and gaps


def _ns(idx: pd.DatetimeIndex) -> np.ndarray:
    """Epoch nanoseconds whatever the index's resolution (pandas 3 parses text to microseconds)."""
    return idx.as_unit("ns").asi8


def _bar_dates(idx: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """The trading date of each daily bar, as datetime64[D].

    Daily bars are stamped at midnight of the exchange's zone (what a CSV of plain dates loads
    as) or at midnight UTC (synthetic bars, UTC-stamped downloads); read the date in whichever
    zone makes every stamp a midnight, else in the exchange's zone.
    """
    local = idx.tz_convert(timezone)
    if (_ns(local.normalize()) != _ns(local)).any() and (_ns(idx.normalize()) == _ns(idx)).all():
        local = idx.tz_convert("UTC")
    return local.normalize().tz_localize(None).to_numpy().astype("datetime64[D]")


def infer_bar_step(idx: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The most common spacing between bars, or None with fewer than two bars."""
    if len(idx) < 2:
        return None
    d = np.diff(_ns(idx))
    d = d[d > 0]
    if not len(d):
        return None
    vals, counts = np.unique(d, return_counts=True)
    mode = int(vals[np.argmax(counts)])
    day = _DAY.value
    # Daily bars with many holes can have 2-4 days as their commonest spacing: still daily.
    if day < mode < 5 * day:
        mode = day
    return pd.Timedelta(mode, unit="ns")


def _expected_step(idx: pd.DatetimeIndex, bar_size: str | None) -> pd.Timedelta | None:
    return bar_timedelta(bar_size) if bar_size else infer_bar_step(idx)


def find_gaps(
    df: pd.DataFrame,
    bar_size: str | None = None,
    *,
    timezone: str = "America/New_York",
    session: str | None = None,
) -> pd.DataFrame:
    """Missing bars, one row per hole: ``start`` (last bar before), ``end`` (first bar after), ``missing``.

    Daily bars expect every weekday (or every session of ``session``'s calendar); intraday
    bars expect a bar every step within the same exchange-local day, so nights and weekends are
    not gaps. The step is ``bar_size`` or the most common spacing.
    """
    idx = bar_index(df)
    step = _expected_step(idx, bar_size)
    if step is None or len(idx) < 2:
        return _gap_frame([], [], [])
    missing = _missing_counts(idx, step, timezone, session)
    at = np.flatnonzero(missing > 0)
    return _gap_frame(idx[at], idx[at + 1], missing[at])


def _missing_counts(
    idx: pd.DatetimeIndex, step: pd.Timedelta, timezone: str, session: str | None
) -> np.ndarray:
    """For each consecutive pair of bars, how many expected bars lie strictly between them."""
    local = idx.tz_convert(timezone)
    if step >= _DAY:
        days = _bar_dates(idx, timezone)
        if step == _DAY:
            if session:
                sessions = _session_days(session)
                pos = np.searchsorted(sessions, days)
                between: np.ndarray = np.maximum(np.diff(pos) - 1, 0)
            else:
                between = np.maximum(np.diff(np.busday_count(days[0], days)) - 1, 0)
            return between
        d = np.diff(_ns(idx))
        return np.maximum(np.rint(d / step.value).astype(np.int64) - 1, 0)
    d = np.diff(_ns(idx))
    same_day = np.diff(_ns(local.normalize())) == 0
    n = np.maximum(d // step.value - 1 + (d % step.value > 0), 0)
    return np.where(same_day, n, 0)


@functools.lru_cache(maxsize=8)
def _calendar(name: str) -> Any:
    import warnings

    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            # exchange-calendars still uses Series.values, which pandas 3.1 deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", getattr(pd.errors, "Pandas4Warning", FutureWarning))
            return xcals.get_calendar(name, start="1990-01-01")
    except xcals.errors.InvalidCalendarName:
        raise ValueError(f"unknown exchange calendar {name!r} (e.g. XNYS, XLON)") from None


@functools.lru_cache(maxsize=8)
def _session_days(name: str) -> np.ndarray:
    cal = _calendar(name)
    sessions = cal.sessions.tz_localize(None) if cal.sessions.tz else cal.sessions
    days: np.ndarray = sessions.to_numpy().astype("datetime64[D]")
    return days


def session_mask(df: pd.DataFrame, session: str, *, daily: bool | None = None) -> np.ndarray:
    """True for bars inside regular trading hours of the calendar ``session`` (e.g. XNYS).

    Intraday bars must open at or after a session's open and before its close; daily bars
    must fall on a session date (in the exchange's time zone).
    """
    idx = bar_index(df)
    if not len(idx):
        return np.zeros(0, dtype=bool)
    cal = _calendar(session)
    if daily is None:
        step = infer_bar_step(idx)
        daily = step is not None and step >= _DAY
    if daily:
        return np.isin(_bar_dates(idx, str(cal.tz)), _session_days(session))
    opens = _ns(pd.DatetimeIndex(cal.opens))
    closes = _ns(pd.DatetimeIndex(cal.closes))
    t = _ns(idx)
    k = np.searchsorted(opens, t, side="right") - 1
    inside = k >= 0
    kk = np.clip(k, 0, len(closes) - 1)
    return inside & (t >= opens[kk]) & (t < closes[kk])


# ---------------------------------------------------------------------------- cleaning


def _impossible_mask(df: pd.DataFrame) -> np.ndarray:
    o, h, lo, c, v = (df[k].to_numpy(dtype=np.float64) for k in BAR_COLUMNS)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)
        bad = (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (h < lo)
        bad |= (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (v < 0)
    impossible: np.ndarray = finite & bad
    return impossible


def outlier_mask(close: pd.Series, sigma: float) -> np.ndarray:
    """Bars whose log return is more than ``sigma`` robust standard deviations from the median.

    The robust standard deviation is 1.4826 x the median absolute deviation, so a few huge
    moves cannot hide themselves by inflating it.
    """
    r = np.log(close.to_numpy(dtype=np.float64))
    r = np.diff(r, prepend=np.nan)
    ok = np.isfinite(r)
    out = np.zeros(len(r), dtype=bool)
    if ok.sum() < 3:
        return out
    med = np.median(r[ok])
    mad = np.median(np.abs(r[ok] - med)) * 1.4826
    if mad == 0:
        return out
    out[ok] = np.abs(r[ok] - med) > sigma * mad
    return out


@overload
def clean_data(
    df: pd.DataFrame,
    *,
    gap_policy: GapPolicy = ...,
    outlier_sigma: float | None = ...,
    session: str | None = ...,
    bar_size: str | None = ...,
    timezone: str = ...,
    report: Literal[False] = ...,
) -> pd.DataFrame: ...


@overload
def clean_data(
    df: pd.DataFrame,
    *,
    gap_policy: GapPolicy = ...,
    outlier_sigma: float | None = ...,
    session: str | None = ...,
    bar_size: str | None = ...,
    timezone: str = ...,
    report: Literal[True],
) -> tuple[pd.DataFrame, CleanReport]: ...


def clean_data(
    df: pd.DataFrame,
    *,
    gap_policy: GapPolicy = "keep",
    outlier_sigma: float | None = 8.0,
    session: str | None = None,
    bar_size: str | None = None,
    timezone: str = "America/New_York",
    report: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, CleanReport]:
    """Clean bars; with ``report=True`` returns ``(df, CleanReport)``.

    Steps: sort by time (stable); drop duplicate timestamps keeping the last; remove impossible
    rows (non-positive prices, high < low, high/low not containing open/close, negative volume);
    optionally keep only bars inside ``session``'s regular hours (an exchange-calendars name
    such as ``"XNYS"``); then gaps per ``gap_policy``:

    - ``"keep"``: holes in time stay, rows with missing values stay as they are;
    - ``"drop"``: rows with missing values are dropped;
    - ``"ffill"``: rows with missing values and missing bars (see :func:`find_gaps`) become flat
      bars at the previous close with zero volume.

    Outliers (see :func:`outlier_mask`) are flagged in the report, never changed.
    """
    if gap_policy not in ("keep", "drop", "ffill"):
        raise ValueError(f"gap_policy must be 'keep', 'drop' or 'ffill', got {gap_policy!r}")
    if not isinstance(df.index, pd.DatetimeIndex) or df.index.tz is None:
        raise DataError("clean_data", "bars need a tz-aware DatetimeIndex")
    idx = df.index
    missing_cols = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing_cols:
        raise DataError("clean_data", f"missing column(s) {', '.join(missing_cols)}")
    rep = CleanReport(rows_in=len(df))
    out = df
    if str(idx.unit) != "ns":
        out = out.set_axis(idx.as_unit("ns"))
    if idx.tz is not None and str(idx.tz) != "UTC":
        out = out.tz_convert("UTC")
    if not out.index.is_monotonic_increasing:
        rep.unsorted = True
        out = out.sort_index(kind="stable")
    dup = out.index.duplicated(keep="last")
    if dup.any():
        rep.duplicates = int(dup.sum())
        out = out[~dup]
    bad = _impossible_mask(out)
    if bad.any():
        rep.impossible = int(bad.sum())
        out = out[~bad]
    if session:
        inside = session_mask(out, session)
        rep.outside_session = int((~inside).sum())
        if rep.outside_session:
            out = out[inside]
    has_nan = out[list(BAR_COLUMNS)].isna().any(axis=1).to_numpy()
    rep.missing_rows = int(has_nan.sum())
    if gap_policy == "drop" and has_nan.any():
        out = out[~has_nan]
    elif gap_policy == "ffill":
        out = _fill_missing_values(out)
    step = _expected_step(bar_index(out), bar_size)
    gaps = (
        find_gaps(out, bar_size, timezone=timezone, session=session)
        if step
        else _gap_frame([], [], [])
    )
    rep.gaps = gaps
    if gap_policy == "ffill" and len(gaps) and step is not None:
        out, rep.filled_bars = _fill_holes(out, step, timezone, session)
    if outlier_sigma:
        flags = outlier_mask(out["close"], outlier_sigma)
        rep.outliers = bar_index(out)[flags]
    out = out.copy()
    for c in BAR_COLUMNS:
        if out[c].dtype != np.float64:
            out[c] = out[c].astype(np.float64)
    out.index = bar_index(out).as_unit("ns")
    out.index.name = "ts"
    rep.rows_out = len(out)
    return (out, rep) if report else out


def _fill_missing_values(df: pd.DataFrame) -> pd.DataFrame:
    prev_close = df["close"].ffill().shift(1)
    close = df["close"].fillna(prev_close)
    out = df.copy()
    out["close"] = close
    for c in ("open", "high", "low"):
        out[c] = df[c].fillna(close)
    out["volume"] = df["volume"].fillna(0.0)
    # A row that has nothing to fill from (missing close on the first bars) cannot be a bar.
    return out[out[list(PRICE_COLUMNS)].notna().all(axis=1)]


def _fill_holes(
    df: pd.DataFrame, step: pd.Timedelta, timezone: str, session: str | None
) -> tuple[pd.DataFrame, int]:
    idx = bar_index(df)
    if step == _DAY:
        local = idx.tz_convert(timezone)
        if (_ns(local.normalize()) != _ns(local)).any() and (
            _ns(idx.normalize()) == _ns(idx)
        ).all():
            timezone, local = "UTC", idx.tz_convert("UTC")
        tod = local[0] - local[0].normalize()
        days = pd.DatetimeIndex(_bar_dates(idx, timezone).astype("datetime64[ns]"))
        if session:
            allowed = pd.DatetimeIndex(_session_days(session).astype("datetime64[ns]"))
            expected = allowed[(allowed >= days[0]) & (allowed <= days[-1])]
        else:
            expected = pd.bdate_range(days[0], days[-1])
        new_days = expected.difference(days)
        new_ts = (new_days + tod).tz_localize(
            timezone, ambiguous="NaT", nonexistent="shift_forward"
        )
        new_ts = new_ts.tz_convert("UTC").dropna()
    else:
        miss = _missing_counts(idx, step, timezone, session)
        at = np.flatnonzero(miss > 0)
        starts = np.repeat(_ns(idx)[at], miss[at])
        k = (
            np.concatenate([np.arange(1, m + 1) for m in miss[at]])
            if len(at)
            else np.array([], np.int64)
        )
        new_ts = pd.DatetimeIndex((starts + k * step.value).view("datetime64[ns]")).tz_localize(
            "UTC"
        )
    new_ts = new_ts.as_unit("ns").difference(idx.as_unit("ns"))
    if not len(new_ts):
        return df, 0
    filler = pd.DataFrame(index=new_ts, columns=df.columns, dtype=np.float64)
    merged = pd.concat([df, filler]).sort_index(kind="stable")
    filled = _fill_missing_values(merged)
    return filled, len(new_ts)


# ---------------------------------------------------------------------------- transforming

_PANDAS_RULE = {"s": "s", "m": "min", "h": "h", "d": "D", "w": "W-MON"}


def resample_bars(df: pd.DataFrame, bar_size: str, *, timezone: str = "UTC") -> pd.DataFrame:
    """Coarser bars: open first, high max, low min, close last, volume sum; empty bins dropped.

    Bins are labelled by their start (the bar-open convention) and, for daily and weekly
    bars, aligned to midnight in ``timezone`` (weeks start on Monday).
    """
    c = canonical_bar_size(bar_size)
    n, unit = int(c[:-1]), c[-1]
    rule = f"{n}{_PANDAS_RULE[unit]}"
    src = df if timezone == "UTC" else df.tz_convert(timezone)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    r = src[list(BAR_COLUMNS)].resample(rule, label="left", closed="left").agg(agg)
    counts = src["close"].resample(rule, label="left", closed="left").count()
    r = r[counts.to_numpy() > 0]
    r.index = bar_index(r).tz_convert("UTC").as_unit("ns")
    r.index.name = "ts"
    return r.astype(np.float64)


_SPEC = re.compile(r"^([a-z]+)_?(\d+)?(?:_(\d+(?:\.\d+)?))?$")


def add_indicators(
    df: pd.DataFrame, specs: Iterable[str] | Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Add indicator columns named by spec: ``sma_20``, ``ema_12``, ``std_20``, ``rsi_14``,
    ``atr_14``, ``bb_20`` / ``bb_20_2.5`` (adds ``bb_20_mid/upper/lower``), ``donchian_20``
    (``_upper/_lower/_mid``). A mapping gives keyword arguments: ``{"sma_fast": {"fn": "sma", "n": 5}}``.
    """
    out = df.copy()
    items: list[tuple[str, str, dict[str, Any]]] = []
    if isinstance(specs, Mapping):
        for name, given in specs.items():
            kw = dict(given)
            items.append((name, kw.pop("fn", name.split("_")[0]), kw))
    else:
        for spec in specs:
            m = _SPEC.match(spec.strip().lower())
            if not m or m[1] not in ind.INDICATORS:
                known = ", ".join(ind.INDICATORS)
                raise ValueError(f"unknown indicator {spec!r} (use one of {known}, e.g. sma_20)")
            kw = {}
            if m[2]:
                kw["periods" if m[1] in ("ret", "logret") else "n"] = int(m[2])
            if m[3]:
                kw["k"] = float(m[3])
            items.append((spec, m[1], kw))
    for name, fn_name, kw in items:
        fn = ind.INDICATORS.get(fn_name)
        if fn is None:
            raise ValueError(f"unknown indicator function {fn_name!r}")
        needs_bars = fn_name in ("atr", "donchian")
        val = fn(df if needs_bars else df["close"], **kw)
        if isinstance(val, pd.DataFrame):
            for col in val.columns:
                out[f"{name}_{col}"] = val[col]
        else:
            out[name] = val
    return out


def transform_data(
    df: pd.DataFrame,
    *,
    returns: bool = True,
    log_returns: bool = False,
    resample: str | None = None,
    indicators: Iterable[str] | Mapping[str, Mapping[str, Any]] = (),
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Resample (optional) then add ``return`` / ``log_return`` and indicator columns."""
    out = resample_bars(df, resample, timezone=timezone) if resample else df
    extra: dict[str, pd.Series] = {}
    if returns:
        extra["return"] = ind.returns(out["close"])  # type: ignore[assignment]
    if log_returns:
        extra["log_return"] = ind.log_returns(out["close"])  # type: ignore[assignment]
    if extra:
        out = out.assign(**extra)
    if indicators:
        out = add_indicators(out, indicators)
    return out


class DataProcessing:
    """``clean_data`` and ``transform_data`` with defaults from config.

    ``DataProcessing().clean_data(df)`` and ``DataProcessing.from_config(cfg).clean_data(df)``
    both work; every keyword can still be given per call.
    """

    def __init__(
        self,
        *,
        gap_policy: GapPolicy = "keep",
        outlier_sigma: float | None = 8.0,
        session: str | None = None,
        timezone: str = "America/New_York",
    ):
        self.gap_policy = gap_policy
        self.outlier_sigma = outlier_sigma
        self.session = session
        self.timezone = timezone

    @classmethod
    def from_config(cls, cfg: Any) -> DataProcessing:
        """From a full :class:`fbterm.config.Config` (its ``data`` and ``market`` sections)."""
        return cls(
            gap_policy=cfg.data.gap_policy,
            outlier_sigma=cfg.data.outlier_sigma,
            timezone=cfg.market.timezone,
        )

    def clean_data(self, df: pd.DataFrame, **kw: Any) -> Any:
        """See :func:`clean_data`; returns a DataFrame, or ``(df, CleanReport)`` with ``report=True``."""
        kw.setdefault("gap_policy", self.gap_policy)
        kw.setdefault("outlier_sigma", self.outlier_sigma)
        kw.setdefault("session", self.session)
        kw.setdefault("timezone", self.timezone)
        return clean_data(df, **kw)

    def transform_data(self, df: pd.DataFrame, **kw: Any) -> pd.DataFrame:
        """See :func:`transform_data`."""
        return transform_data(df, **kw)

    resample = staticmethod(resample_bars)
    find_gaps = staticmethod(find_gaps)
