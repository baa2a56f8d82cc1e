"""Streaming statistics and on-disk plan records give exactly what the whole-list code gave.

The references below are the whole-list implementations the run used before they streamed
(kept here, verbatim in substance, as the definition the streaming code must reproduce bit for
bit). Random inputs carry ties, NaN-free scores of several scales, shuffled labels, mixed
candidate counts and uneven orders × samples.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.judging._plan import Unit, build_units, candidate_orders, labels_for_order, load_pool, presentation_order
from dialbgm.judging._table import DigestTable
from dialbgm.metrics._aggregate import ScoreAggregator, aggregate_scores
from dialbgm.metrics._bias import (
    BiasTally,
    Judgement,
    chi2_sf,
    flip_rate,
    position_consistency,
    tie_rate,
    top1_by_label,
    top1_by_position,
)
from dialbgm.metrics._exact import ExactSum
from dialbgm.run._prepare import prepare
from dialbgm.run._scoring import UnitTally, bias_diagnostics

# --- the whole-list references -------------------------------------------------------------


def _ref_top1(scores: Mapping[str, float]) -> dict[str, float]:
    top = max(scores.values())
    winners = [c for c, s in scores.items() if s == top]
    return {c: 1.0 / len(winners) for c in winners}


def _ref_same_top(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    pa, pb = _ref_top1(a), _ref_top1(b)
    return math.fsum(p * pb.get(c, 0.0) for c, p in pa.items())


def _ref_test(keys: list[str], counts: list[float], n: int) -> dict[str, Any]:
    expected = sum(counts) / len(counts)
    chi2 = sum((c - expected) ** 2 / expected for c in counts) if expected > 0 else 0.0
    return {
        "keys": keys,
        "rates": [c / n for c in counts],
        "counts": counts,
        "n": n,
        "chi2": chi2,
        "p_value": chi2_sf(chi2, len(counts) - 1),
    }


def _ref_top1_by(
    js: Sequence[Judgement], keys_of: Callable[[Judgement], Sequence[str]], keys: list[str]
) -> dict[str, Any]:
    index = {k: i for i, k in enumerate(keys)}
    counts = [0.0] * len(keys)
    for j in js:
        p = _ref_top1(j.scores)
        for key, cid in zip(keys_of(j), j.shown, strict=True):
            counts[index[key]] += p.get(cid, 0.0)
    return _ref_test(keys, counts, len(js))


def _ref_pairs(groups: Any, value: Callable[[Judgement, Judgement], float]) -> float | None:
    values = [value(a, b) for group in groups for a, b in itertools.combinations(group, 2)]
    return math.fsum(values) / len(values) if values else None


def _ref_consistency(js: Sequence[Judgement]) -> float | None:
    by_item: dict[str, list[Judgement]] = defaultdict(list)
    for j in sorted(js, key=lambda j: (j.item_id, j.order_index, j.sample)):
        if j.sample == 0:
            by_item[j.item_id].append(j)
    return _ref_pairs(by_item.values(), lambda a, b: _ref_same_top(a.scores, b.scores))


def _ref_flips(js: Sequence[Judgement]) -> float | None:
    by_order: dict[tuple[str, int], list[Judgement]] = defaultdict(list)
    for j in sorted(js, key=lambda j: (j.item_id, j.order_index, j.sample)):
        by_order[(j.item_id, j.order_index)].append(j)
    return _ref_pairs(by_order.values(), lambda a, b: 1.0 - _ref_same_top(a.scores, b.scores))


def _ref_bias(js: list[Judgement]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_judgements": len(js)}
    if not js:
        return out
    out["tie_rate"] = sum(1 for j in js if len(set(j.scores.values())) < len(j.scores)) / len(js)
    out["position_consistency"] = _ref_consistency(js)
    out["flip_rate"] = _ref_flips(js)
    n, _ = Counter(len(j.shown) for j in js).most_common(1)[0]
    same = [j for j in js if len(j.shown) == n]
    positions = [str(i + 1) for i in range(n)]
    labels = sorted(set(same[0].labels))
    for name, test in (
        ("top1_by_position", _ref_top1_by(same, lambda _j: positions, positions)),
        ("top1_by_label", _ref_top1_by(same, lambda j: j.labels, labels)),
    ):
        out[name] = {**test, "note": f"judgements with {n} candidates ({len(same)} of {len(js)})"}
    return out


def _ref_aggregate(js: Sequence[Mapping[str, float]], method: str) -> dict[str, float]:
    ids = sorted(js[0])
    if method == "mean":
        return {c: math.fsum(j[c] for j in js) / len(js) for c in ids}
    if method == "borda":

        def points(s: Mapping[str, float], c: str) -> float:
            return sum(1 for t in s.values() if t < s[c]) + 0.5 * (sum(1 for t in s.values() if t == s[c]) - 1)

        return {c: math.fsum(points(j, c) for j in js) / len(js) for c in ids}
    n = len(ids)
    if n <= 1:
        return {c: 1.0 for c in ids}
    costs = {}
    for perm in itertools.permutations(range(n)):
        cost = 0
        for a, b in itertools.combinations(perm, 2):
            for j in js:
                cost += 2 * (j[ids[b]] > j[ids[a]]) + (j[ids[b]] == j[ids[a]])
        costs[perm] = cost
    best = min(costs.values())
    optimal = [p for p, c in costs.items() if c == best]
    points_ = np.zeros(n)
    for perm in optimal:
        for pos, k in enumerate(perm):
            points_[k] += n - pos
    return {c: float(points_[k] / len(optimal)) for k, c in enumerate(ids)}


# --- random inputs ------------------------------------------------------------------------


def _random_items(rng: random.Random, n_items: int) -> list[list[Judgement]]:
    """Each item's judgements in plan order: orders × samples, some items with other sizes."""
    items = []
    for i in range(n_items):
        n = rng.choice([4, 4, 4, 3, 5, 2])
        ids = [f"c{i}-{k}" for k in range(n)]
        labels = [chr(ord("A") + k) for k in range(n)]
        scale = rng.choice([3, 10, 1000])  # small scales tie often
        js = []
        for order in range(rng.randint(1, 4)):
            shown = tuple(rng.sample(ids, n))
            shown_labels = tuple(rng.sample(labels, n)) if rng.random() < 0.5 else tuple(labels)
            for sample in range(rng.randint(1, 5)):
                scores = {c: rng.randint(1, scale) / (7 if scale == 1000 else 1) for c in ids}
                js.append(Judgement(f"item{i:03d}", order, sample, shown, shown_labels, scores))
        items.append(js)
    return items


@pytest.mark.parametrize("seed", range(12))
def test_bias_tally_equals_the_whole_list_diagnostics(seed: int) -> None:
    rng = random.Random(seed)
    items = _random_items(rng, rng.randint(1, 40))
    everything = [j for js in items for j in js]
    tally = UnitTally()
    for js in items:
        for j in js:
            shown = [{"label": lab, "candidate": c} for lab, c in zip(j.labels, j.shown, strict=True)]
            tally.add(
                {
                    "status": "ok",
                    "item_id": j.item_id,
                    "order_index": j.order_index,
                    "sample": j.sample,
                    "shown": shown,
                    "scores": dict(j.scores),
                    "usage": {},
                }
            )
    expected = _ref_bias(everything)
    assert bias_diagnostics(tally.bias) == expected  # exact: every float bit for bit
    # The list functions are the same tally fed a list.
    same = [j for j in everything if len(j.shown) == tally.bias.common_size()]
    assert top1_by_position(same).counts == expected["top1_by_position"]["counts"]
    assert top1_by_label(same).p_value == expected["top1_by_label"]["p_value"]
    shuffled = rng.sample(everything, len(everything))  # pair statistics do not depend on order
    assert position_consistency(shuffled) == expected["position_consistency"]
    assert flip_rate(shuffled) == expected["flip_rate"]
    assert tie_rate(shuffled) == expected["tie_rate"]


def test_bias_tally_refuses_what_the_list_functions_refuse() -> None:
    j = Judgement("a", 0, 0, ("x", "y"), ("A", "B"), {"x": 1.0, "y": 2.0})
    tally = BiasTally()
    with pytest.raises(ValueError, match="duplicate judgement"):
        tally.add_item([j, j])
    tally = BiasTally()
    tally.add_item([j])
    tally.add_item([replace(j, item_id="b")])
    with pytest.raises(ValueError, match="added together"):
        tally.add_item([replace(j, order_index=1)])  # item a again, after b
    with pytest.raises(ValueError, match="NaN"):
        BiasTally().add_item([replace(j, scores={"x": math.nan, "y": 1.0})])
    bad = BiasTally()
    bad.add_item([j, replace(j, sample=1, labels=("A", "A"))])
    assert bad.top1_by_position(2).n == 2
    with pytest.raises(ValueError, match="are not one each of"):
        bad.top1_by_label(2)
    with pytest.raises(ValueError, match="no judgements"):
        BiasTally().common_size()


@pytest.mark.parametrize("method", ["mean", "borda", "kemeny"])
def test_score_aggregator_equals_the_whole_list_aggregation(method: str) -> None:
    rng = random.Random(method)
    for _ in range(60):
        n = rng.randint(1, 5)
        ids = [f"c{k}" for k in range(n)]
        scale = rng.choice([2, 5, 1000])
        js = [{c: rng.randint(0, scale) / 3 for c in ids} for _ in range(rng.randint(1, 12))]
        agg = ScoreAggregator(method)
        for j in js:
            agg.add(j)
        assert agg.result() == _ref_aggregate(js, method) == aggregate_scores(js, method)


def test_score_aggregator_errors_name_the_first_bad_judgement_as_before() -> None:
    agg = ScoreAggregator("borda")
    for j in ({"a": 1.0, "b": 2.0}, {"a": math.nan, "b": 1.0}, {"a": 1.0, "c": 1.0}):
        agg.add(j)
    with pytest.raises(ValueError, match=r"judgement 2 scores candidates \['a', 'c'\]"):
        agg.result()
    agg = ScoreAggregator("mean")
    agg.add({"a": 1.0})
    agg.add({"a": math.nan})
    with pytest.raises(ValueError, match="judgement 1 gives candidate 'a' a NaN score"):
        agg.result()
    with pytest.raises(ValueError, match="no judgements"):
        ScoreAggregator("kemeny").result()
    with pytest.raises(ValueError, match="unknown aggregation"):
        ScoreAggregator("median")


def test_exact_sum_is_fsum_of_everything_added() -> None:
    rng = random.Random(3)
    for _ in range(200):
        values = [
            rng.choice([1.0, 1e-16, 1e16, 0.1, -0.3]) * rng.random() * 10 ** rng.randint(-20, 20)
            for _ in range(rng.randint(0, 300))
        ]
        total = ExactSum()
        for v in values:
            total.add(v)
        assert total.value() == math.fsum(values)
        assert total.mean() == (math.fsum(values) / len(values) if values else None)
    odd = ExactSum()
    for v in (1.0, math.inf, 2.0):
        odd.add(v)
    assert odd.value() == math.inf


# --- the plan's records ----------------------------------------------------------------------


def test_digest_table_is_a_list_of_digests_on_disk(tmp_path: Path) -> None:
    rng = random.Random(0)
    values = [f"{rng.getrandbits(256):064x}" for _ in range(3000)]  # past the write buffer
    values[7] = "not a digest"
    values[2500] = "ü" * 64
    table = DigestTable(values, directory=tmp_path)
    assert len(table) == 3000 and table == values and list(table) == values and values == table
    assert table[-1] == values[-1] and table[10:13] == values[10:13]
    for i in (0, 7, 1500, 2999):
        table[i] = values[i] = f"{i:064x}"
    table[5] = values[5] = "short"
    assert table == values and [table[i] for i in (0, 5, 7, 1500, 2999)] == [values[i] for i in (0, 5, 7, 1500, 2999)]
    assert table != values[:-1]
    with pytest.raises(IndexError):
        table[3000]
    assert list(tmp_path.iterdir()) == []  # anonymous: nothing is left in the folder
    table.close()


def _ref_units(dataset: Any, judge: Any, pool: Any) -> list[Unit]:
    units: list[Unit] = []
    for item in dataset:
        shots = pool.draw(judge, item) if pool is not None else ()
        if judge.mode == "pointwise":
            order = presentation_order(item, judge.order_seed)
            for sample in range(judge.samples):
                for pos, ci in enumerate(order):
                    one = (item.candidates[ci],)
                    units.append(Unit(f"{item.id}#s{sample}p{pos}", item, one, (ci,), shots, sample, 0, ("A",)))
            continue
        for oi, order in enumerate(candidate_orders(item, judge.orders, judge.order_seed)):
            shown = tuple(item.candidates[i] for i in order)
            labels = labels_for_order(item, len(shown), oi, judge)
            for sample in range(judge.samples):
                units.append(Unit(f"{item.id}#o{oi}s{sample}", item, shown, order, shots, sample, oi, labels))
    return units


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"orders": 4, "samples": 3, "shuffle_labels": True},
        {"orders": "random:5", "samples": 2},
        {"mode": "pointwise", "samples": 2},
        {"few_shot": 2, "orders": 2},
    ],
)
def test_unit_plan_makes_the_units_a_list_held(workspace: Workspace, sample_path: Path, over: dict[str, Any]) -> None:
    ds = load_dataset(sample_path).limited(12)
    judge = load_judge(workspace, "local", over)
    pool = load_pool(workspace.resolve(judge.few_shot_pool), ds) if judge.few_shot else None
    plan = build_units(ds, judge, pool)
    expected = _ref_units(ds, judge, pool)
    assert plan == expected and list(plan) == expected and len(plan) == len(expected)
    rng = random.Random(1)
    for i in rng.sample(range(len(expected)), min(50, len(expected))):  # random access too
        assert plan[i] == expected[i] and plan[i - len(expected)] == expected[i]
    assert plan[3:9] == expected[3:9]
    for i in rng.sample(range(len(expected)), min(50, len(expected))):
        assert plan.index_of(expected[i].unit_id) == i
    assert plan.index_of("nope#o0s0") is None and plan.index_of(f"{ds.items[0].id}#o99s0") is None
    assert plan.index_of("no hash") is None
    with pytest.raises(IndexError):
        plan[len(expected)]


def test_a_plan_holds_no_object_per_unit(workspace: Workspace, tmp_path: Path) -> None:
    """Planning four times the units costs < 100 bytes a unit more (what remains is per item:
    the item itself, its hash and its layout, ~2.4 KB, ~60 bytes a unit at 40 units an item).
    The lists this replaced held ~420 bytes a unit (a Unit, its id, two hex digests)."""

    def held(n_items: int) -> tuple[int, int]:
        path = tmp_path / f"d{n_items}.jsonl"
        with path.open("w") as f:
            for i in range(n_items):
                cands = [{"id": f"i{i}c{k}", "rank": k + 1, "caption": f"clip {k}"} for k in range(4)]
                row = {"id": f"i{i}", "dialogue": [{"speaker": "A", "text": f"hello {i}"}], "candidates": cands}
                f.write(json.dumps(row) + "\n")
        tracemalloc.start()
        try:
            prep = prepare(workspace, "random", path, overrides={"orders": 4, "samples": 10})
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        return len(prep.units), size

    small, big = held(25), held(100)
    assert (small[0], big[0]) == (1000, 4000)
    per_unit = (big[1] - small[1]) / (big[0] - small[0])
    assert per_unit < 100, f"{per_unit:.0f} bytes a unit"


def test_the_response_cache_keeps_no_growing_sqlite_cache(tmp_path: Path) -> None:
    """SQLite's page cache and memory map, at diskcache's defaults (32 MB, 64 MB), grew a run's
    memory by ~2.3 KB per cache entry written; the store caps the first at 1 MB, maps nothing."""
    from dialbgm.storage._diskstore import Place, _WritableStore

    store = _WritableStore(Place("cache", tmp_path / "c", "delete it"))
    try:
        for i in range(50):
            store.set(f"{i:064x}", json.dumps({"text": "x" * 900}))
        con = store._cache._con
        assert con.execute("PRAGMA cache_size").fetchone()[0] == 256  # pages: 1 MB at 4 KB
        assert con.execute("PRAGMA mmap_size").fetchone()[0] == 0
    finally:
        store.close()
