"""The move into stage subpackages kept every cache key and output: a cache filled by the flat
layout (commit 63bb219) answers every call of the same judges run by this code.

tests/data/old_layout_cache.json holds what the old code stored and wrote (made by
scripts/make_old_layout_fixture.py; see tests/support/old_layout.py for the judges it runs).
Its entries go into a fresh cache through the cache's own API, so the database is the one this
code writes; the same judges then run against a server that counts requests.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from dialbgm.calls import ResponseCache
from dialbgm.cli import app
from dialbgm_tools.sample_music import PIECES, write_clips
from tests.support import old_layout as ol


@pytest.fixture(scope="module")
def fixture() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ol.FIXTURE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def replayed(fixture: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every scenario run once on a cache holding only the fixture's entries."""
    mp = pytest.MonkeyPatch()
    try:
        with ol.fixed_home() as home:
            mp.setenv("DIALBGM_HOME", str(home))
            for var in ol.UNSET:
                mp.delenv(var, raising=False)
            data = ol.make_home(home, ol.ROOT)
            wanted = set(ol.clip_ids(data))
            write_clips(data / "clips", [p for p in PIECES if p.id in wanted])
            with ResponseCache(home / "cache") as cache:
                for key, value in fixture["entries"].items():
                    cache.store.set(key, value)
            with ol.fixed_server() as server:
                for scenario in ol.SCENARIOS:
                    ol.run(scenario, app, data, home / "cached" / scenario.name)
                requests = list(server.requests)
            outputs = {s.name: ol.outputs(home / "cached" / s.name) for s in ol.SCENARIOS}
            yield {"requests": requests, "outputs": outputs, "clips": ol.clip_hashes(data)}
            shutil.rmtree(home / "cached", ignore_errors=True)
    finally:
        mp.undo()


def test_the_fixture_was_made_on_the_flat_layout(fixture: dict[str, Any]) -> None:
    assert fixture["commit"].startswith(ol.OLD_COMMIT)
    assert fixture["dialbgm"] == "src/dialbgm/__init__.py"
    assert fixture["volatile"] == {k: list(v) for k, v in ol.VOLATILE.items()}
    assert set(fixture["outputs"]) == {s.name for s in ol.SCENARIOS}
    assert len(fixture["entries"]) == fixture["requests"] > 0  # one entry per paid call


def test_the_new_code_computes_the_old_keys(fixture: dict[str, Any], replayed: dict[str, Any]) -> None:
    if replayed["clips"] != fixture["clips"]:
        pytest.fail(f"the clips rendered here differ from the fixture's: {replayed['clips']} != {fixture['clips']}")
    for name, old in fixture["outputs"].items():
        new = replayed["outputs"][name]
        assert _keys(new) == _keys(old), f"{name}: the cache keys changed (old entries would be missed)"


def test_every_call_is_answered_by_the_old_entries(replayed: dict[str, Any]) -> None:
    assert replayed["requests"] == [], f"{len(replayed['requests'])} calls reached the server"
    for name, out in replayed["outputs"].items():
        units = out["units.jsonl"]
        assert units and all(u["cache_hit"] and u["status"] == "ok" for u in units), name
        summaries = [s for s in out.get("summaries.jsonl", []) if s["source"] == "generated"]
        assert all(s["cache_hit"] for s in summaries), name
        assert out["manifest.json"]["counts"]["provider_calls"] == 0, name


@pytest.mark.parametrize("name", [s.name for s in ol.SCENARIOS])
@pytest.mark.parametrize("output", ol.OUTPUTS)
def test_the_outputs_are_the_old_ones(
    fixture: dict[str, Any], replayed: dict[str, Any], name: str, output: str
) -> None:
    old, new = fixture["outputs"][name].get(output), replayed["outputs"][name].get(output)
    if output == "metrics.json" and new is not None and old is not None:
        new, old = _intervals_to_twelve_digits(new), _intervals_to_twelve_digits(old)
    assert new == old, f"{name}/{output} differs from the flat layout's (volatile fields left out: {ol.VOLATILE})"


def _intervals_to_twelve_digits(value: Any, under_ci: bool = False) -> Any:
    """Bootstrap bounds (``ci95``) rounded to 12 significant digits; everything else exact.

    The fixture's bounds were summed by a BLAS product, whose last digit depended on the CPU's
    kernel; since session 5 they are summed by numpy, the same on every CPU, which moved the 16th
    digit of some bounds once (tests/test_blas_threads.py). Twelve digits still catch any real
    change of the resampling.
    """
    if isinstance(value, dict):
        return {k: _intervals_to_twelve_digits(v, under_ci or k == "ci95") for k, v in value.items()}
    if isinstance(value, list):
        return [_intervals_to_twelve_digits(v, under_ci) for v in value]
    if under_ci and isinstance(value, float):
        return float(f"{value:.12g}")
    return value


def test_the_scenarios_cover_the_key_shapes(fixture: dict[str, Any]) -> None:
    """A fixture that lost a shape would prove less than it claims."""
    units = {name: out["units.jsonl"] for name, out in fixture["outputs"].items()}
    variants = [u["variant"] for us in units.values() for u in us]
    assert {v["mode"] for v in variants} == {"listwise", "pointwise"}
    assert any(v["cot"] for v in variants) and any(v["few_shot"] for v in variants)
    assert {v["score_by"] for v in variants} == {"sampled", "logprobs"}
    assert {v["context"] for v in variants} == {"full", "summary"}
    assert max(u["sample"] for us in units.values() for u in us) == 1
    assert max(u["order_index"] for us in units.values() for u in us) == 2
    assert any(s["source"] == "generated" for s in fixture["outputs"]["summary"]["summaries.jsonl"])
    assert fixture["outputs"]["audio"]["manifest.json"]["config"]["judge"]["input"] != "caption"


def _keys(out: dict[str, Any]) -> list[str]:
    summaries = [s["cache_key"] for s in out.get("summaries.jsonl", []) if "cache_key" in s]
    return sorted(ol.unit_keys(out) + summaries)
