"""Compare the cells of an experiment (or two runs) from their folders, without any call.

Everything is read from the run folders (manifest.json, metrics.json, items.jsonl, units.jsonl):

- a leaderboard: each metric with its 95% interval, items scored, items lost to parse and to
  transport failures;
- paired comparisons (B minus A) on the items that succeeded in *both* cells, with a paired
  bootstrap interval, a sign-flip permutation p-value, Holm's adjustment over every test of the
  comparison, and the difference the sample could detect;
- judge agreement: mean per-item Kendall tau-b between every two cells (and each cell vs human);
- cost: provider-reported tokens priced with the versioned price table, and what the cache saved.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dialbgm.errors import DialbgmError, ResultsError
from dialbgm.metrics import METRICS, n_groups

ALPHA = 0.05
PARSE_STATUSES = ("parse_error", "truncated", "refused")
COMPARISON_FILE = "comparison.json"
_V = TypeVar("_V")
RUN_FILES = ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json")
"""What a comparison reads from a run folder (a run may hold more files; these are the ones needed)."""


@dataclass
class CellData:
    cell_id: str
    path: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    items: dict[str, dict[str, Any]]
    levels: dict[str, Any] = field(default_factory=dict)
    _units: list[dict[str, Any]] | None = None

    @property
    def ok_items(self) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.items.items() if r["status"] == "ok"}

    @property
    def units(self) -> list[dict[str, Any]]:
        if self._units is None:
            self._units = _read_jsonl(self.path / "units.jsonl")
        return self._units

    @property
    def judge(self) -> str:
        return str(self.manifest["config"]["judge"]["name"])

    @property
    def data_sha256(self) -> str | None:
        value = (self.manifest.get("dataset") or {}).get("sha256")
        return value if isinstance(value, str) else None

    def item_hashes(self) -> dict[str, str]:
        """Each item's content hash: from items.jsonl, or (a run from before they were recorded)
        from its data file, if that file is still the one the run read."""
        rows = self.items.values()
        if all(isinstance(r.get("item_sha256"), str) for r in rows):
            return {k: str(r["item_sha256"]) for k, r in self.items.items()}
        from dialbgm.data import load_dataset
        from dialbgm.errors import DialbgmError
        from dialbgm.run import item_sha256

        path = (self.manifest.get("dataset") or {}).get("path")
        try:
            ds = load_dataset(Path(path)) if path else None
        except DialbgmError:
            ds = None
        if ds is None or ds.sha256 != self.data_sha256:
            raise ResultsError(
                f"{self.path}: cannot compare its items by content: its items.jsonl predates per-item hashes "
                f"and its data file {path} is gone or changed since the run"
            )
        return {i.id: item_sha256(i) for i in ds}


def pairable(a: CellData, b: CellData, *, by_content: bool = False) -> set[str] | None:
    """The item ids on which two runs may be paired: None (every id) when both read the same data
    file; with ``by_content``, the ids whose content is identical in both; otherwise a refusal.

    Pairing by id alone would compare different items as if they were the same whenever the two
    runs read different data files.
    """
    sa, sb = a.data_sha256, b.data_sha256
    if sa is not None and sa == sb:
        return None
    if not by_content:
        what = (
            f"were run on different data files (sha256 {str(sa)[:12]} vs {str(sb)[:12]})"
            if sa and sb
            else "do not both record their data file's sha256"
        )
        raise ResultsError(
            f"{a.path} and {b.path} {what}: an item id need not be the same item in both, so they are not "
            "paired by id. Run both on one data file, or pass --pair-by-content to compare only the items "
            "whose content is identical in both."
        )
    ha, hb = a.item_hashes(), b.item_hashes()
    return {i for i, h in ha.items() if hb.get(i) == h}


def pairing_note(a: CellData, b: CellData, allowed: set[str] | None) -> dict[str, Any]:
    """How two runs were paired, for the output: same data file, or by content with counts."""
    if allowed is None:
        return {"by": "same data file", "data_sha256": a.data_sha256}
    shared = set(a.items) & set(b.items)
    return {
        "by": "identical item content",
        "data_sha256": [a.data_sha256, b.data_sha256],
        "n_identical": len(shared & allowed),
        "n_same_id_different_content": len(shared - allowed),
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_json(path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return obj


def load_run(path: Path, cell_id: str | None = None, levels: dict[str, Any] | None = None) -> CellData:
    missing = [f for f in RUN_FILES if not (path / f).exists()]
    if missing:
        raise ResultsError(f"{path}: not a complete run folder (missing {', '.join(missing)})")
    items = {r["item_id"]: r for r in _read_jsonl(path / "items.jsonl")}
    return CellData(
        cell_id or path.name,
        path,
        _read_json(path / "manifest.json"),
        _read_json(path / "metrics.json"),
        items,
        dict(levels or {}),
    )


def load_folder(path: Path) -> tuple[dict[str, Any] | None, list[CellData]]:
    """An experiment folder (experiment.json + one folder per cell) or a single run folder."""
    from dialbgm.run import SPEC_FILE, read_spec

    if (path / SPEC_FILE).exists():
        spec = read_spec(path)
        cells = []
        for c in spec["cells"]:
            d = path / c["cell_id"]
            if not (d / "metrics.json").exists():
                raise ResultsError(f"{d}: cell {c['cell_id']} has not been run; run `dialbgm compare` first")
            cells.append(load_run(d, c["cell_id"], c["levels"]))
        return spec, cells
    if (path / "manifest.json").exists():
        return None, [load_run(path)]
    raise ResultsError(f"{path}: neither an experiment folder ({SPEC_FILE}) nor a run folder (manifest.json)")


# ---------------------------------------------------------------- leaderboard


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


# ---------------------------------------------------------------- paired comparisons


def compare_pair(
    a: CellData,
    b: CellData,
    *,
    n_flips: int = 10_000,
    n_resamples: int = 2000,
    seed: int = 0,
    by_content: bool = False,
) -> dict[str, Any]:
    """B minus A on the items both scored; p-values unadjusted (see :func:`adjust_family`).

    Items are paired by id only when both runs read the same data file (see :func:`pairable`)."""
    from dialbgm.metrics import paired_compare

    allowed = pairable(a, b, by_content=by_content)
    ok_a, ok_b = only_keys(a.ok_items, allowed), only_keys(b.ok_items, allowed)
    common = [i for i in ok_a if i in ok_b]
    cols_a = [[ok_a[i]["metrics"][m] for i in common] for m in METRICS]
    cols_b = [[ok_b[i]["metrics"][m] for i in common] for m in METRICS]
    groups = _common_groups(a, b, common)
    estimates = (
        paired_compare(cols_a, cols_b, n_flips=n_flips, n_resamples=n_resamples, seed=seed, groups=groups)
        if common
        else []
    )
    out_metrics: dict[str, Any] = {}
    for k, m in enumerate(METRICS):
        if not common:
            out_metrics[m] = {"diff": None, "p_value": None}
            continue
        e = estimates[k]
        out_metrics[m] = {
            "mean_a": _f(float(np.mean(cols_a[k]))),
            "mean_b": _f(float(np.mean(cols_b[k]))),
            "diff": _f(e.mean_diff),
            "ci_low": _f(e.ci_low),
            "ci_high": _f(e.ci_high),
            "sd_diff": _f(e.sd_diff),
            "p_value": _f(e.p_value),
            "exact": e.exact,
            "mdd80": _f(e.mdd80),
        }
    out: dict[str, Any] = {
        "a": a.cell_id,
        "b": b.cell_id,
        "n_common": len(common),
        "n_a_ok": len(ok_a),
        "n_b_ok": len(ok_b),
        # Items one side scored but the other lost (failed or not evaluated): excluded from the test.
        "lost_by_a": sum(1 for i in ok_b if i not in ok_a),
        "lost_by_b": sum(1 for i in ok_a if i not in ok_b),
        "pairing": pairing_note(a, b, allowed),
        "metrics": out_metrics,
    }
    g = n_groups(groups)
    if g is not None:
        # Only for grouped data, so an ungrouped comparison's output is what it always was.
        out["n_groups"] = g
        out["unit"] = "group: whole groups resampled and sign-flipped together"
    return out


def _common_groups(a: CellData, b: CellData, common: list[str]) -> list[str | None]:
    """Each common item's group; both cells must agree on it, or the pairing means nothing."""
    groups: list[str | None] = []
    for i in common:
        ga, gb = a.items[i].get("group"), b.items[i].get("group")
        if ga != gb:
            raise ResultsError(
                f"item {i!r} is in group {ga!r} in {a.cell_id} ({a.path}) but {gb!r} in {b.cell_id} ({b.path}): "
                "the two runs read different data (or one was scored before items could name a group); "
                "compare runs of the same data file"
            )
        groups.append(ga)
    return groups


def only_keys(items: dict[str, _V], allowed: set[str] | None) -> dict[str, _V]:
    return items if allowed is None else {k: r for k, r in items.items() if k in allowed}


def _f(x: float | None) -> float | None:
    """JSON-safe float: NaN (undefined, e.g. an SD of one item) becomes null."""
    return None if x is None or math.isnan(x) else x


def adjust_family(comparisons: list[dict[str, Any]], alpha: float = ALPHA) -> dict[str, Any]:
    """Holm over every (pair, metric) test in ``comparisons``, in place; returns the family's description."""
    from dialbgm.metrics import holm

    refs = [(c, m) for c in comparisons for m in METRICS if c["metrics"][m].get("p_value") is not None]
    adjusted = holm([c["metrics"][m]["p_value"] for c, m in refs])
    for (c, m), p in zip(refs, adjusted, strict=True):
        c["metrics"][m]["p_holm"] = p
        c["metrics"][m]["significant"] = p < alpha
    for c in comparisons:
        c["statement"] = detectability_statement(c)
    return {
        "method": "Holm step-down over every (pair, metric) test of this comparison",
        "n_tests": len(refs),
        "alpha": alpha,
        "test": "two-sided paired sign-flip permutation test on per-item differences (exact when n <= 16, "
        "else Monte Carlo with a fixed seed)",
        "interval": "95% paired percentile bootstrap of the mean per-item difference",
    }


def detectability_statement(c: dict[str, Any]) -> str:
    n = c["n_common"]
    g = c.get("n_groups")
    if g is not None and g < 2:
        return f"only {g} group(s) in common: nothing can be detected."
    if n < 2:
        return f"only {n} item(s) in common: nothing can be detected."
    parts = []
    for m in ("hit_at_1", "kendall_tau_b"):
        mdd = c["metrics"][m].get("mdd80")
        if mdd is not None:
            parts.append(f"{m} ≈ {mdd:.3f}")
    what = "; ".join(parts) if parts else "not estimable (no variation in the differences)"
    if g is not None:
        return (
            f"With {n} common items in {g} groups, differences smaller than about {what} would likely be missed "
            "(80% power, two-sided alpha 0.05; approximation 2.8 × the cluster-robust SE of the mean difference, "
            "before Holm's adjustment)."
        )
    return (
        f"With {n} common items, differences smaller than about {what} would likely be missed "
        "(80% power, two-sided alpha 0.05; approximation 2.8 × SD(diff) / √n, before Holm's adjustment)."
    )


# ---------------------------------------------------------------- agreement


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
        # tau-b = (C - D) / sqrt(pairs untied in a × pairs untied in b); pairs tied in both drop out.
        num = (xa * xb).sum(axis=1)
        den = np.sqrt(np.abs(xa).sum(axis=1) * np.abs(xb).sum(axis=1))
        tau = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        out.update(zip(ids, tau.tolist(), strict=True))
    return out


def agreement(cells: list[CellData], *, by_content: bool = False) -> dict[str, Any]:
    names = [c.cell_id for c in cells] + ["human"]
    k = len(cells)
    mean = [[math.nan] * (k + 1) for _ in range(k + 1)]
    count = [[0] * (k + 1) for _ in range(k + 1)]
    signs = [sign_vectors(c) for c in cells]
    for a in range(k):
        mean[a][a] = 1.0
        count[a][a] = len(signs[a])
        tau_h = cells[a].metrics.get("kendall_tau_b")
        mean[a][k] = mean[k][a] = math.nan if tau_h is None else float(tau_h)
        count[a][k] = count[k][a] = int(cells[a].metrics["n_items"])
    mean[k][k] = 1.0
    count[k][k] = max((int(c.metrics["n_total"]) for c in cells), default=0)
    for a, b in combinations(range(k), 2):
        allowed = pairable(cells[a], cells[b], by_content=by_content)
        taus = pair_taus(only_keys(signs[a], allowed), only_keys(signs[b], allowed))
        mean[a][b] = mean[b][a] = float(np.mean(list(taus.values()))) if taus else math.nan
        count[a][b] = count[b][a] = len(taus)
    return {
        "cells": names,
        "mean_kendall_tau_b": [[_f(x) for x in row] for row in mean],
        "n_items": count,
        "note": "mean per-item Kendall tau-b between two cells' aggregated scores, on the items both scored; "
        "the human row/column is each cell's kendall_tau_b against the human ranks (its own scored items)",
    }


# ---------------------------------------------------------------- cost


def cost(cells: list[CellData], prices: Any) -> list[dict[str, Any]]:
    """Tokens as the provider reported them, priced; cache-hit units are what a re-run did not pay."""
    rows = []
    for c in cells:
        cfg = c.manifest["config"]
        price = prices.lookup(cfg["provider"]["kind"], cfg["judge"].get("model", ""))
        tok: Counter[str] = Counter()
        for u in c.units:
            # A unit asked again paid for its earlier replies too (they are kept in its history).
            for reply in [u, *(u.get("attempts_history") or [])]:
                usage = reply.get("usage") or {}
                where = "hit" if reply.get("cache_hit") else "paid"
                tok[f"{where}_in"] += int(usage.get("prompt_tokens") or 0)
                tok[f"{where}_out"] += int(usage.get("completion_tokens") or 0)
        row: dict[str, Any] = {
            "cell_id": c.cell_id,
            "model": cfg["judge"].get("model") or cfg["provider"]["kind"],
            "prompt_tokens": tok["hit_in"] + tok["paid_in"],
            "completion_tokens": tok["hit_out"] + tok["paid_out"],
            "units": len(c.units),
            "cache_hits": sum(1 for u in c.units if u.get("cache_hit")),
            "priced": price is not None,
        }
        if price is None:
            row.update(cost_usd=None, cost_this_run_usd=None, cost_avoided_usd=None)
        else:
            paid = price.cost(tok["paid_in"], tok["paid_out"])
            avoided = price.cost(tok["hit_in"], tok["hit_out"])
            row.update(cost_usd=paid + avoided, cost_this_run_usd=paid, cost_avoided_usd=avoided)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- whole analysis


def analyse(
    path: Path,
    *,
    ws: Any = None,
    n_flips: int = 10_000,
    n_resamples: int = 2000,
    seed: int = 0,
    by_content: bool = False,
) -> dict[str, Any]:
    """The full comparison of an experiment (or one run) folder, as a JSON-ready dict."""
    spec, cells = load_folder(path)
    return analyse_cells(
        path, spec, cells, ws=ws, n_flips=n_flips, n_resamples=n_resamples, seed=seed, by_content=by_content
    )


def analyse_cells(
    path: Path,
    spec: dict[str, Any] | None,
    cells: list[CellData],
    *,
    ws: Any = None,
    n_flips: int = 10_000,
    n_resamples: int = 2000,
    seed: int = 0,
    by_content: bool = False,
) -> dict[str, Any]:
    from dialbgm.config import PriceTable, load_prices

    by_id = {c.cell_id: c for c in cells}
    pairs = [tuple(p) for p in spec["comparisons"]] if spec else []
    comps = [
        compare_pair(by_id[a], by_id[b], n_flips=n_flips, n_resamples=n_resamples, seed=seed, by_content=by_content)
        for a, b in pairs
    ]
    family = adjust_family(comps)
    prices = load_prices(ws) if ws is not None else PriceTable("none", "-", None)
    return {
        "folder": str(path),
        "experiment": spec,
        "leaderboard": leaderboard(cells),
        "comparisons": comps,
        "family": family,
        "agreement": agreement(cells, by_content=by_content),
        "data": data_files(cells),
        "pair_by_content": by_content,
        "bias": bias_table(cells),
        "cost": cost(cells, prices),
        "prices": {"version": prices.version, "date": prices.date, "file": prices.path},
    }


def data_files(cells: list[CellData]) -> list[dict[str, Any]]:
    """Each data file the cells read, and whether it is still the file they read: a report shows
    dialogues and captions from it only while its sha256 is the one recorded."""
    from dialbgm.run import file_sha256

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in cells:
        ds = c.manifest.get("dataset") or {}
        key = (str(ds.get("path")), str(ds.get("sha256")))
        if key in out:
            out[key]["cells"].append(c.cell_id)
            continue
        try:
            now: str | None = file_sha256(Path(key[0]))
        except DialbgmError:
            now = None
        status = "missing" if now is None else ("unchanged" if now == key[1] else "changed")
        out[key] = {"path": key[0], "sha256": key[1], "sha256_now": now, "status": status, "cells": [c.cell_id]}
    return list(out.values())


def data_warning(files: list[dict[str, Any]]) -> str | None:
    """A sentence for the user when a data file is gone or changed since the run, else None."""
    bad = [f for f in files if f["status"] != "unchanged"]
    if not bad:
        return None
    return "; ".join(
        f"the data file {f['path']} "
        + (
            "is gone"
            if f["status"] == "missing"
            else f"changed since the run (sha256 {f['sha256'][:12]} then, {str(f['sha256_now'])[:12]} now)"
        )
        + ": the report's metrics come from the run folder, but its dialogues and captions are not shown"
        for f in bad
    )


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


def write_comparison(path: Path, result: dict[str, Any]) -> Path:
    from dialbgm.storage import write_json, writing

    out = path / COMPARISON_FILE
    with writing(out):
        write_json(out, result)
    return out


# ---------------------------------------------------------------- two runs


def top_choice(scores: dict[str, float]) -> tuple[str, ...]:
    """The candidate(s) with the highest aggregated score (several when tied)."""
    best = max(scores.values())
    return tuple(sorted(c for c, s in scores.items() if s == best))


def diff_runs(
    run_a: Path, run_b: Path, *, n_flips: int = 10_000, seed: int = 0, by_content: bool = False
) -> dict[str, Any]:
    """What changed from run A to run B: flipped top choices, metric movements and their tests.

    The runs must have read the same data file; with ``by_content``, only the items whose content
    is identical in both are compared (see :func:`pairable`)."""
    a, b = load_run(run_a, "A"), load_run(run_b, "B")
    allowed = pairable(a, b, by_content=by_content)
    ok_a, ok_b = only_keys(a.ok_items, allowed), only_keys(b.ok_items, allowed)
    flips = []
    for item_id in ok_a:
        if item_id not in ok_b:
            continue
        ta, tb = top_choice(ok_a[item_id]["scores"]), top_choice(ok_b[item_id]["scores"])
        if ta != tb:
            human = ok_a[item_id].get("human_ranks") or {}
            flips.append(
                {
                    "item_id": item_id,
                    "top_a": list(ta),
                    "top_b": list(tb),
                    "human_best": [c for c, r in human.items() if r == 1],
                    "hit_at_1_a": ok_a[item_id]["metrics"]["hit_at_1"],
                    "hit_at_1_b": ok_b[item_id]["metrics"]["hit_at_1"],
                }
            )
    comp = compare_pair(a, b, n_flips=n_flips, seed=seed, by_content=by_content)
    family = adjust_family([comp])
    return {
        "run_a": str(run_a),
        "run_b": str(run_b),
        "flips": flips,
        "n_flipped": len(flips),
        "comparison": comp,
        "family": family,
    }
