"""The comparison's faster paths give what the plain ones give: agreement from per-cell sign
matrices vs :func:`pair_taus` on :func:`sign_vectors`; the cost's partial decode of unit lines vs
decoding them whole; shared sign patterns and bootstrap counts vs drawing them afresh."""

from __future__ import annotations

import json
import math
import random
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dialbgm.analysis._agreement import agreement, pair_taus, sign_vectors
from dialbgm.analysis._cells import CellData, load_cell, only_keys, read_jsonl
from dialbgm.analysis._cost import _light_unit, unit_rows, unit_tokens
from dialbgm.metrics._agreement import bootstrap_means, resample_counts
from dialbgm.metrics._paired import paired_compare, sign_flip_test, sign_patterns


def _cell(name: str, rng: random.Random, n: int, sha: str = "d" * 64) -> CellData:
    """A cell whose items have 1 to 5 candidates, tied scores often, and some failed items."""
    items: dict[str, dict[str, Any]] = {}
    for k in range(n):
        m = rng.choice([1, 3, 4, 4, 4, 5])
        ids = [f"c{j}" for j in rng.sample(range(8), m)]
        status = "ok" if rng.random() > 0.1 else "parse_error"
        scores = {c: float(rng.randint(1, 4)) for c in ids}
        items[f"i{rng.randint(0, 3 * n):04d}"] = {"item_id": k, "status": status, "scores": scores}
    manifest = {"dataset": {"sha256": sha}}
    return CellData(name, Path(name), manifest, {"kendall_tau_b": 0.1, "n_items": n, "n_total": n}, items)


def _plain_mean(a: CellData, b: CellData, allowed: set[str] | None) -> tuple[float, int]:
    """The agreement figure as it was computed before: dicts of sign vectors, one pair at a time."""
    taus = pair_taus(only_keys(sign_vectors(a), allowed), only_keys(sign_vectors(b), allowed))
    return (float(np.mean(list(taus.values()))) if taus else math.nan), len(taus)


@pytest.mark.parametrize("seed", range(6))
def test_agreement_from_sign_matrices_equals_pair_taus_bit_for_bit(seed: int) -> None:
    rng = random.Random(seed)
    cells = [_cell(f"c{k}", rng, rng.randint(0, 60)) for k in range(4)]
    ag = agreement(cells)
    for a, b in combinations(range(len(cells)), 2):
        mean, n = _plain_mean(cells[a], cells[b], None)
        assert ag["n_items"][a][b] == ag["n_items"][b][a] == n
        got = ag["mean_kendall_tau_b"][a][b]
        assert (got is None and math.isnan(mean)) or got == mean  # ==, not approx: same sums, same order


def test_agreement_by_content_pairs_only_the_allowed_items(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(9)
    a, b = _cell("a", rng, 50, sha="a" * 64), _cell("b", rng, 50, sha="b" * 64)
    shared = sorted(set(a.items) & set(b.items))
    allowed = set(shared[::2])
    # Content hashes: identical for the allowed ids only.
    monkeypatch.setattr(
        CellData, "item_hashes", lambda self: {i: (i if i in allowed else self.cell_id) for i in self.items}
    )
    ag = agreement([a, b], by_content=True)
    mean, n = _plain_mean(a, b, allowed)
    assert 0 < n < len(shared)
    assert ag["n_items"][0][1] == n and ag["mean_kendall_tau_b"][0][1] == mean


UNITS = [
    {"item_id": "x", "usage": {"prompt_tokens": 10, "completion_tokens": 3}, "cache_hit": False},
    {"item_id": "x", "usage": {"prompt_tokens": 7, "completion_tokens": 2}, "cache_hit": True},
    {"item_id": "x", "usage": None, "cache_hit": None},
    # A reply whose text mentions the keys: they are escaped inside its string, never a key.
    {"item_id": "y", "raw": '{"usage": {"prompt_tokens": 999}, "cache_hit": true}', "usage": {}, "cache_hit": False},
    {"item_id": "y", "raw": "ends in a backslash \\", "usage": {"prompt_tokens": 5}, "cache_hit": True},
    # Earlier replies kept: decoded whole, their tokens count too.
    {
        "item_id": "z",
        "usage": {"prompt_tokens": 4, "completion_tokens": 1},
        "cache_hit": False,
        "attempts_history": [{"usage": {"prompt_tokens": 40, "completion_tokens": 11}, "cache_hit": False}],
    },
    # Nested usage elsewhere (the key twice): decoded whole.
    {"item_id": "z", "extra": {"usage": {"prompt_tokens": 1000}}, "usage": {"prompt_tokens": 1}, "cache_hit": False},
    {"item_id": "z"},  # neither key
    # A key that ends in the needle: its quote is escaped, so it is not taken for the unit's usage.
    {"item_id": "w", 'odd"usage': {"prompt_tokens": 500}, "cache_hit": False},
]


def test_the_cost_reads_the_same_tokens_from_a_partial_decode(tmp_path: Path) -> None:
    path = tmp_path / "units.jsonl"
    lines = [json.dumps(u) for u in UNITS] + [json.dumps(UNITS[0], separators=(",", ":"))]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    light = [_light_unit(line) is not None for line in lines]
    assert light == [True] * 5 + [False] * 5
    assert unit_tokens(unit_rows(path)) == unit_tokens(read_jsonl(path))
    tok, n, hits = unit_tokens(unit_rows(path))
    assert (n, hits) == (10, 2)
    assert tok["paid_in"] == 10 + 4 + 40 + 1 + 10 and tok["hit_in"] == 7 + 5 and tok["paid_out"] == 3 + 1 + 11 + 3


def test_a_cell_whose_units_were_read_is_costed_from_them(tmp_path: Path) -> None:
    from dialbgm.analysis._cost import cost
    from dialbgm.config import PriceTable

    run = tmp_path / "run"
    run.mkdir()
    (run / "units.jsonl").write_text("".join(json.dumps(u) + "\n" for u in UNITS), encoding="utf-8")
    for name, text in (
        ("manifest.json", '{"config": {"judge": {"name": "j"}, "provider": {"kind": "k"}}}'),
        ("metrics.json", "{}"),
        ("items.jsonl", ""),
    ):
        (run / name).write_text(text, encoding="utf-8")
    cell = load_cell(run)
    before = cost([cell], PriceTable("none", "-", None))
    assert cell.units_read is None  # the cost did not keep (or need) whole units
    assert len(cell.units) == len(UNITS) and cell.units_read is not None
    assert cost([cell], PriceTable("none", "-", None)) == before


def test_shared_sign_patterns_and_counts_give_what_fresh_draws_give() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random((6, 300)), rng.random((6, 300))
    sign_patterns.cache_clear()
    resample_counts.cache_clear()
    fresh = paired_compare(a.tolist(), b.tolist(), n_flips=3000, seed=2)
    warm = paired_compare(a.tolist(), b.tolist(), n_flips=3000, seed=2)
    assert fresh == warm
    assert sign_patterns.cache_info().hits >= 1 and resample_counts.cache_info().hits >= 1
    # One row of the same differences flips the same (shared) patterns as the six did.
    assert sign_flip_test((b - a)[:1], n_flips=3000, seed=2)[0].p_value == fresh[0].p_value
    assert bootstrap_means((b - a).tolist(), seed=2)[0].ci_low == fresh[0].ci_low
    # Shared, so nobody may write into them.
    block = sign_patterns(300, 3000, 2, False)[0]
    with pytest.raises(ValueError):
        block[0, 0] = 0.0
    with pytest.raises(ValueError):
        resample_counts(300, 2000, 2)[0][1][0, 0] = 5
