"""The quartile test as a static SVG for the markdown report (the dashboard draws the same with plotly).

Plain SVG text, no plotting library: per task two panels over the FRS quartiles q1..q4 — the metric gain over
the base model with its 95% interval, and the amplification of the validated features beside the
density-matched control set's — with Random of the same size as a dashed line.
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd

PANEL_W, PANEL_H, PAD = 300, 180, 40
COLOURS = {"gain": "#1f77b4", "amplification": "#d62728", "control": "#7f7f7f"}


def _scale(lo: float, hi: float, top: float, bottom: float):
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        lo, hi = (lo - 1, hi + 1) if math.isfinite(lo) else (-1.0, 1.0)
    span = hi - lo
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    return lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top), lo, hi


def _panel(x0: float, y0: float, title: str, series: list[tuple[str, list, list, list, float]]) -> list[str]:
    """One panel: ``series`` of (name, values q1..q4, lows, highs, random value) drawn over x = 1..4."""
    vals = [v for _, ys, lo, hi, r in series for v in (*ys, *lo, *hi, r) if v is not None and math.isfinite(v)]
    top, bottom = y0 + 24, y0 + PANEL_H - 24
    y, lo, hi = _scale(min(vals, default=0.0), max(vals, default=1.0), top, bottom)
    x = [x0 + PAD + i * (PANEL_W - 2 * PAD) / 3 for i in range(4)]
    out = [f'<text x="{x0 + PANEL_W / 2}" y="{y0 + 14}" text-anchor="middle" font-size="12">{escape(title)}</text>',
           f'<line x1="{x0 + PAD - 10}" y1="{bottom}" x2="{x0 + PANEL_W - PAD + 10}" y2="{bottom}" stroke="#999"/>',
           f'<text x="{x0 + 4}" y="{top + 4}" font-size="9">{hi:+.3g}</text>',
           f'<text x="{x0 + 4}" y="{bottom}" font-size="9">{lo:+.3g}</text>']
    if lo < 0 < hi:
        out.append(f'<line x1="{x0 + PAD - 10}" y1="{y(0):.1f}" x2="{x0 + PANEL_W - PAD + 10}" y2="{y(0):.1f}" '
                   'stroke="#ccc"/>')
    out += [f'<text x="{xi:.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">q{i + 1}</text>'
            for i, xi in enumerate(x)]
    for k, (name, ys, los, his, rnd) in enumerate(series):
        colour, dx = COLOURS[name], (k - (len(series) - 1) / 2) * 6
        if rnd is not None and math.isfinite(rnd):
            out.append(f'<line x1="{x[0] - 12}" y1="{y(rnd):.1f}" x2="{x[-1] + 12}" y2="{y(rnd):.1f}" '
                       f'stroke="{colour}" stroke-dasharray="4 3" opacity="0.7"/>')
        pts = [(xi + dx, v) for xi, v in zip(x, ys, strict=True) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{y(v):.1f}" for px, v in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}"/>')
        for xi, v, a, b in zip(x, ys, los, his, strict=True):
            if v is None or not math.isfinite(v):
                continue
            if a is not None and math.isfinite(a):
                out.append(f'<line x1="{xi + dx:.1f}" y1="{y(a):.1f}" x2="{xi + dx:.1f}" y2="{y(b):.1f}" '
                           f'stroke="{colour}"/>')
            fill = "white" if name == "control" else colour
            out.append(f'<circle cx="{xi + dx:.1f}" cy="{y(v):.1f}" r="3.5" fill="{fill}" stroke="{colour}"/>')
    return out


def quartile_svg(q: pd.DataFrame) -> str:
    """The quartile plot of :func:`igds.experiment.report.quartile_rows` (one row per task and quartile,
    0 = Random) as an SVG document."""
    tasks = list(dict.fromkeys(q.task[q.quartile > 0]))  # a task without quartile cells has nothing to draw
    height = len(tasks) * PANEL_H + 30
    body = []
    for i, task in enumerate(tasks):
        t = q[q.task == task].set_index("quartile")
        rows = [t.loc[k] if k in t.index else None for k in range(1, 5)]
        rnd = t.loc[0] if 0 in t.index else None

        def col(name, rows=rows):
            return [None if r is None else float(r[name]) for r in rows]

        base = float(t.base_score.iloc[0])
        gain = [None if v is None else v - base for v in col("score")]
        glo = [None if v is None else v - base for v in col("score_lo")]
        ghi = [None if v is None else v - base for v in col("score_hi")]
        metric = t.metric.iloc[0]
        y0 = 24 + i * PANEL_H
        body += _panel(0, y0, f"{task}: {metric} gain over base (95% CI)",
                       [("gain", gain, glo, ghi, None if rnd is None else float(rnd.score) - base)])
        body += _panel(PANEL_W, y0, f"{task}: amplification (F* filled, control hollow)",
                       [("amplification", col("amplification"), [None] * 4, [None] * 4,
                         None if rnd is None else float(rnd.amplification)),
                        ("control", col("control_amplification"), [None] * 4, [None] * 4,
                         None if rnd is None else float(rnd.control_amplification))])
    legend = ('<text x="8" y="14" font-size="10">FRS quartile of the task-only pool (q1 = most resonant); dashed: '
              'Random of the same size</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * PANEL_W}" height="{height}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n{legend}\n'
            + "\n".join(body) + "\n</svg>\n")
