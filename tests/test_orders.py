"""Candidate orders, label shuffling, samples and aggregation, end to end through a real server."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import ConfigError
from dialbgm.judging._plan import build_units, candidate_orders
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer


def test_rotations_put_every_candidate_in_every_position_once(workspace: Workspace, sample_path: Path) -> None:
    item = load_dataset(sample_path).items[0]
    orders = candidate_orders(item, 4, seed=0)
    assert len(set(orders)) == 4
    for pos in range(4):
        assert sorted(o[pos] for o in orders) == [0, 1, 2, 3]
    assert candidate_orders(item, 1, seed=0) == orders[:1]  # the base order comes first
    every = candidate_orders(item, "all", seed=0)
    assert len(every) == 24 and set(every) == set(itertools.permutations(range(4))) and every[0] == orders[0]
    rnd = candidate_orders(item, "random:6", seed=0)
    assert len(set(rnd)) == 6 and rnd[0] == orders[0] and rnd == candidate_orders(item, "random:6", seed=0)
    assert rnd != candidate_orders(item, "random:6", seed=1)
    with pytest.raises(ConfigError, match="rotations give at most 4"):
        candidate_orders(item, 5, seed=0)
    with pytest.raises(ConfigError, match="only 24 distinct"):
        candidate_orders(item, "random:25", seed=0)


def test_bad_order_settings_are_rejected(workspace: Workspace) -> None:
    for over, needle in (
        ({"orders": "some"}, "orders: must be"),
        ({"orders": 0}, "orders: must be"),
        ({"orders": "random:x"}, "orders: must be"),
        ({"samples": 0}, "samples: must be >= 1"),
        ({"aggregation": "median"}, "aggregation: must be one of mean, borda, kemeny"),
        ({"mode": "pointwise", "orders": 4}, "apply to listwise"),
    ):
        with pytest.raises(ConfigError, match=needle):
            load_judge(workspace, "local", over)


def test_shuffled_labels_are_independent_of_position(workspace: Workspace, sample_path: Path) -> None:
    ds = load_dataset(sample_path)
    judge = load_judge(workspace, "local", {"orders": 4, "shuffle_labels": True})
    units = build_units(ds, judge, None)
    first_label_at_pos0 = {u.labels[0] for u in units}
    assert first_label_at_pos0 == {"A", "B", "C", "D"}
    assert all(sorted(u.labels) == ["A", "B", "C", "D"] for u in units)
    plain = build_units(ds, replace(judge, shuffle_labels=False), None)
    assert all(u.labels == ("A", "B", "C", "D") for u in plain)


def test_orders_and_samples_are_distinct_cached_calls(workspace: Workspace, sample_path: Path) -> None:
    prep = prepare(workspace, "local", sample_path, limit=2, overrides={"orders": 4, "samples": 2})
    assert len(list(prep.iter_requests())) == 2 * 4 * 2
    assert len({r.cache_key() for r in list(prep.iter_requests())}) == 16
    # Samples of one order differ only by the sample index and the seed actually sent.
    a, b = prep.request(0), prep.request(1)
    assert a.messages == b.messages and (a.sample, b.sample) == (0, 1)
    assert (a.params["seed"], b.params["seed"]) == (0, 1)
    # Orders differ in their rendered prompt.
    assert len({r.messages_sha256() for r in list(prep.iter_requests())}) == 8


def position_biased(body: dict[str, Any], n: int) -> Reply:
    """A judge that gives the first clip shown 10 and the others 1..3 by caption length."""
    user = body["messages"][-1]["content"]
    lines = [ln for ln in user.splitlines() if ln.startswith("[")]
    scores = {ln[1]: (10 if k == 0 else 1 + len(ln) % 3) for k, ln in enumerate(lines)}
    return Reply(json.dumps({"scores": scores}))


def test_bias_is_diagnosed_and_aggregation_recorded(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    with ScriptedOpenAIServer(position_biased) as server:
        over: dict[str, Any] = {"api_base": server.base_url, "orders": 4, "shuffle_labels": True}
        res = run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r", overrides=over)
        assert len(server.requests) == 48 * 4
    m = res.metrics
    bias = m["bias"]
    assert bias["top1_by_position"]["rates"][0] == 1.0
    assert bias["top1_by_position"]["p_value"] < 1e-10
    assert bias["top1_by_label"]["p_value"] > 0.001  # labels were shuffled: no label bias to find
    assert bias["position_consistency"] == 0.0  # the top choice follows the position
    assert m["aggregation"] == "mean" and m["judgements_per_item"] == 4
    assert m["first_judgement"]["means"]["hit_at_1"] is not None
    items = [json.loads(x) for x in (tmp_path / "r" / "items.jsonl").read_text().splitlines()]
    assert all(len(i["judgements"]) == 4 for i in items)
    # With the bonus cancelled by rotation, the aggregate is no longer the first-shown clip.
    first_shown = 0
    for it in items:
        j0 = it["judgements"][0]["scores"]
        top0 = max(j0, key=j0.get)
        first_shown += max(it["scores"], key=it["scores"].get) == top0
    assert first_shown < 48


def test_kemeny_and_borda_are_selectable(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    results = {}
    with ScriptedOpenAIServer(position_biased) as server:
        for method in ("mean", "borda", "kemeny"):
            over = {"api_base": server.base_url, "orders": 4, "aggregation": method}
            res = run_eval(
                workspace, "openai-compatible", sample_path, out_dir=tmp_path / method, limit=12, overrides=over
            )
            assert res.metrics["aggregation"] == method
            results[method] = res
        assert len(server.requests) == 12 * 4  # the aggregation is not part of any request: all cached
    k_items = [json.loads(x) for x in (tmp_path / "kemeny" / "items.jsonl").read_text().splitlines()]
    # n − position averaged over optimal orders: always sums to 1+2+3+4, each within 1..4.
    assert all(sum(i["scores"].values()) == pytest.approx(10) for i in k_items)
    assert all(1 <= v <= 4 for i in k_items for v in i["scores"].values())


def test_the_report_shows_the_bias_diagnostics(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    from dialbgm.report._write import write_report

    with ScriptedOpenAIServer(position_biased) as server:
        over: dict[str, Any] = {"api_base": server.base_url, "orders": 4, "shuffle_labels": True}
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r", limit=12, overrides=over)
    html_path, md_path = write_report(tmp_path / "r", ws=workspace)
    html = html_path.read_text()
    md = md_path.read_text()
    assert "Position and label bias" in html and "1:1.00 2:0.00 3:0.00 4:0.00" in html
    assert "## Position and label bias" in md and "1:1.00 2:0.00 3:0.00 4:0.00" in md
