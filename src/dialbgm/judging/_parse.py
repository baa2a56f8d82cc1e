"""Turn a judge's raw reply into scores, or into a recorded failure (never a score).

Versioned: results record PARSER_VERSION, and a parser change re-parses cached replies with no
call. Structured output is validated against the same schema that was sent; free text goes
through a tolerant extractor (code fences, prose around the object), then the same validation.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dialbgm.judging._request import Response

PARSER_VERSION = 1

Status = Literal["ok", "parse_error", "truncated", "refused", "transport_error", "skipped"]


@dataclass(frozen=True)
class Parsed:
    status: Status
    scores: dict[str, float] | None = None
    """Score per label shown to the judge."""
    reasoning: str | None = None
    error: str | None = None


def listwise_schema(labels: Sequence[str], cot: bool, lo: int, hi: int) -> dict[str, Any]:
    score = {"type": "integer", "minimum": lo, "maximum": hi}
    props: dict[str, Any] = {}
    if cot:
        props["reasoning"] = {"type": "string"}
    props["scores"] = {
        "type": "object",
        "properties": {label: score for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def pointwise_schema(cot: bool, lo: int, hi: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if cot:
        props["reasoning"] = {"type": "string"}
    props["score"] = {"type": "integer", "minimum": lo, "maximum": hi}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json_objects(text: str) -> list[Any]:
    """Every JSON object in ``text``: the whole text, fenced blocks, then brace-balanced spans."""
    with contextlib.suppress(json.JSONDecodeError):
        return [json.loads(text)]  # the common case: a clean reply (structured output)
    found: list[Any] = []
    candidates = [m.group(1).strip() for m in _FENCE.finditer(text)]
    for c in candidates:
        with contextlib.suppress(json.JSONDecodeError):
            found.append(json.loads(c))
    if found:
        return found
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        found.append(obj)
        i = text.find("{", end)
    return found


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _norm_label(k: str) -> str:
    k = k.strip().strip("[]()").strip()
    if k.lower().startswith("candidate"):
        k = k[len("candidate") :].strip(" :#")
    return k.upper()


def _validate(obj: Any, labels: Sequence[str] | None, lo: float, hi: float) -> Parsed:
    """labels=None means a pointwise reply ({"score": n})."""
    if not isinstance(obj, dict):
        return Parsed("parse_error", error=f"expected a JSON object, got {type(obj).__name__}")
    reasoning = obj.get("reasoning")
    reasoning = reasoning if isinstance(reasoning, str) else None
    if labels is None:
        if "score" not in obj:
            return Parsed("parse_error", error="no 'score' field")
        value = _number(obj["score"])
        if value is None:
            return Parsed("parse_error", error=f"score is not a number: {obj['score']!r}")
        if not lo <= value <= hi:
            return Parsed("parse_error", error=f"score {value:g} outside the scale {lo:g}..{hi:g}")
        return Parsed("ok", {"A": value}, reasoning)
    raw_scores = obj.get("scores")
    if not isinstance(raw_scores, dict):
        return Parsed("parse_error", error="no 'scores' object")
    scores: dict[str, float] = {}
    for k, v in raw_scores.items():
        label = _norm_label(str(k))
        if label not in labels:
            return Parsed("parse_error", error=f"score for unknown candidate {k!r}")
        if label in scores:
            return Parsed("parse_error", error=f"two scores for candidate {label}")
        value = _number(v)
        if value is None:
            return Parsed("parse_error", error=f"score for {label} is not a number: {v!r}")
        if not lo <= value <= hi:
            return Parsed("parse_error", error=f"score {value:g} for {label} outside the scale {lo:g}..{hi:g}")
        scores[label] = value
    missing = [lab for lab in labels if lab not in scores]
    if missing:
        return Parsed("parse_error", error=f"no score for candidate(s) {', '.join(missing)}")
    return Parsed("ok", scores, reasoning)


def parse_reply(response: Response, labels: Sequence[str] | None, lo: float, hi: float) -> Parsed:
    """Scores from a reply, or a failure status with the reason; the raw text is kept by the caller."""
    text = response.text or ""
    if response.finish_reason == "content_filter":
        return Parsed("refused", error="the provider filtered the reply (finish_reason=content_filter)")
    if not text.strip():
        if response.finish_reason == "length":
            return Parsed("truncated", error="empty reply cut at the token limit (reasoning may have used it all)")
        return Parsed("parse_error", error="empty reply")
    objects = extract_json_objects(text)
    last_error = "no JSON object in the reply"
    for obj in objects:
        parsed = _validate(obj, labels, lo, hi)
        if parsed.status == "ok":
            return parsed
        last_error = parsed.error or last_error
    if response.finish_reason == "length":
        return Parsed("truncated", error=f"reply cut at the token limit ({last_error})")
    return Parsed("parse_error", error=last_error)
