"""``kill -9`` of a real ``dialbgm eval --batch`` process at each dangerous moment, then
``--resume``: the server counts every submission, so a batch sent twice fails the test, and the
journal shows each reply recorded once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from dialbgm.config._workspace import Workspace
from tests.support.batch_server import BatchServer
from tests.test_batch import KEY, setup_judge

ROOT = Path(__file__).resolve().parents[1]


def env(ws: Workspace, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DIALBGM_HOME": str(ws.root),
        "BATCH_TEST_KEY": KEY,
        "DIALBGM_BATCH_POLL_S": "0.05",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        **extra,
    }


def start(ws: Workspace, args: list[str], module: str = "dialbgm", **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ws.root,
        env=env(ws, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(cond: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def phase(out: Path) -> list[str]:
    try:
        return [b["phase"] for b in json.loads((out / "batches.json").read_text())["batches"]]
    except (OSError, ValueError):
        return []


def resume(ws: Workspace, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dialbgm", "eval", "--resume", str(out), "-q"],
        cwd=ws.root,
        env=env(ws),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()


def journaled(out: Path) -> Counter[str]:
    recs = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines() if x.strip()]
    return Counter(r["unit_id"] for r in recs)


def finished(out: Path, n: int) -> None:
    rows = [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok"] * n


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
def test_kill_between_submit_and_collect(workspace: Workspace, sample_path: Path, tmp_path: Path, dialect: str) -> None:
    out = tmp_path / "run"
    with BatchServer() as server:
        server.hold = True
        judge = setup_judge(workspace, dialect, server.root)
        proc = start(workspace, ["eval", "-j", judge, "--limit", "4", "--out", str(out), "--batch", "-q"])
        wait_for(lambda: phase(out) == ["submitted"] and len(server.submissions) == 1, proc, "the submission")
        wait_for(lambda: server.batches[server.submissions[0]].polls >= 2, proc, "polling")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        server.release()
        resume(workspace, out)
        assert len(server.submissions) == 1  # polled again, never sent again
        assert not server.online
        assert journaled(out) == Counter({u: 1 for u in journaled(out)}) and len(journaled(out)) == 4
        finished(out, 4)


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "gemini"])
def test_kill_while_the_submission_is_answered_recovers_the_batch(
    workspace: Workspace, sample_path: Path, tmp_path: Path, dialect: str
) -> None:
    """Killed after the provider made the batch but before the id was written down: the resumed
    run finds that batch at the provider (by its token, or for Anthropic by time and size)."""
    out = tmp_path / "run"
    with BatchServer() as server:
        server.stall_create = threading.Event()
        judge = setup_judge(workspace, dialect, server.root)
        proc = start(workspace, ["eval", "-j", judge, "--limit", "3", "--out", str(out), "--batch", "-q"])
        wait_for(lambda: len(server.submissions) == 1, proc, "the submission")
        assert phase(out) == ["submitting"]  # the intent and mapping were written before it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        server.stall_create.set()
        server.stall_create = None
        resume(workspace, out)
        assert len(server.submissions) == 1
        state = json.loads((out / "batches.json").read_text())
        assert state["batches"][0]["recovered"] is True
        assert state["batches"][0]["batch_id"] == server.submissions[0]
        finished(out, 3)


def test_kill_between_collect_and_write(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    """Killed after 2 of a batch's 5 replies were journaled: the resumed run takes the other 3
    from the same batch and records none twice."""
    out = tmp_path / "run"
    with BatchServer() as server:
        judge = setup_judge(workspace, "openai", server.root)
        args = ["eval", "-j", judge, "--limit", "5", "--out", str(out), "--batch", "-q"]
        proc = start(workspace, args, module="tests.support.batch_kill", DIALBGM_TEST_KILL_AFTER="2")
        proc.wait(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        assert sum(journaled(out).values()) == 2 and phase(out) == ["submitted"]
        resume(workspace, out)
        assert len(server.submissions) == 1
        counts = journaled(out)
        assert len(counts) == 5 and set(counts.values()) == {1}
        finished(out, 5)
