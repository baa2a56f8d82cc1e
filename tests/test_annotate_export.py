"""`annotate status` and `annotate export`: progress, gold failures, flags, and a data file that
`eval` takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli import app
from dialbgm.config import Workspace
from dialbgm.data import load_dataset
from dialbgm.web import AnnotationStore, campaign_dataset, open_campaign
from tests.support.browser import off_the_browser_thread
from tests.support.campaigns import write_campaign

runner = CliRunner()

# Known in advance: alice and bob's ranks per item (by clip name).
ALICE = {"d1": {"party": 1, "piano": 2, "drums": 3}, "d2": {"party": 3, "piano": 1, "drums": 2}}
BOB = {"d1": {"party": 1, "piano": 3, "drums": 2}, "d2": {"party": 3, "piano": 1, "drums": 1}}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_campaign(tmp_path, ties=True)
    monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
    monkeypatch.delenv("DIALBGM_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    state = open_campaign("demo", Workspace(tmp_path), data=tmp_path / "data.jsonl")
    store = state.store
    for who, ranks in (("alice", ALICE), ("bob", BOB)):
        for n, (item, by_clip) in enumerate(ranks.items()):
            store.submit("demo", who, "item", item, n, {f"{item}-{c}": r for c, r in by_clip.items()}, {})
    # alice puts the gold item's known best (piano) first; bob does not.
    store.submit("demo", "alice", "gold", "g1", 3, {"g1-party": 2, "g1-piano": 1, "g1-drums": 3}, {})
    store.submit("demo", "bob", "gold", "g1", 3, {"g1-party": 1, "g1-piano": 2, "g1-drums": 3}, {})
    return tmp_path


def test_status_counts_and_flags(folder: Path) -> None:
    result = runner.invoke(app, ["annotate", "status", "demo", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["annotators"]}
    assert rows["alice"]["done"] == 3 and rows["alice"]["total"] == 4
    assert (rows["alice"]["gold_failed"], rows["alice"]["flagged"]) == (0, False)
    assert (rows["bob"]["gold_done"], rows["bob"]["gold_failed"], rows["bob"]["flagged"]) == (1, 1, True)
    table = runner.invoke(app, ["annotate", "status", "demo"])
    assert table.exit_code == 0 and "FLAGGED" in table.output and "3 / 4" in table.output


@pytest.mark.parametrize(
    ("rule", "d1", "d2"),
    [
        # d1: rank sums party 2, piano 5, drums 5 -> 1, 2, 2; d2: 6, 2, 3 -> 3, 1, 2.
        ("mean", [1, 2, 2], [3, 1, 2]),
        # Kemeny: d1 piano/drums split 1-1 (tie); d2 piano over drums costs 0.5, the reverse 1.5.
        ("kemeny", [1, 2, 2], [3, 1, 2]),
    ],
)
def test_export_loads_and_eval_runs(folder: Path, rule: str, d1: list[int], d2: list[int]) -> None:
    out = folder / "out" / "ranked.jsonl"
    result = runner.invoke(app, ["annotate", "export", "demo", "--out", str(out), "--consensus", rule])
    assert result.exit_code == 0, result.output
    assert (
        f"consensus: {rule}" in result.output and "2 items" in result.output and "1 items not ranked" in result.output
    )
    ds = load_dataset(out)
    assert [i.id for i in ds.items] == ["d1", "d2"]  # d3 has no ranking yet; g1 is gold, never exported
    by_id = {i.id: i for i in ds.items}
    assert by_id["d1"].human_ranks == d1 and by_id["d2"].human_ranks == d2
    assert by_id["d1"].consensus == rule
    alice = next(a for a in by_id["d2"].annotations if a.annotator == "alice")
    assert alice.ranks == (3, 1, 2)
    bob = next(a for a in by_id["d2"].annotations if a.annotator == "bob")
    assert bob.ranks == (3, 1, 1), "a tie given by an annotator is kept as competition ranks"
    # The clips are found from the export's own folder.
    cand = json.loads(out.read_text().splitlines()[0])["candidates"][0]
    assert (out.parent / cand["audio"]).resolve() == (folder / "clips" / "party.wav").resolve()
    # In a thread of its own: a browser test of this session may hold an event loop in this one.
    run = off_the_browser_thread(
        runner.invoke, app, ["eval", "--judge", "random", "--data", str(out), "--out", str(folder / "run")]
    )
    assert run.exit_code == 0, run.output
    items = [json.loads(line) for line in (folder / "run" / "items.jsonl").read_text().splitlines()]
    assert {r["human_consensus"] for r in items} == {rule}


def test_campaign_dataset_for_agreement(folder: Path) -> None:
    assert campaign_dataset(Workspace(folder), "no-such-campaign") is None
    ds = campaign_dataset(Workspace(folder), "demo")
    assert ds is not None
    assert ds.path == folder / "annotations" / "demo.jsonl"
    assert {a.annotator for i in ds.items for a in i.annotations} == {"alice", "bob"}


def test_nothing_to_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_campaign(tmp_path)
    monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # Never served, and the campaign file names no data: the message says how to give it.
    result = runner.invoke(app, ["annotate", "export", "demo"])
    assert result.exit_code == 2 and "give DATA" in result.output
    AnnotationStore.open(None, tmp_path, "demo")
    open_campaign("demo", Workspace(tmp_path), data=tmp_path / "data.jsonl")
    result = runner.invoke(app, ["annotate", "export", "demo"])
    assert result.exit_code == 2 and "nothing to export" in result.output


def test_agreement_reads_the_campaign(folder: Path) -> None:
    from scipy.stats import kendalltau

    result = runner.invoke(app, ["agreement", "demo", "--json"])
    assert result.exit_code == 0, result.output
    [pair] = json.loads(result.output)["pairwise_tau_b"]["pairs"]
    clips = ["party", "piano", "drums"]
    taus = [kendalltau([ALICE[i][c] for c in clips], [BOB[i][c] for c in clips]).statistic for i in ("d1", "d2")]
    assert (pair["a"], pair["b"], pair["n_items"]) == ("alice", "bob", 2)
    assert pair["mean_tau_b"] == pytest.approx(sum(taus) / 2)
