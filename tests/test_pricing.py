"""Black–Scholes prices and greeks against textbook values, parity and finite differences;
option expiry at the New York close in winter and summer."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest

from fbterm.model import Right
from fbterm.pricing import (
    YEAR_SECONDS,
    bs_call,
    bs_call_delta,
    bs_delta,
    bs_gamma,
    bs_price,
    bs_put,
    bs_put_delta,
    bs_theta,
    bs_vega,
    expiry_ts,
    years_to_expiry,
)

CASES = [
    (100.0, 100.0, 1.0, 0.2, 0.05),
    (90.0, 100.0, 0.25, 0.3, 0.03),
    (120.0, 100.0, 2.0, 0.5, 0.03),
    (100.0, 80.0, 0.01, 0.9, 0.03),
    (50.0, 60.0, 0.5, 0.15, -0.01),
]


def test_black_scholes_reference_values_and_parity() -> None:
    # Hull's textbook case: S=K=100, T=1, r=5%, sigma=20%.
    assert bs_price(Right.CALL, 100, 100, 1, 0.2, 0.05) == pytest.approx(10.4506, abs=1e-4)
    assert bs_price("P", 100, 100, 1, 0.2, 0.05) == pytest.approx(5.5735, abs=1e-4)
    assert bs_delta(Right.CALL, 100, 100, 1, 0.2, 0.05) == pytest.approx(0.6368, abs=1e-4)
    for s, k, t, vol in [(90, 100, 0.25, 0.3), (120, 100, 2, 0.5), (100, 80, 0.01, 0.9)]:
        c, p = bs_price("C", s, k, t, vol, 0.03), bs_price("P", s, k, t, vol, 0.03)
        assert c - p == pytest.approx(s - k * math.exp(-0.03 * t), abs=1e-9)
        for right in ("C", "P"):
            h = 1e-4 * s
            fd = (
                bs_price(right, s + h, k, t, vol, 0.03) - bs_price(right, s - h, k, t, vol, 0.03)
            ) / (2 * h)
            assert bs_delta(right, s, k, t, vol, 0.03) == pytest.approx(fd, abs=1e-6)
        assert bs_delta("C", s, k, t, vol, 0.03) - bs_delta(
            "P", s, k, t, vol, 0.03
        ) == pytest.approx(1.0)


def test_black_scholes_at_expiry_is_intrinsic() -> None:
    assert bs_price("C", 110, 100, 0, 0.3, 0.05) == 10.0
    assert bs_price("P", 110, 100, -1, 0.3, 0.05) == 0.0
    assert bs_delta("C", 110, 100, 0, 0.3, 0.05) == 1.0
    assert bs_delta("P", 90, 100, 0, 0.3, 0.05) == -1.0
    assert bs_delta("P", 110, 100, 0, 0.3, 0.05) == 0.0


@pytest.mark.parametrize(("s", "k", "t", "vol", "r"), CASES)
def test_put_call_parity(s: float, k: float, t: float, vol: float, r: float) -> None:
    assert bs_call(s, k, t, vol, r) - bs_put(s, k, t, vol, r) == pytest.approx(
        s - k * math.exp(-r * t), abs=1e-10
    )
    assert bs_call_delta(s, k, t, vol, r) - bs_put_delta(s, k, t, vol, r) == pytest.approx(1.0)


@pytest.mark.parametrize(("s", "k", "t", "vol", "r"), CASES)
@pytest.mark.parametrize("right", ["C", "P"])
def test_greeks_match_finite_differences(
    right: str, s: float, k: float, t: float, vol: float, r: float
) -> None:
    def v(s_: float = s, t_: float = t, vol_: float = vol) -> float:
        return bs_price(right, s_, k, t_, vol_, r)

    h = 1e-4 * s
    assert bs_delta(right, s, k, t, vol, r) == pytest.approx(
        (v(s_=s + h) - v(s_=s - h)) / (2 * h), abs=1e-6
    )
    h = 1e-3 * s  # a wider step for the second difference, or rounding dominates
    assert bs_gamma(s, k, t, vol, r) == pytest.approx(
        (v(s_=s + h) - 2 * v() + v(s_=s - h)) / (h * h), rel=1e-4, abs=1e-7
    )
    dv = 1e-5
    assert bs_vega(s, k, t, vol, r) == pytest.approx(
        (v(vol_=vol + dv) - v(vol_=vol - dv)) / (2 * dv), rel=1e-6, abs=1e-8
    )
    dt_ = 1e-6 * t
    # Theta is the change as time passes, i.e. as time to expiry shrinks.
    assert bs_theta(right, s, k, t, vol, r) == pytest.approx(
        -(v(t_=t + dt_) - v(t_=t - dt_)) / (2 * dt_), rel=1e-5, abs=1e-6
    )


def test_right_spellings() -> None:
    args = (100.0, 95.0, 0.5, 0.25, 0.02)
    assert bs_price("call", *args) == bs_price(Right.CALL, *args) == bs_call(*args)
    assert bs_price("Put", *args) == bs_price(Right.PUT, *args) == bs_put(*args)
    with pytest.raises(ValueError, match="call or a put"):
        bs_price("X", *args)


def test_zero_vol_delta_compares_spot_with_the_discounted_strike() -> None:
    # K e^(-rT) = 100 * e^(-0.05) = 95.12: a spot of 97 is in the money on the forward although
    # it is below the strike, so the call is worth S - K e^(-rT) and moves one for one with S.
    k, t, r = 100.0, 1.0, 0.05
    fwd_k = k * math.exp(-r * t)
    assert bs_call(97.0, k, t, 0.0, r) == pytest.approx(97.0 - fwd_k)
    assert bs_call_delta(97.0, k, t, 0.0, r) == 1.0
    assert bs_put_delta(97.0, k, t, 0.0, r) == 0.0
    assert bs_put(97.0, k, t, 0.0, r) == 0.0
    # Below the discounted strike: the put is in the money, the call is not.
    assert bs_call_delta(94.0, k, t, 0.0, r) == 0.0
    assert bs_put_delta(94.0, k, t, 0.0, r) == -1.0
    # The vol -> 0 limit of the diffusive delta agrees on both sides of the boundary.
    assert bs_call_delta(97.0, k, t, 1e-6, r) == pytest.approx(1.0)
    assert bs_call_delta(94.0, k, t, 1e-6, r) == pytest.approx(0.0)
    # A negative rate moves the boundary above the strike.
    assert bs_put_delta(100.0, k, t, 0.0, -0.01) == -1.0
    assert bs_call_delta(100.5, k, t, 0.0, -0.01) == 0.0
    # Exactly at the forward the option ends worthless either way.
    assert bs_call_delta(fwd_k, k, t, 0.0, r) == 0.0
    assert bs_put_delta(fwd_k, k, t, 0.0, r) == 0.0
    # At expiry the discounted strike is the strike.
    assert bs_call_delta(100.01, k, 0.0, 0.3, r) == 1.0
    assert bs_put_delta(99.99, k, 0.0, 0.3, r) == -1.0


def test_degenerate_greeks() -> None:
    assert bs_gamma(100, 100, 0.0, 0.2) == 0.0
    assert bs_vega(100, 100, 1.0, 0.0) == 0.0
    assert bs_theta("C", 100, 100, 0.0, 0.2, 0.05) == 0.0
    # Zero vol in the money: only the discount accrues.
    assert bs_theta("C", 120, 100, 1.0, 0.0, 0.05) == pytest.approx(-0.05 * 100 * math.exp(-0.05))
    assert bs_theta("P", 80, 100, 1.0, 0.0, 0.05) == pytest.approx(0.05 * 100 * math.exp(-0.05))


NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("day", "utc_hour"),
    [(dt.date(2024, 1, 19), 21), (dt.date(2024, 7, 19), 20)],  # EST in January, EDT in July
)
def test_expiry_is_the_new_york_close(day: dt.date, utc_hour: int) -> None:
    ts = expiry_ts(day)
    assert dt.datetime.fromtimestamp(ts, NY).time() == dt.time(16, 0)
    assert dt.datetime.fromtimestamp(ts, NY).date() == day
    assert dt.datetime.fromtimestamp(ts, dt.UTC) == dt.datetime(
        day.year, day.month, day.day, utc_hour, tzinfo=dt.UTC
    )
    assert years_to_expiry(day, ts - 86400.0) == pytest.approx(86400.0 / YEAR_SECONDS)
