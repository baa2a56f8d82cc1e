"""Scoring by the probability-weighted expectation over score tokens (G-Eval style)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config import load_judge
from dialbgm.errors import ConfigError
from dialbgm.logprobs import expected_scores
from dialbgm.runner import prepare, run_eval
from dialbgm.workspace import Workspace
from tests.support.scripted_server import Reply, ScriptedOpenAIServer


def tok(token: str, alts: dict[str, float] | None = None) -> dict[str, Any]:
    top = [{"token": t, "logprob": math.log(p)} for t, p in (alts or {token: 1.0}).items()]
    return {"token": token, "logprob": top[0]["logprob"], "top_logprobs": top}


def as_internal(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"token": t["token"], "top": [[a["token"], a["logprob"]] for a in t["top_logprobs"]]} for t in tokens]


# {"scores": {"A": 7, "B": 2}} split the way a BPE tokenizer would.
TOKENS = [
    tok('{"'),
    tok("scores"),
    tok('":'),
    tok(' {"'),
    tok("A"),
    tok('":'),
    tok(" 7", {" 7": 0.5, " 8": 0.3, " 6": 0.1, " hello": 0.05, " 11": 0.05}),
    tok(',"'),
    tok("B"),
    tok('":'),
    tok(" 2", {" 2": 0.6, " 1": 0.4}),
    tok("}}"),
]
TEXT = "".join(t["token"] for t in TOKENS)


def test_worked_expectation() -> None:
    exp = expected_scores(TEXT, as_internal(TOKENS), {"A": 7.0, "B": 2.0}, ["A", "B"], 1, 10)
    # A: " hello" is no number and 11 is off the scale; renormalise over 7, 8, 6.
    assert exp.scores["A"] == pytest.approx((7 * 0.5 + 8 * 0.3 + 6 * 0.1) / 0.9)
    assert exp.scores["B"] == pytest.approx(2 * 0.6 + 1 * 0.4)
    assert exp.fallbacks == []


def test_multi_token_numbers_and_missing_alternatives_fall_back() -> None:
    tokens = [tok('{"scores": {"A": '), tok("1"), tok("0"), tok(', "B": '), tok("x", {"x": 1.0}), tok("}}")]
    text = '{"scores": {"A": 10, "B": x}}'
    exp = expected_scores(text, as_internal(tokens), {"A": 10.0, "B": 3.0}, ["A", "B"], 1, 10)
    assert exp.scores == {"A": 10.0, "B": 3.0}  # sampled values kept
    assert exp.fallbacks == ["A", "B"]


def test_logprob_variant_through_litellm(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    tokens = [*TOKENS[:-1], tok(',"C": 5,"D": 9}}')]
    reply = Reply("".join(t["token"] for t in tokens), logprobs=tokens)
    with ScriptedOpenAIServer(lambda b, n: reply) as server:
        over = {"api_base": server.base_url, "score_by": "logprobs"}
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "lp", limit=1, overrides=over)
        body = server.requests[0]
        assert body["logprobs"] is True and body["top_logprobs"] == 20
        run_eval(
            workspace,
            "openai-compatible",
            sample_path,
            out_dir=tmp_path / "s",
            limit=1,
            overrides={"api_base": server.base_url},
        )
        assert len(server.requests) == 2  # its own variant, its own cached call
        assert "logprobs" not in server.requests[1]
    unit = json.loads((tmp_path / "lp" / "units.jsonl").read_text())
    by_label = {s["label"]: s["candidate"] for s in unit["shown"]}
    assert unit["scores"][by_label["A"]] == pytest.approx((7 * 0.5 + 8 * 0.3 + 6 * 0.1) / 0.9)
    assert unit["sampled_scores"][by_label["A"]] == 7.0
    # C and D were written inside one multi-character token: their sampled values are kept.
    assert sorted(unit["logprob_fallbacks"]) == ["C", "D"]
    assert unit["scores"][by_label["C"]] == 5.0
    assert unit["variant"]["score_by"] == "logprobs"
    plain = json.loads((tmp_path / "s" / "units.jsonl").read_text())
    assert plain["cache_key"] != unit["cache_key"]


def test_logprobs_need_a_provider_that_returns_them(workspace: Workspace, sample_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not return log-probabilities"):
        prepare(workspace, "gemini-2.5-flash", sample_path, overrides={"score_by": "logprobs"})
    with pytest.raises(ConfigError, match="score_by"):
        load_judge(workspace, "local", {"score_by": "mean"})


@pytest.mark.slow
def test_local_model_returns_usable_logprobs(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    run_eval(workspace, "local", sample_path, out_dir=tmp_path / "lp", limit=1, overrides={"score_by": "logprobs"})
    unit = json.loads((tmp_path / "lp" / "units.jsonl").read_text())
    assert unit["status"] == "ok"
    assert len(unit["logprob_fallbacks"]) < 4
    expected = [v for c, v in unit["scores"].items() if c not in unit["logprob_fallbacks"]]
    assert all(1.0 <= v <= 10.0 for v in unit["scores"].values())
    assert any(v != int(v) for v in expected)  # real expectations, not the sampled integers
