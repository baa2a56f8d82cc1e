"""Run identity and reuse: one identity for eval, --resume and compare; re-asking failed replies;
pairing runs only on the same items; summaries paid for only after every check.

Everything runs for real: the runner, litellm and a scripted OpenAI-compatible server on loopback
(tests/support/scripted_server.py) that counts every request. Where a test stands in for a change
that cannot be made inside a test (a new dialbgm release, a new model wheel), it says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dialbgm.analysis._diff import diff_runs
from dialbgm.cli._app import app as main_app
from dialbgm.cli._experiments import register
from dialbgm.config._experiment import load_experiment
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import ConfigError, ResultsError
from dialbgm.run._cells import plan_cells, run_cells
from dialbgm.run._entry import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
GOOD = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'

exp_app = typer.Typer()
register(exp_app)
cli = CliRunner()


def good(body: dict[str, Any], n: int) -> Reply:
    return Reply(GOOD)


def first_turn(item_id: str) -> str:
    return load_dataset(ROOT / "data" / "sample.jsonl").get(item_id).dialogue[0].text


def write_experiment(ws: Workspace, text: str, name: str = "exp") -> Path:
    (ws.root / "experiments").mkdir(exist_ok=True)
    path = ws.root / "experiments" / f"{name}.toml"
    path.write_text(text)
    shutil.copytree(ROOT / "prices", ws.root / "prices", dirs_exist_ok=True)
    return path


def llm_cells(base_url: str, *, template: str = "weighted_criteria", limit: int = 3) -> str:
    return f"""
[data]
path = "data/sample.jsonl"
limit = {limit}
[judges.llm]
judge = "openai-compatible"
api_base = "{base_url}"
model = "served"
template = "{template}"
cot = [false, true]
"""


def copy_template(ws: Workspace, name: str) -> Path:
    folder = ws.prompts_dir / name
    shutil.copytree(ws.prompts_dir / "weighted_criteria", folder)
    return folder


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ---------------------------------------------------------------- item 3: one identity, whole template tree


def test_an_included_template_file_is_part_of_the_identity_so_a_finished_cell_runs_again(
    workspace: Workspace,
) -> None:
    folder = copy_template(workspace, "incl")
    (folder / "parts").mkdir()
    (folder / "parts" / "extra.j2").write_text("Be fair to quiet music.")
    system = folder / "system.j2"
    system.write_text(system.read_text() + '\n{% include "parts/extra.j2" %}\n')
    with ScriptedOpenAIServer(good) as server:
        path = write_experiment(workspace, llm_cells(server.base_url, template="incl"))
        exp = load_experiment(workspace, path)
        run_cells(workspace, exp)
        assert len(server.requests) == 6
        assert "Be fair to quiet music." in server.requests[0]["messages"][0]["content"]

        (folder / "parts" / "extra.j2").write_text("Prefer music without vocals.")
        runs = run_cells(workspace, exp)
        # Old code: the partial was not hashed, both cells were reused with the old prompt's answers.
        assert not any(r.get("reused") for r in runs)
        assert len(server.requests) == 12
        assert all("Prefer music without vocals." in b["messages"][0]["content"] for b in server.requests[6:])

        assert all(r.get("reused") for r in run_cells(workspace, exp))  # unchanged again: reused
        assert len(server.requests) == 12


@pytest.mark.parametrize("how", ["import", "extends"])
def test_resume_refuses_after_an_imported_or_extended_template_changed(
    workspace: Workspace, sample_path: Path, tmp_path: Path, how: str
) -> None:
    folder = copy_template(workspace, "lib")
    user = folder / "user_listwise.j2"
    if how == "import":
        (folder / "macros.j2").write_text("{% macro head() %}Conversation:{% endmacro %}")
        user.write_text('{% import "macros.j2" as m %}' + user.read_text().replace("Conversation:", "{{ m.head() }}"))
        edited, new_text = folder / "macros.j2", "{% macro head() %}The talk:{% endmacro %}"
    else:
        (folder / "base.j2").write_text("{% block body %}{% endblock %}\nAnswer with JSON.")
        user.write_text('{% extends "base.j2" %}{% block body %}' + user.read_text() + "{% endblock %}")
        edited, new_text = folder / "base.j2", "{% block body %}{% endblock %}\nAnswer with JSON only."
    out = tmp_path / "run"
    over = {"template": "lib"}
    with ScriptedOpenAIServer(good) as server:
        over["api_base"] = server.base_url
        run_eval(workspace, "openai-compatible", sample_path, out_dir=out, limit=2, overrides=over)
        for f in ("manifest.json", "metrics.json", "units.jsonl", "items.jsonl"):
            (out / f).unlink()  # as if killed before the end
        edited.write_text(new_text)
        with pytest.raises(ConfigError, match="template_sha256"):
            run_eval(workspace, "openai-compatible", sample_path, resume=out)
        assert len(server.requests) == 2


def test_the_summarizers_provider_and_template_files_are_part_of_the_identity(
    workspace: Workspace, sample_path: Path
) -> None:
    from dialbgm.run._identity import quick_identity

    shutil.copy(workspace.providers_dir / "openai-compatible.toml", workspace.providers_dir / "summprov.toml")
    (workspace.judges_dir / "summ.toml").write_text('provider = "summprov"\nmodel = "m1"\n')
    over = {"context": "summary", "summarizer": "summ"}
    h1 = quick_identity(workspace, "embedding", sample_path, None, over).config_hash
    prov = workspace.providers_dir / "summprov.toml"
    prov.write_text(prov.read_text().replace("temperature = true", "temperature = false"))
    # Old code: only the summarizer's judge file was hashed; its provider decides what is sent.
    h2 = quick_identity(workspace, "embedding", sample_path, None, over).config_hash
    assert h2 != h1
    (workspace.prompts_dir / "summarize" / "style.j2").write_text("Write one sentence.")
    assert quick_identity(workspace, "embedding", sample_path, None, over).config_hash != h2
    # Throughput settings of that provider change no answer: the hash stays.
    h3 = quick_identity(workspace, "embedding", sample_path, None, over).config_hash
    prov.write_text(prov.read_text().replace("concurrency = 4", "concurrency = 2"))
    assert quick_identity(workspace, "embedding", sample_path, None, over).config_hash == h3


def test_a_new_dialbgm_version_rescores_finished_cells_from_the_cache_without_a_call(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new release cannot be installed inside a test: ``dialbgm.__version__`` is raised and the
    function that scores an item is replaced, standing in for an upgrade that changed scoring."""
    import dialbgm
    from dialbgm.run import _scoring as scoring

    with ScriptedOpenAIServer(good) as server:
        path = write_experiment(workspace, llm_cells(server.base_url))
        exp = load_experiment(workspace, path)
        run_cells(workspace, exp)
        calls = len(server.requests)
        cell = exp.out_dir(workspace) / exp.cells[0].cell_id
        before = rows(cell / "items.jsonl")

        real = scoring.item_metrics

        def new_metrics(scores: Any, ranks: Any) -> dict[str, float]:
            return {**real(scores, ranks), "hit_at_1": 0.5}

        monkeypatch.setattr(dialbgm, "__version__", dialbgm.__version__ + "+next")
        monkeypatch.setattr(scoring, "item_metrics", new_metrics)
        runs = run_cells(workspace, exp)
        assert len(server.requests) == calls  # re-scored from the cached replies: zero calls
        assert not any(r.get("reused") for r in runs)
        assert all(r["provider_calls"] == 0 and r["cache_hits"] == 3 for r in runs)
        after = rows(cell / "items.jsonl")
        assert [r["metrics"]["hit_at_1"] for r in after] == [0.5] * 3
        assert [r["scores"] for r in after] == [r["scores"] for r in before]
        manifest = json.loads((cell / "manifest.json").read_text())
        assert manifest["identity"]["scoring"]["dialbgm"].endswith("+next")
        assert all(r.get("reused") for r in run_cells(workspace, exp))  # and now it is current


def test_eval_resume_and_compare_share_one_identity(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    from dialbgm.run._identity import quick_identity
    from dialbgm.run._prepare import prepare, prepared_identity

    for judge, over in (("random", {"seed": 3}), ("embedding", {}), ("local", {"few_shot": 2})):
        quick = quick_identity(workspace, judge, sample_path, 3, over)
        prep = prepare(workspace, judge, sample_path, limit=3, overrides=over)
        try:
            full = prepared_identity(workspace, prep, sample_path, 3, over)
        finally:
            prep.backend.close()
        assert (quick.config, quick.model, quick.scoring) == (full.config, full.model, full.scoring)
        assert quick.results_hash == full.results_hash
        if judge != "local":
            res = run_eval(workspace, judge, sample_path, out_dir=tmp_path / judge, limit=3, overrides=over)
            assert res.manifest["identity"] == quick.record()
            assert res.manifest["config_hash"] == quick.config_hash
    # The shipped template folders hold only their named files: their hash is the one they always had.
    from dialbgm.judging._prompts import PromptSet, readable_files

    folder = workspace.prompts_dir / "weighted_criteria"
    assert [n for n, _ in readable_files(folder)] == sorted((*PromptSet.FILES, *PromptSet.OPTIONAL))


def test_a_new_model_file_makes_compare_run_the_cell_again(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new model wheel cannot be installed in a test: the function that reads the embedding
    model's identity from its wheel is made to report another file, as a new wheel would."""
    from dialbgm.calls.backends import _embedding as embedding

    path = write_experiment(workspace, '[data]\npath = "data/sample.jsonl"\nlimit = 3\n[judges.embedding]\n')
    exp = load_experiment(workspace, path)
    first = run_cells(workspace, exp)
    assert first[0]["provider_calls"] == 3
    assert run_cells(workspace, exp)[0].get("reused")

    real = embedding.embedding_files

    def new_wheel() -> tuple[Path, Path, dict[str, Any]]:
        model, tok, ident = real()
        return model, tok, {**ident, "model_sha256": "0" * 64}

    monkeypatch.setattr(embedding, "embedding_files", new_wheel)
    again = run_cells(workspace, exp)[0]
    # Old code: reused, with the scores of the model that is no longer installed.
    assert not again.get("reused") and again["provider_calls"] == 3


# ---------------------------------------------------------------- item 4: re-asking failed replies


def scripted_failures(bad: dict[str, Reply]) -> tuple[Any, dict[str, int]]:
    """Each item in ``bad`` gets its bad reply the first time it is asked, a good one afterwards."""
    marks = {first_turn(i): i for i in bad}
    asked: dict[str, int] = {}

    def script(body: dict[str, Any], n: int) -> Reply:
        user = body["messages"][-1]["content"]
        item = next((i for m, i in marks.items() if m in user), None)
        if item is None:
            return Reply(GOOD)
        asked[item] = asked.get(item, 0) + 1
        return bad[item] if asked[item] == 1 else Reply(GOOD)

    return script, asked


def eval_args(out: Path, *extra: str) -> list[str]:
    return ["eval", "-q", "--resume", str(out), *extra]


def test_retry_status_asks_a_parse_error_again_as_a_new_attempt_keeping_the_first_reply(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    from dialbgm.calls._cache import ResponseCache

    script, asked = scripted_failures({"s002": Reply("I like the second one best!")})
    out = tmp_path / "run"
    with ScriptedOpenAIServer(script) as server:
        over = {"api_base": server.base_url}
        res = run_eval(workspace, "openai-compatible", sample_path, out_dir=out, limit=4, overrides=over)
        assert res.metrics["failed_by_status"] == {"parse_error": 1}
        first_key = next(r for r in rows(out / "units.jsonl") if r["item_id"] == "s002")["cache_key"]

        # --retry-failed is for transport errors: the cached parse error is served again.
        again = run_eval(workspace, "openai-compatible", sample_path, resume=out, retry_failed=True)
        assert again.metrics["failed_by_status"] == {"parse_error": 1} and len(server.requests) == 4

        result = cli.invoke(main_app, eval_args(out, "--retry-status", "parse_error"))
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 5 and asked["s002"] == 2  # only that unit was asked again
        unit = next(r for r in rows(out / "units.jsonl") if r["item_id"] == "s002")
        assert unit["status"] == "ok" and unit["attempt"] == 1 and unit["cache_key"] != first_key
        (earlier,) = unit["attempts_history"]
        assert earlier["attempt"] == 0 and earlier["status"] == "parse_error"
        assert earlier["raw"] == "I like the second one best!" and earlier["cache_key"] == first_key
        assert json.loads((out / "metrics.json").read_text())["n_failed"] == 0
        # Nothing was replaced: the first reply is still cached under its own key, and journaled.
        cache = ResponseCache(workspace.cache_dir)
        try:
            kept = cache.get_key(first_key)
            assert kept is not None and kept.text == "I like the second one best!"
        finally:
            cache.close()
        journal = [r for r in rows(out / "journal.jsonl") if r["unit_id"].startswith("s002")]
        assert [r.get("attempt", 0) for r in journal] == [0, 1]

        # A later resume keeps the new attempt (journal) and its history (cache); no call.
        result = cli.invoke(main_app, eval_args(out))
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 5
        assert next(r for r in rows(out / "units.jsonl") if r["item_id"] == "s002") == unit

        # A new run asks the first attempt again (a cache hit); re-asking it there costs nothing either.
        fresh = tmp_path / "fresh"
        res = run_eval(workspace, "openai-compatible", sample_path, out_dir=fresh, limit=4, overrides=over)
        assert res.metrics["failed_by_status"] == {"parse_error": 1}
        result = cli.invoke(main_app, eval_args(fresh, "--retry-status", "parse_error"))
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 5
        assert json.loads((fresh / "metrics.json").read_text())["n_failed"] == 0


def test_retry_status_all_asks_again_truncated_refused_and_transport_failures(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    bad = {
        "s001": Reply('{"scores": {"A": 9', finish_reason="length"),
        "s002": Reply("", finish_reason="content_filter"),
        "s003": Reply(status=400),  # not retried by the call's own retries: a transport error
    }
    script, asked = scripted_failures(bad)
    out = tmp_path / "run"
    with ScriptedOpenAIServer(script) as server:
        res = run_eval(
            workspace, "openai-compatible", sample_path, out_dir=out, limit=4, overrides={"api_base": server.base_url}
        )
        assert res.metrics["failed_by_status"] == {"refused": 1, "transport_error": 1, "truncated": 1}
        result = cli.invoke(main_app, eval_args(out, "--retry-status", "all"))
        assert result.exit_code == 0, result.output
        assert asked == {"s001": 2, "s002": 2, "s003": 2} and len(server.requests) == 7
    units = {r["item_id"]: r for r in rows(out / "units.jsonl")}
    assert all(u["status"] == "ok" for u in units.values())
    assert [units[i]["attempts_history"][0]["status"] for i in ("s001", "s002")] == ["truncated", "refused"]
    assert "attempt" not in units["s003"]  # a transport error is called again as before: no reply to keep
    assert "attempt" not in units["s004"]


def test_retry_status_is_checked(workspace: Workspace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_eval(workspace, "random", workspace.sample_data, out_dir=out, limit=2)
    result = cli.invoke(main_app, eval_args(out, "--retry-status", "parse_error,bogus"))
    assert result.exit_code == 2 and "bogus" in result.output
    result = cli.invoke(main_app, ["eval", "-j", "random", "--retry-status", "parse_error"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_a_cell_run_again_by_compare_keeps_the_re_asked_attempts(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new release is stood in for by raising ``dialbgm.__version__`` (see above)."""
    import dialbgm

    script, asked = scripted_failures({"s002": Reply("no idea")})
    with ScriptedOpenAIServer(script) as server:
        path = write_experiment(workspace, llm_cells(server.base_url).replace("cot = [false, true]", "cot = [false]"))
        exp = load_experiment(workspace, path)
        run_cells(workspace, exp)
        cell = exp.out_dir(workspace) / exp.cells[0].cell_id
        assert json.loads((cell / "metrics.json").read_text())["failed_by_status"] == {"parse_error": 1}
        result = cli.invoke(main_app, eval_args(cell, "--retry-status", "parse_error"))
        assert result.exit_code == 0, result.output
        assert run_cells(workspace, exp)[0].get("reused")
        calls = len(server.requests)

        monkeypatch.setattr(dialbgm, "__version__", dialbgm.__version__ + "+next")
        run = run_cells(workspace, exp)[0]
        assert not run.get("reused") and len(server.requests) == calls and asked["s002"] == 2
    unit = next(r for r in rows(cell / "units.jsonl") if r["item_id"] == "s002")
    assert unit["status"] == "ok" and unit["attempt"] == 1
    assert [h["status"] for h in unit["attempts_history"]] == ["parse_error"]
    assert json.loads((cell / "metrics.json").read_text())["n_failed"] == 0


# ---------------------------------------------------------------- item 18: pairing only the same items


def edited_copy(src: Path, dst: Path, item_id: str, new_caption: str) -> Path:
    lines = []
    for line in src.read_text().splitlines():
        obj = json.loads(line)
        if obj["id"] == item_id:
            obj["candidates"][0]["caption"] = new_caption
        lines.append(json.dumps(obj))
    dst.write_text("\n".join(lines) + "\n")
    return dst


def test_diff_refuses_runs_on_different_data_files_or_pairs_identical_items_only(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    other = edited_copy(sample_path, tmp_path / "other.jsonl", "s003", "A kazoo solo, very loud.")
    run_eval(workspace, "random", sample_path, out_dir=tmp_path / "A", limit=10)
    run_eval(workspace, "random", other, out_dir=tmp_path / "B", limit=10)
    result = cli.invoke(exp_app, ["diff", str(tmp_path / "A"), str(tmp_path / "B")])
    # Old code: exit 0, item s003 compared with a different s003.
    assert result.exit_code == 2, result.output
    assert "different data files" in result.output and "--pair-by-content" in result.output

    result = cli.invoke(exp_app, ["diff", str(tmp_path / "A"), str(tmp_path / "B"), "--pair-by-content", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["comparison"]["n_common"] == 9
    assert d["comparison"]["pairing"]["n_identical"] == 9
    assert d["comparison"]["pairing"]["n_same_id_different_content"] == 1
    result = cli.invoke(exp_app, ["diff", str(tmp_path / "A"), str(tmp_path / "B"), "--pair-by-content"])
    assert "paired on the 9 item(s)" in result.output and "1 item(s) with the same id" in result.output

    # A run from before items carried their hash: its content is read from its data file, if that is
    # still the file the run read; otherwise pairing by content is refused.
    items = tmp_path / "B" / "items.jsonl"
    items.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "item_sha256"}) + "\n" for r in rows(items))
    )
    d = diff_runs(tmp_path / "A", tmp_path / "B", by_content=True, n_flips=1000)
    assert d["comparison"]["n_common"] == 9
    other.write_text(other.read_text().replace(first_turn("s001"), "Edited later."))
    with pytest.raises(ResultsError, match="changed since the run"):
        diff_runs(tmp_path / "A", tmp_path / "B", by_content=True, n_flips=1000)


def test_report_refuses_cells_run_on_different_data_files(workspace: Workspace, tmp_path: Path) -> None:
    data = workspace.root / "data" / "mine.jsonl"
    shutil.copy(workspace.sample_data, data)
    path = write_experiment(workspace, '[data]\npath = "data/mine.jsonl"\nlimit = 6\n[judges.random]\nseed = [0, 1]\n')
    exp = load_experiment(workspace, path)
    run_cells(workspace, exp)
    edited_copy(workspace.sample_data, data, "s002", "Thrash metal at full volume.")
    # As an interrupted compare leaves it: the first cell re-run on the edited file, the second not.
    first = exp.cells[0]
    run_eval(
        workspace,
        first.judge,
        data,
        out_dir=exp.out_dir(workspace) / first.cell_id,
        limit=first.limit,
        overrides=first.overrides,
        force=True,
    )
    result = cli.invoke(exp_app, ["report", str(exp.out_dir(workspace))])
    assert result.exit_code == 2, result.output
    assert "different data files" in result.output
    result = cli.invoke(exp_app, ["report", str(exp.out_dir(workspace)), "--pair-by-content"])
    assert result.exit_code == 0, result.output
    md = (exp.out_dir(workspace) / "report.md").read_text()
    assert "compared on the 5 item(s) whose content is identical" in md and "1 item(s) with the same id" in md


def test_report_says_when_the_data_file_changed_since_the_run(workspace: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    shutil.copy(workspace.sample_data, data)
    out = tmp_path / "run"
    run_eval(workspace, "random", data, out_dir=out, limit=6)
    text = data.read_text()
    marker = first_turn("s001")
    data.write_text(text.replace(marker, "EDITED AFTER THE RUN"))
    result = cli.invoke(exp_app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "changed since the run" in result.output
    page = (out / "report.html").read_text()
    # Old code: the edited dialogue was shown beside scores the judge gave to the original one.
    assert "EDITED AFTER THE RUN" not in page and marker not in page
    assert "changed since the run" in page and "changed since the run" in (out / "report.md").read_text()

    data.write_text(text)  # the file the run read again: dialogues are shown
    result = cli.invoke(exp_app, ["report", str(out)])
    assert result.exit_code == 0 and "warning" not in result.output
    assert "changed since the run" not in (out / "report.html").read_text()


# ---------------------------------------------------------------- summaries: counted, checked first, --no-cache


def summarizer(ws: Workspace, base_url: str, model: str = "gpt-4o") -> None:
    (ws.judges_dir / "summ.toml").write_text(
        f'provider = "openai-compatible"\nmodel = "{model}"\napi_base = "{base_url}"\n'
        "[params]\ntemperature = 0.0\nmax_tokens = 200\n"
    )


def summary_reply(body: dict[str, Any], n: int) -> Reply:
    return Reply("Summary: two friends chat.")


def test_dry_run_and_max_cost_count_and_price_the_summaries(workspace: Workspace) -> None:
    with ScriptedOpenAIServer(summary_reply) as server:
        summarizer(workspace, server.base_url)
        path = write_experiment(
            workspace,
            '[data]\npath = "data/sample.jsonl"\n[judges.embedding]\ncontext = "summary"\n'
            'summarizer = "summ"\norder_seed = [0, 1]\n',
        )
        exp = load_experiment(workspace, path)
        plans = plan_cells(workspace, exp)
        summaries = [p for p in plans if p.part == "summaries"]
        # Three sample items have no summary; both cells need the same three: counted once.
        assert [(p.calls, p.uncached) for p in summaries] == [(3, 3), (3, 0)]
        assert summaries[0].judge == "summ" and summaries[0].cost_est is not None and summaries[0].cost_est > 0
        assert summaries[0].cost_est == pytest.approx(
            (summaries[0].prompt_tokens_est * 2.5 + 3 * 200 * 10.0) / 1e6  # gpt-4o's price, 200-token cap
        )

        result = cli.invoke(exp_app, ["compare", str(path), "--dry-run"])
        # Old code: exit 2, "summaries are not generated yet".
        assert result.exit_code == 0, result.output
        assert "embedding__order_seed=0 (summaries)" in result.output
        result = cli.invoke(exp_app, ["compare", str(path), "--max-cost", "0.000001"])
        assert result.exit_code == 2 and "exceeds --max-cost" in result.output
        assert server.requests == []
        result = cli.invoke(exp_app, ["compare", str(path), "--max-cost", "1"])
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 3
        assert all(p.uncached == 0 for p in plan_cells(workspace, exp))


def test_summaries_are_paid_for_only_after_the_out_and_key_checks(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    over = {"context": "summary", "summarizer": "summ"}
    with ScriptedOpenAIServer(summary_reply) as server:
        summarizer(workspace, server.base_url)
        out = tmp_path / "taken"
        run_eval(workspace, "random", sample_path, out_dir=out, limit=2)
        result = cli.invoke(
            main_app,
            [
                "eval",
                "-q",
                "-j",
                "embedding",
                "--out",
                str(out),
                "--set",
                "context=summary",
                "--set",
                "summarizer=summ",
            ],
        )
        assert result.exit_code == 2 and "already holds a run" in result.output
        assert server.requests == []  # old code: three summaries paid, then the refusal

        # A judge whose key is missing: refused before any summary is written.
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            run_eval(workspace, "gpt-4o", sample_path, out_dir=tmp_path / "k", overrides=over)
        assert server.requests == []

        res = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "ok", overrides=over)
        assert len(server.requests) == 3 and res.metrics["n_items"] == 48
        generated = [r for r in rows(tmp_path / "ok" / "summaries.jsonl") if r["source"] == "generated"]
        assert [r["summary"] for r in generated] == ["two friends chat."] * 3


def test_no_cache_also_bypasses_the_cache_for_summaries(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    from dialbgm.calls._cache import ResponseCache

    over = {"context": "summary", "summarizer": "summ"}
    with ScriptedOpenAIServer(summary_reply) as server:
        summarizer(workspace, server.base_url)
        run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "a", overrides=over)
        assert len(server.requests) == 3
        cache = ResponseCache(workspace.cache_dir)
        entries = cache.stats().entries
        cache.close()
        run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "b", overrides=over, use_cache=False)
        assert len(server.requests) == 6  # old code: the summaries came from the cache
        cache = ResponseCache(workspace.cache_dir)
        assert cache.stats().entries == entries  # and nothing was written to it
        cache.close()
        summaries = rows(tmp_path / "b" / "summaries.jsonl")
        assert not any(r.get("cache_hit") for r in summaries)


# ---------------------------------------------------------------- the same class, elsewhere


def test_dry_run_says_a_finished_cell_is_reused_even_when_the_cache_lost_it(workspace: Workspace) -> None:
    with ScriptedOpenAIServer(good) as server:
        path = write_experiment(workspace, llm_cells(server.base_url))
        exp = load_experiment(workspace, path)
        run_cells(workspace, exp)
        shutil.rmtree(workspace.cache_dir)
        plans = plan_cells(workspace, exp)
        # Old code: 3 calls per cell to pay, while compare then called nothing.
        assert all(p.reused and p.uncached == 0 and p.cost_est == 0.0 for p in plans)
        result = cli.invoke(exp_app, ["compare", str(path), "--dry-run"])
        assert result.exit_code == 0 and "reused" in result.output
        calls = len(server.requests)
        run_cells(workspace, exp)
        assert len(server.requests) == calls


def test_resume_with_its_data_file_gone_is_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    shutil.copy(workspace.sample_data, data)
    out = tmp_path / "run"
    run_eval(workspace, "random", data, out_dir=out, limit=2)
    (out / "manifest.json").unlink()
    data.unlink()
    result = cli.invoke(main_app, eval_args(out))
    # Old code: a FileNotFoundError traceback, exit 1.
    assert result.exit_code == 2, result.output
    assert str(data) in result.output and "no such file" in result.output


def test_a_missing_few_shot_pool_fails_compare_cleanly(workspace: Workspace) -> None:
    path = write_experiment(
        workspace,
        '[data]\npath = "data/sample.jsonl"\nlimit = 2\n[judges.local]\nfew_shot = 2\n'
        'few_shot_pool = "prompts/nope.jsonl"\n',
    )
    result = cli.invoke(exp_app, ["compare", str(path)])
    assert result.exit_code == 2, result.output
    assert "nope.jsonl" in result.output and "no such file" in result.output


def test_a_base_url_from_the_environment_is_part_of_the_run_identity(
    workspace: Workspace, sample_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment's base URL is in every cache key; a finished cell or --resume must see it too."""
    from dialbgm.run._identity import quick_identity

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    plain = quick_identity(workspace, "gpt-4o", sample_path, 2, None)
    assert "api_base_from_environment" not in plain.config["provider"]  # unset: the hash it had
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    proxied = quick_identity(workspace, "gpt-4o", sample_path, 2, None)
    assert proxied.config["provider"]["api_base_from_environment"] == "http://127.0.0.1:9/v1"
    assert proxied.config_hash != plain.config_hash
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert quick_identity(workspace, "gpt-4o", sample_path, 2, None).config_hash == plain.config_hash
