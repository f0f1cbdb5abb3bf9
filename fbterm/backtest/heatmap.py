"""The 2-D picture of a sweep: one metric over two parameters, as a terminal chart (plotext),
as text anywhere (shade blocks and numbers) and as SVG in the sweep's HTML report.

With more than two swept parameters each cell shows the best value over the others (said in
the title), so the picture answers "how good can this pair be".
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fbterm.backtest.inputs import BacktestError

SHADES = " ░▒▓█"


@dataclass(frozen=True)
class Heatmap:
    x: str
    y: str
    metric: str
    xs: list[Any]
    ys: list[Any]
    z: np.ndarray  # rows follow ys, columns xs; NaN where no point ran
    note: str = ""

    @property
    def title(self) -> str:
        return f"{self.metric} by {self.x} × {self.y}{self.note}"


def swept_axes(table: pd.DataFrame, metric_columns: tuple[str, ...]) -> list[str]:
    """The parameters that vary in a sweep table, in column order."""
    skip = {*metric_columns, "error"}
    return [c for c in table.columns if c not in skip and table[c].nunique(dropna=True) > 1]


def heatmap(
    table: pd.DataFrame, metric: str, x: str | None = None, y: str | None = None, *, axes: list[str]
) -> Heatmap:
    """``metric`` over the parameters ``x`` and ``y`` (default: the first two swept)."""
    if len(axes) < 2 and (x is None or y is None):
        raise BacktestError("heatmap: the sweep must vary two parameters")
    x = x or axes[0]
    y = y or next(a for a in axes if a != x)
    for name in (x, y):
        if name not in table.columns:
            raise BacktestError(f"heatmap: {name!r} is not a swept parameter")
    if metric not in table.columns:
        raise BacktestError(f"heatmap: no {metric!r} column in the results")
    data = table[[x, y, metric]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    others = [a for a in axes if a not in (x, y)]
    grid = data.pivot_table(index=y, columns=x, values=metric, aggfunc="max", dropna=False)
    grid = grid.sort_index().sort_index(axis=1)
    note = f" (best over {', '.join(others)})" if others else ""
    return Heatmap(
        x,
        y,
        metric,
        list(grid.columns),
        list(grid.index),
        grid.to_numpy(dtype=float),
        note,
    )


def draw_heatmap(plt: Any, hm: Heatmap) -> None:
    """The heatmap on the current plotext plot (the CLI's --plot and the console's tab)."""
    z = np.where(np.isfinite(hm.z), hm.z, np.nanmin(hm.z) if np.isfinite(hm.z).any() else 0.0)
    plt.matrix_plot(z.tolist())
    plt.title(hm.title)
    plt.xlabel(hm.x)
    plt.ylabel(hm.y)
    plt.xticks(list(range(1, len(hm.xs) + 1)), [_label(v) for v in hm.xs])
    plt.yticks(list(range(1, len(hm.ys) + 1)), [_label(v) for v in hm.ys])


def terminal_heatmap(hm: Heatmap, plt: Any = None, width: int = 100, height: int = 30) -> str:
    if plt is None:
        import plotext

        plt = plotext
    plt.clear_figure()
    plt.plotsize(width, height)
    draw_heatmap(plt, hm)
    text = str(plt.build())
    plt.clear_figure()
    return text


def heatmap_text(hm: Heatmap) -> str:
    """The heatmap as plain text: a shade per cell (darker is better) and the values."""
    lo, hi = _range(hm.z)
    xw = max(6, *(len(_label(v)) for v in hm.xs))
    yw = max(len(hm.y), *(len(_label(v)) for v in hm.ys))
    lines = [hm.title, f"{hm.y:>{yw}} \\ {hm.x}"]
    lines.append(" " * (yw + 3) + "".join(f"{_label(v):>{xw + 2}}" for v in hm.xs))
    for yv, row in zip(hm.ys, hm.z, strict=True):
        cells = []
        for v in row:
            if not math.isfinite(v):
                cells.append(f"  {'·':>{xw}}")
                continue
            k = 0 if hi <= lo else int((v - lo) / (hi - lo) * (len(SHADES) - 1) + 0.5)
            cells.append(f" {SHADES[k]}{_num(v):>{xw}}")
        lines.append(f"{_label(yv):>{yw}} | " + "".join(cells))
    lines.append(f"shade: {SHADES[1]} low … {SHADES[-1]} high ({_num(lo)} … {_num(hi)})")
    return "\n".join(lines)


def heatmap_svg(hm: Heatmap, cell: int = 44) -> str:
    """The heatmap as inline SVG: red (worst) to green (best), the value in each cell."""
    lo, hi = _range(hm.z)
    left, top = 70, 30
    w = left + cell * len(hm.xs) + 20
    h = top + cell * len(hm.ys) + 50
    out = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">']
    out.append(f'<text x="{left}" y="18" fill="#ddd" font-size="13">{html.escape(hm.title)}</text>')
    for r, (yv, row) in enumerate(zip(hm.ys, hm.z, strict=True)):
        y0 = top + r * cell
        out.append(
            f'<text x="{left - 6}" y="{y0 + cell / 2 + 4:.0f}" fill="#aaa" font-size="11" '
            f'text-anchor="end">{html.escape(_label(yv))}</text>'
        )
        for c, v in enumerate(row):
            x0 = left + c * cell
            color = (
                "#333"
                if not math.isfinite(v)
                else _color(0.5 if hi <= lo else (v - lo) / (hi - lo))
            )
            out.append(
                f'<rect x="{x0}" y="{y0}" width="{cell - 1}" height="{cell - 1}" fill="{color}">'
                f"<title>{html.escape(f'{hm.x}={_label(hm.xs[c])} {hm.y}={_label(yv)}: {_num(v)}')}</title></rect>"
            )
            if math.isfinite(v):
                out.append(
                    f'<text x="{x0 + cell / 2:.0f}" y="{y0 + cell / 2 + 4:.0f}" fill="#000" '
                    f'font-size="10" text-anchor="middle">{html.escape(_num(v))}</text>'
                )
    yb = top + cell * len(hm.ys) + 14
    for c, xv in enumerate(hm.xs):
        out.append(
            f'<text x="{left + c * cell + cell / 2:.0f}" y="{yb}" fill="#aaa" font-size="11" '
            f'text-anchor="middle">{html.escape(_label(xv))}</text>'
        )
    out.append(
        f'<text x="{left}" y="{yb + 20}" fill="#aaa" font-size="11">{html.escape(hm.x)} →, '
        f"{html.escape(hm.y)} ↓</text></svg>"
    )
    return "".join(out)


def sweep_report_html(table: pd.DataFrame, hm: Heatmap | None, title: str) -> str:
    """The sweep's HTML report: the heatmap and the best 100 rows."""
    body = heatmap_svg(hm) if hm is not None else "<p>(one parameter swept: no heatmap)</p>"
    rows = table.head(100).to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="—")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fbterm sweep</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;background:#111;color:#ddd}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #444;padding:2px 6px}}
svg{{background:#181818;margin:8px 0}}</style></head><body>
<h1>{html.escape(title)}</h1><h2>Heatmap</h2>{body}
<h2>Best {min(len(table), 100)} of {len(table)} parameter sets</h2>{rows}</body></html>"""


def _range(z: np.ndarray) -> tuple[float, float]:
    fin = z[np.isfinite(z)]
    return (float(fin.min()), float(fin.max())) if len(fin) else (0.0, 0.0)


def _color(f: float) -> str:
    """Red (0) through yellow to green (1)."""
    f = min(max(f, 0.0), 1.0)
    r = int(220 * min(1.0, 2 * (1 - f)))
    g = int(200 * min(1.0, 2 * f))
    return f"#{r:02x}{g:02x}40"


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "—"
    return f"{v:.2f}" if abs(v) < 1000 else f"{v:,.0f}"
