"""``dialbgm init``: a starter workspace made from the built-ins, which never writes over a file."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._experiment import load_experiment
from dialbgm.config._starter import init_workspace
from dialbgm.config._workspace import find_workspace
from tests.conftest import ROOT

runner = CliRunner()

STARTER = [
    "README.md",
    "dialbgm.toml",
    "experiments/my-experiment.toml",
    "judges/my-judge.toml",
    "prompts/my_criteria/criteria.toml",
    "prompts/my_criteria/system.j2",
    "prompts/my_criteria/template.toml",
    "prompts/my_criteria/user_listwise.j2",
    "prompts/my_criteria/user_pointwise.j2",
]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder outside any workspace, with no DIALBGM_HOME and a cache of its own."""
    monkeypatch.delenv("DIALBGM_HOME", raising=False)
    monkeypatch.setenv("DIALBGM_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("OPENAI_API_KEY", "OPENAI_COMPATIBLE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _render_key(judge: str) -> str:
    res = runner.invoke(app, ["render", "--judge", judge, "--item", "s001", "--json"])
    assert res.exit_code == 0, res.output
    key: str = json.loads(res.output)[0]["cache_key"]
    return key


def test_init_writes_a_workspace_that_dialbgm_then_uses(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = runner.invoke(app, ["init", "study"])
    assert res.exit_code == 0, res.output
    study = elsewhere / "study"
    assert _files(study) == STARTER
    assert (study / "providers").is_dir() and not any((study / "providers").iterdir())
    for name in ("criteria.toml", "system.j2", "template.toml", "user_listwise.j2", "user_pointwise.j2"):
        assert (study / "prompts" / "my_criteria" / name).read_bytes() == (
            ROOT / "prompts" / "weighted_criteria" / name
        ).read_bytes()
    judge = tomllib.loads((study / "judges" / "my-judge.toml").read_text())
    builtin = tomllib.loads((ROOT / "judges" / "local.toml").read_text())
    assert judge == {**builtin, "template": "my_criteria"}  # a copy; only its template differs
    for line in res.output.splitlines()[:-1]:
        assert line.startswith("wrote ")
    assert "dialbgm judges" in res.output.splitlines()[-1]

    monkeypatch.chdir(study / "prompts")  # found from any folder below it
    ws = find_workspace()
    assert ws.root == study.resolve() and ws.found
    monkeypatch.chdir(study)
    records = {r["name"]: r for r in json.loads(runner.invoke(app, ["judges", "--format", "json"]).output)}
    assert records["my-judge"]["source"] == "workspace"
    assert records["my-judge"]["file"] == str(study.resolve() / "judges" / "my-judge.toml")
    assert records["my-judge"]["overrides_builtin"] is False
    assert records["local"]["source"] == "built-in"
    # The copied judge with its unchanged template sends exactly the built-in judge's request
    # (where a template lives is not part of the key); an edit to the copy is a new request.
    assert _render_key("my-judge") == _render_key("local")
    system = study / "prompts" / "my_criteria" / "system.j2"
    system.write_text(system.read_text() + "\nBe brief.\n")
    rendered = runner.invoke(app, ["render", "--judge", "my-judge", "--item", "s001"])
    assert "Be brief." in rendered.output
    assert _render_key("my-judge") != _render_key("local")
    # The example experiment runs on the built-in sample.
    exp = load_experiment(ws, "my-experiment")
    assert exp.data_path == ROOT / "data" / "sample.jsonl"
    assert [c.cell_id for c in exp.cells] == ["random", "my-judge__cot=false", "my-judge__cot=true"]
    dry = runner.invoke(app, ["compare", "my-experiment", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "my-judge__cot=true" in dry.output


def test_init_refuses_to_write_over_any_file(elsewhere: Path) -> None:
    assert runner.invoke(app, ["init", "study"]).exit_code == 0
    study = elsewhere / "study"
    before = {p: (study / p).read_bytes() for p in STARTER}
    stamps = {p: os.stat(study / p).st_mtime_ns for p in STARTER}
    again = runner.invoke(app, ["init", "study"])
    assert again.exit_code == 2
    assert "exist already" in again.output and "nothing was written" in again.output
    assert "study/judges/my-judge.toml" in again.output
    assert {p: (study / p).read_bytes() for p in STARTER} == before
    assert {p: os.stat(study / p).st_mtime_ns for p in STARTER} == stamps

    # One file in the way is enough: nothing at all is written, not even the marker.
    other = elsewhere / "other"
    other.mkdir()
    (other / "README.md").write_text("my notes\n")
    (other / "data.csv").write_text("x\n")
    res = runner.invoke(app, ["init", str(other)])
    assert res.exit_code == 2 and "README.md" in res.output
    assert _files(other) == ["README.md", "data.csv"] and (other / "README.md").read_text() == "my notes\n"
    assert sorted(p.name for p in other.iterdir()) == ["README.md", "data.csv"]

    # A folder with unrelated files is fine: they are left alone.
    (other / "README.md").unlink()
    assert runner.invoke(app, ["init", str(other)]).exit_code == 0
    assert (other / "data.csv").read_text() == "x\n"


def test_init_into_a_file_or_a_blocked_folder_fails_cleanly(elsewhere: Path) -> None:
    (elsewhere / "afile").write_text("")
    res = runner.invoke(app, ["init", str(elsewhere / "afile")])
    assert res.exit_code == 2 and "not a folder" in res.output
    # A file where a folder must go: found only when writing, after other files were written.
    blocked = elsewhere / "blocked"
    (blocked / "prompts").mkdir(parents=True)
    (blocked / "prompts" / "my_criteria").write_text("not a folder")
    res = runner.invoke(app, ["init", str(blocked)])
    assert res.exit_code == 2 and "cannot write" in res.output, res.output
    assert _files(blocked) == ["prompts/my_criteria"]  # what was written before the failure is gone
    assert sorted(p.name for p in blocked.iterdir()) == ["prompts"]


def test_init_writes_nothing_when_the_builtins_are_missing(tmp_path: Path) -> None:
    from dialbgm.errors import ConfigError

    with pytest.raises(ConfigError, match="built-in judges are missing"):
        init_workspace(tmp_path / "w", None)
    assert not (tmp_path / "w").exists()
