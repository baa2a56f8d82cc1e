"""Tied human ranks and per-annotator ranks: the data rule, every metric against an independent
computation (brute force over tie-breaking, scipy, scikit-learn, enumeration of judge rankings),
the consensus of annotations, and today's untied figures pinned bit for bit."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import ndcg_score
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import DataError
from dialbgm.metrics._agreement import (
    METRICS,
    chance_levels,
    hit_at_k,
    item_metrics,
    kendall_tau_b,
    ndcg,
    reciprocal_rank,
    spearman,
)
from dialbgm.metrics._ranking import competition_ranks, consensus_ranks, is_competition_ranking
from dialbgm.run._entry import run_eval

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- today's figures, pinned

# metrics.json of `eval --judge random` (seed 0) on data/sample.jsonl, as commit 02a49bd wrote it.
PINNED_MEANS: dict[str, float] = {
    "hit_at_1": 0.3125,
    "hit_at_2": 0.5625,
    "mrr": 0.564236111111111,
    "ndcg": 0.8348461293463982,
    "kendall_tau_b": 0.09722222222222221,
    "spearman": 0.1125,
}
PINNED_CI95: dict[str, list[float]] = {
    "hit_at_1": [0.1875, 0.4375],
    "hit_at_2": [0.4166666666666667, 0.7083333333333334],
    "mrr": [0.4791666666666667, 0.6510416666666666],
    "ndcg": [0.8015971014007629, 0.8678226317108453],
    "kendall_tau_b": [-0.03472222222222224, 0.22916666666666666],
    "spearman": [-0.05833333333333333, 0.2708333333333333],
}
PINNED_CHANCE: dict[str, float] = {
    "ndcg": 0.806913656672054,
    "hit_at_1": 0.25,
    "hit_at_2": 0.5,
    "mrr": 0.520833333333333,
    "kendall_tau_b": 0.0,
    "spearman": 0.0,
}
PINNED_METRICS_SHA = "81cefd9b2d49cf388bda82a5492708b2861060e7a4efdbe901b46d31d1754296"
PINNED_ITEM_METRICS_SHA = "8fec7c64af3e62d7008fa42479787860029680e86b004a4e0434cc21487eafd2"


def _random_run(ws: Workspace, data: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    run_eval(ws, "random", data, out_dir=out, overrides={"seed": seed})
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    return metrics


def test_untied_sample_figures_are_todays_bit_for_bit(workspace: Workspace, tmp_path: Path) -> None:
    """Pinned on the original code: ties and groups must not move a figure of untied, ungrouped data.
    (The bootstrap bounds were re-pinned once when the resample sums left BLAS for numpy, session 5.)"""
    out = tmp_path / "run"
    m = _random_run(workspace, workspace.root / "data" / "sample.jsonl", out)
    assert {k: m[k] for k in METRICS} == PINNED_MEANS
    assert m["ci95"] == PINNED_CI95
    assert m["chance"] == PINNED_CHANCE
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    per_item = json.dumps([r["metrics"] for r in items], sort_keys=True).encode()
    assert hashlib.sha256(per_item).hexdigest() == PINNED_ITEM_METRICS_SHA
    assert not any("group" in r or "human_consensus" in r for r in items)
    # The whole file, byte for byte (the figures above say which part moved if this fails).
    assert hashlib.sha256((out / "metrics.json").read_bytes()).hexdigest() == PINNED_METRICS_SHA


# ---------------------------------------------------------------- the data rule


def _item(i: int, ranks: list[int | None], **over: Any) -> dict[str, Any]:
    cands: list[dict[str, Any]] = []
    for k, r in enumerate(ranks):
        c: dict[str, Any] = {"id": f"c{k}", "caption": f"caption {k}"}
        if r is not None:
            c["rank"] = r
        cands.append(c)
    row: dict[str, Any] = {
        "id": f"d{i}",
        "dialogue": [{"speaker": "A", "text": "Hi."}, {"speaker": "B", "text": "Hello."}],
        "candidates": cands,
    }
    row.update(over)
    return row


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(DataError) as e:
        load_dataset(path)
    return [str(p) for p in e.value.problems]


def test_tied_competition_ranks_load(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path / "t.jsonl", [_item(1, [1, 2, 2, 4]), _item(2, [1, 1, 3]), _item(3, [2, 1])]))
    assert [i.human_ranks for i in ds] == [[1, 2, 2, 4], [1, 1, 3], [2, 1]]
    assert all(i.consensus is None and i.annotations == () for i in ds)


@pytest.mark.parametrize(
    ("ranks", "why"),
    [
        ([1, 2, 2, 3], "not 1,2,2,3"),  # dense ranks
        ([1, 2, 4, 5], "competition ranks"),  # a gap no tie explains
        ([0, 1, 2, 3], "competition ranks"),  # rank 0
        ([1, 2, 3, 5], "competition ranks"),  # beyond N
        ([2, 2, 3, 4], "competition ranks"),  # no rank 1
        ([1, 1, 1, 1], "share rank 1"),  # orders nothing
        ([-1, 1, 2, 3], "competition ranks"),
    ],
)
def test_malformed_ranks_are_refused_naming_file_line_field(tmp_path: Path, ranks: list[int], why: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [_item(1, [1, 2, 3, 4]), _item(2, ranks)])
    found = _problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:2: candidates[*].rank: "), found
    assert why in found[0] and str(ranks) in found[0], found


def test_competition_rank_helpers() -> None:
    assert competition_ranks([0.5, 2.0, 2.0, 3.0]) == [1, 2, 2, 4]
    assert is_competition_ranking([1, 2, 2, 4]) and is_competition_ranking([3, 1, 1])
    assert not is_competition_ranking([1, 2, 2, 3]) and not is_competition_ranking([0, 1])
    # Against scipy's "min" method, which is competition ranking.
    rng = random.Random(4)
    for _ in range(200):
        xs = [rng.randint(0, 3) for _ in range(rng.randint(1, 7))]
        assert competition_ranks(xs) == [int(r) for r in stats.rankdata(xs, method="min")]


# ---------------------------------------------------------------- every metric with tied human ranks


def tied_cases(n: int, seed: int) -> list[tuple[list[float], list[int]]]:
    """Human ranks from ratings on a 3-point scale (plenty of ties, never all tied); judge scores
    on a 4-point scale (ties on that side too)."""
    rng = random.Random(seed)
    cases = []
    while len(cases) < n:
        k = rng.choice([2, 3, 4, 5, 6])
        ratings = [rng.randint(1, 3) for _ in range(k)]
        if len(set(ratings)) == 1:
            continue
        human = competition_ranks([-r for r in ratings])
        scores = [float(rng.randint(1, 4)) for _ in range(k)]
        cases.append((scores, human))
    return cases


def brute_force(scores: list[float], human: list[int]) -> dict[str, float]:
    """Hit@1, Hit@2 and reciprocal rank of the first human-best clip, averaged over every way of
    breaking the judge's ties (each order consistent with the scores is equally likely)."""
    n = len(scores)
    orders = [
        p for p in itertools.permutations(range(n)) if all(scores[p[i]] >= scores[p[i + 1]] for i in range(n - 1))
    ]
    best = {i for i in range(n) if human[i] == 1}
    first = [min(p.index(i) for i in best) + 1 for p in orders]
    return {
        "hit1": sum(q <= 1 for q in first) / len(first),
        "hit2": sum(q <= 2 for q in first) / len(first),
        "rr": sum(1 / q for q in first) / len(first),
    }


@pytest.mark.parametrize(("scores", "human"), tied_cases(250, seed=11))
def test_topk_with_tied_human_ranks_match_brute_force(scores: list[float], human: list[int]) -> None:
    ref = brute_force(scores, human)
    assert hit_at_k(scores, human, 1) == pytest.approx(ref["hit1"], abs=1e-12)
    assert hit_at_k(scores, human, 2) == pytest.approx(ref["hit2"], abs=1e-12)
    assert reciprocal_rank(scores, human) == pytest.approx(ref["rr"], abs=1e-12)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize(("scores", "human"), tied_cases(250, seed=12))
def test_correlations_and_ndcg_with_tied_human_ranks_match_scipy_and_sklearn(
    scores: list[float], human: list[int]
) -> None:
    goodness = [-h for h in human]
    ref_tau = stats.kendalltau(scores, goodness, variant="b").statistic
    ref_rho = stats.spearmanr(scores, goodness).statistic
    if np.isnan(ref_tau):  # only the judge side can be constant: the data refuses all-tied human ranks
        assert len(set(scores)) == 1
        assert kendall_tau_b(scores, goodness) == 0.0 and spearman(scores, goodness) == 0.0
    else:
        assert kendall_tau_b(scores, goodness) == pytest.approx(ref_tau, abs=1e-12)
        assert spearman(scores, goodness) == pytest.approx(ref_rho, abs=1e-12)
    gains = [len(human) - h for h in human]  # N − rank, the competition rank as written
    assert ndcg(scores, human) == pytest.approx(ndcg_score([gains], [scores], ignore_ties=False), abs=1e-12)


def test_worked_example_two_best_clips() -> None:
    # c0 and c1 share the best human rank; the judge puts c1 first: a hit, whichever best clip it is.
    human = [1, 1, 3, 4]
    m = item_metrics([5.0, 9.0, 7.0, 1.0], human)
    assert m["hit_at_1"] == 1.0 and m["mrr"] == 1.0
    # The judge puts c2 first, then c0: miss at 1, hit at 2, first best clip at position 2.
    m = item_metrics([8.0, 1.0, 9.0, 3.0], human)
    assert (m["hit_at_1"], m["hit_at_2"], m["mrr"]) == (0.0, 1.0, 0.5)
    # All tied: chance, |best| / n = 2/4, and 1 - C(2,2)/C(4,2) = 5/6 at 2.
    m = item_metrics([3.0] * 4, human)
    assert m["hit_at_1"] == 0.5 and m["hit_at_2"] == pytest.approx(5 / 6)
    # Gains 3, 3, 1, 0: the judge's order c0 c1 c2 c3 is ideal.
    assert item_metrics([4.0, 3.0, 2.0, 1.0], human)["ndcg"] == 1.0


@pytest.mark.parametrize(
    "human", [[1, 2, 2, 4], [1, 1, 3, 4], [1, 1, 1, 4], [2, 1, 2], [1, 1, 3, 3, 5], [1, 2, 2, 2, 5, 6], [1, 1]]
)
def test_chance_levels_under_ties_equal_the_mean_over_every_judge_ranking(human: list[int]) -> None:
    n = len(human)
    perms = list(itertools.permutations(range(n)))
    per = [item_metrics([float(-p.index(i)) for i in range(n)], human) for p in perms]
    ch = chance_levels([human])
    for m in METRICS:
        assert ch[m] == pytest.approx(sum(r[m] for r in per) / len(per), abs=1e-12), m
    assert ch["hit_at_1"] == pytest.approx(human.count(1) / n)


def test_chance_levels_of_untied_items_are_todays() -> None:
    # The old signature (sizes) and rank lists give the same figures, bit for bit.
    assert chance_levels([4, 4, 3, 5]) == chance_levels([[2, 1, 4, 3], [1, 2, 3, 4], [3, 1, 2], [5, 4, 3, 2, 1]])
    assert chance_levels([4])["hit_at_1"] == 0.25


# ---------------------------------------------------------------- per-annotator ranks


def _annotations(*rankings: list[int]) -> list[dict[str, Any]]:
    return [{"annotator": f"a{j}", "ranks": {f"c{k}": r for k, r in enumerate(rs)}} for j, rs in enumerate(rankings)]


def brute_kemeny(rankings: list[list[int]]) -> list[int]:
    """Every order's pairwise disagreements (a tie costs half), optimal orders' positions averaged,
    then competition ranks of those averages."""
    n = len(rankings[0])
    costs = {}
    for order in itertools.permutations(range(n)):
        cost = 0.0
        for x in range(n):
            for y in range(x + 1, n):
                a, b = order[x], order[y]
                cost += sum(1.0 if r[b] < r[a] else 0.5 if r[b] == r[a] else 0.0 for r in rankings)
        costs[order] = cost
    best = min(costs.values())
    optimal = [o for o, c in costs.items() if c == best]
    avg = [sum(o.index(i) for o in optimal) / len(optimal) for i in range(n)]
    return [1 + sum(1 for t in avg if t < a) for a in avg]


def test_mean_rank_consensus_and_kemeny_option(tmp_path: Path) -> None:
    rankings = [[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4]]
    rows = [
        _item(1, [None] * 4, annotations=_annotations(*rankings)),
        _item(2, [None] * 4, annotations=_annotations(*rankings), consensus="kemeny"),
        _item(3, [None] * 4, annotations=_annotations([1, 2, 3, 4], [2, 1, 3, 4])),  # mean ties c0 and c1
    ]
    ds = load_dataset(_write(tmp_path / "a.jsonl", rows))
    # Mean ranks 1.33, 2, 2.67, 4.
    assert ds.items[0].human_ranks == [1, 2, 3, 4] and ds.items[0].consensus == "mean"
    assert ds.items[1].human_ranks == brute_kemeny(rankings) and ds.items[1].consensus == "kemeny"
    assert ds.items[2].human_ranks == [1, 1, 3, 4]
    # The annotations themselves are kept (the agreement figures read them), aligned with candidates.
    assert [(a.annotator, a.ranks) for a in ds.items[0].annotations] == [
        ("a0", (1, 2, 3, 4)),
        ("a1", (2, 1, 3, 4)),
        ("a2", (1, 3, 2, 4)),
    ]


def test_kemeny_consensus_against_brute_force() -> None:
    rng = random.Random(8)
    for _ in range(60):
        k = rng.randint(2, 5)
        rankings = [competition_ranks([rng.randint(1, 3) for _ in range(k)]) for _ in range(rng.randint(1, 4))]
        assert consensus_ranks(rankings, "kemeny") == brute_kemeny(rankings), rankings
        means = [sum(r[i] for r in rankings) / len(rankings) for i in range(k)]
        assert consensus_ranks(rankings, "mean") == competition_ranks(means)


def test_rank_wins_over_annotations(tmp_path: Path) -> None:
    row = _item(1, [2, 1, 3], annotations=_annotations([1, 2, 3], [1, 3, 2]))
    (item,) = load_dataset(_write(tmp_path / "r.jsonl", [row])).items
    assert item.human_ranks == [2, 1, 3] and item.consensus is None and len(item.annotations) == 2


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            _item(1, [None] * 3, annotations=[{"annotator": "x", "ranks": {"c0": 1, "c1": 2, "zz": 3}}]),
            ["annotations[0].ranks: unknown candidate id(s) ['zz']", "annotations[0].ranks: ranks every candidate"],
        ),
        (
            _item(1, [None] * 3, annotations=[{"annotator": "x", "ranks": {"c0": 1, "c1": 2, "c2": 2.5}}]),
            ["annotations[0].ranks.c2: must be an integer rank"],
        ),
        (
            _item(1, [None] * 3, annotations=[{"annotator": "x", "ranks": {"c0": 1, "c1": 1, "c2": 2}}]),
            ["annotations[0].ranks: ranks must be competition ranks"],
        ),
        (
            _item(1, [None] * 3, annotations=_annotations([1, 2, 3], [3, 2, 1])),
            ["annotations: the mean consensus ties"],
        ),
        (
            _item(1, [None] * 3, annotations=[*_annotations([1, 2, 3]), {"annotator": "a0", "ranks": {}}]),
            ["annotations[1].annotator: duplicate annotator 'a0'"],
        ),
        (_item(1, [None] * 3, annotations=[]), ["annotations: must be a non-empty list"]),
        (_item(1, [None] * 3), ["candidates[0].rank: required"]),
        (_item(1, [1, None, 2], annotations=_annotations([1, 2, 3])), ["candidates[*].rank: give every candidate"]),
        (_item(1, [1, 2, 3], annotations=_annotations([1, 2, 3]), consensus="mean"), ["consensus: applies only"]),
        (_item(1, [None] * 3, annotations=_annotations([1, 2, 3]), consensus="median"), ["consensus: must be one of"]),
        (
            _item(1, [None] * 9, annotations=_annotations(list(range(1, 10))), consensus="kemeny"),
            ["consensus: kemeny enumerates every order: at most 8 candidates"],
        ),
    ],
)
def test_bad_annotations_are_refused_naming_file_line_field(
    tmp_path: Path, row: dict[str, Any], expected: list[str]
) -> None:
    path = _write(tmp_path / "bad.jsonl", [_item(0, [1, 2]), row])
    found = _problems(path)
    for text in expected:
        assert any(f.startswith(f"{path}:2: {text}") for f in found), (text, found)
    assert not any(f.startswith(f"{path}:1:") for f in found)


# ---------------------------------------------------------------- a run on tied and annotated data


def _sample_rows(n: int) -> list[dict[str, Any]]:
    lines = (ROOT / "data" / "sample.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def test_eval_on_tied_and_annotated_data_states_its_rules(workspace: Workspace, tmp_path: Path) -> None:
    rows = _sample_rows(12)
    tied = [[1, 2, 2, 4], [1, 1, 3, 4], [2, 1, 2, 4]]
    for r, ranks in zip(rows[:3], tied, strict=True):
        for c, rank in zip(r["candidates"], ranks, strict=True):
            c["rank"] = rank
    # Two items ranked only by their annotators: one by mean rank, one by Kemeny.
    for r, rule in ((rows[3], None), (rows[4], "kemeny")):
        ids = [c["id"] for c in r["candidates"]]
        r["annotations"] = [
            {"annotator": "ann1", "ranks": dict(zip(ids, [1, 2, 3, 4], strict=True))},
            {"annotator": "ann2", "ranks": dict(zip(ids, [2, 1, 3, 4], strict=True))},
        ]
        for c in r["candidates"]:
            del c["rank"]
        if rule:
            r["consensus"] = rule
    path = _write(tmp_path / "tied.jsonl", rows)
    out = tmp_path / "run"
    m = _random_run(workspace, path, out)
    ds = load_dataset(path)
    # Chance: the exact expectation per item, by enumeration of every judge ranking.
    per_item_chance = []
    for item in ds:
        h = item.human_ranks
        perms = list(itertools.permutations(range(len(h))))
        per_item_chance.append(
            sum(item_metrics([float(-p.index(i)) for i in range(len(h))], h)["hit_at_1"] for p in perms) / len(perms)
        )
    assert m["chance"]["hit_at_1"] == pytest.approx(sum(per_item_chance) / len(ds), abs=1e-12)
    assert m["chance"]["hit_at_1"] > 0.25  # items with two best clips raise it
    assert m["n_items_human_ties"] == 5  # the three tied, and both consensus items tie c0 and c1
    assert "human_ties" in m["notes"] and "human_consensus" in m["notes"]
    assert m["human_ranks"] == {"from_rank": 10, "from_annotations": {"kemeny": 1, "mean": 1}}
    items = {r["item_id"]: r for r in map(json.loads, (out / "items.jsonl").read_text().splitlines())}
    assert items[rows[3]["id"]]["human_consensus"] == "mean"
    assert items[rows[4]["id"]]["human_consensus"] == "kemeny"
    assert sorted(items[rows[3]["id"]]["human_ranks"].values()) == [1, 1, 3, 4]
    # Per-item figures are the metric functions on the stored scores and the consensus ranks.
    for item in ds:
        r = items[item.id]
        assert r["metrics"] == item_metrics([r["scores"][c.id] for c in item.candidates], item.human_ranks)


def test_validate_reports_a_dense_rank_with_exit_2(workspace: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path / "dense.jsonl", [_item(1, [1, 2, 2, 3])])
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2
    assert f"{path}:1: candidates[*].rank: ranks must be competition ranks" in res.output
    assert "Traceback" not in res.output
