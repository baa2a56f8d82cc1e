"""What a judge is asked and how its answer is read: units (orders, labels, samples), rendered
prompts, requests, audio parts, reply parsing and log-probability scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "AUDIO_REF",
    "CACHE_SCHEMA_VERSION",
    "LOGPROBS_VERSION",
    "PARSER_VERSION",
    "SAMPLE_CLIPS",
    "DigestTable",
    "FewShotPool",
    "Parsed",
    "PromptSet",
    "Request",
    "Response",
    "Unit",
    "UnitPlan",
    "audio_ref",
    "audio_seconds",
    "audio_spec",
    "build_units",
    "candidate_orders",
    "check_clips",
    "check_request_size",
    "clip_path",
    "clips_digest",
    "compile_templates",
    "describe_part",
    "expected_scores",
    "has_audio",
    "judge_fit_problems",
    "labels_for",
    "listwise_schema",
    "load_pool",
    "missing_clips_hint",
    "parse_reply",
    "pointwise_schema",
    "prepare_clips",
    "sandboxed_env",
    "seeded_rng",
    "template_error",
    "template_tree_sha256",
    "text_chars",
    "to_wire",
    "wants_audio",
]

_WHERE = {
    "AUDIO_REF": "._audio_input",
    "CACHE_SCHEMA_VERSION": "._request",
    "DigestTable": "._table",
    "FewShotPool": "._plan",
    "LOGPROBS_VERSION": "._logprobs",
    "PARSER_VERSION": "._parse",
    "Parsed": "._parse",
    "PromptSet": "._prompts",
    "Request": "._request",
    "Response": "._request",
    "SAMPLE_CLIPS": "._sample_clips",
    "Unit": "._plan",
    "UnitPlan": "._plan",
    "audio_ref": "._audio_input",
    "audio_seconds": "._audio_input",
    "audio_spec": "._audio_input",
    "build_units": "._plan",
    "candidate_orders": "._plan",
    "check_clips": "._audio_input",
    "check_request_size": "._audio_input",
    "clip_path": "._audio_input",
    "clips_digest": "._audio_input",
    "compile_templates": "._prompts",
    "describe_part": "._audio_input",
    "expected_scores": "._logprobs",
    "has_audio": "._audio_input",
    "judge_fit_problems": "._plan",
    "labels_for": "._prompts",
    "listwise_schema": "._parse",
    "load_pool": "._plan",
    "missing_clips_hint": "._sample_clips",
    "parse_reply": "._parse",
    "pointwise_schema": "._parse",
    "prepare_clips": "._audio_input",
    "sandboxed_env": "._prompts",
    "seeded_rng": "._plan",
    "template_error": "._prompts",
    "template_tree_sha256": "._prompts",
    "text_chars": "._audio_input",
    "to_wire": "._audio_input",
    "wants_audio": "._audio_input",
}

if TYPE_CHECKING:
    from dialbgm.judging._audio_input import (
        AUDIO_REF,
        audio_ref,
        audio_seconds,
        audio_spec,
        check_clips,
        check_request_size,
        clip_path,
        clips_digest,
        describe_part,
        has_audio,
        prepare_clips,
        text_chars,
        to_wire,
        wants_audio,
    )
    from dialbgm.judging._logprobs import LOGPROBS_VERSION, expected_scores
    from dialbgm.judging._parse import PARSER_VERSION, Parsed, listwise_schema, parse_reply, pointwise_schema
    from dialbgm.judging._plan import (
        FewShotPool,
        Unit,
        UnitPlan,
        build_units,
        candidate_orders,
        judge_fit_problems,
        load_pool,
        seeded_rng,
    )
    from dialbgm.judging._prompts import (
        PromptSet,
        compile_templates,
        labels_for,
        sandboxed_env,
        template_error,
        template_tree_sha256,
    )
    from dialbgm.judging._request import CACHE_SCHEMA_VERSION, Request, Response
    from dialbgm.judging._sample_clips import SAMPLE_CLIPS, missing_clips_hint
    from dialbgm.judging._table import DigestTable

__getattr__ = exports(__name__, _WHERE)
