"""Fault injection against a real HTTP server on loopback: transient faults, permanent failures,
kill -9 and resume, and two processes sharing one cache.

The server's faults are the ones a hosted provider throws and a test cannot otherwise cause:
429 with and without Retry-After, 500, 503, a reset connection, a stall past the timeout, a
truncated body and a body that is not JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
DIALBGM = str(Path(sys.executable).parent / "dialbgm")

TRANSIENT = [
    Reply(status=429, headers={"retry-after": "0.2"}),
    Reply(status=429),
    Reply(status=500),
    Reply(status=503),
    Reply(fault="reset"),
    Reply(fault="stall", stall_s=1.5),
    Reply(fault="truncate"),
    Reply(fault="invalid_json"),
]


def tune_provider(ws: Workspace, **settings: object) -> None:
    path = ws.providers_dir / "openai-compatible.toml"
    lines = [ln for ln in path.read_text().splitlines() if ln.split("=")[0].strip() not in settings]
    head = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(head + lines) + "\n")


def answer(body: dict[str, Any]) -> Reply:
    """A deterministic judge: scores from the captions' lengths, so every run agrees."""
    user = body["messages"][-1]["content"]
    lines = [ln for ln in user.splitlines() if ln.startswith("[")]
    return Reply(json.dumps({"scores": {ln[1]: 1 + len(ln) % 10 for ln in lines}}))


def test_thirty_percent_transient_faults_change_nothing(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    tune_provider(workspace, timeout=1, max_attempts=12, max_retry_seconds=120, concurrency=8)
    with ScriptedOpenAIServer(lambda b, n: answer(b)) as clean:
        ref = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "clean",
            limit=30,
            overrides={"api_base": clean.base_url},
            use_cache=False,
        )
    rng = random.Random(7)
    injected: list[str] = []

    def faulty(body: dict[str, Any], n: int) -> Reply:
        if rng.random() < 0.3:
            fault = rng.choice(TRANSIENT)
            injected.append(fault.fault or str(fault.status))
            return fault
        return answer(body)

    with ScriptedOpenAIServer(faulty) as server:
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "faulty",
            limit=30,
            overrides={"api_base": server.base_url},
            use_cache=False,
        )
    assert len(injected) >= 8 and len(set(injected)) >= 5, injected
    assert res.manifest["counts"]["by_status"] == {"ok": 30}
    units = [json.loads(x) for x in (tmp_path / "faulty" / "units.jsonl").read_text().splitlines()]
    assert sum(u["attempts"] - 1 for u in units) == len(injected)  # every fault was retried, once each
    for key in ("hit_at_1", "mrr", "ndcg", "kendall_tau_b", "spearman", "n_items"):
        assert res.metrics[key] == ref.metrics[key]


def test_permanent_failures_are_reported_then_retried_alone(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    tune_provider(workspace, max_attempts=3, max_retry_seconds=30)
    broken = {"s002", "s005"}

    def script(body: dict[str, Any], n: int) -> Reply:
        text = body["messages"][-1]["content"]
        if any(item_marker[i] in text for i in broken):
            return Reply(status=503)
        return answer(body)

    from dialbgm.data._dataset import load_dataset

    ds = load_dataset(sample_path)
    item_marker = {i.id: i.dialogue[0].text for i in ds}
    out = tmp_path / "r"
    with ScriptedOpenAIServer(script) as server:
        res = run_eval(
            workspace, "openai-compatible", sample_path, out_dir=out, limit=8, overrides={"api_base": server.base_url}
        )
        assert res.metrics["failed_by_status"] == {"transport_error": 2}
        assert res.metrics["n_items"] == 6
        assert len(server.requests) == 6 + 2 * 3  # the two failures used all their attempts
        units = {json.loads(x)["item_id"]: json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()}
        assert {i for i, u in units.items() if u["status"] == "transport_error"} == broken
        assert "503" in units["s002"]["error"] and units["s002"]["attempts"] == 3

        broken.clear()  # the provider recovers
        before = len(server.requests)
        again = run_eval(workspace, "openai-compatible", sample_path, resume=out, retry_failed=True)
        assert len(server.requests) - before == 2  # only the two failed units were called again
        assert again.metrics["n_items"] == 8 and again.metrics["n_failed"] == 0
        assert again.manifest["counts"]["resumed_from_journal"] == 0 and again.manifest["counts"]["cache_hits"] == 6


def eval_cmd(ws: Workspace, out: Path, base_url: str, *extra: str) -> list[str]:
    return [
        DIALBGM,
        "eval",
        "-j",
        "openai-compatible",
        "-q",
        "--out",
        str(out),
        "--set",
        f'api_base="{base_url}"',
        *extra,
    ]


def test_kill_minus_9_then_resume_loses_and_repeats_nothing(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    from dialbgm.run._prepare import prepare

    tune_provider(workspace, concurrency=3)
    env = {**os.environ, "DIALBGM_HOME": str(workspace.root)}
    with ScriptedOpenAIServer(lambda b, n: answer(b)) as ref_server:
        ref = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "ref",
            overrides={"api_base": ref_server.base_url},
            use_cache=False,
        )

    out = tmp_path / "killed"
    journal = out / "journal.jsonl"

    def journal_units() -> set[str]:
        if not journal.exists():
            return set()
        return {json.loads(x)["unit_id"] for x in journal.read_text().splitlines() if x.endswith("}")}

    with ScriptedOpenAIServer(lambda b, n: answer(b), delay_s=0.05) as server:
        prep = prepare(workspace, "openai-compatible", sample_path, overrides={"api_base": server.base_url})
        unit_of = {r.messages[-1]["content"]: u.unit_id for u, r in zip(prep.units, prep.iter_requests(), strict=True)}
        checkpoints: list[tuple[int, set[str]]] = []  # (requests so far, units finished) at each kill
        proc = subprocess.Popen(
            eval_cmd(workspace, out, server.base_url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for k in range(6):
            # Kill at a different point each time: a few more finished calls than at the last kill.
            target = len(journal_units()) + 3 + k
            deadline = time.monotonic() + 60
            while len(journal_units()) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is not None:
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            checkpoints.append((len(server.requests), journal_units()))
            proc = subprocess.Popen(
                [DIALBGM, "eval", "-q", "--resume", str(out)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode() if proc.stderr else ""
        called = [unit_of[b["messages"][-1]["content"]] for b in server.requests]
    assert len(checkpoints) >= 5
    for mark, finished in checkpoints:
        assert finished, "the kill came before any call finished"
        again = finished & set(called[mark:])
        assert not again, f"finished units called again after a kill: {sorted(again)}"
    final = json.loads((out / "metrics.json").read_text())
    for key in ("hit_at_1", "mrr", "ndcg", "kendall_tau_b", "spearman", "n_items", "n_failed"):
        assert final[key] == ref.metrics[key]
    # Each unit was called once, plus at most the calls in flight at each kill (concurrency 3).
    assert 48 <= len(called) <= 48 + len(checkpoints) * 3
    units = [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]
    assert len(units) == 48 and all(u["status"] == "ok" for u in units)


def test_resume_refuses_a_changed_configuration(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    run_eval(workspace, "random", sample_path, out_dir=out, limit=3)
    tmpl = workspace.judges_dir / "random.toml"
    tmpl.write_text(tmpl.read_text().replace("seed = 0", "seed = 5"))
    from dialbgm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"judge\.seed: 0 -> 5"):
        run_eval(workspace, "random", sample_path, resume=out)


def test_two_processes_share_one_cache(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DIALBGM_HOME": str(workspace.root)}
    with ScriptedOpenAIServer(lambda b, n: answer(b)) as server:
        base_url = server.base_url
        procs = [
            subprocess.Popen(
                eval_cmd(workspace, tmp_path / f"p{k}", server.base_url, "--set", f"order_seed={k % 2}"),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for k in range(4)
        ]
        for p in procs:
            assert p.wait(timeout=120) == 0, p.stderr.read().decode() if p.stderr else ""
    verify = subprocess.run([DIALBGM, "cache", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    from dialbgm.run._prepare import prepare

    # Two order seeds; an item whose two seeded orders coincide shares one entry.
    keys = {
        key
        for k in range(2)
        for key in prepare(
            workspace, "openai-compatible", sample_path, overrides={"api_base": "x", "order_seed": k}
        ).keys
    }
    assert f"{len(keys)} entries, 0 problems" in verify.stdout
    # Every run's answers are readable from the shared cache: a re-run calls nothing (the server is gone).
    for k in range(2):
        res = run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / f"again{k}",
            overrides={"api_base": base_url, "order_seed": k},
        )
        assert res.manifest["counts"]["cache_hits"] == 48 and res.manifest["counts"]["provider_calls"] == 0
