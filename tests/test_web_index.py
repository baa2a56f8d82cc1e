"""The viewer's per-run index and the item list's queries, against runs made by the real runner.

Every flag is checked against an independent computation from the run's own files (items.jsonl,
units.jsonl) or against the command that already defines it (``dialbgm diff`` for flips).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from dialbgm.analysis import diff_runs
from dialbgm.config._workspace import Workspace
from dialbgm.metrics import Judgement, position_consistency
from dialbgm.run._entry import run_eval
from dialbgm.web._index import open_index
from dialbgm.web._queries import PER_PAGE, ItemQuery, flips, list_items
from tests.support.scripted_server import Reply, ScriptedOpenAIServer


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_data(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` items of four candidates; every 7th dialogue mentions a lighthouse (for search)."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            ranks = [1, 2, 3, 4]
            rng.shuffle(ranks)
            place = "the Lighthouse" if i % 7 == 0 else "the market"
            turns = [{"speaker": "AB"[t % 2], "text": f"Turn {t} of item {i}, near {place}."} for t in range(4)]
            cands = [{"id": f"c{i}-{k}", "caption": f"piece {k}", "rank": r} for k, r in enumerate(ranks)]
            f.write(json.dumps({"id": f"g{i:04d}", "dialogue": turns, "candidates": cands}) + "\n")
    return path


@pytest.fixture
def two_runs(workspace: Workspace, tmp_path: Path) -> tuple[Path, Path, Path]:
    data = write_data(tmp_path / "data.jsonl", 120)
    a = run_eval(workspace, "random", data, out_dir=tmp_path / "a", overrides={"orders": 3}).out_dir
    b = run_eval(workspace, "random", data, out_dir=tmp_path / "b", overrides={"orders": 3, "seed": 5}).out_dir
    return a, b, data


def test_flags_agree_with_the_runs_own_files(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, _, _ = two_runs
    index = open_index(run, tmp_path / "idx")
    assert index is not None
    items = {r["item_id"]: r for r in rows(run / "items.jsonl")}
    units = rows(run / "units.jsonl")
    with index.connect() as con:
        got = {r["item_id"]: dict(r) for r in con.execute("SELECT * FROM items")}
    assert list(got) == list(items)  # every item, in run order
    worst_seen = biased_seen = 0
    for item_id, rec in items.items():
        scores, human = rec["scores"], rec["human_ranks"]
        top = max(scores.values())
        tops = {c for c, s in scores.items() if s == top}
        worst = {c for c, r in human.items() if r == max(human.values())}
        assert got[item_id]["top_is_worst"] == int(tops <= worst)
        worst_seen += tops <= worst
        judgements = [
            Judgement(
                u["item_id"],
                u["order_index"],
                u["sample"],
                tuple(s["candidate"] for s in u["shown"]),
                tuple(s["label"] for s in u["shown"]),
                u["scores"],
            )
            for u in units
            if u["item_id"] == item_id
        ]
        cons = position_consistency(judgements)
        assert cons is not None and got[item_id]["consistency"] == pytest.approx(cons)
        assert got[item_id]["position_biased"] == int(cons < 1)
        biased_seen += cons < 1
        assert got[item_id]["kendall_tau_b"] == pytest.approx(rec["metrics"]["kendall_tau_b"])
        # An item's judgements are read back from units.jsonl by their byte range, whole.
        assert index.units(item_id) == [u for u in units if u["item_id"] == item_id]
        assert index.item_record(index.item_row(item_id)) == rec  # type: ignore[arg-type]
    assert 0 < worst_seen < len(items) and 0 < biased_seen < len(items), "the fixture exercises both flags"
    query = list_items(index, ItemQuery(show="worst"))
    assert query.total == worst_seen and all(r["top_is_worst"] for r in query.rows)


def test_flips_are_the_items_dialbgm_diff_lists(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, b, _ = two_runs
    ia, ib = open_index(a, tmp_path / "idx"), open_index(b, tmp_path / "idx")
    assert ia is not None and ib is not None
    expected = {f["item_id"] for f in diff_runs(a, b, n_flips=200)["flips"]}
    assert expected and flips(ia, ib) == expected
    page = list_items(ia, ItemQuery(show="flipped", other="b"), flips(ia, ib))
    assert page.total == len(expected)


def test_search_sort_and_pages(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, _, _ = two_runs
    index = open_index(run, tmp_path / "idx")
    assert index is not None
    found = list_items(index, ItemQuery(q="LIGHTHOUSE"))  # case does not matter
    assert [r["item_id"] for r in found.rows] == [f"g{i:04d}" for i in range(0, 120, 7)]
    assert list_items(index, ItemQuery(q="item 5,")).total == 1  # a phrase, not a word list
    assert list_items(index, ItemQuery(q="no such words")).total == 0
    by_tau = list_items(index, ItemQuery(sort="kendall_tau_b", desc=True))
    taus = [r["kendall_tau_b"] for r in by_tau.rows]
    assert taus == sorted(taus, reverse=True)
    pages = [list_items(index, ItemQuery(page=p)) for p in (1, 2, 3, 4)]
    assert [len(p.rows) for p in pages[:3]] == [PER_PAGE, PER_PAGE, 120 - 2 * PER_PAGE]
    assert pages[3].page == 3, "a page past the end shows the last one"
    ids = [r["item_id"] for p in pages[:3] for r in p.rows]
    assert ids == [f"g{i:04d}" for i in range(120)]
    # Unknown sort keys and junk page numbers fall back to defaults (never reach the SQL).
    q = ItemQuery.from_params({"sort": "pos; DROP TABLE items", "page": "x", "show": "nope"})
    assert (q.sort, q.page, q.show) == ("pos", 1, "")


def test_failed_items_and_their_statuses(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    def script(body: dict[str, Any], n: int) -> Reply:
        text = json.dumps(body["messages"])
        # Items whose dialogue mentions "you" get a reply that cannot be parsed.
        return Reply("I cannot decide.") if " you" in text else Reply()

    with ScriptedOpenAIServer(script) as server:
        run = run_eval(
            workspace, "openai-compatible", sample_path, out_dir=tmp_path / "f", limit=12,
            overrides={"api_base": server.base_url},
        ).out_dir  # fmt: skip
    items = rows(run / "items.jsonl")
    failed = [r["item_id"] for r in items if r["status"] != "ok"]
    assert 0 < len(failed) < len(items)
    index = open_index(run, tmp_path / "idx")
    assert index is not None
    page = list_items(index, ItemQuery(show="failed"))
    assert [r["item_id"] for r in page.rows] == failed
    assert page.statuses == {"ok": len(items) - len(failed), "parse_error": len(failed)}
    assert list_items(index, ItemQuery(status="parse_error")).total == len(failed)
    assert all(r["top"] == [] and r["hit_at_1"] is None for r in page.rows)


def test_the_index_is_built_once_and_again_when_the_run_changes(
    two_runs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    run, _, data = two_runs
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    index = open_index(run, tmp_path / "idx")
    assert index is not None
    built = index.db_path.stat().st_mtime_ns
    assert open_index(run, tmp_path / "idx") == index and index.db_path.stat().st_mtime_ns == built
    # Nothing is written into the run folder (a read-only results folder is shown as well).
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert [p.name for p in (tmp_path / "idx").iterdir()] == [index.db_path.name]  # no temporary file left
    # An edited items.jsonl (a re-scored run): the index follows it.
    recs = rows(run / "items.jsonl")
    recs[0]["status"] = "parse_error"
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    again = open_index(run, tmp_path / "idx")
    assert again is not None and again.db_path.stat().st_mtime_ns != built
    assert again.item_row("g0000")["status"] == "parse_error"  # type: ignore[index]
    # The data file changed since the run: the dialogues and clips are no longer shown, and why.
    assert again.item_row("g0001")["content"] is not None  # type: ignore[index]
    with data.open("a") as f:
        f.write("\n")
    changed = open_index(run, tmp_path / "idx")
    assert changed is not None
    assert changed.item_row("g0001")["content"] is None  # type: ignore[index]
    assert "changed since the run" in changed.meta()["data_note"]


def test_a_damaged_index_is_built_again(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, _, _ = two_runs
    index = open_index(run, tmp_path / "idx")
    assert index is not None
    index.db_path.write_bytes(b"not a database at all" * 100)
    again = open_index(run, tmp_path / "idx")
    assert again is not None and again.item_row("g0003") is not None


def test_background_build_then_ready(two_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run, _, _ = two_runs
    first = open_index(run, tmp_path / "idx", wait=False)
    assert first is None  # building
    # Waiting joins the build under way (one build, not two) and returns the index.
    index = open_index(run, tmp_path / "idx")
    assert index is not None and open_index(run, tmp_path / "idx", wait=False) == index
    assert not [p for p in os.listdir(tmp_path / "idx") if p.endswith(".tmp")]
