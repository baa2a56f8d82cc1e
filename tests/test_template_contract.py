"""The template contract of docs/templates.md, held to: shipped prompts byte-identical, the doc's
variables and example files equal to what the code passes and ships, its commands run from the
example workspace, a few-shot pool checked against its template's task, a summarizer template
per judge, and one rule for relative paths."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.judging._prompts import PromptSet
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare, render_item
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "templates.md"
EXAMPLE = ROOT / "examples" / "dialogue-response"
runner = CliRunner()

# sha256 of json.dumps([request.messages for each request], ensure_ascii=False, sort_keys=True)
# for judge `local` on item s001 of data/sample.jsonl, computed with the original code (02a49bd).
# Equal messages mean equal cache keys: a cached run stays cached across this change.
SHIPPED_SHA256 = {
    "default": "91df18099e54a1c90b7386145487c6a42f75dabb31c7549651e9f0cb68ab22ef",
    "cot": "57d6a3426ba880bbe898a2ae3955f2a3d19cbad75a4d7a315d22ac972e3b55bd",
    "few_shot": "23db8c107f58f085d4fde3432c3fe7c76fa3ae29585abe89afc90074f589391e",
    "pointwise": "665179cf2d9d7a7ce679e64bf096ce50422cad918d7525041e53b5efd934f8a0",
    "pointwise_cot_few_shot": "cb0ca3cfae57bf19c206429451aada512901c681e0b9fa74f721ccedb8d9f95f",
    "summary": "0b8be807f2ea408a0f4969b8d92145d7974570d246212b94f0c249ae0a517c7d",
    "orders_shuffled": "6b55c3dc7fc832e60141c837ce1f756a6d8b01d0cb4e0393c1bc1cc4bdb338d2",
    "weights": "ab86b89af7dd0d66c5b9b18153aa19124dc83398060aea1ce3d44ed93ee8d03e",
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "cot": {"cot": True},
    "few_shot": {"few_shot": 2},
    "pointwise": {"mode": "pointwise"},
    "pointwise_cot_few_shot": {"mode": "pointwise", "cot": True, "few_shot": 2},
    "summary": {"context": "summary"},
    "orders_shuffled": {"orders": 2, "shuffle_labels": True},
    "weights": {"weights.relevance": 2, "weights.consistency": 1},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shipped_prompts_are_byte_identical(workspace: Workspace, variant: str, tmp_path: Path) -> None:
    data = workspace.sample_data
    if variant == "summary":  # s046-s048 have no summary: render s001 from a file of its line alone
        data = tmp_path / "s001.jsonl"
        data.write_text(workspace.sample_data.read_text().splitlines()[0] + "\n")
    prep, idx = render_item(workspace, "local", data, "s001", VARIANTS[variant])
    msgs = [prep.request(i).messages for i in idx]
    blob = json.dumps(msgs, ensure_ascii=False, sort_keys=True).encode()
    assert hashlib.sha256(blob).hexdigest() == SHIPPED_SHA256[variant]


# ---------------------------------------------------------------- the doc against the code


def doc_tables(section: str) -> set[str]:
    """The variable names in the first column of the tables under a '## section' of the doc."""
    text = DOC.read_text("utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in body.splitlines():
        m = re.match(r"\| ((?:`[a-z_]+`(?:, )?)+) \|", line)
        if m:
            names.update(re.findall(r"`([a-z_]+)`", m.group(1)))
    return names


def test_the_doc_lists_every_variable_a_template_receives(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, set[str]] = {}
    original = PromptSet._render

    def spy(self: PromptSet, name: str, variables: dict[str, Any]) -> str:
        seen.setdefault(name, set()).update(variables)
        if name == "system.j2":
            seen.setdefault("criteria", set()).update(*(c.keys() for c in variables["criteria"]))
        else:
            seen.setdefault("candidates", set()).update(*(c.keys() for c in variables["candidates"]))
        return original(self, name, variables)

    monkeypatch.setattr(PromptSet, "_render", spy)
    render_item(workspace, "local", workspace.sample_data, "s001", {})
    render_item(workspace, "local", workspace.sample_data, "s001", {"mode": "pointwise"})
    documented = doc_tables("Every variable a template receives")
    system_vars = seen["system.j2"]
    user_vars = seen["user_listwise.j2"]
    assert seen["user_pointwise.j2"] == user_vars
    assert system_vars <= documented and user_vars <= documented
    assert documented == user_vars  # nothing documented that is not passed
    text = DOC.read_text("utf-8")
    for key in seen["criteria"] | seen["candidates"]:
        assert f"`{key}` (" in text, key  # each field of a criterion / candidate, with its type


def doc_files() -> list[tuple[str, str]]:
    text = DOC.read_text("utf-8")
    return re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", text, re.DOTALL)


def test_the_doc_shows_the_example_files_as_shipped() -> None:
    files = doc_files()
    assert len(files) == 8
    for rel, shown in files:
        assert (ROOT / rel).read_text("utf-8") == shown, rel
    # The data excerpt is the first item of the shipped data file.
    text = DOC.read_text("utf-8")
    excerpt = json.loads(re.search(r'```json\n(\{"id": "r001".*?)```', text, re.DOTALL).group(1))  # type: ignore[union-attr]
    first = json.loads((EXAMPLE / "data" / "responses.jsonl").read_text("utf-8").splitlines()[0])
    assert excerpt == first


@pytest.fixture
def example_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example workspace as the current folder, found the way a user's is."""
    ws = tmp_path / "dialogue-response"
    shutil.copytree(EXAMPLE, ws)
    monkeypatch.delenv("DIALBGM_HOME", raising=False)
    monkeypatch.delenv("DIALBGM_CACHE_DIR", raising=False)
    monkeypatch.chdir(ws)
    return ws


def doc_commands() -> list[list[str]]:
    text = DOC.read_text("utf-8")
    block = text.split("<!-- commands -->\n```bash\n", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        if line.startswith("dialbgm "):
            out.append(shlex.split(line)[1:])
        else:
            assert line.startswith("cd "), line  # nothing else may hide in the block
    return out


def test_the_worked_example_runs_as_documented(example_ws: Path) -> None:
    outputs = []
    for args in doc_commands():
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
        assert "warning:" not in res.output, (args, res.output)
        outputs.append(res.output)
    validate, render, render_shots, kind, tone, rand, emb = outputs
    assert "4 items, 16 candidates" in validate
    assert "- Coherence (weight 50%): the reply follows from the last turn" in render
    assert "- Specificity (weight 30%)" in render and "- Tone (weight 20%)" in render
    assert "[A] " in render and "[D] " in render and "music" not in render.lower()
    assert "few-shot examples: q" in render_shots and '"reasoning"' in render_shots
    assert "- Coherence (weight 40%)" in kind and "- Kindness (weight 60%)" in kind and "Specificity" not in kind
    assert kind.count("=== request") == 4
    assert "(weight 36%)" in tone and "(weight 21%)" in tone and "(weight 43%)" in tone
    for out, judge in ((rand, "response-random"), (emb, "response-embedding")):
        assert "Hit@1" in out and "failed items: 0" in out, out
        runs = sorted((example_ws / "results").glob(f"*-{judge}-*"))
        assert len(runs) == 1
        metrics = json.loads((runs[0] / "metrics.json").read_text())
        assert metrics["n_items"] == 4 and metrics["n_failed"] == 0


def test_few_shot_answers_of_a_text_task_do_not_call_a_reply_a_clip(example_ws: Path) -> None:
    # Old code: a pointwise chain-of-thought example always said "Human annotators ranked this clip".
    args = ["render", "-j", "response-local", "-i", "r001", "--data", "data/responses.jsonl", "--json"]
    res = runner.invoke(app, [*args, "--set", "mode=pointwise", "--set", "cot=true", "--set", "few_shot=1"])
    assert res.exit_code == 0, res.output
    answer = json.loads(json.loads(res.output)[0]["messages"][2]["content"])
    assert answer["reasoning"].startswith("Human annotators ranked this candidate ")


def test_the_example_refuses_the_music_pool(example_ws: Path) -> None:
    pool = ROOT / "prompts" / "fewshot_pool.jsonl"
    args = ["render", "-j", "response-local", "-i", "r001", "--data", "data/responses.jsonl"]
    res = runner.invoke(app, [*args, "--set", "few_shot=2", "--set", f"few_shot_pool={pool}"])
    assert res.exit_code == 2, res.output
    assert "task is 'dialbgm'" in res.output and "has task 'dialogue-response'" in res.output
    assert "fewshot_pool.task.toml" in res.output and "template.toml" in res.output


# ---------------------------------------------------------------- few-shot pool and task


def pool_with_task(ws: Workspace, task: str | None, kind: str = "music") -> Path:
    pool = ws.root / "pools" / "p.jsonl"
    pool.parent.mkdir(exist_ok=True)
    shutil.copy(ws.prompts_dir / "fewshot_pool.jsonl", pool)
    if task is not None:
        (pool.parent / "p.task.toml").write_text(f'task = "{task}"\ncandidate_kind = "{kind}"\n')
    return pool


@pytest.mark.parametrize(
    ("task", "kind", "needle"), [("other", "music", "task is 'other'"), ("dialbgm", "text", "candidate_kind is 'text'")]
)
def test_a_pool_of_another_task_or_kind_is_refused(
    workspace: Workspace, task: str, kind: str, needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool_with_task(workspace, task, kind)
    monkeypatch.chdir(workspace.root)  # --set few_shot_pool is relative to the current folder
    over = {"few_shot": 2, "few_shot_pool": "pools/p.jsonl"}
    with pytest.raises(ConfigError, match=needle):
        prepare(workspace, "local", workspace.sample_data, limit=2, overrides=over)
    res = runner.invoke(app, ["eval", "-j", "local", "--limit", "2", *(f"--set={k}={v}" for k, v in over.items())])
    assert res.exit_code == 2 and needle in res.output
    assert not workspace.results_dir.exists()


def test_an_undeclared_pool_is_warned_about_and_recorded(workspace: Workspace, tmp_path: Path) -> None:
    pool_with_task(workspace, None)
    (workspace.judges_dir / "shots.toml").write_text(
        'provider = "local"\nmodel = "smollm2-135m"\nfew_shot = 2\nfew_shot_pool = "pools/p.jsonl"\n'
    )
    res = runner.invoke(app, ["render", "-j", "shots", "-i", "s001"])
    assert res.exit_code == 0, res.output
    assert "warning: few-shot pool" in res.output and "declares no task" in res.output
    prep = prepare(workspace, "shots", workspace.sample_data, limit=1)
    assert len(prep.warnings) == 1 and "p.task.toml" in prep.warnings[0]
    # The shipped template and pool declare the same task: no warning.
    assert prepare(workspace, "local", workspace.sample_data, limit=1, overrides={"few_shot": 2}).warnings == []


def test_an_undeclared_template_is_warned_about(workspace: Workspace) -> None:
    (workspace.prompts_dir / "weighted_criteria" / "template.toml").unlink()
    prep = prepare(workspace, "local", workspace.sample_data, limit=1, overrides={"few_shot": 2})
    assert len(prep.warnings) == 1 and "declares no task" in prep.warnings[0]
    assert "is for task 'dialbgm'" in prep.warnings[0]


def test_a_bad_task_declaration_names_the_file(workspace: Workspace) -> None:
    path = workspace.prompts_dir / "weighted_criteria" / "template.toml"
    path.write_text('task = "dialbgm"\n')
    with pytest.raises(ConfigError, match=r"template.toml: candidate_kind: required"):
        prepare(workspace, "local", workspace.sample_data, limit=1)
    path.write_text('task = "dialbgm"\ncandidate_kind = "music"\nkind = "x"\n')
    with pytest.raises(ConfigError, match=r"template.toml: kind: unknown key"):
        prepare(workspace, "local", workspace.sample_data, limit=1)


def test_a_run_with_an_undeclared_pool_records_the_warning(workspace: Workspace, tmp_path: Path) -> None:
    pool_with_task(workspace, None)
    with ScriptedOpenAIServer() as server:
        over = {"few_shot": 2, "few_shot_pool": "pools/p.jsonl", "api_base": server.base_url, "model": "m"}
        res = run_eval(
            workspace, "openai-compatible", workspace.sample_data, out_dir=tmp_path / "r", limit=1, overrides=over
        )
        assert len(server.requests) == 1
    assert len(res.manifest["warnings"]) == 1 and "declares no task" in res.manifest["warnings"][0]
    assert res.metrics["n_items"] == 1


def test_resume_after_the_pool_is_gone_exits_2(workspace: Workspace, tmp_path: Path) -> None:
    # Old code: quick_config read the pool unguarded, and --resume ended in a FileNotFoundError traceback.
    pool = pool_with_task(workspace, "dialbgm")
    with ScriptedOpenAIServer() as server:
        over = {"few_shot": 2, "few_shot_pool": "pools/p.jsonl", "api_base": server.base_url, "model": "m"}
        run_eval(workspace, "openai-compatible", workspace.sample_data, out_dir=tmp_path / "r", limit=1, overrides=over)
    pool.unlink()
    res = runner.invoke(app, ["eval", "--resume", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 2, res.output
    assert f"few_shot_pool: {pool}: no such file" in res.output


# ---------------------------------------------------------------- summarizer template per judge


def test_a_judge_chooses_its_summarizer_template(workspace: Workspace, tmp_path: Path) -> None:
    # Old code: summarizer_template was no setting (and prompts/summarize was the only template).
    short = workspace.prompts_dir / "summarize_short"
    short.mkdir()
    (short / "system.j2").write_text("Summarize in five words.")
    (short / "user.j2").write_text("{% for t in dialogue %}{{ t.text }} {% endfor %}")
    with ScriptedOpenAIServer(lambda body, n: Reply(f"summary {n}")) as server:
        (workspace.judges_dir / "summ.toml").write_text(
            f'provider = "openai-compatible"\nmodel = "m"\napi_base = "{server.base_url}"\n'
        )
        over = {"context": "summary", "summarizer": "summ", "summarizer_template": "summarize_short"}
        run_eval(workspace, "random", workspace.sample_data, out_dir=tmp_path / "a", overrides=over)
        assert len(server.requests) == 3  # s046-s048 lack a summary
        assert {r["messages"][0]["content"] for r in server.requests} == {"Summarize in five words."}
        # The three summaries are called concurrently: which one arrives first is a race.
        firsts = sorted(r["messages"][1]["content"][:24] for r in server.requests)
        assert firsts[-1].startswith("We've been stuck outside")  # s046's, and no "Conversation:"
        # The default template is another request: not served by the other template's cache.
        run_eval(
            workspace,
            "random",
            workspace.sample_data,
            out_dir=tmp_path / "b",
            overrides=over | {"summarizer_template": "summarize"},
        )
        assert len(server.requests) == 6
        assert server.requests[3]["messages"][0]["content"].startswith("You summarize everyday conversations")
    from dialbgm.run._identity import quick_identity

    h_short = quick_identity(workspace, "random", workspace.sample_data, None, over).config_hash
    h_default = quick_identity(
        workspace, "random", workspace.sample_data, None, over | {"summarizer_template": "summarize"}
    ).config_hash
    assert h_short != h_default
    with pytest.raises(ConfigError, match="no template 'nope'"):
        prepare(workspace, "random", workspace.sample_data, overrides=over | {"summarizer_template": "nope"})


# ---------------------------------------------------------------- one rule for relative paths


def test_a_path_in_a_judge_file_is_relative_to_the_workspace_root(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_with_task(workspace, "dialbgm")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "pools").mkdir(parents=True)
    (elsewhere / "pools" / "p.jsonl").write_text("not a pool\n")  # the same relative path, from the cwd
    monkeypatch.chdir(elsewhere)
    (workspace.judges_dir / "shots.toml").write_text(
        'provider = "local"\nmodel = "smollm2-135m"\nfew_shot = 2\nfew_shot_pool = "pools/p.jsonl"\n'
    )
    res = runner.invoke(app, ["render", "-j", "shots", "-i", "s001", "--json"])
    assert res.exit_code == 0, res.output
    prep = prepare(workspace, "shots", workspace.sample_data, limit=1)
    assert prep.pool is not None and prep.pool.path == pool


def test_a_path_on_the_command_line_is_relative_to_the_current_folder(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old code: --set few_shot_pool=p.jsonl was looked up in the workspace root.
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(workspace.prompts_dir / "fewshot_pool.jsonl", here / "mine.jsonl")
    shutil.copy(workspace.prompts_dir / "fewshot_pool.task.toml", here / "mine.task.toml")
    shutil.copy(workspace.sample_data, here / "items.jsonl")
    monkeypatch.chdir(here)
    args = ["render", "-j", "local", "-i", "s001", "--data", "items.jsonl", "--set", "few_shot=2"]
    res = runner.invoke(app, [*args, "--set", "few_shot_pool=mine.jsonl"])
    assert res.exit_code == 0, res.output
    assert "few-shot examples: p" in res.output
    # Recorded absolute, so the run's config says which file it was.
    res = runner.invoke(app, ["eval", "-j", "random", "--data", "items.jsonl", "--limit", "2", "--out", "run", "-q"])
    assert res.exit_code == 0, res.output
    plan = json.loads((here / "run" / "plan.json").read_text())
    assert plan["args"]["data"] == str(here / "items.jsonl")


def test_resume_from_another_folder_opens_the_same_data(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Old code: plan.json recorded "items.jsonl" as given, and --resume opened it from the new cwd.
    here = tmp_path / "here"
    here.mkdir()
    shutil.copy(workspace.sample_data, here / "items.jsonl")
    monkeypatch.chdir(here)
    res = runner.invoke(
        app, ["eval", "-j", "random", "--data", "items.jsonl", "--limit", "3", "--out", str(tmp_path / "run"), "-q"]
    )
    assert res.exit_code == 0, res.output
    (tmp_path / "run" / "manifest.json").unlink()  # as if interrupted before the end
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["eval", "--resume", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["counts"]["items_ok"] == 3


def test_template_is_a_name_in_prompts_whatever_the_current_folder(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(workspace.prompts_dir / "weighted_criteria", workspace.prompts_dir / "variant")
    monkeypatch.chdir(tmp_path)
    judge = load_judge(workspace, "local", {"template": "variant"})
    assert judge.weights == {"relevance": 0.5, "non_intrusiveness": 0.3, "consistency": 0.2}
    res = runner.invoke(app, ["render", "-j", "local", "-i", "s001", "--set", "template=variant"])
    assert res.exit_code == 0, res.output
