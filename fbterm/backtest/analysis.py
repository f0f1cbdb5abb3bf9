"""PerformanceAnalysis: the backtest's charts in the terminal (plotext) and in reports.

Three charts: equity with drawdown, price with trade markers, and the histogram of trade
returns. ``draw_*`` take the plotext module (or textual-plotext's ``plt``) so the console's
backtest screen draws the same charts. Series are thinned to at most ``MAX_POINTS`` so a
1M-bar run draws as fast as a short one. Reports: ``report.html`` with inline SVG (no
network, no plotting library) and ``charts.txt``; ``charts.png`` too when matplotlib is
installed.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fbterm.backtest.metrics import METRIC_LABELS
from fbterm.backtest.result import BacktestResult

MAX_POINTS = 2000


def _thin(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, limit).astype(np.int64), n - 1])


def equity_drawdown(result: BacktestResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bar numbers, equity, drawdown %) thinned for drawing."""
    eq = result.equity.to_numpy(dtype=float)
    peak = np.maximum.accumulate(eq)
    dd = (eq / peak - 1.0) * 100.0
    k = _thin(len(eq))
    return k, eq[k], dd[k]


def trade_markers(result: BacktestResult) -> tuple[list[int], list[float], list[int], list[float]]:
    """Bar numbers and prices of buys and of sells (underlying only)."""
    f = result.fills
    if not len(f):
        return [], [], [], []
    f = f[f["instrument"] == f["instrument"].iloc[0]] if "instrument" in f else f
    buy = f[f["quantity"] > 0]
    sell = f[f["quantity"] < 0]
    cap = MAX_POINTS // 2
    buy, sell = buy.iloc[:: max(len(buy) // cap, 1)], sell.iloc[:: max(len(sell) // cap, 1)]
    return (
        buy["bar"].tolist(),
        buy["price"].tolist(),
        sell["bar"].tolist(),
        sell["price"].tolist(),
    )


def draw_equity(plt: Any, result: BacktestResult) -> None:
    """Equity curve and drawdown (right axis) on the current plotext plot."""
    x, eq, dd = equity_drawdown(result)
    plt.plot(x.tolist(), eq.tolist(), label="equity", color="green")
    plt.plot(x.tolist(), dd.tolist(), label="drawdown %", color="red", yside="right")
    plt.title(f"Equity — {result.strategy} {_params(result)}")
    plt.xlabel("bar")


def draw_price_trades(plt: Any, result: BacktestResult) -> None:
    """Close price with buy (▲) and sell (▼) markers."""
    c = result.bars["close"].to_numpy(dtype=float)
    k = _thin(len(c))
    plt.plot(k.tolist(), c[k].tolist(), label="close", color="blue")
    bx, by, sx, sy = trade_markers(result)
    if bx:
        plt.scatter(bx, by, label="buy", color="green", marker="▲")
    if sx:
        plt.scatter(sx, sy, label="sell", color="red", marker="▼")
    plt.title("Price and trades")
    plt.xlabel("bar")


def trade_returns_pct(result: BacktestResult) -> np.ndarray:
    """Closed trades' returns in %, the finite ones."""
    if not len(result.trades):
        return np.zeros(0)
    r: np.ndarray = np.asarray(result.trades["return_pct"].to_numpy(dtype=float) * 100)
    return np.asarray(r[np.isfinite(r)])


def histogram(values: np.ndarray, bins: int = 30) -> tuple[np.ndarray, np.ndarray, float]:
    """(bin centres, counts, bin width) by numpy; one bar when every value is (nearly) the same.

    plotext's own ``hist`` indexes past its last bin when a value sits a rounding error below
    the maximum (a run whose take-profits all land on one level), so the bins are made here."""
    if not len(values):
        return np.zeros(0), np.zeros(0), 0.0
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):
        return np.array([lo]), np.array([len(values)]), 1.0
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts, float(edges[1] - edges[0])


def draw_returns_hist(plt: Any, result: BacktestResult, bins: int = 30) -> None:
    """Histogram of trade returns in %."""
    r = trade_returns_pct(result)
    centres, counts, _ = histogram(r, bins)
    if len(centres):
        plt.bar(centres.tolist(), counts.tolist(), label="trades", color="cyan", width=0.9)
        ticks = centres[:: max(len(centres) // 5, 1)]
        plt.xticks(ticks.tolist(), [f"{t:.2f}" for t in ticks])
    plt.title(f"Trade returns % ({len(r)} trades)")


def _params(result: BacktestResult) -> str:
    return " ".join(f"{k}={v}" for k, v in result.params.items())


class PerformanceAnalysis:
    """Charts and reports of one :class:`BacktestResult`."""

    def __init__(self, result: BacktestResult):
        self.result = result

    def terminal_charts(
        self, plt: Any = None, *, width: int | None = None, height: int | None = None
    ) -> str:
        """The three charts as text (plotext), ready to print.

        Drawn on a figure of its own: plotext's module-level figure keeps state between
        figures (``clear_figure`` clears only the active subplot), and a figure built after a
        flat one could then take minutes to draw."""
        if plt is None:
            from plotext._figure import _figure_class

            fig: Any = _figure_class()
        else:
            fig = plt.main() if hasattr(plt, "main") else plt
            fig.clear_figure()
        fig.theme("clear")  # the terminal's own background: readable on dark and light terminals
        fig.subplots(3, 1)
        if width or height:
            fig.plotsize(width or 100, height or 45)
        for row, draw in enumerate((draw_equity, draw_price_trades, draw_returns_hist), 1):
            draw(fig.subplot(row, 1), self.result)
        text = fig.build()
        if plt is not None:
            fig.clear_figure()
        return str(text)

    def visualize_results(
        self, *, terminal: bool = True, out_dir: str | Path | None = None, plt: Any = None
    ) -> list[Path]:
        """Print the charts (``terminal``) and write reports to ``out_dir``; returns the files."""
        written: list[Path] = []
        text = None
        if terminal or out_dir:
            text = self.terminal_charts(plt)
        if terminal and text:
            print(text)
        if out_dir:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            if text:
                p = out / "charts.txt"
                p.write_text(_strip_ansi(text), encoding="utf-8")
                written.append(p)
            p = out / "report.html"
            p.write_text(self.html_report(), encoding="utf-8")
            written.append(p)
            png = self._png(out / "charts.png")
            if png:
                written.append(png)
        return written

    # -- reports ----------------------------------------------------------------------------
    def html_report(self) -> str:
        res = self.result
        x, eq, dd = equity_drawdown(res)
        c = res.bars["close"].to_numpy(dtype=float)
        k = _thin(len(c))
        bx, by, sx, sy = trade_markers(res)
        n = max(len(res.equity) - 1, 1)
        rows = "".join(
            f"<tr><td>{html.escape(METRIC_LABELS.get(str(key), str(key)))}</td><td>{html.escape(_fmt(v))}</td></tr>"
            for key, v in res.metrics.items()
        )
        trades = res.trades.head(500).to_html(index=False, float_format=lambda v: f"{v:.4f}")
        r = trade_returns_pct(res)
        return f"""<!doctype html><html><head><meta charset="utf-8"><title>fbterm backtest</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;background:#111;color:#ddd}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #444;padding:2px 6px}}
svg{{background:#181818;margin:8px 0}}</style></head><body>
<h1>{html.escape(res.strategy)} {html.escape(_params(res))}</h1>
<h2>Equity and drawdown</h2>{_svg_lines([(x, eq, "#4c4")], n, extra=[(x, dd, "#c44")])}
<h2>Price and trades</h2>{_svg_lines([(k, c[k], "#59f")], n, markers=[(bx, by, "#4c4"), (sx, sy, "#f55")])}
<h2>Trade returns (%)</h2>{_svg_hist(r)}
<h2>Metrics</h2><table>{rows}</table>
<h2>Trades (first 500)</h2>{trades}
</body></html>"""

    def _png(self, path: Path) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as mpl
        except ImportError:
            return None
        res = self.result
        x, eq, dd = equity_drawdown(res)
        fig, axes = mpl.subplots(3, 1, figsize=(10, 9))
        axes[0].plot(x, eq, color="green")
        axes[0].twinx().fill_between(x, dd, 0, color="red", alpha=0.3)
        c = res.bars["close"].to_numpy(dtype=float)
        k = _thin(len(c))
        axes[1].plot(k, c[k])
        bx, by, sx, sy = trade_markers(res)
        axes[1].scatter(bx, by, marker="^", color="green")
        axes[1].scatter(sx, sy, marker="v", color="red")
        centres, counts, width = histogram(trade_returns_pct(res))
        if len(centres):
            axes[2].bar(centres, counts, width=width * 0.9)
        fig.tight_layout()
        fig.savefig(path)
        mpl.close(fig)
        return path


W, H, PAD = 900, 260, 30


def _scale(v: np.ndarray, lo: float, hi: float, a: float, b: float) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return a + (v - lo) / span * (b - a)


def _svg_lines(
    series: list[tuple[Any, Any, str]],
    n: int,
    *,
    extra: list[tuple[Any, Any, str]] | None = None,
    markers: list[tuple[Any, Any, str]] | None = None,
) -> str:
    parts = [f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">']

    def poly(xs: Any, ys: Any, color: str, lo: float, hi: float, top: float, bottom: float) -> str:
        xs = np.asarray(xs, dtype=float)
        ys = np.asarray(ys, dtype=float)
        px = _scale(xs, 0, n, PAD, W - PAD)
        py = _scale(ys, lo, hi, bottom, top)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
        return f'<polyline fill="none" stroke="{color}" stroke-width="1" points="{pts}"/>'

    ys = np.concatenate(
        [np.asarray(s[1], dtype=float) for s in series]
        + [np.asarray(m[1], dtype=float) for m in (markers or []) if len(m[1])]
    )
    lo, hi = float(np.nanmin(ys)), float(np.nanmax(ys))
    main_bottom = H - PAD - (70 if extra else 0)
    for xs, yv, color in series:
        parts.append(poly(xs, yv, color, lo, hi, PAD, main_bottom))
    parts.append(f'<text x="4" y="{PAD}" fill="#aaa" font-size="11">{hi:,.2f}</text>')
    parts.append(f'<text x="4" y="{main_bottom}" fill="#aaa" font-size="11">{lo:,.2f}</text>')
    for xs, yv, color in extra or []:
        yv = np.asarray(yv, dtype=float)
        dlo = float(np.nanmin(yv)) if len(yv) else -1.0
        parts.append(poly(xs, yv, color, min(dlo, -1e-9), 0.0, H - PAD - 60, H - PAD))
        parts.append(f'<text x="4" y="{H - PAD}" fill="#c44" font-size="11">{dlo:.1f}%</text>')
    for xs, yv, color in markers or []:
        px = _scale(np.asarray(xs, dtype=float), 0, n, PAD, W - PAD)
        py = _scale(np.asarray(yv, dtype=float), lo, hi, main_bottom, PAD)
        parts.extend(
            f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="{color}"/>'
            for a, b in zip(px, py, strict=True)
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_hist(r: np.ndarray, bins: int = 30) -> str:
    if not len(r):
        return "<p>no trades</p>"
    centres, counts, width = histogram(r, bins)
    edges = np.r_[centres - width / 2, centres[-1] + width / 2]
    top = max(int(counts.max()), 1)
    bw = (W - 2 * PAD) / len(counts)
    parts = [f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">']
    for i, cnt in enumerate(counts):
        h = (H - 2 * PAD) * cnt / top
        color = "#4c4" if edges[i] >= 0 else "#c44"
        parts.append(
            f'<rect x="{PAD + i * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="{color}"/>'
        )
    parts.append(f'<text x="{PAD}" y="{H - 8}" fill="#aaa" font-size="11">{edges[0]:.2f}%</text>')
    parts.append(
        f'<text x="{W - PAD - 60}" y="{H - 8}" fill="#aaa" font-size="11">{edges[-1]:.2f}%</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.4f}"
    if v is pd.NaT:
        return "—"
    return str(v)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
