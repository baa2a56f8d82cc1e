"""`dialbgm agreement`, and the human row (the ceiling) in eval, compare and report, on the
bundled annotated sample; data without annotations shows none of it."""

from __future__ import annotations

import json
import math
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dialbgm.analysis import analyse, campaign_agreement
from dialbgm.analysis._cells import load_cell
from dialbgm.analysis._comparisons import compare_pair
from dialbgm.analysis._human import HUMAN_CELL, human_cell
from dialbgm.cli._app import app
from dialbgm.config import load_experiment
from dialbgm.config._workspace import Workspace
from dialbgm.data import load_dataset
from dialbgm.metrics import METRICS, consensus_ranks, item_metrics
from dialbgm.run._cells import run_cells
from dialbgm.run._entry import run_eval

ROOT = Path(__file__).resolve().parents[1]
ANNOTATED = ROOT / "data" / "sample-annotated.jsonl"
cli = CliRunner()


def _rows(run: Path) -> dict[str, dict[str, Any]]:
    return {r["item_id"]: r for r in map(json.loads, (run / "items.jsonl").read_text().splitlines())}


def _loao_by_hand(item: Any) -> dict[str, float] | None:
    """The item's ceiling computed here from the data's own fields, annotator by annotator."""
    rule = item.consensus or "mean"
    per = []
    for k, a in enumerate(item.annotations):
        ref = consensus_ranks([b.ranks for j, b in enumerate(item.annotations) if j != k], rule)
        if len(set(ref)) > 1:
            per.append(item_metrics([-float(r) for r in a.ranks], ref))
    return {m: float(np.mean([p[m] for p in per])) for m in METRICS} if per else None


# ---------------------------------------------------------------- the bundled sample


def test_the_annotated_sample_has_missing_annotations_ties_and_both_rules() -> None:
    ds = load_dataset(ANNOTATED)
    counts = [len(i.annotations) for i in ds]
    assert len(ds) == 24 and counts.count(1) == 2 and set(counts) == {1, 3}
    assert {i.consensus for i in ds} == {"mean", "kemeny"}
    assert any(len(set(a.ranks)) < len(a.ranks) for i in ds for a in i.annotations)
    assert len({a.annotator for i in ds for a in i.annotations}) == 5


# ---------------------------------------------------------------- eval


def test_eval_writes_the_ceiling_per_item_and_the_human_block(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_eval(workspace, "random", ANNOTATED, out_dir=out)
    rows = _rows(out)
    ds = load_dataset(ANNOTATED)
    for item in ds:
        if len(item.annotations) < 2:
            assert "human_ceiling" not in rows[item.id]
            continue
        expected = _loao_by_hand(item)
        assert expected is not None
        assert rows[item.id]["human_ceiling"] == pytest.approx(expected)
    human = json.loads((out / "metrics.json").read_text())["human_ceiling"]
    both = [i.id for i in ds if len(i.annotations) >= 2]
    assert human["n_items"] == len(both) == 22
    for m in METRICS:
        ceiling = float(np.mean([rows[i]["human_ceiling"][m] for i in both]))
        judge = float(np.mean([rows[i]["metrics"][m] for i in both]))
        assert human["means"][m] == pytest.approx(ceiling)
        assert human["judge_means"][m] == pytest.approx(judge)
        assert human["fraction_of_ceiling"][m] == pytest.approx(judge / ceiling)
        lo, hi = human["ci95"][m]
        assert lo <= ceiling <= hi
    # The same ceiling as `dialbgm agreement` reports (same items, same bootstrap).
    camp = campaign_agreement(ds)["human_ceiling"]["metrics"]
    assert {m: camp[m]["mean"] for m in METRICS} == pytest.approx(human["means"])


def test_eval_terminal_shows_the_human_columns_only_for_annotated_data(workspace: Workspace, tmp_path: Path) -> None:
    res = cli.invoke(app, ["eval", "--judge", "random", "--data", str(ANNOTATED), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if "metric" in line)
    assert "human" in header and "of human" in header
    hit = next(line for line in res.output.splitlines() if "Hit@1" in line)
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())["human_ceiling"]
    assert f"{m['means']['hit_at_1']:.3f}" in hit and f"{m['fraction_of_ceiling']['hit_at_1']:.0%}" in hit
    res = cli.invoke(app, ["eval", "--judge", "random", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0 and "human" not in res.output
    assert "human_ceiling" not in json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert all("human_ceiling" not in r for r in _rows(tmp_path / "b").values())


# ---------------------------------------------------------------- compare and report


def _experiment(ws: Workspace) -> Path:
    (ws.root / "experiments").mkdir(exist_ok=True)
    shutil.copytree(ROOT / "prices", ws.root / "prices", dirs_exist_ok=True)
    path = ws.root / "experiments" / "hum.toml"
    path.write_text('[data]\npath = "data/sample-annotated.jsonl"\n[judges.rnd]\njudge = "random"\nseed = [0, 1]\n')
    exp = load_experiment(ws, path)
    run_cells(ws, exp)
    return exp.out_dir(ws)


def test_compare_puts_the_ceiling_beside_the_judges_and_tests_against_it(workspace: Workspace) -> None:
    folder = _experiment(workspace)
    result = analyse(folder, ws=workspace, n_flips=2000)
    human = result["human"]
    assert human["row"]["n_items"] == 22 and human["row"]["cell_id"] == HUMAN_CELL
    cells = [load_cell(folder / c, c) for c in ("rnd__seed=0", "rnd__seed=1")]
    hc = human_cell(cells)
    assert hc is not None
    for comp in human["comparisons"]:
        cell = next(c for c in cells if c.cell_id == comp["b"])
        assert comp["a"] == HUMAN_CELL and comp["n_common"] == 22
        # The same test as between two cells, the ceiling as cell A.
        again = compare_pair(hc, cell, n_flips=2000)
        for m in METRICS:
            ids = sorted(hc.ok_items)
            diff = np.mean([cell.items[i]["metrics"][m] - hc.items[i]["metrics"][m] for i in ids])
            assert comp["metrics"][m]["diff"] == pytest.approx(diff)
            assert comp["metrics"][m]["p_value"] == again["metrics"][m]["p_value"]
            assert comp["fraction_of_ceiling"][m] == pytest.approx(
                comp["metrics"][m]["mean_b"] / comp["metrics"][m]["mean_a"]
            )
        # A random judge is far below people who agree: Hit@1 and tau-b significantly lower.
        assert comp["metrics"]["kendall_tau_b"]["significant"] and comp["metrics"]["kendall_tau_b"]["diff"] < 0
    # Their own Holm family: the judges' family counts only the judges' tests.
    assert human["family"]["n_tests"] == 2 * len(METRICS)
    assert result["family"]["n_tests"] == sum(
        1 for c in result["comparisons"] for x in c["metrics"].values() if x.get("p_value") is not None
    )


def test_report_shows_the_human_row_in_html_and_markdown(workspace: Workspace) -> None:
    folder = _experiment(workspace)
    res = cli.invoke(app, ["report", str(folder)])
    assert res.exit_code == 0, res.output
    page = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    human = analyse(folder, ws=workspace)["human"]
    tau = human["row"]["metrics"]["kendall_tau_b"]["mean"]
    frac = human["comparisons"][0]["fraction_of_ceiling"]["hit_at_1"]
    for text in (page, md):
        assert "Human ceiling" in text and "human (ceiling)" in text
        assert f"{tau:.3f}" in text and f"{frac:.0%}" in text
    res = cli.invoke(app, ["compare", str(workspace.root / "experiments" / "hum.toml")])
    assert res.exit_code == 0 and "human (ceiling)" in res.output, res.output


# ---------------------------------------------------------------- dialbgm agreement


def test_agreement_json_and_out_file(tmp_path: Path) -> None:
    out = tmp_path / "agreement.json"
    res = cli.invoke(app, ["agreement", str(ANNOTATED), "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    printed, written = json.loads(res.output), json.loads(out.read_text())
    assert printed == written
    assert written["n_items_multi"] == 22 and written["annotators"] == [f"ann-{k}" for k in range(1, 6)]
    assert written["kendall_w"]["n_items"] == 22 and written["kendall_w"]["friedman"]["df"] == 22 * 3
    a = written["krippendorff_alpha"]
    assert a["ci_low"] < a["alpha"] < a["ci_high"]
    assert len(written["pairwise_tau_b"]["pairs"]) == 10
    assert not any(isinstance(v, float) and math.isnan(v) for v in _leaves(written))


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def test_agreement_table_output(tmp_path: Path) -> None:
    res = cli.invoke(app, ["agreement", str(ANNOTATED)])
    assert res.exit_code == 0, res.output
    r = campaign_agreement(load_dataset(ANNOTATED))
    assert f"{r['kendall_w']['w']:.3f}" in res.output and "Friedman" in res.output
    assert f"{r['krippendorff_alpha']['alpha']:.3f}" in res.output
    assert "ann-1" in res.output and "human ceiling" in res.output


def test_agreement_refuses_bad_input_with_exit_2(tmp_path: Path) -> None:
    res = cli.invoke(app, ["agreement", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 2 and "no such file or campaign" in res.output
    res = cli.invoke(app, ["agreement", str(ROOT / "data" / "sample.jsonl")])
    assert res.exit_code == 2 and "annotations: no item carries annotations" in res.output
    lines = ANNOTATED.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["annotations"][0]["ranks"][bad["candidates"][0]["id"]] = 9
    (tmp_path / "bad.jsonl").write_text("\n".join([lines[0], lines[1], json.dumps(bad)]) + "\n")
    res = cli.invoke(app, ["agreement", str(tmp_path / "bad.jsonl")])
    assert res.exit_code == 2 and "bad.jsonl:3: annotations[0].ranks" in res.output, res.output
    single = []
    for line in lines[:4]:
        obj = json.loads(line)
        obj["annotations"] = obj["annotations"][:1]
        obj.pop("consensus", None)
        single.append(json.dumps(obj))
    (tmp_path / "single.jsonl").write_text("\n".join(single) + "\n")
    res = cli.invoke(app, ["agreement", str(tmp_path / "single.jsonl")])
    assert res.exit_code == 2 and "at least two annotators" in res.output, res.output


def test_agreement_on_all_tied_annotations_says_undefined(tmp_path: Path) -> None:
    rows = []
    for line in ANNOTATED.read_text().splitlines()[:3]:
        obj = json.loads(line)
        obj.pop("consensus", None)
        for k, c in enumerate(obj["candidates"]):
            c["rank"] = k + 1  # the judges' ranks; the annotations only for agreement
        for a in obj["annotations"]:
            a["ranks"] = dict.fromkeys(a["ranks"], 1)
        rows.append(json.dumps(obj))
    (tmp_path / "tied.jsonl").write_text("\n".join(rows) + "\n")
    res = cli.invoke(app, ["agreement", str(tmp_path / "tied.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output)
    assert r["kendall_w"]["w"] is None and r["krippendorff_alpha"]["alpha"] is None
    res = cli.invoke(app, ["agreement", str(tmp_path / "tied.jsonl")])
    assert res.exit_code == 0 and "no annotator could be scored" in res.output, res.output


def test_a_campaign_name_goes_through_the_web_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stub for the annotation stage (branch h-annotate provides the real `dialbgm.web`):
    only the lookup by name is under test here."""
    asked: list[str] = []

    def campaign_dataset(ws: Any, name: str) -> Path | None:
        asked.append(name)
        return ANNOTATED if name == "pilot" else None

    monkeypatch.setitem(sys.modules, "dialbgm.web", types.SimpleNamespace(campaign_dataset=campaign_dataset))
    monkeypatch.setenv("DIALBGM_HOME", str(ROOT))
    res = cli.invoke(app, ["agreement", "pilot", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["data"] == str(ANNOTATED)
    res = cli.invoke(app, ["agreement", "nosuch"])
    assert res.exit_code == 2 and "nosuch: no such file or campaign" in res.output
    assert asked == ["pilot", "nosuch"]


def test_the_annotated_sample_is_what_its_script_writes(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "data" / "sample.jsonl", tmp_path / "data" / "sample.jsonl")
    script = ROOT / "scripts" / "make_annotated_sample.py"
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "data" / "sample-annotated.jsonl").read_bytes() == ANNOTATED.read_bytes()
