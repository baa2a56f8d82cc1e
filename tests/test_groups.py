"""Today's ungrouped statistics pinned bit for bit, before items may name a group."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dialbgm.compare import compare_pair, load_run
from dialbgm.metrics import bootstrap_means
from dialbgm.runner import run_eval
from dialbgm.stats import paired_compare, sign_flip_test
from dialbgm.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- today's figures, pinned

# Computed by commit 02a49bd (before groups existed) on the inputs below.
PINNED_BOOT: list[tuple[float, float, float]] = [
    (-0.07401101289337467, -0.207917702120775, 0.059254750270288835),
    (0.0042466670709964, -0.1628858848375771, 0.18080175458599218),
]
PINNED_EXACT_P = 0.49755859375
PINNED_MC_P = 0.042195780421957804
PINNED_PAIRED: list[tuple[float, float, float, float, float, float]] = [
    (
        -0.13766292932997376,
        -0.5600628870102646,
        0.30117532212781417,
        1.403573477507269,
        0.5341465853414659,
        0.6217402659876494,
    ),
    (
        0.20635143680881035,
        -0.17654372478230437,
        0.5648382329305255,
        1.2657811222033342,
        0.30956904309569044,
        0.5607024528552126,
    ),
    (
        -0.3014292649018825,
        -0.7124334209755495,
        0.13356601028785559,
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
        "ci_low": -0.11809895833333328,
        "ci_high": 0.12504340277777756,
        "p_value": 0.9579042095790421,
        "mdd80": 0.1798510273160614,
    },
    "ndcg": {
        "diff": -0.03471060046935501,
        "ci_low": -0.08001443130511064,
        "ci_high": 0.009950081985937949,
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
        "ci_high": 0.04583333333333334,
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


def _random_run(ws: Workspace, data: Path, out: Path, seed: int) -> Path:
    run_eval(ws, "random", data, out_dir=out, overrides={"seed": seed})
    return out


def test_ungrouped_comparison_of_two_sample_runs_is_todays(workspace: Workspace, tmp_path: Path) -> None:
    a = _random_run(workspace, workspace.sample_data, tmp_path / "a", 0)
    b = _random_run(workspace, workspace.sample_data, tmp_path / "b", 1)
    c = compare_pair(load_run(a, "A"), load_run(b, "B"))
    got = {m: {f: v[f] for f in ("diff", "ci_low", "ci_high", "p_value", "mdd80")} for m, v in c["metrics"].items()}
    assert got == PINNED_COMPARE
    assert "n_groups" not in c and "unit" not in c
