"""The run's entry points: a RunSpec (what is hashed) apart from RunOptions (what is not),
``resume_run`` as its own entry, ``run_eval`` as the keyword form of both, one identity function
for every shipped judge and experiment cell, and a cached re-run that loads no engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dialbgm.config._experiment import load_experiment
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.run._entry import evaluate, resume_run, run_eval
from dialbgm.run._identity import quick_identity
from dialbgm.run._prepare import prepare, prepared_identity
from dialbgm.run._spec import RunOptions, RunSpec
from dialbgm_tools.sample_music import write_clips
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def _units(run_dir: Path) -> list[dict[str, object]]:
    """units.jsonl without the one field a clock writes."""
    rows = [json.loads(line) for line in (run_dir / "units.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "latency_s"} for r in rows]


def test_evaluate_a_spec_writes_the_run_run_eval_writes(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    spec = RunSpec("random", sample_path, 3, {"seed": 3})
    a = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "a"))
    b = run_eval(workspace, "random", sample_path, out_dir=tmp_path / "b", limit=3, overrides={"seed": 3})
    assert (
        a.manifest["config_hash"]
        == b.manifest["config_hash"]
        == quick_identity(workspace, "random", sample_path, 3, {"seed": 3}).config_hash
    )
    for f in ("items.jsonl", "metrics.json"):
        assert (a.out_dir / f).read_bytes() == (b.out_dir / f).read_bytes()
    assert _units(a.out_dir) == _units(b.out_dir)
    # Options are not part of what the run is: another concurrency gives the same config hash.
    c = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "c", provider_overrides={"concurrency": 2}))
    assert c.manifest["config_hash"] == a.manifest["config_hash"]
    with pytest.raises(AttributeError):
        spec.limit = 4  # type: ignore[misc]  # frozen: a spec cannot change under a run


def test_resume_run_finishes_a_run_from_its_folder_and_refuses_a_changed_one(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first = evaluate(workspace, RunSpec("random", sample_path, 3, {"seed": 3}), RunOptions(out_dir=out))
    units = (out / "units.jsonl").read_bytes()
    for f in ("manifest.json", "metrics.json", "units.jsonl", "items.jsonl"):
        (out / f).unlink()  # as if killed before the end
    again = resume_run(workspace, out)
    assert again.out_dir == out and (out / "units.jsonl").read_bytes() == units
    assert again.manifest["config_hash"] == first.manifest["config_hash"]
    assert again.manifest["counts"]["resumed_from_journal"] == 3
    # The keyword form with resume= is the same entry point.
    assert (
        run_eval(workspace, "ignored", Path("ignored"), resume=out).manifest["config_hash"]
        == first.manifest["config_hash"]
    )
    with pytest.raises(ConfigError, match="configuration changed"):
        resume_run(workspace, out, overrides={"seed": 4})


def test_retry_options_belong_to_resume(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    for options in (RunOptions(retry_failed=True), RunOptions(retry_statuses=["parse_error"])):
        with pytest.raises(ConfigError, match="use it with --resume"):
            evaluate(workspace, RunSpec("random", sample_path, 2), options)
    with pytest.raises(ConfigError, match="unknown status"):
        resume_run(workspace, tmp_path, RunOptions(retry_statuses=["nope"]))
    assert not (tmp_path / "plan.json").exists()


def test_a_cached_rerun_loads_neither_the_engine_nor_asyncio(workspace: Workspace, sample_path: Path) -> None:
    reply = Reply('{"scores": {"A": 8, "B": 3, "C": 6, "D": 2}}')
    with ScriptedOpenAIServer(lambda b, n: reply) as server:
        over = {"api_base": server.base_url}
        run_eval(workspace, "openai-compatible", sample_path, limit=3, overrides=over)
        code = (
            "import sys\nfrom pathlib import Path\nfrom dialbgm.config import find_workspace\n"
            "from dialbgm.run import run_eval\n"
            f"r = run_eval(find_workspace(), 'openai-compatible', Path({str(sample_path)!r}), limit=3, "
            f"overrides={over!r})\n"
            "print(json_ok := r.manifest['counts']['cache_hits'], 'asyncio' in sys.modules, "
            "'dialbgm.calls._engine' in sys.modules)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ)
        )
        assert len(server.requests) == 3  # the re-run called nothing
    assert out.stdout.split() == ["3", "False", "False"], out.stdout + out.stderr


def test_every_shipped_judge_and_experiment_cell_has_one_identity(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    """quick_identity (from the files, nothing planned: compare, --resume's first check) and the
    identity of the planned run (eval's manifest) are the same function on the same inputs."""
    audio = tmp_path / "audio" / "sample-audio.jsonl"
    audio.parent.mkdir()
    shutil.copy(ROOT / "data" / "sample-audio.jsonl", audio)
    write_clips(audio.parent / "clips")
    cases: list[tuple[str, Path, int | None, dict[str, object]]] = []
    for path in sorted((ROOT / "judges").glob("*.toml")):
        if 'provider = "clap"' in path.read_text():
            continue  # their weights are not on this machine: tests/test_clap.py checks this on a tiny model
        hears = 'input = "audio"' in path.read_text()
        cases.append((path.stem, audio if hears else sample_path, 2, {}))
    exp = load_experiment(workspace, ROOT / "experiments" / "offline-demo.toml")
    cases += [(c.judge, exp.data_path, c.limit, c.overrides) for c in exp.cells]
    assert len(cases) > len(exp.cells) >= 2
    for judge, data, limit, over in cases:
        quick = quick_identity(workspace, judge, data, limit, over)
        prep = prepare(workspace, judge, data, limit=limit, overrides=over, defer_summaries=True)
        try:
            full = prepared_identity(workspace, prep, data, limit, over)
        finally:
            prep.backend.close()
        assert quick == full, judge
        assert json.dumps(quick.record(), sort_keys=True) == json.dumps(full.record(), sort_keys=True)


def test_git_state_reads_commit_and_dirtiness_from_one_git_status(tmp_path: Path) -> None:
    from dialbgm.run._folders import git_state

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a repository
    git("init", "-q")
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # no commit yet
    (tmp_path / "f.txt").write_text("a\n")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git("rev-parse", "HEAD")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "new.txt").write_text("untracked files do not count\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f.txt").write_text("b\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}


def test_package_versions_are_the_ones_importlib_metadata_gives() -> None:
    from importlib import metadata

    from dialbgm.run._folders import package_versions

    versions = package_versions()
    assert "dialbgm" in versions and "jinja2" in versions
    assert versions == {name: metadata.version(name) for name in versions}


def test_loading_a_judge_and_rendering_its_prompts_import_no_numpy(workspace: Workspace) -> None:
    code = (
        "import sys\nfrom dialbgm.config import find_workspace, load_judge\nfrom dialbgm.run import render_item\n"
        "ws = find_workspace()\nload_judge(ws, 'local', {'aggregation': 'kemeny'})\n"
        "render_item(ws, 'local', ws.sample_data, 's001')\nprint('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ))
    assert out.stdout.split() == ["False"], out.stdout + out.stderr
