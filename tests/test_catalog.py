"""The results catalog and which run folders the viewer can read: real folders, from this version
and from the commits that introduced each earlier layout (tests/data/old_results)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dialbgm.analysis import GENERATIONS, analyse, catalog, item_across_cells, load_run, read_run_folder
from dialbgm.config import Workspace
from dialbgm.run import resume_run
from tests.support.experiments import in_a_thread, make_experiment, make_run

OLD = Path(__file__).resolve().parent / "data" / "old_results"


def test_every_older_layout_is_read_and_named_by_its_generation(tmp_path: Path) -> None:
    shutil.copytree(OLD, tmp_path / "results")
    entries = {e.rel: e for e in catalog(tmp_path / "results")}
    assert set(entries) == {"run-a9e3ba3", "run-9ef60f5", "run-7f3f0bb", "run-4b270d5", "experiments/old-demo"}
    names = [g.name for g in GENERATIONS]
    for commit, gen in zip(("a9e3ba3", "9ef60f5", "7f3f0bb", "4b270d5"), names, strict=True):
        e = entries[f"run-{commit}"]
        assert e.readable and e.generation is not None and e.generation.endswith(f"({gen})"), (commit, e)
        metrics = json.loads((OLD / f"run-{commit}" / "metrics.json").read_text())
        assert (e.judge, e.n_items, e.n_failed) == ("random", 3, 0)
        assert e.headline["hit_at_1"]["mean"] == metrics["hit_at_1"]
        # What an older folder lacks is said, not hidden.
        assert any("order 0" in n for n in e.notes) == (commit == "a9e3ba3")
        assert any("content hashes" in n for n in e.notes) == (commit != "4b270d5")
        assert load_run(OLD / f"run-{commit}").items["item_id"].tolist() == ["s001", "s002", "s003"]
    exp = entries["experiments/old-demo"]
    assert exp.kind == "experiment" and exp.readable and [c.name for c in exp.cells] == ["rnd__seed=0", "rnd__seed=1"]
    assert all(c.generation and c.generation.endswith("(plan and journal)") for c in exp.cells)
    # The experiment page's figures come from the same analysis as today's experiments.
    result = analyse(tmp_path / "results" / "experiments" / "old-demo", n_flips=200)
    assert [r["cell_id"] for r in result["leaderboard"]] == ["rnd__seed=0", "rnd__seed=1"]


def test_catalog_lists_runs_and_experiments_newest_first(workspace: Workspace) -> None:
    results = workspace.results_dir
    first = make_run(workspace, results / "first", limit=4)
    exp = make_experiment(workspace, limit=6)
    last = make_run(workspace, results / "last", limit=3)
    entries = catalog(results)
    assert [e.rel for e in entries] == ["last", "experiments/seeds", "first"]
    run = entries[0]
    metrics = json.loads((last / "metrics.json").read_text())
    manifest = json.loads((last / "manifest.json").read_text())
    assert (run.kind, run.judge, run.n_items, run.n_scored, run.n_failed) == ("run", "random", 3, 3, 0)
    assert run.date == manifest["finished"] and run.data == manifest["dataset"]["path"]
    assert run.headline["kendall_tau_b"] == {
        "mean": metrics["kendall_tau_b"],
        "ci_low": metrics["ci95"]["kendall_tau_b"][0],
        "ci_high": metrics["ci95"]["kendall_tau_b"][1],
    }
    assert run.generation is not None and run.generation.endswith("(run identity)") and run.notes == ()
    e = entries[1]
    assert e.kind == "experiment" and e.readable and e.name == "seeds" and e.n_items == 6
    assert [c.name for c in e.cells] == ["rnd__seed=0", "rnd__seed=1", "rnd__seed=2", "short"]
    assert [c.rel for c in e.cells] == [f"experiments/seeds/{c.name}" for c in e.cells]
    best = max(e.cells, key=lambda c: c.headline["hit_at_1"]["mean"] or 0)
    assert e.best_cell == best.name and e.headline == best.headline
    assert e.cells[1].levels == {"seed": 1}
    assert first.exists() and exp.exists()


def _finished(ws: Workspace) -> Path:
    return make_run(ws, ws.results_dir / "r", limit=3)


def test_damaged_or_missing_manifest_is_named(workspace: Workspace) -> None:
    run = _finished(workspace)
    (run / "manifest.json").write_text('{"run_id": "r", "config": ')
    f = read_run_folder(run)
    assert f.state == "damaged" and f.reason == "manifest.json:1: not valid JSON (Expecting value)"
    assert not f.readable and f.manifest is None
    (run / "manifest.json").write_text(json.dumps({"config": {}, "dataset": {}}))
    assert read_run_folder(run).reason == "manifest.json: no config.judge.name"
    (run / "manifest.json").unlink()
    (run / "plan.json").unlink()
    f = read_run_folder(run)
    assert f.state == "damaged" and f.reason is not None and f.reason.startswith("no manifest.json (and no plan.json")
    [e] = catalog(workspace.results_dir)
    assert (e.rel, e.state, e.reason) == ("r", "damaged", f.reason)


def test_a_file_cut_short_or_missing_is_named(workspace: Workspace) -> None:
    run = _finished(workspace)
    data = (run / "units.jsonl").read_bytes()
    (run / "units.jsonl").write_bytes(data[:-40])
    f = read_run_folder(run)
    assert f.state == "damaged" and f.reason is not None and "units.jsonl: its last line is cut" in f.reason
    (run / "units.jsonl").write_bytes(data)
    assert read_run_folder(run).readable
    (run / "items.jsonl").unlink()
    f = read_run_folder(run)
    assert (
        f.state == "incomplete"
        and f.reason is not None
        and f.reason.startswith("manifest.json is there but items.jsonl is not")
    )


def test_a_future_format_is_refused_plainly(workspace: Workspace) -> None:
    run = _finished(workspace)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["results_format"] = 2
    manifest["versions"]["dialbgm"] = "9.0.0"
    (run / "manifest.json").write_text(json.dumps(manifest))
    f = read_run_folder(run)
    assert f.state == "future" and f.hint == "upgrade dialbgm to read it"
    assert f.reason is not None and "newer dialbgm (9.0.0) in results format 2" in f.reason
    # The same version number without a new format: read, with a note.
    manifest["results_format"] = 1
    (run / "manifest.json").write_text(json.dumps(manifest))
    f = read_run_folder(run)
    assert f.readable and any("written by dialbgm 9.0.0, newer than this one" in n for n in f.notes)


def test_an_interrupted_run_says_how_to_resume_and_the_hint_works(workspace: Workspace) -> None:
    run = _finished(workspace)
    journal = (run / "journal.jsonl").read_text().splitlines(keepends=True)
    assert len(journal) == 3
    # What `kill -9` after the second call leaves: the plan and a journal, no final file.
    for name in ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json"):
        (run / name).unlink()
    (run / "journal.jsonl").write_text("".join(journal[:2]) + journal[2][:10])  # a torn last line
    f = read_run_folder(run)
    assert (f.state, f.reason) == ("interrupted", "interrupted before it finished: 2 of 3 calls are in its journal")
    assert f.hint == f"finish it with: dialbgm eval --resume {run}"
    in_a_thread(resume_run, workspace, run)
    assert read_run_folder(run).readable


_HOLD_LOCK = """
import sys
from pathlib import Path
from dialbgm.run._folders import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_run_being_written_names_its_writer(workspace: Workspace, tmp_path: Path) -> None:
    run = _finished(workspace)
    (run / "manifest.json").unlink()
    # A real second process holds the run's lock, as `dialbgm eval` does while it writes.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        f = read_run_folder(run)
        assert f.state == "writing" and f.reason == f"a dialbgm process (pid {holder.pid}) is writing this run now"
    finally:
        holder.communicate("")
    assert read_run_folder(run).state == "interrupted"


def test_an_experiment_with_unfinished_cells_says_which_and_how(workspace: Workspace) -> None:
    exp = make_experiment(workspace, limit=4, orders=1)
    shutil.rmtree(exp / "rnd__seed=2")
    shutil.rmtree(exp / "short")
    for name in ("manifest.json", "items.jsonl", "units.jsonl", "metrics.json"):
        (exp / "rnd__seed=1" / name).unlink()
    [e] = catalog(workspace.results_dir)
    states = {c.name: c.state for c in e.cells}
    assert states == {"rnd__seed=0": "ok", "rnd__seed=1": "interrupted", "rnd__seed=2": "not_run", "short": "not_run"}
    assert not e.readable and e.reason is not None and e.reason.startswith("3 of 4 cells cannot be read: rnd__seed=1:")
    toml = workspace.root / "experiments" / "seeds.toml"
    assert e.hint == f"finish it with: dialbgm compare {toml}"
    assert all(c.hint == e.hint for c in e.cells if not c.readable)


@pytest.mark.parametrize("text", ["[1, 2]", "{not json"])
def test_a_damaged_experiment_spec_is_named(workspace: Workspace, text: str) -> None:
    d = workspace.results_dir / "experiments" / "x"
    d.mkdir(parents=True)
    (d / "experiment.json").write_text(text)
    [e] = catalog(workspace.results_dir)
    assert e.kind == "experiment" and e.state == "damaged" and e.reason is not None
    assert e.reason.startswith("experiment.json: cannot be read")


def test_an_item_across_cells_pairs_by_id_and_says_which_cell_lacks_it(workspace: Workspace) -> None:
    exp = make_experiment(workspace, limit=5, orders=2, short=3)
    a = item_across_cells(exp, "s002")
    assert [c.cell_id for c in a.cells] == ["rnd__seed=0", "rnd__seed=1", "rnd__seed=2", "short"]
    assert all(c.present and c.state == "ok" for c in a.cells) and a.mismatched == []
    for c in a.cells:
        row = next(json.loads(x) for x in (c.path / "items.jsonl").read_text().splitlines() if '"s002"' in x)
        assert c.item == row and c.judge == "random"
        orders = [0] if c.cell_id == "short" else [0, 1]  # only the rnd judge has orders = 2
        assert [(u["order_index"], u["item_id"]) for u in c.units] == [(o, "s002") for o in orders]
        assert c.top == [k for k, v in row["scores"].items() if v == max(row["scores"].values())]
    assert a.human_ranks == a.cells[0].item["human_ranks"]  # type: ignore[index]
    b = item_across_cells(exp, "s005")
    assert [c.present for c in b.cells] == [True, True, True, False]
    assert b.cells[3].state == "ok" and b.cells[3].units == []
    # Same id, other content: flagged, not silently paired.
    short_items = exp / "short" / "items.jsonl"
    rows = [json.loads(x) for x in short_items.read_text().splitlines()]
    rows[1]["item_sha256"] = "0" * 64
    short_items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert item_across_cells(exp, "s002").mismatched == ["short"]
