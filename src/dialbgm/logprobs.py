"""Scores as probability-weighted expectations over the score tokens (as in G-Eval, arXiv 2303.16634).

Instead of the sampled digit, each candidate's score is sum(p(v) · v) / sum(p(v)) over the
alternatives the model considered at the score's token position, keeping only alternatives that
are integers on the judge's scale. A score written over several tokens (e.g. "10" as "1"+"0" in
some tokenizers), or whose alternatives hold no in-range integer, keeps its sampled value and is
counted as a fallback, so the share of true expectations is always visible.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Expectation:
    scores: dict[str, float]
    fallbacks: list[str]
    """Labels whose sampled score was kept (multi-token number, or no usable alternative)."""


def _score_offsets(text: str, labels: Sequence[str] | None) -> dict[str, tuple[int, int]]:
    """Character span of each label's score number in the reply text."""
    out: dict[str, tuple[int, int]] = {}
    if labels is None:
        m = re.search(r'"score"\s*:\s*"?(\d+)', text)
        if m:
            out["A"] = m.span(1)
        return out
    for label in labels:
        m = re.search(r'"\s*\[?(?:[Cc]andidate\s*)?' + re.escape(label) + r'\]?\s*"\s*:\s*"?(\d+)', text)
        if m:
            out[label] = m.span(1)
    return out


def expected_scores(
    text: str,
    token_logprobs: list[dict[str, Any]],
    sampled: dict[str, float],
    labels: Sequence[str] | None,
    lo: float,
    hi: float,
) -> Expectation:
    """``token_logprobs``: [{"token": str, "top": [[token, logprob], ...]}, ...] as the provider sent."""
    starts = []
    pos = 0
    for t in token_logprobs:
        starts.append(pos)
        pos += len(t["token"])
    joined = "".join(t["token"] for t in token_logprobs)
    # Some servers send only the completion's tokens after a prefix; align on the reply's end.
    shift = len(text) - len(joined) if text.endswith(joined) else 0
    scores = dict(sampled)
    fallbacks: list[str] = []
    offsets = _score_offsets(text, labels)
    fallbacks.extend(lab for lab in sampled if lab not in offsets)
    for label, (a, b) in offsets.items():
        a, b = a - shift, b - shift
        k = next((i for i, s in enumerate(starts) if s <= a < s + len(token_logprobs[i]["token"])), None)
        if k is None or starts[k] + len(token_logprobs[k]["token"]) < b or a < 0:
            fallbacks.append(label)
            continue
        token = token_logprobs[k]["token"]
        prefix = token[: a - starts[k]]  # e.g. a leading space that belongs to the same token
        weights: dict[int, float] = {}
        for alt, logprob in token_logprobs[k]["top"]:
            if not alt.startswith(prefix) or not alt[len(prefix) :].strip().isdigit():
                continue
            value = int(alt[len(prefix) :].strip())
            if lo <= value <= hi:
                weights[value] = weights.get(value, 0.0) + math.exp(logprob)
        total = sum(weights.values())
        if total <= 0:
            fallbacks.append(label)
            continue
        scores[label] = sum(v * w for v, w in weights.items()) / total
    return Expectation(scores, sorted(set(fallbacks)))
