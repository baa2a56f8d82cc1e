"""Scoring by the probability-weighted expectation over score tokens (G-Eval style)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config._config import load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.judging._logprobs import LOGPROBS_VERSION, expected_scores
from dialbgm.run._entry import run_eval
from dialbgm.run._identity import quick_identity
from dialbgm.run._prepare import prepare
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


def test_a_number_over_two_tokens_is_read_through_and_no_alternative_falls_back() -> None:
    # Was: "10" written as "1" + "0" fell back. The next token's alternatives are conditioned on
    # the sampled "1", so the split is known: here all of it goes to 10.
    tokens = [tok('{"scores": {"A": '), tok("1"), tok("0"), tok(', "B": '), tok("x", {"x": 1.0}), tok("}}")]
    text = '{"scores": {"A": 10, "B": x}}'
    exp = expected_scores(text, as_internal(tokens), {"A": 10.0, "B": 3.0}, ["A", "B"], 1, 10)
    assert exp.scores == {"A": 10.0, "B": 3.0}
    assert exp.fallbacks == ["B"]  # B's reply holds no number: sampled value kept
    assert exp.reasons == {"B": "score not found in the reply text"}


def split(reply: list[tuple[str, dict[str, float] | None]]) -> tuple[str, list[dict[str, Any]]]:
    """A reply tokenised digit by digit (SmolLM2, Qwen): text and internal logprobs."""
    tokens = [tok(t, alts) for t, alts in reply]
    return "".join(t["token"] for t in tokens), as_internal(tokens)


def test_digit_split_ten_gets_its_expectation_from_the_next_token() -> None:
    # 1–10, "10" sampled as "1" + "0": p(10) = p("1") · p("0" | "1"), p(1) = p("1") · p("," | "1").
    text, lp = split(
        [
            ('{"scores": {"A": ', None),
            ("1", {"1": 0.6, "9": 0.3, "8": 0.1}),
            ("0", {"0": 0.8, ",": 0.2}),
            (', "B": ', None),
            ("2", {"2": 0.7, "3": 0.3}),
            ("}}", None),
        ]
    )
    exp = expected_scores(text, lp, {"A": 10.0, "B": 2.0}, ["A", "B"], 1, 10)
    assert exp.scores["A"] == pytest.approx(10 * 0.48 + 1 * 0.12 + 9 * 0.3 + 8 * 0.1)  # 8.42
    assert exp.scores["B"] == pytest.approx(2 * 0.7 + 3 * 0.3)
    assert exp.fallbacks == []


def test_a_sampled_one_is_split_between_one_and_ten_by_what_followed() -> None:
    text, lp = split([('{"score": ', None), ("1", {"1": 0.7, "2": 0.3}), ("}", {"}": 0.9, "0": 0.1})])
    exp = expected_scores(text, lp, {"A": 1.0}, None, 1, 10)
    assert exp.scores["A"] == pytest.approx(1 * 0.63 + 10 * 0.07 + 2 * 0.3)  # was 1.3: the 10 was lost
    assert exp.fallbacks == []


def test_an_alternative_one_that_could_start_ten_is_not_read_as_one() -> None:
    # The reviewed bug: a top clip's "9" with "1" beside it came out 6.4, pulled down by a "1"
    # that may have been the start of "10". How that 0.3 splits is unknowable: sampled value kept.
    text, lp = split([('{"scores": {"A": ', None), ("9", {"9": 0.5, "1": 0.3, "8": 0.2}), ("}}", None)])
    exp = expected_scores(text, lp, {"A": 9.0}, ["A"], 1, 10)
    assert exp.scores == {"A": 9.0}
    assert exp.fallbacks == ["A"]
    assert "'1'" in exp.reasons["A"] and "longer number" in exp.reasons["A"]


def test_above_one_a_one_can_only_be_the_start_of_ten() -> None:
    # scale 3–10: "1" is off the scale as a number, but it is how "10" begins; it was dropped,
    # so the expectation silently lost the mass of 10.
    text, lp = split([('{"score": ', None), ("7", {"7": 0.6, "1": 0.4}), ("}", None)])
    exp = expected_scores(text, lp, {"A": 7.0}, None, 3, 10)
    assert exp.fallbacks == ["A"] and exp.scores == {"A": 7.0}
    # A nine-point scale has no ambiguous prefix: every digit is a whole score.
    exp9 = expected_scores(text, lp, {"A": 7.0}, None, 1, 9)
    assert exp9.fallbacks == [] and exp9.scores["A"] == pytest.approx(7 * 0.6 + 1 * 0.4)


def test_hundred_point_scales() -> None:
    # Digit by digit on 0–100 every digit may begin a longer score: sampled value kept.
    text, lp = split([('{"score": ', None), ("8", {"8": 0.7, "9": 0.3}), ("5", None), ("}", None)])
    exp = expected_scores(text, lp, {"A": 85.0}, None, 0, 100)
    assert exp.fallbacks == ["A"] and exp.scores == {"A": 85.0}
    # A tokenizer with two-digit tokens writes 80..89 as one token, so " 8" is eight.
    tokens = [tok('{"score":'), tok(" 85", {" 85": 0.5, " 90": 0.3, " 8": 0.2}), tok("}")]
    text = "".join(t["token"] for t in tokens)
    exp = expected_scores(text, as_internal(tokens), {"A": 85.0}, None, 0, 100)
    assert exp.fallbacks == [] and exp.scores["A"] == pytest.approx(85 * 0.5 + 90 * 0.3 + 8 * 0.2)
    # ...but "10" could still be the start of "100" (three digits): it falls back.
    tokens = [tok('{"score":'), tok(" 10", {" 10": 0.5, " 90": 0.5}), tok("0"), tok("}")]
    text = "".join(t["token"] for t in tokens)
    exp = expected_scores(text, as_internal(tokens), {"A": 100.0}, None, 0, 100)
    assert exp.scores["A"] == pytest.approx(100 * 0.5 + 90 * 0.5) and exp.fallbacks == []
    tokens = [tok('{"score":'), tok(" 90", {" 90": 0.5, " 10": 0.5}), tok("}")]
    text = "".join(t["token"] for t in tokens)
    exp = expected_scores(text, as_internal(tokens), {"A": 90.0}, None, 0, 100)
    assert exp.fallbacks == ["A"]


def test_multi_digit_tokens_elsewhere_in_the_reply_make_one_a_whole_number() -> None:
    # The worked example above reads B's " 1" as 1 because " 11" shows this tokenizer has
    # two-digit tokens; without such evidence the same " 1" may be the start of " 10".
    tokens = [tok('{"scores": {"A":'), tok(" 2", {" 2": 0.6, " 1": 0.4}), tok("}}")]
    text = "".join(t["token"] for t in tokens)
    assert expected_scores(text, as_internal(tokens), {"A": 2.0}, ["A"], 1, 10).fallbacks == ["A"]
    tokens[1] = tok(" 2", {" 2": 0.6, " 1": 0.3, " 10": 0.1})
    exp = expected_scores(text, as_internal(tokens), {"A": 2.0}, ["A"], 1, 10)
    assert exp.fallbacks == [] and exp.scores["A"] == pytest.approx(2 * 0.6 + 1 * 0.3 + 10 * 0.1)


def test_a_decimal_score_keeps_its_sampled_value() -> None:
    # "7.5" was read as the token "7" and replaced by the expectation over 7 and 8.
    text, lp = split([('{"score": ', None), ("7", {"7": 0.9, "8": 0.1}), (".5", None), ("}", None)])
    exp = expected_scores(text, lp, {"A": 7.5}, None, 1, 10)
    assert exp.scores == {"A": 7.5} and exp.fallbacks == ["A"]


def test_a_number_and_its_terminator_in_one_token_are_read() -> None:
    tokens = [tok('{"score":'), tok(" 7}", {" 7}": 0.6, " 8}": 0.4}), tok("\n")]
    text = "".join(t["token"] for t in tokens)
    exp = expected_scores(text, as_internal(tokens), {"A": 7.0}, None, 1, 10)
    assert exp.fallbacks == [] and exp.scores["A"] == pytest.approx(7.4)


def test_malformed_alternatives_from_a_server_are_skipped() -> None:
    lp = [
        {"token": '{"score": ', "top": None},
        {
            "token": "7",
            "logprob": 0.0,
            "top": [[None, -0.1], ["8", None], ["6", math.log(0.5)], ["7", math.log(0.5)], 3],
        },
        {"token": "}", "top": []},
    ]
    exp = expected_scores('{"score": 7}', lp, {"A": 7.0}, None, 1, 10)
    assert exp.scores["A"] == pytest.approx(6.5) and exp.fallbacks == []


def test_logprob_variant_through_litellm(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    tokens = [*TOKENS[:-1], tok(',"C": 5,"D": 9}}', {',"C": 5,"D": 9}}': 1.0, ',"C": 5.5': 0.5})]
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
    # C was written inside one multi-character token whose alternatives give it no other integer
    # ("5.5" is none): its expectation is 5. D's number sits after C's in that token, where no
    # alternative shares the text before it but the sampled one: also read, as 9.
    assert unit["logprob_fallbacks"] == []
    assert unit["logprob_fallback_reasons"] == {}
    assert unit["scores"][by_label["C"]] == 5.0 and unit["scores"][by_label["D"]] == 9.0
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
    # SmolLM2 writes numbers digit by digit: on 1–10 a "1" beside any other digit may be the start
    # of "10" and makes that label fall back; 1–9 has no such prefix.
    over = {"score_by": "logprobs", "scale_max": 9}
    run_eval(workspace, "local", sample_path, out_dir=tmp_path / "lp", limit=1, overrides=over)
    unit = json.loads((tmp_path / "lp" / "units.jsonl").read_text())
    assert unit["status"] == "ok"
    assert len(unit["logprob_fallbacks"]) < 4
    expected = [v for c, v in unit["scores"].items() if c not in unit["logprob_fallbacks"]]
    assert all(1.0 <= v <= 9.0 for v in unit["scores"].values())
    assert any(v != int(v) for v in expected)  # real expectations, not the sampled integers


def test_digit_split_reply_through_litellm_records_why_a_label_fell_back(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    tokens = [
        tok('{"scores": {"A": '),
        tok("1", {"1": 0.6, "9": 0.4}),
        tok("0", {"0": 0.5, ",": 0.5}),
        tok(', "B": '),
        tok("9", {"9": 0.8, "1": 0.2}),
        tok(', "C": '),
        tok("4", {"4": 0.5, "5": 0.5}),
        tok(', "D": '),
        tok("2"),
        tok("}}"),
    ]
    reply = Reply("".join(t["token"] for t in tokens), logprobs=tokens)
    with ScriptedOpenAIServer(lambda b, n: reply) as server:
        over = {"api_base": server.base_url, "score_by": "logprobs"}
        run_eval(workspace, "openai-compatible", sample_path, out_dir=tmp_path / "lp", limit=1, overrides=over)
    unit = json.loads((tmp_path / "lp" / "units.jsonl").read_text())
    by_label = {s["label"]: s["candidate"] for s in unit["shown"]}
    assert unit["scores"][by_label["A"]] == pytest.approx(10 * 0.3 + 1 * 0.3 + 9 * 0.4)
    assert unit["scores"][by_label["B"]] == 9.0  # not 7.4: its "1" may have been the start of "10"
    assert unit["scores"][by_label["C"]] == pytest.approx(4.5)
    assert unit["logprob_fallbacks"] == ["B"]
    assert "'1'" in unit["logprob_fallback_reasons"]["B"]
    manifest = json.loads((tmp_path / "lp" / "manifest.json").read_text())
    assert manifest["config"]["logprobs_version"] == LOGPROBS_VERSION


def test_the_expectation_rule_is_part_of_a_logprobs_runs_config(workspace: Workspace, sample_path: Path) -> None:
    # The expectation is computed from the cached reply when a run is written; a finished run
    # (e.g. an experiment cell) is reused only if its config hash matches, so the rule's version
    # must be in it: old cells are then re-derived from the cache, for free.
    lp = quick_identity(
        workspace, "openai-compatible", sample_path, 1, {"score_by": "logprobs", "api_base": "x"}
    ).config
    assert lp["logprobs_version"] == LOGPROBS_VERSION >= 2
    plain = quick_identity(workspace, "openai-compatible", sample_path, 1, {"api_base": "x"}).config
    assert "logprobs_version" not in plain  # sampled runs keep their hash
