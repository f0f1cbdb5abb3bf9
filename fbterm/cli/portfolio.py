"""``fbterm backtest --config config.toml --data DIR``: the configured strategies together.

Prints each strategy's results and the account's (equity, drawdown, exposure), the
correlation between the strategies' daily returns and what the risk manager did (halts,
rebalances, refused orders); ``--out`` writes them as CSV with an HTML report.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from pathlib import Path
from typing import Any

from fbterm.cli.errors import EXIT_OK, EXIT_USAGE, CLIError

SUMMARY = (
    "equity_final",
    "return_pct",
    "cagr_pct",
    "sharpe",
    "sortino",
    "max_drawdown_pct",
    "max_drawdown_duration",
    "exposure_pct",
    "trades",
    "win_rate_pct",
)


def run_portfolio(args: argparse.Namespace) -> int:
    import pandas as pd

    from fbterm.backtest.metrics import METRIC_LABELS, metrics_to_jsonable
    from fbterm.backtest.portfolio import PortfolioBacktest, load_portfolio_data
    from fbterm.config import ConfigError, load_config

    if args.sweep or args.walk_forward or args.oos is not None:
        raise CLIError(
            "--config runs the configured strategies as they are: drop --sweep, --walk-forward and --oos",
            EXIT_USAGE,
        )
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise CLIError(str(e).splitlines()[0], EXIT_USAGE) from None
    data = load_portfolio_data(cfg, args.data)
    res = PortfolioBacktest(
        cfg, data, mode=args.mode, rebalance=args.rebalance, on_halt=args.on_halt
    ).run()
    ev = res.events
    halts = ev[ev["event"] == "halted"]
    rebal = ev[ev["event"] == "rebalance"]
    rejected = ev[ev["event"] == "rejected"]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        frame = res.strategies.assign(account=res.equity, gross_exposure_pct=res.exposure)
        frame.to_csv(out / "equity.csv", index_label="ts")
        res.trades.to_csv(out / "trades.csv", index=False)
        ev.to_csv(out / "events.csv", index=False)
        res.correlation.to_csv(out / "correlation.csv")
        res.strategy_metrics.to_csv(out / "strategies.csv", index=False)
        (out / "report.html").write_text(_html(res), encoding="utf-8")
    if args.json:
        print(
            json.dumps(
                {
                    "account": metrics_to_jsonable(res.metrics),
                    "strategies": json.loads(res.strategy_metrics.to_json(orient="records")),
                    "correlation": json.loads(res.correlation.to_json()),
                    "gross_exposure_pct": {
                        "mean": _num(res.exposure.mean()),
                        "max": _num(res.exposure.max()),
                    },
                    "halts": json.loads(halts.to_json(orient="records", date_format="iso")),
                    "rebalances": len(rebal),
                    "rejected_orders": len(rejected),
                },
                default=str,
            )
        )
        return EXIT_OK
    idx = res.equity.index
    print(
        f"portfolio of {len(res.strategy_metrics)} strategies on {len(data)} symbols "
        f"({', '.join(data)}), {idx[0]} .. {idx[-1]}, {len(idx):,} bars, cash {res.cash:,.0f}"
    )
    with pd.option_context(
        "display.width", 220, "display.max_columns", 30, "display.float_format", "{:,.2f}".format
    ):
        print("\nstrategies")
        print(res.strategy_metrics.to_string(index=False))
        print("\ncorrelation of daily returns")
        print(res.correlation.to_string())
    print("\naccount")
    width = max(len(METRIC_LABELS[k]) for k in SUMMARY)
    for k in SUMMARY:
        print(f"{METRIC_LABELS[k]:<{width}}  {_fmt(res.metrics[k])}")
    print(
        f"{'Gross exposure [%]':<{width}}  mean {_fmt(float(res.exposure.mean()))}, "
        f"max {_fmt(float(res.exposure.max()))}"
    )
    print(
        f"\nrisk: {len(halts)} halt(s), {len(rebal)} rebalance move(s), {len(rejected)} order(s) refused"
    )
    for row in halts.itertuples(index=False):
        print(f"  HALTED at {row.time}: {row.detail}")
    for row in res.events[res.events["event"] == "liquidated"].itertuples(index=False):
        print(f"  LIQUIDATED at {row.time}: {row.detail}")
    if len(rejected):
        top = rejected["detail"].str.split(":").str[0].value_counts()
        print("  refused by rule: " + ", ".join(f"{k} {v}" for k, v in top.items()))
    if args.plot:
        print(_plot(res))
    return EXIT_OK


def _plot(res: Any) -> str:
    import plotext as plt

    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(100, 22)
    n = len(res.equity)
    step = max(n // 2000, 1)
    x = list(range(0, n, step))
    for name in res.strategies.columns:
        plt.plot(x, res.strategies[name].to_numpy()[::step].tolist(), label=str(name))
    plt.title("strategy equity (capital + P&L)")
    text = str(plt.build())
    plt.clear_figure()
    return text


def _html(res: Any) -> str:
    import numpy as np

    from fbterm.backtest.analysis import _svg_lines

    n = max(len(res.equity) - 1, 1)
    k = np.unique(np.r_[np.linspace(0, n, min(n + 1, 2000)).astype(np.int64), n])
    acct = res.equity.to_numpy(dtype=float)
    dd = (acct / np.maximum.accumulate(acct) - 1) * 100
    colors = ["#4c4", "#59f", "#fa4", "#c6f", "#4cc", "#f66", "#ccc"]
    lines = [
        (k, res.strategies[c].to_numpy(dtype=float)[k], colors[i % len(colors)])
        for i, c in enumerate(res.strategies.columns)
    ]
    legend = " ".join(
        f'<span style="color:{colors[i % len(colors)]}">■ {html.escape(str(c))}</span>'
        for i, c in enumerate(res.strategies.columns)
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fbterm portfolio</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;background:#111;color:#ddd}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #444;padding:2px 6px}}
svg{{background:#181818;margin:8px 0}}</style></head><body>
<h1>Portfolio backtest</h1>
<h2>Account equity and drawdown</h2>{_svg_lines([(k, acct[k], "#4c4")], n, extra=[(k, dd[k], "#c44")])}
<h2>Strategies (capital + P&amp;L)</h2><p>{legend}</p>{_svg_lines(lines, n)}
<h2>Strategies</h2>{res.strategy_metrics.to_html(index=False, float_format=lambda v: f"{v:,.2f}")}
<h2>Correlation of daily returns</h2>{res.correlation.to_html(float_format=lambda v: f"{v:.2f}")}
<h2>Account</h2>{res.metrics.to_frame().to_html()}
<h2>Risk events</h2>{res.events.head(500).to_html(index=False)}
</body></html>"""


def _num(v: float) -> float | None:
    return float(v) if isinstance(v, float) and math.isfinite(v) else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.2f}"
    return "—" if str(v) == "NaT" else str(v)
