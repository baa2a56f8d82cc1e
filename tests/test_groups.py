"""Correlated items: a ``group`` per item makes every interval a cluster bootstrap and every paired
test flip signs by group. Coverage and error rates by simulation, the statistics against scipy
and brute force, and today's ungrouped figures pinned bit for bit."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from dialbgm.analysis._cells import load_cell
from dialbgm.analysis._comparisons import compare_pair, detectability_statement
from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import DataError, ResultsError
from dialbgm.metrics._agreement import METRICS, bootstrap_means, group_index
from dialbgm.metrics._paired import MDD_FACTOR, cluster_standard_error, paired_compare, sign_flip_test
from dialbgm.run._entry import run_eval

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- today's figures, pinned

# Computed by commit 02a49bd (before groups existed) on the inputs below.
PINNED_BOOT: list[tuple[float, float, float]] = [
    (-0.07401101289337467, -0.20791770212077504, 0.05925475027028883),
    (0.0042466670709964, -0.1628858848375771, 0.1808017545859922),
]
PINNED_EXACT_P = 0.49755859375
PINNED_MC_P = 0.042195780421957804
PINNED_PAIRED: list[tuple[float, float, float, float, float, float]] = [
    (
        -0.13766292932997376,
        -0.5600628870102649,
        0.30117532212781417,
        1.403573477507269,
        0.5341465853414659,
        0.6217402659876494,
    ),
    (
        0.20635143680881035,
        -0.17654372478230426,
        0.5648382329305256,
        1.2657811222033342,
        0.30956904309569044,
        0.5607024528552126,
    ),
    (
        -0.3014292649018825,
        -0.7124334209755495,
        0.13356601028785556,
        1.4036537319977838,
        0.17968203179682032,
        0.6217758162805831,
    ),
]
PINNED_COMPARE: dict[str, dict[str, float]] = {
    "hit_at_1": {
        "diff": 0.041666666666666664,
        "ci_low": -0.14583333333333334,
        "ci_high": 0.22916666666666666,
        "p_value": 0.827017298270173,
        "mdd80": 0.263234384219399,
    },
    "hit_at_2": {
        "diff": -0.10416666666666667,
        "ci_low": -0.3125,
        "ci_high": 0.10416666666666667,
        "p_value": 0.43975602439756023,
        "mdd80": 0.30351939385064464,
    },
    "mrr": {
        "diff": 0.005208333333333329,
        "ci_low": -0.1180989583333333,
        "ci_high": 0.12504340277777753,
        "p_value": 0.9579042095790421,
        "mdd80": 0.1798510273160614,
    },
    "ndcg": {
        "diff": -0.03471060046935501,
        "ci_low": -0.08001443130511063,
        "ci_high": 0.009950081985937947,
        "p_value": 0.1461853814618538,
        "mdd80": 0.06590126761176254,
    },
    "kendall_tau_b": {
        "diff": -0.1527777777777778,
        "ci_low": -0.3335069444444441,
        "ci_high": 0.02777777777777778,
        "p_value": 0.12688731126887312,
        "mdd80": 0.2651851983757124,
    },
    "spearman": {
        "diff": -0.17499999999999996,
        "ci_low": -0.3999999999999999,
        "ci_high": 0.04583333333333336,
        "p_value": 0.1426857314268573,
        "mdd80": 0.3229071496916792,
    },
}


def _pin_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(2, 137))
    d12 = np.round(rng.normal(0.2, 1, 12), 2)
    d50 = rng.normal(0.2, 1, 50)
    a, b = rng.normal(size=(2, 3, 40))
    return x, d12, d50, a, b


def test_ungrouped_statistics_are_todays_bit_for_bit() -> None:
    x, d12, d50, a, b = _pin_inputs()
    assert [(e.mean, e.ci_low, e.ci_high) for e in bootstrap_means(x.tolist(), seed=3)] == PINNED_BOOT
    assert sign_flip_test(d12)[0].p_value == PINNED_EXACT_P
    assert sign_flip_test(d50, seed=5)[0].p_value == PINNED_MC_P
    paired = paired_compare(a.tolist(), b.tolist(), seed=1)
    assert [(e.mean_diff, e.ci_low, e.ci_high, e.sd_diff, e.p_value, e.mdd80) for e in paired] == PINNED_PAIRED


def test_items_that_name_no_group_are_ungrouped_bit_for_bit() -> None:
    x, d12, d50, a, b = _pin_inputs()
    boot = bootstrap_means(x.tolist(), seed=3, groups=[None] * 137)
    assert [(e.mean, e.ci_low, e.ci_high) for e in boot] == PINNED_BOOT
    assert sign_flip_test(d12, groups=[None] * 12)[0].p_value == PINNED_EXACT_P
    assert sign_flip_test(d50, seed=5, groups=[None] * 50)[0].p_value == PINNED_MC_P
    paired = paired_compare(a.tolist(), b.tolist(), seed=1, groups=[None] * 40)
    assert [(e.mean_diff, e.ci_low, e.ci_high, e.sd_diff, e.p_value, e.mdd80) for e in paired] == PINNED_PAIRED
    assert all(e.n_groups is None for e in paired)


def _random_run(ws: Workspace, data: Path, out: Path, seed: int) -> Path:
    run_eval(ws, "random", data, out_dir=out, overrides={"seed": seed})
    return out


def test_ungrouped_comparison_of_two_sample_runs_is_todays(workspace: Workspace, tmp_path: Path) -> None:
    a = _random_run(workspace, workspace.sample_data, tmp_path / "a", 0)
    b = _random_run(workspace, workspace.sample_data, tmp_path / "b", 1)
    c = compare_pair(load_cell(a, "A"), load_cell(b, "B"))
    got = {m: {f: v[f] for f in ("diff", "ci_low", "ci_high", "p_value", "mdd80")} for m, v in c["metrics"].items()}
    assert got == PINNED_COMPARE
    assert "n_groups" not in c and "unit" not in c


# ---------------------------------------------------------------- coverage and error rates by simulation


def _clustered(n_sets: int, n_groups: int, per_group: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """n_sets data sets (rows) of n_groups × per_group items sharing a group effect (ICC 0.5), true mean 0."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.0, 1.0, (n_sets, n_groups))
    values = np.repeat(effect, per_group, axis=1) + rng.normal(0.0, 1.0, (n_sets, n_groups * per_group))
    labels = [f"conv-{g}" for g in range(n_groups) for _ in range(per_group)]
    return values, labels


def test_cluster_bootstrap_has_nominal_coverage_and_the_item_bootstrap_does_not() -> None:
    """400 data sets of 30 groups × 10 items; every data set is one row of one call (rows share
    resamples, as metrics do), so the whole simulation is two vectorised bootstraps."""
    values, labels = _clustered(400, 30, 10, seed=1)
    rows = values.tolist()
    with_groups = bootstrap_means(rows, n_resamples=2000, seed=1, groups=labels)
    without = bootstrap_means(rows, n_resamples=2000, seed=1)
    cover_g = np.mean([e.ci_low <= 0.0 <= e.ci_high for e in with_groups])
    cover_i = np.mean([e.ci_low <= 0.0 <= e.ci_high for e in without])
    assert cover_g >= 0.90, cover_g
    assert cover_i <= 0.80, cover_i
    # The item bootstrap is too narrow by about the design effect's root, sqrt(1 + 9 × 0.5) ≈ 2.3.
    width_g = np.mean([e.ci_high - e.ci_low for e in with_groups])
    width_i = np.mean([e.ci_high - e.ci_low for e in without])
    assert 1.8 < width_g / width_i < 2.8


def test_sign_flips_by_group_keep_the_false_positive_rate() -> None:
    """Paired differences with a shared group effect and no true difference: flipping by group
    rejects about 5%; flipping items (as if they were independent) rejects far more often."""
    diffs, labels = _clustered(400, 30, 10, seed=7)
    by_group = sign_flip_test(diffs, n_flips=2000, seed=3, groups=labels)
    by_item = sign_flip_test(diffs, n_flips=2000, seed=3)
    rate_g = np.mean([r.p_value < 0.05 for r in by_group])
    rate_i = np.mean([r.p_value < 0.05 for r in by_item])
    assert 0.02 <= rate_g <= 0.09, rate_g
    assert rate_i >= 0.30, rate_i
    assert all(r.n_flips == 2000 and not r.exact for r in by_group)


def test_cluster_standard_error_matches_the_spread_of_means_across_data_sets() -> None:
    """The grouped detectable difference rests on this SE: across 400 clustered data sets it must
    match the actual SD of their means, where SD(d) / sqrt(n) is about 2.3 times too small."""
    values, labels = _clustered(400, 30, 10, seed=4)
    clusters = group_index(labels) or []
    actual = float(values.mean(axis=1).std(ddof=1))
    cluster_se = float(np.mean([cluster_standard_error(row, clusters) for row in values]))
    naive_se = float(np.mean(values.std(axis=1, ddof=1) / np.sqrt(values.shape[1])))
    assert cluster_se == pytest.approx(actual, rel=0.12)
    assert naive_se < 0.6 * actual


# ---------------------------------------------------------------- against scipy and brute force


def test_cluster_bootstrap_matches_scipy_on_group_totals() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 8, 25)
    labels = [f"g{g}" for g, s in enumerate(sizes) for _ in range(s)]
    values = np.repeat(rng.normal(0, 1, 25), sizes) + rng.normal(0, 0.5, sizes.sum())
    (ours,) = bootstrap_means([values.tolist()], n_resamples=20_000, seed=2, groups=labels)
    sums = np.array([values[[i for i, lab in enumerate(labels) if lab == f"g{g}"]].sum() for g in range(25)])
    ref = sps.bootstrap(
        (sums, sizes.astype(float)),
        lambda s, c, axis: s.sum(axis=axis) / c.sum(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=20_000,
        method="percentile",
        random_state=9,
    ).confidence_interval
    se = (ref.high - ref.low) / 3.92  # the standard error the intervals imply
    assert ours.mean == pytest.approx(values.mean(), abs=1e-12)
    assert ours.ci_low == pytest.approx(ref.low, abs=0.1 * se)
    assert ours.ci_high == pytest.approx(ref.high, abs=0.1 * se)


def test_singleton_groups_reproduce_the_item_bootstrap_and_test() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.1, 1, (2, 50))
    labels = [f"i{i}" for i in range(50)]
    for a, b in zip(
        bootstrap_means(x.tolist(), seed=4), bootstrap_means(x.tolist(), seed=4, groups=labels), strict=True
    ):
        assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high), abs=1e-12)
    assert sign_flip_test(x, seed=4)[1].p_value == sign_flip_test(x, seed=4, groups=labels)[1].p_value
    row = x[0]
    assert cluster_standard_error(row, group_index(labels) or []) == pytest.approx(row.std(ddof=1) / np.sqrt(50))


def test_exact_sign_flip_by_group_against_brute_force_and_scipy() -> None:
    rng = np.random.default_rng(6)
    sizes = [3, 1, 4, 2, 2, 5, 1, 3, 2, 4]
    labels = [f"g{g}" for g, s in enumerate(sizes) for _ in range(s)]
    d = np.round(rng.normal(0.3, 1.0, sum(sizes)), 1)
    (ours,) = sign_flip_test(d, groups=labels)
    assert ours.exact and ours.n_flips == 2**10
    totals = np.array([d[[i for i, lab in enumerate(labels) if lab == f"g{g}"]].sum() for g in range(10)])
    observed = abs(totals.sum())
    extreme = sum(
        abs(float(np.dot(signs, totals))) >= observed - 1e-9 for signs in itertools.product([1, -1], repeat=10)
    )
    assert ours.p_value == pytest.approx(extreme / 2**10, abs=1e-12)
    ref = sps.permutation_test(
        (totals,), np.sum, permutation_type="samples", alternative="two-sided", n_resamples=np.inf
    ).pvalue
    assert ours.p_value == pytest.approx(ref, abs=1e-12)


def test_an_item_without_a_group_is_its_own_group() -> None:
    assert group_index(["a", None, "a", None, "b"]) == [0, 1, 0, 2, 3]
    assert group_index([None, None]) is None and group_index(None) is None


# ---------------------------------------------------------------- data and runs


def _grouped_sample(tmp_path: Path, per_group: int = 4, *, shift: int = 0) -> Path:
    lines = (ROOT / "data" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    for k, r in enumerate(rows):
        r["group"] = f"conv-{(k + shift) // per_group}"
    path = tmp_path / f"grouped{shift}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_group_field_loads_and_bad_values_are_refused(tmp_path: Path) -> None:
    ds = load_dataset(_grouped_sample(tmp_path))
    assert ds.items[0].group == "conv-0" and ds.items[5].group == "conv-1"
    rows = [json.loads(line) for line in (ROOT / "data" / "sample.jsonl").read_text().splitlines()[:3]]
    rows[1]["group"] = 1.5  # an integer is an id like any other; a float is not
    rows[2]["group"] = " "
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as e:
        load_dataset(bad)
    found = [str(p) for p in e.value.problems]
    assert [f.split(": ")[0] for f in found] == [f"{bad}:2", f"{bad}:3"]
    assert all(": group: must be a non-empty string" in f for f in found)


def test_group_column_in_long_form(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text(
        "id,dialogue,candidate_id,caption,rank,group\n"
        "d1,A: hi,c1,soft piano,1,conv-1\n"
        "d1,A: hi,c2,loud metal,2,conv-1\n"
        "d2,A: yo,c3,x,1,conv-1\n"
        "d2,A: yo,c4,y,2,conv-2\n"
        "d3,A: ok,c5,x,2,\n"
        "d3,A: ok,c6,y,1,\n"
    )
    with pytest.raises(DataError) as e:
        load_dataset(csv)
    assert [str(p) for p in e.value.problems] == [f"{csv}:5: group: differs from the first row of item 'd2' (line 4)"]
    csv.write_text(csv.read_text().replace("c4,y,2,conv-2", "c4,y,2,conv-1"))
    ds = load_dataset(csv)
    assert [i.group for i in ds] == ["conv-1", "conv-1", None]


def test_grouped_run_resamples_groups_and_reports_them(workspace: Workspace, tmp_path: Path) -> None:
    """Fails on the original code: it ignored `group`, so the interval was the item bootstrap's."""
    data = _grouped_sample(tmp_path)
    out = _random_run(workspace, data, tmp_path / "g", 0)
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_groups"] == 12 and "12 groups" in m["notes"]["ci"]
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["group"] for r in items[:5]] == ["conv-0"] * 4 + ["conv-1"]
    labels = [r["group"] for r in items]
    refs = bootstrap_means([[r["metrics"][k] for r in items] for k in METRICS], seed=0, groups=labels)
    for k, ref in zip(METRICS, refs, strict=True):
        assert m["ci95"][k] == [ref.ci_low, ref.ci_high]
    plain = _random_run(workspace, workspace.sample_data, tmp_path / "plain", 0)
    p = json.loads((plain / "metrics.json").read_text())
    assert {k: p[k] for k in METRICS} == {k: m[k] for k in METRICS}  # same means, other intervals
    assert p["ci95"] != m["ci95"] and "n_groups" not in p
    res = CliRunner().invoke(app, ["eval", "-j", "random", "--data", str(data), "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "cluster bootstrap over 12 groups" in res.output


def test_grouped_comparison_flips_by_group(workspace: Workspace, tmp_path: Path) -> None:
    data = _grouped_sample(tmp_path)
    a = load_cell(_random_run(workspace, data, tmp_path / "a", 0), "A")
    b = load_cell(_random_run(workspace, data, tmp_path / "b", 1), "B")
    c = compare_pair(a, b)
    assert c["n_groups"] == 12 and c["n_common"] == 48
    ids = list(a.ok_items)
    labels = [a.items[i]["group"] for i in ids]
    for k in METRICS:
        d = np.array([b.items[i]["metrics"][k] - a.items[i]["metrics"][k] for i in ids])
        totals = np.array([d[[j for j, lab in enumerate(labels) if lab == f"conv-{g}"]].sum() for g in range(12)])
        # 12 groups: exact over 2^12 sign patterns of the group totals.
        extreme = sum(
            abs(float(np.dot(s, totals))) >= abs(totals.sum()) - 1e-9 * max(1.0, np.abs(totals).sum())
            for s in itertools.product([1, -1], repeat=12)
        )
        assert c["metrics"][k]["exact"] is True
        assert c["metrics"][k]["p_value"] == pytest.approx(extreme / 2**12, abs=1e-12), k
    assert "48 common items in 12 groups" in detectability_statement(c)
    labels_idx = group_index(labels) or []
    d = np.array([b.items[i]["metrics"]["hit_at_1"] - a.items[i]["metrics"]["hit_at_1"] for i in ids])
    assert c["metrics"]["hit_at_1"]["mdd80"] == pytest.approx(MDD_FACTOR * cluster_standard_error(d, labels_idx))
    res = CliRunner().invoke(app, ["diff", str(a.path), str(b.path)])
    assert res.exit_code == 0 and "12 groups" in res.output, res.output


def test_runs_that_disagree_on_groups_are_not_compared(workspace: Workspace, tmp_path: Path) -> None:
    a = _random_run(workspace, _grouped_sample(tmp_path), tmp_path / "a", 0)
    b = _random_run(workspace, _grouped_sample(tmp_path, shift=1), tmp_path / "b", 1)
    with pytest.raises(ResultsError, match=r"different data files"):
        compare_pair(load_cell(a, "A"), load_cell(b, "B"))
    res = CliRunner().invoke(app, ["diff", str(a), str(b)])
    assert res.exit_code == 2 and "different data" in res.output and "Traceback" not in res.output
