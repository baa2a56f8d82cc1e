"""The judges whose cache keys and outputs tests/data/old_layout_cache.json pins, and how to run them.

Shared by the fixture's generator (scripts/make_old_layout_fixture.py, run once on the flat
layout of commit 63bb219) and by the test that replays the fixture on the current layout
(tests/test_old_layout_cache.py). Everything here goes through the ``dialbgm eval`` command, the
one interface both layouts share, so the same code drives the old and the new package.

The base URL is part of every cache key, and the data file's absolute path part of the config
hash, so both are fixed here: the scripted server listens on a fixed loopback port and the
workspace is always the same folder, held under a lock (:func:`fixed_home`) while it is used.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "old_layout_cache.json"
OLD_COMMIT = "63bb219"
HOME = Path("/tmp/dialbgm-old-layout-fixture")
HOST, PORT = "127.0.0.1", 47913
BASE_URL = f"http://{HOST}:{PORT}/v1"

TEXT_ITEMS = ("s001", "s002", "s046", "s047")
"""s046 and s047 carry no summary: the summarizer writes theirs."""
AUDIO_ITEMS = ("a001",)

DATA_FILES = (("sample.jsonl", "text.jsonl", TEXT_ITEMS), ("sample-audio.jsonl", "audio.jsonl", AUDIO_ITEMS))
UNSET = ("DIALBGM_CACHE_DIR", "OPENAI_API_KEY", "OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY")
"""Variables of the user's environment that would change what the judges send or where they cache."""

SUMMARIZER = (
    f'provider = "openai-compatible"\nmodel = "summ-model"\napi_base = "{BASE_URL}"\n'
    "[params]\ntemperature = 0.0\nmax_tokens = 200\n"
)


@dataclass(frozen=True)
class Scenario:
    name: str
    judge: str
    data: str
    sets: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)

    def args(self, data_dir: Path, out: Path) -> list[str]:
        args = ["eval", "--judge", self.judge, "--data", str(data_dir / self.data), "--out", str(out), "--quiet"]
        for s in (f"api_base={BASE_URL}", *self.sets):
            args += ["--set", s]
        return args


SCENARIOS = (
    Scenario(
        "listwise-orders-samples",
        "openai-compatible",
        "text.jsonl",
        ("orders=2", "samples=2", "shuffle_labels=true", "params.temperature=0.7", "aggregation=borda"),
    ),
    Scenario("pointwise-cot", "openai-compatible", "text.jsonl", ("mode=pointwise", "cot=true")),
    Scenario(
        "few-shot-random-orders",
        "openai-compatible",
        "text.jsonl",
        ("few_shot=2", "orders=random:3", "aggregation=kemeny"),
    ),
    Scenario("summary", "openai-compatible", "text.jsonl", ("context=summary", "summarizer=summ")),
    Scenario("logprobs", "openai-compatible", "text.jsonl", ("score_by=logprobs",)),
    Scenario("audio", "gpt-4o-audio", "audio.jsonl", (), {"OPENAI_API_KEY": "sk-fixture-not-a-key"}),
)

VOLATILE: dict[str, tuple[str, ...]] = {
    "units.jsonl": ("latency_s",),
    "manifest.json": (
        "started",
        "finished",
        "wall_s",
        "versions",
        "git",
        # The hash of the scoring code's files: it changes with any edit of them, by design.
        "identity.scoring.code_sha256",
        "identity.results_hash",
    ),
}
"""Left out of the compared outputs: times, the installed packages' versions, the git state, and
the scoring code's own hash and the results hash made from it (moving a file changes them, by
design: ``compare`` then scores a finished cell again, from the cache)."""

ADDED: dict[str, tuple[str, ...]] = {"manifest.json": ("cost", "cache", "clips")}
"""Fields added to the outputs after the fixture was made (the run's cost by rate kind and its
savings; the shared cache's counts; the prepared clips' record): absent from the old outputs,
so left out of the new ones when they are compared. Every field the old code wrote is still compared."""

OUTPUTS = ("units.jsonl", "items.jsonl", "metrics.json", "manifest.json", "summaries.jsonl")


def reply(body: dict[str, Any], n: int) -> Reply:
    """An answer that depends only on the request, so concurrent calls answer alike in any order."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    if body.get("model") == "summ-model":
        return Reply(f"Summary: a conversation, number {digest[0]}.")
    labels, pointwise, cot = _shape(body)
    reasoning = {"reasoning": f"Reason {digest[1]}."} if cot else {}
    if pointwise:
        content = json.dumps({**reasoning, "score": 2 + digest[2] % 8})
    else:
        content = json.dumps({**reasoning, "scores": {lab: 2 + digest[i + 2] % 8 for i, lab in enumerate(labels)}})
    return Reply(content, logprobs=_logprobs(content) if body.get("logprobs") else None)


def _shape(body: dict[str, Any]) -> tuple[list[str], bool, bool]:
    """The labels asked for, whether one score is asked (pointwise), whether reasoning is."""
    rf = body.get("response_format") or {}
    schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema")
    if schema is None:  # audio judges: no schema, the labels are in the text parts
        content = body["messages"][-1]["content"]
        text = " ".join(p.get("text", "") for p in content) if isinstance(content, list) else content
        return sorted(set(re.findall(r"\[([A-Z])\]", text))), False, False
    props = schema["properties"]
    labels = [] if "score" in props else list(props["scores"]["properties"])
    return labels, "score" in props, "reasoning" in props


def _logprobs(content: str) -> list[dict[str, Any]]:
    """Each number its own token, with two neighbours as alternatives; the rest one token each."""
    tokens = []
    for piece in re.split(r"(\d+)", content):
        if not piece:
            continue
        alts = {piece: 0.0}
        if piece.isdigit():
            d = int(piece)
            alts = {piece: -0.5, str(min(d + 1, 9)): -1.2, str(max(d - 1, 2)): -2.3}
        top = [{"token": t, "logprob": lp} for t, lp in alts.items()]
        tokens.append({"token": piece, "logprob": top[0]["logprob"], "top_logprobs": top})
    return tokens


@contextmanager
def fixed_home() -> Iterator[Path]:
    """:data:`HOME`, empty, for this process alone (another run of the fixture waits for it)."""
    lock = HOME.with_suffix(".lock")
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        shutil.rmtree(HOME, ignore_errors=True)
        HOME.mkdir()
        try:
            yield HOME
        finally:
            shutil.rmtree(HOME, ignore_errors=True)


@contextmanager
def fixed_server(wait_s: float = 60.0) -> Iterator[ScriptedOpenAIServer]:
    """The scripted server on the fixed port (waiting for another run of this test to free it)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            server = ScriptedOpenAIServer(reply, host=HOST, port=PORT)
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise OSError(e.errno, f"the fixture's base URL {BASE_URL} needs port {PORT} free: {e}") from e
            time.sleep(0.5)
    with server:
        yield server


def make_home(home: Path, root: Path) -> Path:
    """A workspace (judges, providers, prompts of ``root``) and the data files; returns the data folder."""
    for name in ("judges", "providers", "prompts"):
        shutil.copytree(root / name, home / name)
    (home / "judges" / "summ.toml").write_text(SUMMARIZER)
    data = home / "data"
    data.mkdir()
    for src, dest, ids in DATA_FILES:
        lines = (root / "data" / src).read_text(encoding="utf-8").splitlines()
        kept = [ln for ln in lines if json.loads(ln)["id"] in ids]
        (data / dest).write_text("\n".join(kept) + "\n", encoding="utf-8")
    return data


def clip_ids(data: Path) -> list[str]:
    items = [json.loads(ln) for ln in (data / "audio.jsonl").read_text().splitlines()]
    return sorted(c["id"] for item in items for c in item["candidates"])


def clip_hashes(data: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((data / "clips").glob("p*.*"))}


def run(scenario: Scenario, app: Any, data: Path, out: Path) -> None:
    result = CliRunner().invoke(app, scenario.args(data, out), env=scenario.env, catch_exceptions=False)
    if result.exit_code != 0:
        raise AssertionError(f"{scenario.name}: exit {result.exit_code}\n{result.output}")


def outputs(out: Path) -> dict[str, Any]:
    """The run's output files, parsed, with the fields in :data:`VOLATILE` left out."""
    found: dict[str, Any] = {}
    for name in OUTPUTS:
        path = out / name
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        if name.endswith(".jsonl"):
            found[name] = [_without(json.loads(ln), VOLATILE.get(name, ())) for ln in text.splitlines()]
        else:
            found[name] = _without(json.loads(text), VOLATILE.get(name, ()) + ADDED.get(name, ()))
    return found


def _without(obj: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    for path in paths:
        *parents, last = path.split(".")
        node = obj
        for p in parents:
            node = node.get(p) or {}
        node.pop(last, None)
    return obj


def unit_keys(found: dict[str, Any]) -> list[str]:
    return sorted(u["cache_key"] for u in found["units.jsonl"])
