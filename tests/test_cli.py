"""The command line: exit codes, messages, and what each command prints and writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from tests.support.scripted_server import ScriptedOpenAIServer

runner = CliRunner()


def test_eval_prints_metrics_and_writes_the_run(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["eval", "--judge", "random", "--out", str(out), "--set", "seed=3"])
    assert res.exit_code == 0, res.output
    for word in ("Hit@1", "Kendall tau-b", "95% CI", "failed items: 0"):
        assert word in res.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",  # the writer's lock: a second writer of the folder is refused (see results.RunLock)
        "items.jsonl",
        "journal.jsonl",
        "manifest.json",
        "metrics.json",
        "plan.json",
        "units.jsonl",
    ]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("hit_at_1", "mrr", "ndcg", "kendall_tau_b"):
        assert isinstance(metrics[key], float)
    assert metrics["n_items"] == 48 and metrics["n_failed"] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["overrides"] == {"seed": 3}
    assert manifest["config"]["judge"]["seed"] == 3
    assert len(manifest["config_hash"]) == 64 and len(manifest["dataset"]["sha256"]) == 64
    assert manifest["template"]["sha256"] is None  # the random judge renders no prompt
    assert set(manifest["git"]) == {"commit", "dirty"}
    # Same seed, same scores; another seed, other scores (a seeded baseline, not a constant).
    again = runner.invoke(app, ["eval", "-j", "random", "--out", str(tmp_path / "b"), "--set", "seed=3"])
    assert again.exit_code == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text()) == metrics
    runner.invoke(app, ["eval", "-j", "random", "--out", str(tmp_path / "c"), "--set", "seed=4"])
    units_3 = (out / "units.jsonl").read_text()
    units_4 = (tmp_path / "c" / "units.jsonl").read_text()
    assert units_3 != units_4


def test_limit_and_default_results_folder(workspace: Workspace) -> None:
    res = runner.invoke(app, ["eval", "-j", "random", "--limit", "5"])
    assert res.exit_code == 0, res.output
    runs = list((workspace.results_dir).iterdir())
    assert len(runs) == 1 and "-random-" in runs[0].name
    assert json.loads((runs[0] / "metrics.json").read_text())["n_total"] == 5


def test_out_folder_is_never_silently_overwritten(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert runner.invoke(app, ["eval", "-j", "random", "--out", str(out), "--limit", "2"]).exit_code == 0
    before = (out / "units.jsonl").read_text()
    res = runner.invoke(app, ["eval", "-j", "random", "--out", str(out), "--limit", "3"])
    assert res.exit_code == 2 and "--force" in res.output
    assert (out / "units.jsonl").read_text() == before
    assert runner.invoke(app, ["eval", "-j", "random", "--out", str(out), "--limit", "3", "--force"]).exit_code == 0


def test_bad_input_exits_2_with_a_clear_message(workspace: Workspace, tmp_path: Path) -> None:
    cases = [
        (["eval", "-j", "nope"], "no judge 'nope'"),
        (["eval", "-j", "random", "--set", "cott=true"], "has no setting 'cott'"),
        (["eval", "-j", "random", "--set", "cot"], "expected KEY=VALUE"),
        (["eval", "-j", "local", "--set", "mode=sideways"], "must be one of listwise, pointwise"),
        (["eval", "-j", "local", "--set", "few_shot=lots"], "few_shot: must be int"),
        (["eval", "-j", "gpt-4o"], "OPENAI_API_KEY"),
        (["eval", "-j", "random", "--data", str(tmp_path / "missing.jsonl")], "no such file"),
        (["eval", "-j", "local", "--set", "context=summary"], "no summary, but the judge uses context = summary"),
        (["render", "-j", "local", "--item", "zzz"], "no item 'zzz'"),
    ]
    for args, needle in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output, (args, res.output)
    assert not workspace.results_dir.exists()  # nothing was written by any of them


def test_render_shows_the_exact_messages(workspace: Workspace) -> None:
    res = runner.invoke(app, ["render", "-j", "local", "--item", "s001", "--set", "cot=true"])
    assert res.exit_code == 0, res.output
    assert "--- system" in res.output and "--- user" in res.output
    assert '"reasoning"' in res.output and "cache key:" in res.output
    js = runner.invoke(app, ["render", "-j", "local", "--item", "s001", "--json"])
    body = json.loads(js.output)
    assert body[0]["messages"][0]["role"] == "system" and len(body[0]["cache_key"]) == 64
    point = runner.invoke(app, ["render", "-j", "local", "--item", "s001", "--set", "mode=pointwise"])
    assert point.output.count("=== request") == 4


def test_judges_and_cache_commands(workspace: Workspace, tmp_path: Path) -> None:
    res = runner.invoke(app, ["judges"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for name in (
        "local",
        "embedding",
        "random",
        "gpt-4o",
        "gpt-5",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "qwen-omni",
        "openai-compatible",
    ):
        assert name in res.output
    assert "OPENAI_API_KEY (missing)" in res.output
    with ScriptedOpenAIServer() as server:
        args = ["eval", "-j", "openai-compatible", "--limit", "2", "--set", f'api_base="{server.base_url}"']
        assert runner.invoke(app, [*args, "--out", str(tmp_path / "a")]).exit_code == 0
    stats = runner.invoke(app, ["cache", "stats"])
    assert "2 entries" in stats.output
    cleared = runner.invoke(app, ["cache", "clear", "--yes"])
    assert "removed 2 entries" in cleared.output
    assert "0 entries" in runner.invoke(app, ["cache", "stats"]).output


def test_help_and_cached_reruns_do_not_import_litellm(workspace: Workspace, tmp_path: Path) -> None:
    code = (
        "import sys; from dialbgm.cli import app; import typer\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LITELLM', 'litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LITELLM False" in out
    with ScriptedOpenAIServer() as server:
        assert (
            runner.invoke(
                app,
                [
                    "eval",
                    "-j",
                    "openai-compatible",
                    "--limit",
                    "3",
                    "--out",
                    str(tmp_path / "a"),
                    "--set",
                    f'api_base="{server.base_url}"',
                ],
            ).exit_code
            == 0
        )
        code = (
            "import sys\nfrom pathlib import Path\nfrom dialbgm.run._entry import run_eval\n"
            "from dialbgm.config._workspace import find_workspace\n"
            f"r = run_eval(find_workspace(), 'openai-compatible', find_workspace().sample_data, limit=3, "
            f"out_dir=Path({str(tmp_path / 'b')!r}), overrides={{'api_base': {server.base_url!r}}})\n"
            "print('CALLS', r.manifest['counts']['provider_calls'], 'LITELLM', 'litellm' in sys.modules)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert "CALLS 0 LITELLM False" in out


def test_cache_prune_verify_and_hit_rates(workspace: Workspace, tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        args = ["eval", "-j", "openai-compatible", "--limit", "3", "--set", f'api_base="{server.base_url}"']
        assert runner.invoke(app, [*args, "--out", str(tmp_path / "a")]).exit_code == 0
        assert runner.invoke(app, [*args, "--out", str(tmp_path / "b")]).exit_code == 0
    stats = runner.invoke(app, ["cache", "stats"]).output
    # First run: 3 misses; second: 3 hits (lookups are counted across runs and processes).
    assert "3 hits, 3 misses (hit rate 50.0%)" in stats
    assert "3 entries, 0 problems" in runner.invoke(app, ["cache", "verify"]).output
    assert runner.invoke(app, ["cache", "prune", "--older-than", "1d"]).output.startswith("removed 0 entries")
    bad = runner.invoke(app, ["cache", "prune", "--older-than", "soon"])
    assert bad.exit_code == 2 and "use a number with d, h, m or s" in bad.output
    # Deleting answers asks first, like clear (tests/test_cache_edges.py); --yes does not ask.
    assert "removed 3 entries" in runner.invoke(app, ["cache", "prune", "--older-than", "0s", "--yes"]).output


def test_bad_run_control_options_exit_2(workspace: Workspace, tmp_path: Path) -> None:
    cases = [
        (["eval", "-j", "random", "--concurrency", "0"], "--concurrency must be a whole number >= 1"),
        (["eval", "-j", "random", "--rpm", "-5"], "--rpm must be a number > 0"),
        (["eval", "-j", "random", "--retry-failed"], "use it with --resume RUN"),
        (["eval", "--resume", str(tmp_path)], "no plan.json there"),
    ]
    for args, needle in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output, (args, res.output)
    assert not workspace.results_dir.exists()
