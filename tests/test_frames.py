"""Runs as tables (load_run / load_experiment), `dialbgm export`, and the reports' provenance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import dialbgm
from dialbgm.analysis._frames import load_run
from dialbgm.cli._app import app
from dialbgm.cli._experiments import register
from dialbgm.config._experiment import load_experiment as load_experiment_file
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ResultsError
from dialbgm.metrics._agreement import METRICS
from dialbgm.run._cells import run_cells
from dialbgm.run._entry import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(workspace: Workspace, sample_path: Path, tmp_path: Path) -> Path:
    return run_eval(workspace, "random", sample_path, out_dir=tmp_path / "run", limit=7).out_dir


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_load_run_tables_agree_with_the_files(run_dir: Path) -> None:
    run = dialbgm.load_run(run_dir)
    assert isinstance(run, dialbgm.Run)
    assert run.judge == "random" and run.config["judge"]["name"] == "random"
    assert run.config_hash == json.loads((run_dir / "manifest.json").read_text())["config_hash"]

    units = _jsonl(run_dir / "units.jsonl")
    assert isinstance(run.units, pd.DataFrame) and len(run.units) == len(units) == 7
    assert list(run.units["unit_id"]) == [u["unit_id"] for u in units]
    assert run.units.iloc[2]["scores"] == units[2]["scores"]  # nested fields stay Python objects

    items = _jsonl(run_dir / "items.jsonl")
    assert list(run.items.columns[:5]) == ["item_id", "status", "error", "n_candidates", "n_units"]
    for m in METRICS:  # each metric lifted to a column of its own, equal to the file's value
        assert run.items[m].tolist() == pytest.approx([r["metrics"][m] for r in items])

    summary = json.loads((run_dir / "metrics.json").read_text())
    hit = run.metrics.set_index("metric").loc["hit_at_1"]
    assert hit["mean"] == summary["hit_at_1"]
    assert [hit["ci_low"], hit["ci_high"]] == summary["ci95"]["hit_at_1"]
    assert hit["chance"] == summary["chance"]["hit_at_1"] and hit["n_items"] == 7
    # The records behind the frames, for code without pandas.
    assert run.records("items")[0]["hit_at_1"] == items[0]["metrics"]["hit_at_1"]


def test_load_run_refuses_what_is_not_a_finished_run(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(ResultsError, match=r"missing metrics\.json"):
        (tmp_path / "half").mkdir()
        (tmp_path / "half" / "manifest.json").write_text("{}")
        load_run(tmp_path / "half")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    with (broken / "units.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(ResultsError, match=r"units.jsonl:8: not valid JSON"):
        load_run(broken).units  # noqa: B018


def test_export_csv_and_parquet_round_trip(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(run_dir), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert f"wrote {run_dir / 'units.csv'} (7 rows)" in res.output
    csv = pd.read_csv(run_dir / "units.csv")
    units = _jsonl(run_dir / "units.jsonl")
    assert list(csv["unit_id"]) == [u["unit_id"] for u in units]
    assert json.loads(csv.loc[3, "scores"]) == units[3]["scores"]  # nested → JSON text

    out = tmp_path / "items.parquet"
    res = runner.invoke(app, ["export", str(run_dir), "-f", "parquet", "-t", "items", "--out", str(out)])
    assert res.exit_code == 0, res.output
    pq = pd.read_parquet(out)
    assert pq["hit_at_1"].tolist() == pytest.approx(load_run(run_dir).items["hit_at_1"].tolist())
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xlsx"], "--format 'xlsx': one of csv, parquet"),
        (["--table", "rows"], "--table 'rows': one of items, units, metrics"),
    ],
)
def test_export_refuses_bad_options(run_dir: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["export", str(run_dir), *args])
    assert res.exit_code == 2 and message in res.output


def test_export_of_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["export", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a folder" in res.output


def _reply(body: dict[str, Any], n: int) -> Reply:
    return Reply('{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}')


@pytest.fixture
def experiment_dir(workspace: Workspace) -> Path:
    with ScriptedOpenAIServer(_reply) as server:
        (workspace.root / "experiments").mkdir()
        shutil.copytree(ROOT / "prices", workspace.root / "prices")
        path = workspace.root / "experiments" / "frames.toml"
        path.write_text(
            f"""
[data]
path = "data/sample.jsonl"
limit = 5
[judges.random]
seed = [0, 1]
[judges.llm]
judge = "openai-compatible"
api_base = "{server.base_url}"
model = "gpt-4o"
"""
        )
        exp = load_experiment_file(workspace, path)
        run_cells(workspace, exp)
    return exp.out_dir(workspace)


def test_load_experiment_stacks_cells_with_their_levels(experiment_dir: Path) -> None:
    exp = dialbgm.load_experiment(experiment_dir)
    assert list(exp.cells) == ["random__seed=0", "random__seed=1", "llm"]
    df = exp.items
    assert list(df.columns[:2]) == ["cell_id", "level.seed"]
    assert df.groupby("cell_id").size().to_dict() == {"llm": 5, "random__seed=0": 5, "random__seed=1": 5}
    assert df.loc[df["cell_id"] == "random__seed=1", "level.seed"].unique().tolist() == [1]
    assert exp.metrics.loc[exp.metrics["cell_id"] == "llm", "metric"].tolist() == list(METRICS)


def test_report_states_provenance_and_label_mapping(workspace: Workspace, experiment_dir: Path) -> None:
    rep = typer.Typer()
    register(rep)
    res = CliRunner().invoke(rep, ["report", str(experiment_dir)])
    assert res.exit_code == 0, res.output
    html = (experiment_dir / "report.html").read_text()
    md = (experiment_dir / "report.md").read_text()
    manifest = json.loads((experiment_dir / "llm" / "manifest.json").read_text())
    for text in (html, md):
        assert "Provenance" in text and f"dialbgm {dialbgm.__version__}" in text
        assert manifest["dataset"]["sha256"] in text  # the data file's hash
        assert manifest["template"]["sha256"] in text  # the template's hash
        assert "model=&quot;gpt-4o&quot;" in text or 'model="gpt-4o"' in text
        assert manifest["versions"]["litellm"] in text
    # Each raw reply says which clip each label stood for in that order.
    unit = json.loads((experiment_dir / "llm" / "units.jsonl").read_text().splitlines()[0])
    first = ", ".join(f"{s['label']}→{s['candidate']}" for s in unit["shown"])
    assert f"labels: {first}" in html
