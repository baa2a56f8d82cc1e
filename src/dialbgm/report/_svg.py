"""The report's inline SVG figures: the agreement heatmap and the metric intervals."""

from __future__ import annotations

import math
from typing import Any

from dialbgm.report._format import LABELS
from dialbgm.report._format import esc as _e
from dialbgm.report._format import num as _num

DOMAIN = {"kendall_tau_b": (-1.0, 1.0), "spearman": (-1.0, 1.0)}


def _color(v: float | None) -> str:
    """Diverging: -1 red, 0 white, +1 blue; grey when undefined."""
    if v is None or math.isnan(v):
        return "#cccccc"
    t = max(-1.0, min(1.0, v))
    lo, hi = (178, 24, 43), (33, 102, 172)
    end = hi if t >= 0 else lo
    a = abs(t)
    r, g, b = (round(255 + (c - 255) * a) for c in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_svg(names: list[str], matrix: list[list[float | None]], counts: list[list[int]]) -> str:
    k = len(names)
    cell = 56 if k <= 10 else 36
    longest = max((len(n) for n in names), default=4)
    left = min(320, 12 + 6.6 * longest)
    top = min(260, 12 + 4.8 * longest)
    w, h = left + cell * k + 10, top + cell * k + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="judge agreement heatmap">'
    ]
    for i, name in enumerate(names):
        y = top + cell * i + cell / 2
        parts.append(
            f'<text x="{left - 6:.0f}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="11">{_e(name)}</text>'
        )
        x = left + cell * i + cell / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top - 6:.0f}" font-size="11" transform="rotate(-40 {x:.1f} {top - 6:.0f})">'
            f"{_e(name)}</text>"
        )
    for i in range(k):
        for j in range(k):
            v = matrix[i][j]
            x, y = left + cell * j, top + cell * i
            dark = v is not None and not math.isnan(v) and abs(v) > 0.6
            parts.append(
                f'<rect class="hm-cell" x="{x:.0f}" y="{y:.0f}" width="{cell}" height="{cell}" fill="{_color(v)}" '
                f'stroke="#fff"><title>{_e(names[i])} vs {_e(names[j])}: {_num(v)} (n={counts[i][j]})</title></rect>'
            )
            parts.append(
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2:.1f}" text-anchor="middle" dominant-baseline="middle" '
                f'font-size="{11 if cell > 40 else 9}" fill="{"#fff" if dark else "#222"}">{_num(v, 2)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def interval_svg(metric: str, rows: list[dict[str, Any]]) -> str:
    lo, hi = DOMAIN.get(metric, (0.0, 1.0))
    longest = max((len(r["cell_id"]) for r in rows), default=4)
    left, right, row_h, top = min(320, 14 + 7.0 * longest), 20, 22, 10
    width = 330 + left
    plot_w = width - left - right
    height = top + row_h * len(rows) + 28

    def sx(v: float) -> float:
        # 6 px of padding each side, so a dot at the domain's edge is drawn whole.
        return left + 6 + (max(lo, min(hi, v)) - lo) / (hi - lo) * (plot_w - 12)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="intervals" width="{width:.0f}" height="{height}" '
        f'viewBox="0 0 {width:.0f} {height}" role="img" aria-label="{_e(LABELS[metric])} with 95% intervals">'
    ]
    base = top + row_h * len(rows)
    for t in (lo, (lo + hi) / 2, hi):
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{base}" stroke="#e3e6ee"/>')
        parts.append(f'<text x="{sx(t):.1f}" y="{base + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
    chance = rows[0].get("chance", {}).get(metric) if rows else None
    if chance is not None:
        parts.append(
            f'<line x1="{sx(chance):.1f}" x2="{sx(chance):.1f}" y1="{top}" y2="{base}" stroke="#999" '
            f'stroke-dasharray="4 3"><title>chance {chance:.3f}</title></line>'
        )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        parts.append(
            f'<text x="{left - 6:.0f}" y="{y:.1f}" text-anchor="end" dominant-baseline="middle" font-size="11">'
            f"{_e(r['cell_id'])}</text>"
        )
        m = r["metrics"][metric]
        if m["mean"] is None:
            continue
        if m["ci_low"] is not None and m["ci_high"] is not None:
            parts.append(
                f'<line x1="{sx(m["ci_low"]):.1f}" x2="{sx(m["ci_high"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#2166ac" stroke-width="2"/>'
            )
        parts.append(
            f'<circle cx="{sx(m["mean"]):.1f}" cy="{y:.1f}" r="4" fill="#2166ac"><title>{_e(r["cell_id"])}: '
            f"{_num(m['mean'])} [{_num(m['ci_low'])}, {_num(m['ci_high'])}]</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
