"""What the terminal, HTML and Markdown views share: metric labels, marks and number formats."""

from __future__ import annotations

import html
import math
from typing import Any

LABELS = {
    "hit_at_1": "Hit@1",
    "hit_at_2": "Hit@2",
    "mrr": "MRR",
    "ndcg": "NDCG",
    "kendall_tau_b": "Kendall τ-b",
    "spearman": "Spearman",
}
MD_LABELS = {**LABELS, "kendall_tau_b": "Kendall tau-b"}
SIG = "*"
"""The one meaning of ``*`` in every output (terminal, HTML, Markdown): significant after Holm."""
MC = "†"
"""A p-value from random sign flips (Monte Carlo) rather than their exact enumeration."""


def esc(x: Any) -> str:
    """Text from data (dialogues, captions, judge replies, cell ids) as HTML text, never markup."""
    return html.escape(str(x), quote=True)


def num(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    return f"{x:.{digits}f}"


def pval(p: Any) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def md(x: Any) -> str:
    return str(x).replace("|", "\\|")


def rates(keys: list[str], values: list[float]) -> str:
    return " ".join(f"{k}:{r:.2f}" for k, r in zip(keys, values, strict=True))


def label_map(unit: dict[str, Any]) -> str:
    """How the labels of this reply map to clips in the order it was shown: ``A→clip-3, B→clip-1``."""
    shown = unit.get("shown") or []
    if not shown:
        return "labels: none recorded"
    return "labels: " + ", ".join(f"{s['label']}→{s['candidate']}" for s in shown)


def settings_text(settings: dict[str, Any]) -> str:
    import json

    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, sort_keys=True)}" for k, v in settings.items())


def pairing_notes(comparisons: list[dict[str, Any]]) -> list[str]:
    """One sentence per comparison of cells that read different data files (``--pair-by-content``)."""
    out = []
    for c in comparisons:
        p = c.get("pairing") or {}
        if p.get("by") == "identical item content":
            out.append(
                f"{c['a']} and {c['b']} read different data files: compared on the {p['n_identical']} item(s) whose "
                f"content is identical in both; {p['n_same_id_different_content']} item(s) with the same id but "
                "other content left out."
            )
    return out


def cost_lines(rows: list[dict[str, Any]]) -> list[str]:
    """What the cells paid at each rate kind and what the response cache, the batch discount and
    prompt-prefix caching saved, summed over the priced cells; nothing when all of it is zero
    (offline judges). A sum that a cell cannot price says "unknown"."""
    priced = [r for r in rows if r.get("priced")]
    by_rate: dict[str, list[float]] = {}
    for r in priced:
        for c in r.get("charges") or []:
            t, usd = by_rate.get(c["rate"], [0.0, 0.0])
            by_rate[c["rate"]] = [t + c["tokens"], usd + c["usd"]]
    saved = {}
    for key, what in (
        ("cost_avoided_usd", "response cache"),
        ("saved_batch_usd", "batch discount"),
        ("saved_prefix_cache_usd", "prompt-prefix caching"),
    ):
        values = [r.get(key, 0.0) for r in priced]
        saved[what] = None if any(v is None for v in values) else sum(values)
    if not by_rate and not any(saved.values()):
        return []
    paid = "; ".join(f"{k} {int(t):,} tokens ${usd:.4f}" for k, (t, usd) in sorted(by_rate.items()))
    kept = "; ".join(f"{k} {'unknown' if v is None else f'${v:.4f}'}" for k, v in saved.items())
    return [f"Paid by rate: {paid or 'nothing'}.", f"Saved: {kept}."]
