"""Batch APIs end to end: dialbgm's batch client, through litellm's own request and reply code,
against a loopback server that speaks OpenAI's, Anthropic's and Gemini's batch protocols
(tests/support/batch_server.py). Counts on the server's side prove what was submitted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.run import RunOptions, RunSpec, evaluate, resume_run
from tests.support.batch_server import BatchServer, Line, score_lines

KEY = "sk-batch-secret-key-0123456789"
DIALECTS = {
    # dialect: (route, api_base suffix, model, extra params)
    "openai": ("openai", "/v1", "gpt-4o-mini", {"temperature": 0.0, "max_tokens": 300, "seed": 0}),
    "anthropic": ("anthropic", "", "claude-sonnet-4-5", {"temperature": 0.0, "max_tokens": 300}),
    "gemini": ("gemini", "/v1beta", "gemini-2.5-flash", {"temperature": 0.0, "max_tokens": 300}),
}


def setup_judge(ws: Workspace, dialect: str, root: str, **provider: Any) -> str:
    route, suffix, model, params = DIALECTS[dialect]
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in provider.items())
    (ws.providers_dir / f"b-{dialect}.toml").write_text(
        f'kind = "litellm"\nroute = "{route}"\napi_base = "{root}{suffix}"\napi_key_env = "BATCH_TEST_KEY"\n'
        f"concurrency = 4\nmax_attempts = 2\nmax_retry_seconds = 5\n{extra}"
        f'[capabilities]\nstructured_output = "json_schema"\nbatch_api = "{dialect}"\n'
    )
    p = "".join(f"{k} = {json.dumps(v)}\n" for k, v in params.items())
    (ws.judges_dir / f"b-{dialect}.toml").write_text(f'provider = "b-{dialect}"\nmodel = "{model}"\n[params]\n{p}')
    return f"b-{dialect}"


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)
    monkeypatch.setenv("DIALBGM_BATCH_POLL_S", "0")


def units(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]


def canon(bodies: Any) -> list[str]:
    return sorted(json.dumps(b, sort_keys=True) for b in bodies)


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    skip = ("latency_s", "cache_hit", "attempts", "mode", "batch_id")
    return [{k: v for k, v in r.items() if k not in skip} for r in rows]


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_batch_run_equals_online_run_and_fills_the_same_cache(
    workspace: Workspace, sample_path: Path, tmp_path: Path, dialect: str
) -> None:
    with BatchServer() as server:
        judge = setup_judge(workspace, dialect, server.root)
        spec = RunSpec(judge, sample_path, limit=6)
        online = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "online", use_cache=False))
        online_bodies = list(server.online)
        assert len(online_bodies) == 6 and not server.submissions

        batched = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "batch", batch=True))
        assert len(server.submissions) == 1  # one batch, every call in it
        batch = server.batches[server.submissions[0]]
        # Each line's body is exactly what the online call sent.
        assert canon(body for _cid, body in batch.lines) == canon(online_bodies)  # online ones came in any order
        assert len(server.online) == 6  # nothing went online
        assert batched.metrics == online.metrics
        assert comparable(units(tmp_path / "batch")) == comparable(units(tmp_path / "online"))
        assert {(r["mode"], r["batch_id"]) for r in units(tmp_path / "batch")} == {("batch", batch.id)}
        assert not any("mode" in r for r in units(tmp_path / "online"))
        assert batched.manifest["counts"]["batch_calls"] == 6
        assert batched.manifest["counts"]["provider_calls"] == 6
        state = json.loads((tmp_path / "batch" / "batches.json").read_text())
        assert state["batches"][0]["phase"] == "collected" and state["batches"][0]["batch_id"] == batch.id
        assert KEY not in (tmp_path / "batch" / "batches.json").read_text()

        # One cache: a later online run is served entirely from what the batch stored...
        again = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "again"))
        assert again.manifest["counts"]["cache_hits"] == 6 and len(server.online) == 6
        # ...and a batch run of a cached plan submits nothing.
        evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "batch2", batch=True))
        assert len(server.submissions) == 1


def test_online_filled_cache_makes_a_batch_run_submit_nothing(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    with BatchServer() as server:
        judge = setup_judge(workspace, "openai", server.root)
        spec = RunSpec(judge, sample_path, limit=4)
        evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "online"))
        result = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "batch", batch=True))
        assert server.submissions == [] and not any(p.startswith("/v1/files") for _m, p in server.requests)
        assert result.manifest["counts"]["cache_hits"] == 4
        assert not (tmp_path / "batch" / "batches.json").exists()


def test_partial_line_errors_end_as_online_statuses(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    """A 400 on a line is that unit's transport_error with the online call's message; a 429 or
    500 on a line is called online; a reply that is not JSON is a parse_error."""

    calls: dict[str, int] = {}

    def per_item(dialect: str, body: dict[str, Any]) -> Line:
        n = calls.setdefault("n", 0)
        calls["n"] = n + 1
        if n == 0:
            return Line(status=400, message="this line is refused by the scripted provider")
        if n == 1:
            return Line(status=429, message="slow down")
        if n == 2:
            return Line(text="not json at all")
        return score_lines(dialect, body)

    with BatchServer(per_item) as server:
        judge = setup_judge(workspace, "openai", server.root)
        result = evaluate(
            workspace, RunSpec(judge, sample_path, limit=5), RunOptions(out_dir=tmp_path / "r", batch=True)
        )
        rows = units(tmp_path / "r")
        assert [r["status"] for r in rows][:3] == ["transport_error", "ok", "parse_error"]
        assert "this line is refused by the scripted provider" in rows[0]["error"]
        assert rows[0]["error"].startswith("BadRequestError (HTTP 400)")  # as the online call words it
        assert len(server.online) == 1  # the 429 line, called online
        assert result.manifest["counts"]["batch_calls"] == 4
        assert result.manifest["counts"]["provider_calls"] == 5


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_a_batch_pending_past_its_deadline_is_cancelled_and_goes_online(
    workspace: Workspace, sample_path: Path, tmp_path: Path, dialect: str
) -> None:
    with BatchServer() as server:
        server.hold = True
        judge = setup_judge(workspace, dialect, server.root)
        opts = RunOptions(out_dir=tmp_path / "r", batch=True, batch_deadline_s=0.01)
        result = evaluate(workspace, RunSpec(judge, sample_path, limit=3), opts)
        assert len(server.submissions) == 1
        assert server.batches[server.submissions[0]].cancelled
        assert len(server.online) == 3
        assert result.manifest["counts"]["by_status"] == {"ok": 3}
        state = json.loads((tmp_path / "r" / "batches.json").read_text())
        assert state["batches"][0]["status"]["state"] == "cancelled" and state["batches"][0]["online"] == 3


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_expired_batch_keeps_its_answers_and_the_rest_go_online(
    workspace: Workspace, sample_path: Path, tmp_path: Path, dialect: str
) -> None:
    with BatchServer() as server:
        server.expire = True
        server.poll_500 = 2  # and the first polls of the batch fail with a 500
        judge = setup_judge(workspace, dialect, server.root)
        result = evaluate(
            workspace, RunSpec(judge, sample_path, limit=4), RunOptions(out_dir=tmp_path / "r", batch=True)
        )
        assert len(server.submissions) == 1
        assert len(server.online) == 2  # the half the batch did not answer
        assert result.manifest["counts"]["by_status"] == {"ok": 4}
        assert result.manifest["counts"]["batch_calls"] == 2


def test_failed_batch_sends_everything_online(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    with BatchServer() as server:
        server.fail = True
        judge = setup_judge(workspace, "openai", server.root)
        result = evaluate(
            workspace, RunSpec(judge, sample_path, limit=3), RunOptions(out_dir=tmp_path / "r", batch=True)
        )
        assert len(server.online) == 3 and result.manifest["counts"]["by_status"] == {"ok": 3}
        state = json.loads((tmp_path / "r" / "batches.json").read_text())
        assert "scripted validation failure" in state["batches"][0]["status"]["error"]


def test_submit_without_waiting_then_resume_polls_the_same_batch(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    from dialbgm.calls import BatchesPending

    with BatchServer() as server:
        judge = setup_judge(workspace, "anthropic", server.root, batch_max_lines=2)
        with pytest.raises(BatchesPending):
            evaluate(
                workspace,
                RunSpec(judge, sample_path, limit=5),
                RunOptions(out_dir=tmp_path / "r", batch=True, batch_wait=False),
            )
        assert len(server.submissions) == 3  # 2 + 2 + 1 lines
        result = resume_run(workspace, tmp_path / "r")
        assert len(server.submissions) == 3 and not server.online
        assert result.manifest["counts"]["by_status"] == {"ok": 5}


def test_openai_fast_reply_path_reads_a_reply_as_the_whole_online_exchange(
    workspace: Workspace, sample_path: Path
) -> None:
    from dialbgm.run._prepare import prepare
    from tests.support.batch_server import reply_body

    logprobs = [{"token": "{", "logprob": -0.1, "top_logprobs": [{"token": "{", "logprob": -0.1}]}]
    with BatchServer() as server:
        judge = setup_judge(workspace, "openai", server.root)
        prep = prepare(workspace, judge, sample_path, limit=1)
        bridge = prep.backend.batch_bridge()
        request = prep.request(0)
        _base, body = bridge.line(request)
        for line in (Line(), Line(text="not json", finish="length"), Line(text="")):
            reply = reply_body("openai", body, line, 7)
            with_lp = {**reply, "choices": [{**reply["choices"][0], "logprobs": {"content": logprobs}}]}
            for r in (reply, with_lp):
                assert bridge.openai_reply(r) == bridge._exchange(request, 200, r)
        bridge.close()


def test_compare_batch_submits_every_cell_before_collecting_any(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    from dialbgm.config import load_experiment
    from dialbgm.run import run_cells

    with BatchServer() as server:
        judge = setup_judge(workspace, "openai", server.root)
        (workspace.root / "experiments").mkdir(exist_ok=True)
        (workspace.root / "experiments" / "bx.toml").write_text(
            f'batch = true\n[data]\npath = "{sample_path}"\nlimit = 3\n[judges.{judge}]\ncot = [false, true]\n'
        )
        exp = load_experiment(workspace, "bx")
        assert exp.batch and [c.cell_id for c in exp.cells] == [f"{judge}__cot=false", f"{judge}__cot=true"]
        rows = run_cells(workspace, exp)
        assert [r["provider_calls"] for r in rows] == [3, 3] and len(server.submissions) == 2
        posts = [k for k, (m, p) in enumerate(server.requests) if m == "POST" and p == "/v1/batches"]
        reads = [k for k, (m, p) in enumerate(server.requests) if p.endswith("/content")]
        assert max(posts) < min(reads)  # both cells submitted before either was collected
        # Batching is how the calls were made, not what they answer: the cells' identity is an
        # online run's, so running them again online reuses them as they are.
        again = run_cells(workspace, load_experiment(workspace, "bx"), batch=False)
        assert all(r.get("reused") for r in again)
        manifest = json.loads(
            (workspace.results_dir / "experiments" / "bx" / exp.cells[0].cell_id / "manifest.json").read_text()
        )
        online = evaluate(
            workspace,
            RunSpec(judge, sample_path, limit=3, overrides={"cot": False}),
            RunOptions(out_dir=tmp_path / "o"),
        )
        assert online.manifest["identity"] == manifest["identity"]


def test_a_judge_that_streams_only_cannot_be_batched(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    from dialbgm.errors import ConfigError

    with BatchServer() as server:
        judge = setup_judge(workspace, "openai", server.root)
        path = workspace.providers_dir / f"{judge}.toml"
        path.write_text(path.read_text() + "streaming_only = true\n")
        with pytest.raises(ConfigError, match="does not take stream, stream_options"):
            evaluate(workspace, RunSpec(judge, sample_path, limit=2), RunOptions(out_dir=tmp_path / "r", batch=True))
        assert not server.submissions and not server.online


def test_progress_and_batch_status_show_each_batch(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dialbgm.cli._app import app

    seen: list[str] = []
    with BatchServer() as server:
        judge = setup_judge(workspace, "gemini", server.root, batch_max_lines=2)
        opts = RunOptions(out_dir=tmp_path / "r", batch=True, progress=lambda p: seen.append(p.batches))
        evaluate(workspace, RunSpec(judge, sample_path, limit=3), opts)
    # The second batch's intent is shown (and recorded) before it is submitted; then the polls.
    assert seen.index("batch 0 submitted 0/2 · batch 1 submitting 0/1") < seen.index(
        "batch 0 submitted 0/2 · batch 1 submitted 0/1"
    )
    assert "batch 0 in_progress 0/2 · batch 1 in_progress 0/1" in seen
    assert seen[-1] == "batch 0 collected 2/2 · batch 1 collected 1/1"
    out = CliRunner().invoke(app, ["batch", "status", str(tmp_path / "r"), "--format", "json"])
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert status["dialect"] == "gemini" and [b["id"] for b in status["batches"]] == server.submissions
    assert [(b["phase"], b["state"], b["counts"]["succeeded"]) for b in status["batches"]] == [
        ("collected", "completed", 2),
        ("collected", "completed", 1),
    ]
    table = CliRunner().invoke(app, ["batch", "status", str(tmp_path / "r")])
    assert table.exit_code == 0 and "completed (collected)" in table.output
    missing = CliRunner().invoke(app, ["batch", "status", str(tmp_path)])
    assert missing.exit_code == 2 and "not a run folder (no plan.json)" in missing.output


def test_a_batched_run_is_paid_at_the_batch_rates(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    """The batch client marks its units ``mode = batch``; the price table's batch rates apply to them."""
    with BatchServer() as server:
        judge = setup_judge(workspace, "openai", server.root)
        path = workspace.judges_dir / f"{judge}.toml"
        path.write_text(path.read_text().replace('"gpt-4o-mini"', '"gpt-4o"'))  # gpt-4o has batch rates
        spec = RunSpec(judge, sample_path, limit=4)
        batched = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "b", batch=True)).manifest["cost"]
        online = evaluate(workspace, spec, RunOptions(out_dir=tmp_path / "o", use_cache=False)).manifest["cost"]
    assert {c["rate"] for c in batched["charges"]} == {"batch_input", "batch_output"}
    assert {c["rate"] for c in online["charges"]} == {"input", "output"}
    tokens = {c["rate"]: c["tokens"] for c in batched["charges"]}
    assert tokens == {"batch_input": online["tokens"]["paid_in"], "batch_output": online["tokens"]["paid_out"]}
    # gpt-4o's batch rates are half its online ones, and the saving is said.
    assert batched["cost_usd"] == pytest.approx(online["cost_usd"] / 2, abs=1e-4)
    assert batched["saved_batch_usd"] == pytest.approx(batched["cost_usd"], abs=1e-4)
