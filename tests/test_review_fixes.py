"""Regressions for defects found in review: each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import ConfigError, DataError
from dialbgm.judging._parse import parse_reply
from dialbgm.judging._request import Response
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

runner = CliRunner()


def test_shuffled_labels_do_not_move_scores_of_prompt_free_judges(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    plain = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "a", limit=12)
    shuffled = run_eval(
        workspace, "embedding", sample_path, out_dir=tmp_path / "b", limit=12, overrides={"shuffle_labels": True}
    )
    for m in ("hit_at_1", "ndcg", "kendall_tau_b"):
        assert shuffled.metrics[m] == pytest.approx(plain.metrics[m])


def test_kemeny_refuses_large_items_before_any_call(workspace: Workspace, tmp_path: Path) -> None:
    item = {
        "id": "big",
        "dialogue": [{"speaker": "A", "text": "hi"}],
        "candidates": [{"id": f"c{k}", "caption": f"clip {k}", "rank": k + 1} for k in range(9)],
    }
    data = tmp_path / "big.jsonl"
    data.write_text(json.dumps(item) + "\n")
    with pytest.raises(ConfigError, match="at most 8 candidates"):
        prepare(workspace, "random", data, overrides={"orders": 2, "aggregation": "kemeny"})


def test_a_reply_without_choices_is_a_transport_error(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    with ScriptedOpenAIServer(lambda b, n: Reply(body=body)) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "r",
            limit=1,
            overrides={"api_base": server.base_url},
        )
    assert res.metrics["failed_by_status"] == {"transport_error": 1}
    unit = json.loads((tmp_path / "r" / "units.jsonl").read_text())
    assert "no choices" in unit["error"]


def test_empty_reply_cut_at_the_limit_is_truncated() -> None:
    assert parse_reply(Response("", "length"), ["A", "B"], 1, 10).status == "truncated"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "weights.relevance=nan"], "finite"),
        (["--set", "weights.relevance=inf"], "finite"),
        (["--set", "weights.relevance=1e308", "--set", "weights.consistency=1e308"], "finite sum"),
        (["--set", "weights.relevance=-1"], "weights.relevance: must be a finite number >= 0"),
        (["--set", 'orders="random:05"'], "orders: must be"),
        (["--set", "params=3"], "params: must be a table"),
    ],
)
def test_bad_overrides_exit_2(workspace: Workspace, args: list[str], needle: str) -> None:
    res = runner.invoke(app, ["render", "-j", "local", "-i", "s001", *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_a_dotted_weight_override_keeps_the_other_weights(workspace: Workspace) -> None:
    path = workspace.judges_dir / "local.toml"
    text = path.read_text()
    path.write_text(text[: text.index("[weights]")] + text[text.index("[params]") :])
    res = runner.invoke(app, ["render", "-j", "local", "-i", "s001", "--set", "weights.relevance=1.5"])
    assert res.exit_code == 0, res.output
    # 1.5 against the default 0.3 and 0.2: 75%, 15%, 10%.
    assert "Contextual relevance (weight 75%)" in res.output
    assert "Non-intrusiveness (weight 15%)" in res.output and "Consistency (weight 10%)" in res.output


def test_long_form_problems_name_the_candidates_own_row_and_bad_cells(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text(
        "id,dialogue,candidate_id,caption,rank\n"
        'd1,"A: hi",c1,soft piano,1\n'
        'd1,"A: hi",c2,loud metal,\n'
        'd2,"{""a"": 1}",c3,x,1\n'
        'd2,"{""a"": 1}",c4,y,2\n'
        'd3,"A: hi",c5,x,1,EXTRA\n'
    )
    with pytest.raises(DataError) as e:
        load_dataset(csv)
    found = [str(p) for p in e.value.problems]
    assert any(f.startswith(f"{csv}:3: candidates[1].rank") for f in found), found
    assert any(f.startswith(f"{csv}:4: dialogue: not a JSON list") for f in found), found
    assert any(f.startswith(f"{csv}:6: <row>: more cells than the header") for f in found), found


def test_secrets_in_params_or_urls_are_never_recorded(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url, "params.extra_headers": {"X-Api-Key": "sk-in-params-999"}}
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "r", limit=1, overrides=over)
        assert server.headers[0]["x-api-key"] == "sk-in-params-999"  # sent as asked
    for folder in (tmp_path / "r", workspace.cache_dir):
        for f in folder.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert b"sk-in-params-999" not in data, f
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["config"]["judge"]["params"]["extra_headers"]["X-Api-Key"] == "<redacted>"


def test_redaction_rules() -> None:
    from dialbgm.storage._redact import redact

    rec = redact(
        {
            "api_base": "http://u:pw@host:8000/v1",
            "params": {
                "max_tokens": 5,
                "max_completion_tokens": 9,
                "extra_headers": {"Authorization": "Bearer x", "X-Trace": "keep"},
            },
            "api_key_env": "OPENAI_API_KEY",
        }
    )
    assert rec["api_base"] == "http://<redacted>@host:8000/v1"
    assert rec["params"] == {
        "max_tokens": 5,
        "max_completion_tokens": 9,
        "extra_headers": {"Authorization": "<redacted>", "X-Trace": "keep"},
    }
    assert rec["api_key_env"] == "OPENAI_API_KEY"  # the variable's name is not a secret


def test_one_broken_judge_file_does_not_hide_the_others(workspace: Workspace) -> None:
    (workspace.judges_dir / "broken.toml").write_text('provider = "random"\nmode = "sideways"\n')
    res = runner.invoke(app, ["judges"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    assert "broken" in res.output and "invalid" in res.output and "gpt-4o" in res.output


def test_an_rpm_below_one_still_lets_requests_through() -> None:
    import asyncio

    from dialbgm.calls._ratelimit import RateLimiter

    now = [0.0]

    async def sleep(s: float) -> None:
        now[0] += s

    lim = RateLimiter(rpm=0.5, tpm=None, clock=lambda: now[0], sleep=sleep)

    async def go() -> list[float]:
        out = []
        for _ in range(3):
            await lim.acquire()
            out.append(now[0])
        return out

    times = asyncio.run(go())
    assert times[1] - times[0] == pytest.approx(120.0) and times[2] - times[1] == pytest.approx(120.0)


def test_retry_sleeps_never_pass_the_time_budget() -> None:
    import time as _time

    from dialbgm.calls._retry import RetryableError, call_with_retries

    def always_429() -> str:
        raise RetryableError("429", retry_after=30.0, status=429)

    t0 = _time.monotonic()
    with pytest.raises(RetryableError):
        call_with_retries(always_429, max_attempts=10, max_seconds=1.0, base_delay=0.01, max_delay=0.05)
    assert _time.monotonic() - t0 < 1.5


def test_provider_settings_that_change_answers_change_the_hash_and_throughput_ones_do_not(
    workspace: Workspace, sample_path: Path
) -> None:
    from dialbgm.run._identity import quick_identity

    base = quick_identity(workspace, "embedding", sample_path, None, None).config_hash
    path = workspace.providers_dir / "embedding.toml"
    text = path.read_text()
    path.write_text(text.replace("concurrency = 1", "concurrency = 3"))
    assert quick_identity(workspace, "embedding", sample_path, None, None).config_hash == base
    # Another model (an unknown name is refused, not answered by MiniLM: tests/test_embedders.py).
    path.write_text(
        text.replace('embedding_model = "all-MiniLM-L6-v2-int8"', 'embedding_model = "multilingual-e5-small-q4"')
    )
    assert quick_identity(workspace, "embedding", sample_path, None, None).config_hash != base
    judge = workspace.judges_dir / "embedding.toml"
    path.write_text(text)
    judge.write_text(judge.read_text().replace('description = "', 'description = "Reworded: '))
    assert "Reworded" in judge.read_text()
    assert quick_identity(workspace, "embedding", sample_path, None, None).config_hash == base


def test_resume_refuses_a_change_before_generating_any_summary(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    run_eval(workspace, "random", sample_path, out_dir=out, limit=2)
    (out / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="configuration changed"):
        run_eval(workspace, "random", sample_path, resume=out, overrides={"seed": 9})


def test_an_empty_cached_summary_is_asked_again(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    from dialbgm.errors import ProviderError

    replies = iter(["", "A calm chat.", "A tense chat.", "A happy chat.", "spare"])
    with ScriptedOpenAIServer(lambda b, n: Reply(next(replies))) as server:
        (workspace.judges_dir / "summ.toml").write_text(
            f'provider = "openai-compatible"\nmodel = "m"\napi_base = "{server.base_url}"\n'
        )
        over = {"context": "summary", "summarizer": "summ"}
        with pytest.raises(ProviderError, match="empty summary"):
            run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "a", overrides=over)
        res = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "b", overrides=over)
        assert res.metrics["n_items"] == 48
        assert len(server.requests) == 4  # 3 summaries, then the empty one asked again


def test_an_interrupted_cell_whose_settings_changed_starts_afresh(workspace: Workspace) -> None:
    from dialbgm.config._experiment import load_experiment
    from dialbgm.run._cells import run_cells

    exp_dir = workspace.root / "experiments"
    exp_dir.mkdir(exist_ok=True)
    path = exp_dir / "e.toml"
    path.write_text('[data]\npath = "data/sample.jsonl"\nlimit = 2\n[judges.random]\nseed = [0]\n')
    exp = load_experiment(workspace, path)
    run_cells(workspace, exp)
    cell = exp.out_dir(workspace) / exp.cells[0].cell_id
    (cell / "manifest.json").unlink()  # interrupted
    path.write_text('[data]\npath = "data/sample.jsonl"\nlimit = 4\n[judges.random]\nseed = [0]\n')
    exp = load_experiment(workspace, path)
    run_cells(workspace, exp)
    manifest = json.loads((exp.out_dir(workspace) / exp.cells[0].cell_id / "manifest.json").read_text())
    assert manifest["dataset"]["n_items"] == 4  # the cell as it is now, not the interrupted one
