"""Per-cell tables read from each cell's metrics.json: the leaderboard and the bias diagnostics."""

from __future__ import annotations

from typing import Any

from dialbgm.analysis._cells import CellData
from dialbgm.metrics import METRICS

PARSE_STATUSES = ("parse_error", "truncated", "refused")


def leaderboard(cells: list[CellData]) -> list[dict[str, Any]]:
    rows = []
    for c in cells:
        m = c.metrics
        fb: dict[str, int] = m.get("failed_by_status", {})
        ub: dict[str, int] = m.get("units_by_status", {})
        rows.append(
            {
                "cell_id": c.cell_id,
                "judge": c.judge,
                "levels": c.levels,
                "n_items": m["n_items"],
                "n_failed": m["n_failed"],
                "n_total": m["n_total"],
                "items_failed_parse": sum(fb.get(s, 0) for s in PARSE_STATUSES),
                "items_failed_transport": fb.get("transport_error", 0),
                "units_parse_failures": sum(ub.get(s, 0) for s in PARSE_STATUSES),
                "units_transport_failures": ub.get("transport_error", 0),
                "failed_by_status": fb,
                "units_by_status": ub,
                "metrics": {
                    k: {
                        "mean": m.get(k),
                        "ci_low": (m["ci95"].get(k) or [None, None])[0],
                        "ci_high": (m["ci95"].get(k) or [None, None])[1],
                    }
                    for k in METRICS
                },
                "chance": m.get("chance", {}),
                **({"n_groups": m["n_groups"]} if "n_groups" in m else {}),
            }
        )
    return rows


def bias_table(cells: list[CellData]) -> list[dict[str, Any]]:
    """Per list-judge cell: top-1 rates by position and label with their chi-square p-values,
    consistency across orders, flips across samples, ties, and the gain from aggregation."""
    rows = []
    for c in cells:
        b = c.metrics.get("bias") or {}
        if "top1_by_position" not in b:
            continue
        first = (c.metrics.get("first_judgement") or {}).get("means") or {}
        rows.append(
            {
                "cell_id": c.cell_id,
                "judgements_per_item": c.metrics.get("judgements_per_item"),
                "position_keys": b["top1_by_position"]["keys"],
                "position_rates": b["top1_by_position"]["rates"],
                "position_p": b["top1_by_position"]["p_value"],
                "label_keys": b["top1_by_label"]["keys"],
                "label_rates": b["top1_by_label"]["rates"],
                "label_p": b["top1_by_label"]["p_value"],
                "position_consistency": b.get("position_consistency"),
                "flip_rate": b.get("flip_rate"),
                "tie_rate": b.get("tie_rate"),
                "hit_at_1_first_judgement": first.get("hit_at_1"),
                "hit_at_1_aggregated": c.metrics.get("hit_at_1"),
            }
        )
    return rows
