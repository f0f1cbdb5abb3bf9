"""One rulebook: the live engine (the real Engine on its thread, the paper venue, a CSV
replayed as ticks) fills a strategy exactly as the backtest's replay path does on the same
file: same bars, quantities, prices and commissions, for fixed, fraction and all-in sizing.

Nothing is mocked: the engine reads the CSV through its own market-data source, builds daily
bars from the ticks, runs the strategy through the executor, the risk gate, the order manager
and the journal, and the paper venue fills with the shared fill model.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from waiting import wait_until

from fbterm.backtest.backtester import CustomBacktester
from fbterm.data.simulated import synth_bars
from fbterm.data.storage import DataStorage
from fbterm.engine import Engine
from fbterm.journal import Journal
from fbterm.model import OrderStatus
from fbterm.strategies import create_strategy
from fbterm.strategies.base import Sizing

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(180)

PARAMS = {"fast": 5, "slow": 15}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    # Daily bars at midnight UTC in 2019 (so warm-up from "recent history" finds none), with
    # volume enough that the venue's participation cap never splits a fill.
    df = synth_bars(260, seed=14, start="2019-01-01", volatility=0.5)
    df["volume"] = 1e9
    return df


def live_fills(
    tmp_path: Path, make_config: ConfigBuilder, csv: Path, sizing: Sizing
) -> list[tuple[int, float, float, float]]:
    cfg = make_config(
        market={"source": "csv", "symbols": ["SYN"], "bar_seconds": 86400.0,
                "csv": {"path": str(csv), "speed": 0.0}, "stale_after": 3600.0},
        broker={"paper": {"cash": 10_000_000.0, "commission": "percent",
                          "commission_fraction": 0.001, "participation": 1.0}},
        risk={"max_orders_per_second": 1e6, "max_order_value": 1e9, "max_position_value": 1e9,
              "max_strategy_position_value": 1e9, "max_gross_exposure": 1e9},
        journal={"path": str(tmp_path / "journal.sqlite")},
        strategies=[],
    )  # fmt: skip
    engine = Engine(cfg, journal=Journal(cfg.journal_path), warmup_bars=0)
    engine.add_strategy(
        "sma", create_strategy("sma_cross", None, PARAMS), ["SYN"], 10_000.0, sizing=sizing
    )
    engine.start()
    try:
        wait_until(
            lambda: any(
                "market data from csv ended" in line.message
                for line in engine.build_snapshot_threadsafe().log
            ),
            "the end of the CSV replay",
            timeout=120.0,
        )
        fills = engine.call(lambda: list(engine.oms.fills))
        rejected = engine.call(
            lambda: [
                o.reason for o in engine.oms.orders.values() if o.status is OrderStatus.REJECTED
            ]
        )
    finally:
        engine.stop()
    assert not rejected
    return [(int(f.ts // 86400), f.signed_quantity, f.price, f.commission) for f in fills]


def per_bar(rows: list[tuple[int, float, float, float]]) -> dict[int, tuple[float, float, float]]:
    """Net quantity, price and commission per bar (a reversal the backtest books as two fills
    the live executor sends as one net order: same position, same price, same fee)."""
    out: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for day, q, px, fee in rows:
        out[day][0] += q
        out[day][1] = px
        out[day][2] += fee
    return {k: (v[0], v[1], round(v[2], 9)) for k, v in out.items() if v[0]}


@pytest.mark.parametrize(
    "sizing", [Sizing("fixed", 40), Sizing("fraction", 0.5), Sizing("all_in")], ids=str
)
def test_live_engine_over_a_csv_fills_like_the_replay_backtest(
    tmp_path: Path, make_config: ConfigBuilder, bars: pd.DataFrame, sizing: Sizing
) -> None:
    csv = tmp_path / "SYN.csv"
    DataStorage(tmp_path, cache=False).save_to_csv(bars, csv)
    live = live_fills(tmp_path, make_config, csv, sizing)

    loaded = DataStorage(tmp_path, cache=False).load_from_csv(csv)
    res = CustomBacktester(
        loaded, create_strategy("sma_cross", None, PARAMS), cash=10_000, commission=0.001,
        sizing=sizing, mode="replay", symbol="SYN",
    ).run_backtest()  # fmt: skip
    f = res.fills
    days = (loaded.index[f["bar"].to_numpy()].as_unit("ns").asi8 // 86_400_000_000_000).tolist()
    backtest = list(
        zip(
            days, f["quantity"].tolist(), f["price"].tolist(), f["commission"].tolist(), strict=True
        )
    )
    assert len(backtest) > 10
    want, got = per_bar(backtest), per_bar(live)
    assert sorted(got) == sorted(want)
    for day, (q, px, fee) in want.items():
        assert got[day][0] == q and got[day][1] == px, day
        assert got[day][2] == pytest.approx(fee, rel=1e-9), day
    # the positions left at the end agree too
    assert sum(q for _, q, _, _ in live) == pytest.approx(float(np.sum(f["quantity"])))
