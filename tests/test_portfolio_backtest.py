"""Portfolio backtests of a config: one strategy on one symbol books exactly the single
backtest's trades; the risk gate's limits and halts and half-Kelly rebalancing act as live;
the CLI reports per strategy and for the account."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.portfolio import PortfolioBacktest, load_portfolio_data
from fbterm.cli import main
from fbterm.config import StrategyRiskConfig, dump_toml
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage
from fbterm.strategies import create_strategy
from fbterm.strategies.base import Sizing

LOOSE_RISK = {
    "max_order_value": 1e12,
    "max_position_value": 1e12,
    "max_position_qty": 1e12,
    "max_strategy_position_value": 1e12,
    "max_gross_exposure": 1e12,
    "max_orders_per_second": 1e6,
    "max_drawdown_pct": 100.0,
    "daily_loss_limit": 1e12,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bars")
    for k, sym in enumerate(("AAA", "BBB", "CCC")):
        DataStorage(d).save_to_csv(synth_bars(3000, bar_size="1h", seed=20 + k), d / f"{sym}.csv")
    return d


def _config(make_config, strategies, risk=None, **sections):
    return make_config(
        market={"symbols": ["AAA", "BBB", "CCC"]},
        broker={"paper": {"commission": "percent", "commission_fraction": 0.001, "cash": 1e6}},
        strategies=strategies,
        risk={**LOOSE_RISK, **(risk or {})},
        **sections,
    )


@pytest.mark.parametrize("mode", ["fast", "replay"])
@pytest.mark.parametrize(
    ("cls", "params", "risk"),
    [
        ("sma_cross", {"fast": 10, "slow": 30}, {"stop_loss_pct": 2.0}),
        ("mean_reversion", {"window": 20, "entry_z": 1.2}, {"take_profit_pct": 3.0}),
        ("breakout", {"window": 20}, {"trailing_stop_pct": 1.5}),
    ],
)
def test_one_strategy_one_symbol_is_the_single_backtest(
    make_config, data_dir, mode, cls, params, risk
) -> None:
    cfg = _config(
        make_config,
        [
            {
                "name": "solo",
                "class": cls,
                "symbols": ["AAA"],
                "capital": 50_000.0,
                "params": params,
                "risk": risk,
            }
        ],
    )
    data = load_portfolio_data(cfg, str(data_dir))
    res = PortfolioBacktest(cfg, data, mode=mode).run()
    single = CustomBacktester(
        data["AAA"],
        create_strategy(cls, None, params),
        cash=50_000.0,
        commission=0.001,
        sizing=Sizing("fraction", 0.95),  # the config's "fraction" on one symbol
        symbol="AAA",
        risk=StrategyRiskConfig(**risk),
        mode=mode,
    ).run_backtest()
    leg = res.legs[("solo", "AAA")]
    assert len(single.trades) > 5
    pd.testing.assert_frame_equal(leg.trades, single.trades)
    # The fast path's inline loop books no order reasons; every fill is the same.
    cols = ["bar", "time", "instrument", "quantity", "price", "commission"]
    pd.testing.assert_frame_equal(leg.fills[cols], single.fills[cols])
    np.testing.assert_allclose(
        res.strategies["solo"].to_numpy(), single.equity.to_numpy(), rtol=1e-12
    )
    assert res.events.empty


def test_portfolio_limits_refuse_orders(make_config, data_dir) -> None:
    strategies = [
        {
            "name": "a",
            "class": "sma_cross",
            "symbols": ["AAA", "BBB"],
            "capital": 100_000.0,
            "params": {"fast": 5, "slow": 20},
        },
        {
            "name": "b",
            "class": "sma_cross",
            "symbols": ["AAA"],
            "capital": 100_000.0,
            "params": {"fast": 8, "slow": 30},
        },
    ]
    cfg = _config(make_config, strategies, risk={"max_position_value": 60_000.0})
    res = PortfolioBacktest(cfg, load_portfolio_data(cfg, str(data_dir))).run()
    refused = res.events[res.events["event"] == "rejected"]
    assert len(refused) and refused["detail"].str.startswith("max_position_value").all()
    # Across both strategies, AAA never exceeds the account-wide limit after a fill.
    fills = []
    for (name, sym), leg in res.legs.items():
        if sym == "AAA":
            f = leg.fills.assign(ts=leg.bars.index[leg.fills["bar"]], strategy=name)
            fills.append(f)
    f = pd.concat(fills).sort_values("ts", kind="stable")
    held = f["quantity"].cumsum()
    assert (held.abs() * f["price"] <= 60_000.0 + 1e-6).all()
    assert {"a", "b"} == set(res.strategy_metrics["strategy"])
    assert res.correlation.shape == (2, 2)


def test_drawdown_halt_stops_trading(make_config, data_dir) -> None:
    cfg = _config(
        make_config,
        [
            {
                "name": "a",
                "class": "sma_cross",
                "symbols": ["AAA"],
                "capital": 1e6,
                "sizing": "all_in",
                "params": {"fast": 3, "slow": 10},
            }
        ],
        risk={"max_drawdown_pct": 3.0},
    )
    res = PortfolioBacktest(cfg, load_portfolio_data(cfg, str(data_dir))).run()
    halts = res.events[res.events["event"] == "halted"]
    assert len(halts) == 1 and halts.iloc[0]["detail"].startswith("max_drawdown")
    t_halt = halts.iloc[0]["time"]
    leg = res.legs[("a", "AAA")]
    assert (leg.fills["time"] <= t_halt).all()
    # The strategy kept signalling after the halt, but sent nothing; a stop exit it may still
    # have (the only order after a halt) is refused by the gate.
    sig = leg.signals["target"]
    assert sig[sig.index > t_halt].notna().sum() > 5
    refused = res.events[res.events["event"] == "rejected"]
    assert refused["detail"].str.startswith("halted").all()
    assert (refused["time"] > t_halt).all()
    # The account's drawdown at the halt is the configured limit (the halt follows at once).
    eq = res.equity[:t_halt]
    assert 1 - eq.iloc[-1] / eq.max() >= 0.03


def test_flatten_on_halt(make_config, data_dir) -> None:
    cfg = _config(
        make_config,
        [
            {
                "name": "a",
                "class": "sma_cross",
                "symbols": ["AAA", "BBB"],
                "capital": 1e6,
                "params": {"fast": 3, "slow": 10},
            }
        ],
        risk={"max_drawdown_pct": 2.0},
    )
    data = load_portfolio_data(cfg, str(data_dir))
    res = PortfolioBacktest(cfg, data, on_halt="flatten").run()
    t_halt = res.events[res.events["event"] == "halted"].iloc[0]["time"]
    for sym in ("AAA", "BBB"):
        leg = res.legs[("a", sym)]
        after = leg.fills[leg.fills["time"] > t_halt]
        # One operator exit per symbol at its next open, then flat to the end.
        assert len(after) <= 1 and (after["reason"] == "flatten on halt").all()
        assert leg.position.iloc[-1] == 0
    assert res.events[res.events["event"] == "rejected"].empty
    with pytest.raises(ValueError, match="on_halt"):
        PortfolioBacktest(cfg, data, on_halt="panic")


def test_half_kelly_rebalancing(make_config, data_dir) -> None:
    strategies = [
        {
            "name": n,
            "class": "sma_cross",
            "symbols": [s],
            "capital": 200_000.0,
            "params": {"fast": f, "slow": sl},
        }
        for n, s, f, sl in (("x", "AAA", 5, 20), ("y", "BBB", 10, 40), ("z", "CCC", 3, 12))
    ]
    cfg = _config(
        make_config,
        strategies,
        metrics={
            "kelly_cap": 0.25,
            "kelly_min_observations": 50,
            "rebalance_interval": 7 * 86400.0,
        },
    )
    res = PortfolioBacktest(cfg, load_portfolio_data(cfg, str(data_dir))).run()
    moves = res.events[res.events["event"] == "rebalance"]
    assert len(moves) > 0
    final = res.strategy_metrics.set_index("strategy")["final_capital"]
    total = 600_000.0
    assert (final <= 0.25 * total + 1e-6).all()
    # A move of capital is not a gain: the account's equity does not jump at a rebalance.
    at = res.equity.index.get_indexer(pd.Index(moves["time"]))
    jumps = np.abs(res.equity.diff().to_numpy()[at])
    assert np.all(jumps < 0.05 * total)
    # Without rebalancing the capital stays where the config put it.
    still = PortfolioBacktest(cfg, load_portfolio_data(cfg, str(data_dir)), rebalance=0).run()
    assert (still.strategy_metrics["final_capital"] == 200_000.0).all()


def test_cli_portfolio_report(make_config, data_dir, tmp_path, capsys) -> None:
    cfg = _config(
        make_config,
        [
            {
                "name": "trend",
                "class": "sma_cross",
                "symbols": ["AAA", "BBB"],
                "capital": 300_000.0,
                "params": {"fast": 5, "slow": 20},
            },
            {"name": "revert", "class": "mean_reversion", "symbols": ["CCC"], "capital": 200_000.0},
        ],
    )
    from fbterm.config import to_dict

    path = tmp_path / "config.toml"
    path.write_text(dump_toml(to_dict(cfg)))
    out = tmp_path / "out"
    rc = main(["backtest", "--config", str(path), "--data", str(data_dir), "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "portfolio of 2 strategies on 3 symbols" in text
    assert "correlation of daily returns" in text and "Max. Drawdown [%]" in text
    for f in (
        "equity.csv",
        "trades.csv",
        "events.csv",
        "correlation.csv",
        "strategies.csv",
        "report.html",
    ):
        assert (out / f).exists(), f
    eq = pd.read_csv(out / "equity.csv")
    assert {"trend", "revert", "account", "gross_exposure_pct"} <= set(eq.columns)
    rc = main(["backtest", "--config", str(path), "--data", str(data_dir), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(doc["strategies"]) == 2 and "sharpe" in doc["account"]
    # A symbol without a file is one line naming it.
    (tmp_path / "empty").mkdir()
    rc = main(["backtest", "--config", str(path), "--data", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 2 and "no bars for AAA" in err and err.count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk]\nmax_drawdown_pct = -1\n")
    rc = main(["backtest", "--config", str(bad), "--data", str(data_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and "max_drawdown_pct" in err


def test_an_account_wiped_out_is_closed_out_and_stays_at_zero(
    make_config, tmp_path, capsys
) -> None:
    """A short into a gap that costs more than the whole account: every position in every
    strategy is closed at that bar's close and nothing trades after (the single backtest's
    rule), instead of an account that goes on trading below zero."""
    n = 120
    idx = pd.date_range("2024-01-02 14:30", periods=n, freq="1h", tz="UTC")
    spike = np.r_[np.linspace(100, 101, 40), np.linspace(100, 90, 40), np.full(n - 80, 300.0)]
    walk = 50 * np.exp(np.cumsum(np.random.default_rng(4).normal(0, 0.01, n)))
    for sym, px in (("AAA", spike), ("BBB", walk)):
        bars = pd.DataFrame(
            {"open": px, "high": px * 1.001, "low": px * 0.999, "close": px, "volume": 1e6},
            index=idx,
        )
        DataStorage(tmp_path).save_to_csv(bars, tmp_path / f"{sym}.csv")
    cfg = make_config(
        market={"symbols": ["AAA", "BBB"]},
        broker={"paper": {"commission": "percent", "commission_fraction": 0.001, "cash": 2e6}},
        risk=LOOSE_RISK,
        strategies=[
            {
                "name": "short_a",
                "class": "sma_cross",
                "symbols": ["AAA"],
                "capital": 1.5e6,
                "sizing": "all_in",
                "params": {"fast": 3, "slow": 10},
            },
            {
                "name": "revert_b",
                "class": "mean_reversion",
                "symbols": ["BBB"],
                "capital": 0.5e6,
                "params": {"window": 5, "entry_z": 0.5},
            },
        ],
    )
    res = PortfolioBacktest(cfg, load_portfolio_data(cfg, str(tmp_path))).run()
    [wipe] = res.events[res.events["event"] == "liquidated"].itertuples(index=False)
    assert wipe.time == idx[80] and "every position closed" in wipe.detail
    assert (res.equity[idx[80] :] == 0).all() and (res.equity[: idx[79]] > 0).all()
    assert res.metrics["equity_final"] == 0
    for (name, _sym), leg in res.legs.items():
        assert (leg.fills["time"] <= idx[80]).all(), name
        assert _held_after(leg) == 0, name
    a = res.legs[("short_a", "AAA")]
    assert a.fills.iloc[-1]["reason"] == "liquidation" and a.fills.iloc[-1]["price"] == 300.0
    b = res.legs[("revert_b", "BBB")]
    assert len(b.fills) > 2  # it traded before, and nothing after
    # Each strategy's curve keeps what it had when the account was closed out.
    assert res.strategies["short_a"].iloc[-1] < 0 < res.strategies["revert_b"].iloc[-1]
    assert (res.strategies.iloc[80:].nunique() == 1).all()
    # The command line says so.
    from fbterm.config import to_dict

    path = tmp_path / "cfg" / "config.toml"
    path.parent.mkdir()
    path.write_text(dump_toml(to_dict(cfg)))
    capsys.readouterr()
    assert main(["backtest", "--config", str(path), "--data", str(tmp_path)]) == 0
    assert f"LIQUIDATED at {idx[80]}: account equity -" in capsys.readouterr().out


def _held_after(leg) -> float:
    return float(leg.fills["quantity"].sum())
