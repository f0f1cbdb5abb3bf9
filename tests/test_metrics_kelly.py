"""Kelly maths against hand-computed cases, and half-Kelly rebalancing through a real executor-like object."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fbterm.metrics.optimization import (
    Optimization,
    StrategyHistory,
    half_kelly_allocations,
    kelly_for,
)
from fbterm.stats import kelly_continuous, kelly_discrete, win_rate_and_payoff

# ------------------------------------------------------------------ hand-computed Kelly


def test_kelly_continuous_hand_case():
    # mean 0.025; deviations +-0.075 -> sum of squares 0.0225, sample variance 0.0225/3 = 0.0075
    assert kelly_continuous([0.1, -0.05, 0.1, -0.05]) == pytest.approx(0.025 / 0.0075)
    # mean 2/300; sample variance (1/900 + 16/900 + 25/900) * 1e-4 / 2 = 7/30000 -> 200/7
    assert kelly_continuous([0.01, 0.02, -0.01]) == pytest.approx(200 / 7)


def test_kelly_continuous_negative_edge_and_degenerate():
    assert kelly_continuous([-0.1, 0.05, -0.1, 0.05]) == pytest.approx(-0.025 / 0.0075)
    assert kelly_continuous([0.01, 0.01, 0.01]) == math.inf
    assert kelly_continuous([0.0, 0.0]) == 0.0
    with pytest.raises(ValueError):
        kelly_continuous([0.01])


def test_kelly_discrete_hand_cases():
    assert kelly_discrete(0.6, 2.0) == pytest.approx(0.4)  # 0.6 - 0.4/2
    assert kelly_discrete(0.5, 1.0) == pytest.approx(0.0)
    assert kelly_discrete(0.4, 1.0) == pytest.approx(-0.2)
    assert kelly_discrete(0.55, 1.5) == pytest.approx(0.55 - 0.45 / 1.5)
    with pytest.raises(ValueError):
        kelly_discrete(1.2, 1.0)
    with pytest.raises(ValueError):
        kelly_discrete(0.5, 0.0)


def test_win_rate_and_payoff_from_trades():
    w, r = win_rate_and_payoff([100, -50, 100, -50, 0])  # the scratch trade is ignored
    assert (w, r) == (pytest.approx(0.5), pytest.approx(2.0))
    assert kelly_discrete(w, r) == pytest.approx(0.25)
    assert win_rate_and_payoff([10, 20]) == (1.0, math.inf)


def test_half_kelly_allocations_halve_clamp_and_normalise():
    out = half_kelly_allocations({"a": 0.4, "b": 10 / 3, "c": -0.2, "d": math.nan}, cap=0.25)
    assert out == {"a": pytest.approx(0.2), "b": pytest.approx(0.25), "c": 0.0, "d": 0.0}
    # five strategies each capped at 0.5 sum to 2.5 > 1: scaled by 0.4 to 0.2 each
    out = half_kelly_allocations(dict.fromkeys("vwxyz", 1.6), cap=0.5)
    assert all(v == pytest.approx(0.2) for v in out.values())
    assert sum(out.values()) == pytest.approx(1.0)


def test_kelly_for_picks_method_and_skips_short_history():
    assert kelly_for([0.1, -0.05] * 20, 30)[0] == "continuous"
    assert kelly_for(StrategyHistory(trade_pnls=(100.0, -50.0) * 20), 30)[:3] == (
        "discrete",
        40,
        pytest.approx(0.25),
    )
    method, n, k, reason = kelly_for([0.1] * 5, 30)
    assert method == "skipped" and n == 5 and math.isnan(k) and "5 returns < 30" in reason


# ------------------------------------------------------------------ properties


kelly_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-5, max_value=5),
)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=2000)
@given(
    fractions=st.dictionaries(st.text(min_size=1, max_size=4), kelly_values, max_size=12),
    cap=st.floats(min_value=1e-3, max_value=1.0),
    budget=st.floats(min_value=0.0, max_value=1.0),
)
def test_allocations_never_exceed_cap_or_go_negative(fractions, cap, budget):
    out = half_kelly_allocations(fractions, cap, budget)
    assert set(out) == set(fractions)
    for v in out.values():
        assert 0.0 <= v <= cap + 1e-12
    assert sum(out.values()) <= budget + 1e-9


@pytest.mark.timeout(60)
@settings(max_examples=100, deadline=2000)
@given(
    histories=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(st.floats(min_value=-0.2, max_value=0.2), min_size=0, max_size=40),
        min_size=1,
    ),
    capitals=st.lists(st.floats(min_value=0, max_value=1e6), min_size=4, max_size=4),
    cap=st.floats(min_value=0.01, max_value=1.0),
)
def test_rebalance_respects_cap_and_total(histories, capitals, cap):
    current = dict(zip("abcd", capitals, strict=True))
    calls: dict[str, float] = {}
    result = Optimization(cap=cap, min_observations=10, tolerance=0.0).apply_half_kelly(
        lambda n, c: calls.__setitem__(n, c), histories, current=current
    )
    total = sum(capitals)
    new = result.new_allocations
    for name, value in calls.items():
        assert 0.0 <= value <= cap * total + 1e-6
        assert new[name] == value
    assert sum(new.values()) <= total * (1 + 1e-9) + 1e-6
    assert all(v >= 0 for v in new.values())


# ------------------------------------------------------------------ Optimization


class RecordingExecutor:
    """A minimal stand-in with the StrategyExecutor's scale_strategy(name, capital) method."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.refuse = refuse

    def scale_strategy(self, name: str, capital: float) -> None:
        if name == self.refuse:
            raise RuntimeError("strategy is paused")
        self.calls.append((name, capital))


def test_apply_half_kelly_rebalances_and_logs():
    logged = []
    opt = Optimization(
        cap=0.25, min_observations=30, activity=lambda kind, msg, **f: logged.append((kind, msg, f))
    )
    ex = RecordingExecutor()
    histories = {
        "trend": [0.1, -0.05] * 20,  # K ~ 4.3 -> half capped at 0.25
        "meanrev": StrategyHistory(trade_pnls=(100.0, -50.0) * 20),  # K 0.25 -> 0.125
        "young": [0.01] * 5,  # too little history: keeps its capital
    }
    current = {"trend": 100_000.0, "meanrev": 100_000.0, "young": 50_000.0}
    res = opt.apply_half_kelly(ex, histories, current=current)
    assert res.applied
    assert sorted(ex.calls) == [
        ("meanrev", pytest.approx(31_250.0)),
        ("trend", pytest.approx(62_500.0)),
    ]
    assert res.old_allocations == current
    assert res.new_allocations == {
        "trend": pytest.approx(62_500.0),
        "meanrev": pytest.approx(31_250.0),
        "young": 50_000.0,
    }
    by = {d.strategy: d for d in res.decisions}
    assert by["young"].method == "skipped" and not by["young"].applied
    assert "capped at 0.25" in by["trend"].reason
    assert {f["strategy"] for _, _, f in logged} == {"trend", "meanrev"}
    assert any("100,000.00 -> 62,500.00" in msg for _, msg, _ in logged)


def test_apply_half_kelly_noop_with_too_little_history():
    ex = RecordingExecutor()
    res = Optimization(min_observations=30).apply_half_kelly(
        ex, {"a": [0.01, 0.02], "b": []}, current={"a": 1000.0, "b": 2000.0}
    )
    assert not res.applied and ex.calls == []
    assert res.new_allocations == {"a": 1000.0, "b": 2000.0}
    assert "enough history" in res.reason


def test_apply_half_kelly_scales_down_to_the_budget_and_survives_a_refusal():
    ex = RecordingExecutor(refuse="b")
    strong = [0.1, -0.05] * 20
    res = Optimization(cap=0.6).apply_half_kelly(
        ex, {"a": strong, "b": strong}, min_observations=10, current={"a": 200.0, "b": 800.0}
    )
    # both capped at 0.6 -> sum 1.2 > 1 -> scaled to 0.5 each of the 1000 total
    assert ex.calls == [("a", pytest.approx(500.0))]
    by = {d.strategy: d for d in res.decisions}
    assert by["a"].fraction == pytest.approx(0.5) and by["a"].applied
    assert "scaled down" in by["a"].reason
    assert by["b"].new_capital == 800.0 and not by["b"].applied
    assert "scale_strategy failed" in by["b"].reason
    assert res.errors == ("b: strategy is paused",)
    assert res.reason == "rebalanced with errors"
