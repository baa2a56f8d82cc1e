"""Judge agreement: mean per-item Kendall tau-b between every two cells, and each cell vs human.

Each cell's sign vectors are computed once, as one matrix per number of candidate pairs; a pair of
cells then costs a few array operations, not a Python loop over its items. The figures are those
of :func:`pair_taus` on :func:`sign_vectors` (the tests hold the two to each other).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from dialbgm.analysis._cells import CellData, pairable
from dialbgm.analysis._comparisons import json_float


def sign_vectors(cell: CellData) -> dict[str, np.ndarray]:
    """Per ok item: sign(s_i - s_j) over candidate pairs i<j, candidates ordered by id."""
    out = {}
    for item_id, r in cell.ok_items.items():
        ids = sorted(r["scores"])
        s = np.array([r["scores"][c] for c in ids], dtype=float)
        i, j = np.triu_indices(len(ids), k=1)
        out[item_id] = np.sign(s[i] - s[j])
    return out


def pair_taus(sa: dict[str, np.ndarray], sb: dict[str, np.ndarray]) -> dict[str, float]:
    """Per common item, Kendall tau-b between two cells' scores (0 when undefined, as in metrics)."""
    common = [i for i in sa if i in sb and sa[i].shape == sb[i].shape]
    out: dict[str, float] = {}
    by_len: dict[int, list[str]] = {}
    for i in common:
        by_len.setdefault(sa[i].shape[0], []).append(i)
    for ids in by_len.values():
        xa = np.stack([sa[i] for i in ids])
        xb = np.stack([sb[i] for i in ids])
        out.update(zip(ids, _taus(xa, xb).tolist(), strict=True))
    return out


def _taus(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    # tau-b = (C - D) / sqrt(pairs untied in a × pairs untied in b); pairs tied in both drop out.
    num = (xa * xb).sum(axis=1)
    den = np.sqrt(np.abs(xa).sum(axis=1) * np.abs(xb).sum(axis=1))
    tau: np.ndarray = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return tau


@dataclass(frozen=True)
class Signs:
    """One cell's sign vectors: ``order`` holds its ok items' indices into a list shared by every
    cell of the analysis (in the cell's item order), ``pairs`` each one's number of candidate
    pairs, ``row`` its row in ``rows[pairs]``."""

    order: np.ndarray
    pairs: np.ndarray
    row: np.ndarray
    rows: dict[int, np.ndarray]


def cell_signs(cell: CellData, index: dict[str, int]) -> Signs:
    """:func:`sign_vectors` of a cell as matrices; ``index`` numbers item ids (extended here)."""
    by_pairs: dict[int, list[list[float]]] = {}
    order, pairs, row = [], [], []
    for item_id, r in cell.ok_items.items():
        ids = sorted(r["scores"])
        k = len(ids) * (len(ids) - 1) // 2
        group = by_pairs.setdefault(k, [])
        order.append(index.setdefault(item_id, len(index)))
        pairs.append(k)
        row.append(len(group))
        # No pair (one candidate, or none): no score enters, so every such item has the same width.
        group.append([r["scores"][c] for c in ids] if k else [])
    rows = {}
    for k, scores in by_pairs.items():
        s = np.array(scores, dtype=float)
        i, j = np.triu_indices(s.shape[1], k=1)
        rows[k] = np.sign(s[:, i] - s[:, j])
    return Signs(np.array(order, dtype=np.int64), np.array(pairs, dtype=np.int64), np.array(row, dtype=np.int64), rows)


def mean_tau(sa: Signs, sb: Signs, n_ids: int, allowed: np.ndarray | None) -> tuple[float, int]:
    """Mean per-item tau-b over the items both cells scored (with as many candidate pairs), in the
    order and grouping of :func:`pair_taus`, so the mean is summed in the same order; and their number."""
    where = np.full(n_ids, -1, dtype=np.int64)
    where[sb.order] = np.arange(sb.order.shape[0])
    at_b = where[sa.order]
    keep = at_b >= 0
    if allowed is not None:
        keep &= allowed[sa.order]
    keep[keep] = sa.pairs[keep] == sb.pairs[at_b[keep]]
    if not keep.any():
        return math.nan, 0
    pairs_a, rows_a, rows_b = sa.pairs[keep], sa.row[keep], sb.row[at_b[keep]]
    parts = []
    for k in dict.fromkeys(pairs_a.tolist()):  # first appearance, as pair_taus groups them
        m = pairs_a == k
        parts.append(_taus(sa.rows[k][rows_a[m]], sb.rows[k][rows_b[m]]))
    taus = np.concatenate(parts)
    return float(np.mean(taus)), int(taus.shape[0])


def agreement(cells: list[CellData], *, by_content: bool = False) -> dict[str, Any]:
    names = [c.cell_id for c in cells] + ["human"]
    k = len(cells)
    mean = [[math.nan] * (k + 1) for _ in range(k + 1)]
    count = [[0] * (k + 1) for _ in range(k + 1)]
    index: dict[str, int] = {}
    signs = [cell_signs(c, index) for c in cells]
    for a in range(k):
        mean[a][a] = 1.0
        count[a][a] = len(signs[a].order)
        tau_h = cells[a].metrics.get("kendall_tau_b")
        mean[a][k] = mean[k][a] = math.nan if tau_h is None else float(tau_h)
        count[a][k] = count[k][a] = int(cells[a].metrics["n_items"])
    mean[k][k] = 1.0
    count[k][k] = max((int(c.metrics["n_total"]) for c in cells), default=0)
    for a, b in combinations(range(k), 2):
        allowed = pairable(cells[a], cells[b], by_content=by_content)
        mask = None
        if allowed is not None:
            mask = np.zeros(len(index), dtype=bool)
            mask[[index[i] for i in allowed if i in index]] = True
        mean[a][b], count[a][b] = mean_tau(signs[a], signs[b], len(index), mask)
        mean[b][a], count[b][a] = mean[a][b], count[a][b]
    return {
        "cells": names,
        "mean_kendall_tau_b": [[json_float(x) for x in row] for row in mean],
        "n_items": count,
        "note": "mean per-item Kendall tau-b between two cells' aggregated scores, on the items both scored; "
        "the human row/column is each cell's kendall_tau_b against the human ranks (its own scored items)",
    }
