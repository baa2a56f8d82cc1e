"""Scores as probability-weighted expectations over the score tokens (as in G-Eval, arXiv 2303.16634).

Instead of the sampled number, each candidate's score is sum(p(v) · v) / sum(p(v)) over the
integers v on the judge's scale that the alternatives at the score's first token spell, the
visible in-scale mass renormalised. The rule for reading an alternative token as a number:

- After the text the sampled token has before the number (a leading space, a quote), the
  alternative must start with digits; anything else ("hello", "-") is no number and is left out.
- Digits followed, inside the token, by a character that ends a JSON number (``,`` ``}`` ``]``
  ``"`` or a space) are a complete number. Digits followed by anything else (``7.5``, ``7e1``) are
  no integer and are left out.
- Digits that run to the token's end are *open*: the next token could continue them ("1" then
  "0" is 10). An open number is read as complete when no longer in-scale number starts with it
  (on 1–10, "7" is complete; "1" could be 10, and on 3–10 "1" can only be 10), or when the reply
  shows this tokenizer writes longer digit runs as one token (some token of the reply, sampled or
  alternative, holds more digits than the open number): a tokenizer that has "10" does not write
  ten as "1" + "0". Otherwise the alternative is *ambiguous*: how its mass splits between 1 and
  10 is unknowable from one position.
- The sampled token is the one exception, because the reply shows what followed it: when it is
  open and the number continues, or it is ambiguous, its mass is split exactly by the
  alternatives at the next token (which are conditioned on it): "0" makes 10, ``,`` makes 1,
  another digit an out-of-scale 11..19 (left out), and so on until the number ends.

A label keeps its sampled score, and is listed as a fallback with the reason, when any
alternative is ambiguous, when no alternative spells an in-scale integer, when the sampled score
is no integer written in the reply's tokens, or when the reply carries no log-probabilities. So
a digit-splitting tokenizer (SmolLM2, Qwen, Llama 2, Mistral, Gemma) on the default 1–10 scale
falls back wherever "1" is a likely alternative to another digit; a 1–9 (or 0–9) scale has no
ambiguous prefix and is the scale to use with such models.

The expectation is computed from the cached reply every time a run is written, never cached
itself; LOGPROBS_VERSION is part of a logprobs judge's recorded config, so a finished run whose
expectations came from an older rule is not reused as up to date.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

LOGPROBS_VERSION = 2
"""1: the first token's alternatives read as complete numbers; 2: the rule above."""

# What may follow a JSON number (a quoted score ends with its closing quote).
_NUMBER_END = frozenset(',}]" \t\r\n')
# JSON numbers are ASCII: "\d" would also take other scripts' digits.
_DIGITS = re.compile(r"[0-9]*")
_DIGIT_RUN = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Expectation:
    scores: dict[str, float]
    fallbacks: list[str]
    """Labels whose sampled score was kept (see the module docstring for when)."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each fallback label kept its sampled score."""


def _score_offsets(text: str, labels: Sequence[str] | None) -> dict[str, tuple[int, int]]:
    """Character span of each label's score number in the reply text (with any fraction or exponent,
    so a non-integer score is seen as such)."""
    number = r'"?([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)'
    out: dict[str, tuple[int, int]] = {}
    if labels is None:
        m = re.search(r'"score"\s*:\s*' + number, text)
        if m:
            out["A"] = m.span(1)
        return out
    for label in labels:
        m = re.search(r'"\s*\[?(?:[Cc]andidate\s*)?' + re.escape(label) + r'\]?\s*"\s*:\s*' + number, text)
        if m:
            out[label] = m.span(1)
    return out


class _Evidence:
    """What the reply shows of its tokenizer, looked at only when an open number needs it."""

    def __init__(self, tokens: Sequence[dict[str, Any]]) -> None:
        self.tokens = tokens

    @cached_property
    def longest_run(self) -> int:
        """Most digits any one token of the reply holds, sampled or alternative."""
        best = 0
        for t in self.tokens:
            for text in (t.get("token"), *(a[0] for a in _raw_alternatives(t))):
                if isinstance(text, str):
                    best = max(best, *(len(run) for run in _DIGIT_RUN.findall(text)), 0)
        return best


def _raw_alternatives(t: dict[str, Any]) -> Iterator[Sequence[Any]]:
    top = t.get("top")
    if isinstance(top, list):
        yield from (a for a in top if isinstance(a, list | tuple) and len(a) == 2)


def _alternatives(t: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(token, probability) of the alternatives a provider sent; malformed entries are skipped."""
    for alt, logprob in _raw_alternatives(t):
        if isinstance(alt, str) and _is_logprob(logprob):
            yield alt, math.exp(logprob)


def _is_logprob(value: Any) -> bool:
    """A number that is a log-probability (-inf included: probability 0); NaN and strings are not."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value) and value <= 0


def _longer_in_scale(digits: str, lo: int, hi: int) -> bool:
    """Does some integer on the scale start with ``digits`` and have more digits?"""
    if digits.startswith("0"):
        return False  # a number does not start with 0: "0" is complete, "05" is no JSON number
    v = int(digits)
    for extra in range(1, len(str(hi)) - len(digits) + 1):
        first, last = v * 10**extra, (v + 1) * 10**extra - 1
        if first <= hi and last >= lo:
            return True
    return False


Kind = Literal["none", "complete", "open"]


def _read(piece: str, digits_before: str) -> tuple[Kind, str]:
    """What ``piece`` (a token's text after the number's start) makes of the number so far."""
    run = _DIGITS.match(piece)
    assert run is not None
    digits = digits_before + run.group()
    rest = piece[run.end() :]
    if not digits:
        return "none", ""
    if not rest:
        return "open", digits
    return ("complete", digits) if rest[0] in _NUMBER_END else ("none", "")


@dataclass
class _Walk:
    lo: int
    hi: int
    evidence: _Evidence
    weights: dict[int, float] = field(default_factory=dict)

    def ambiguous(self, digits: str) -> bool:
        return _longer_in_scale(digits, self.lo, self.hi) and len(digits) >= self.evidence.longest_run

    def add(self, digits: str, mass: float) -> None:
        value = int(digits)
        if self.lo <= value <= self.hi and mass > 0:
            self.weights[value] = self.weights.get(value, 0.0) + mass


def _sampled_mass(t: dict[str, Any]) -> float:
    """Probability of the token that was sampled: from the alternatives, else its own logprob."""
    found = [p for alt, p in _alternatives(t) if alt == t["token"]]
    if found:
        return sum(found)
    own: Any = t.get("logprob")
    return math.exp(own) if _is_logprob(own) else 0.0


def _walk(tokens: Sequence[dict[str, Any]], k: int, prefix: str, written: str, walk: _Walk) -> str | None:
    """Collect the in-scale mass from token ``k`` on; the reason to fall back, or None.

    ``prefix``: token ``k``'s text before the number; ``written``: the number as the reply has it,
    which the sampled tokens must spell.
    """
    digits, mass, j = "", 1.0, k
    while True:
        t = tokens[j]
        sampled = t["token"]
        head = prefix if j == k else ""
        for alt, p in _alternatives(t):
            if alt == sampled or not alt.startswith(head):
                continue
            # JSON allows spaces before a number, not inside it.
            kind, number = _read(alt[len(head) :].lstrip(" ") if j == k else alt, digits)
            if kind == "open" and walk.ambiguous(number):
                return f"alternative {alt!r} could be the start of a longer number"
            if kind != "none":
                walk.add(number, mass * p)
        kind, number = _read(sampled[len(head) :], digits)
        p = mass * _sampled_mass(t)
        if kind == "none" or not written.startswith(number):
            return "the sampled tokens do not spell the score"
        if kind == "complete" or (number == written and not walk.ambiguous(number)):
            if number != written:
                return "the sampled tokens do not spell the score"
            walk.add(number, p)
            return None
        # The number goes on in the next token, or may have: that token's alternatives tell.
        if j + 1 >= len(tokens):
            return "the reply ends inside the score"
        digits, mass, j = number, p, j + 1


def expected_scores(
    text: str,
    token_logprobs: list[dict[str, Any]],
    sampled: dict[str, float],
    labels: Sequence[str] | None,
    lo: float,
    hi: float,
) -> Expectation:
    """``token_logprobs``: [{"token": str, "logprob": float, "top": [[token, logprob], ...]}, ...] as
    the provider sent them."""
    tokens = [t for t in token_logprobs if isinstance(t, dict) and isinstance(t.get("token"), str)]
    starts = []
    pos = 0
    for t in tokens:
        starts.append(pos)
        pos += len(t["token"])
    joined = "".join(t["token"] for t in tokens)
    # Some servers send only the completion's tokens after a prefix; align on the reply's end.
    shift = len(text) - len(joined) if text.endswith(joined) else 0
    scores = dict(sampled)
    reasons: dict[str, str] = {}
    offsets = _score_offsets(text, labels)
    for lab in sampled:
        if lab not in offsets:
            reasons[lab] = "score not found in the reply text"
    evidence = _Evidence(tokens)
    for label, (a, b) in offsets.items():
        number = text[a:b]
        if not number.isdigit() or float(number) != sampled.get(label):
            reasons[label] = f"the score {number!r} is not an integer, or not the one parsed"
            continue
        a, b = a - shift, b - shift
        k = next((i for i, s in enumerate(starts) if s <= a < s + len(tokens[i]["token"])), None)
        if k is None or a < 0:
            reasons[label] = "score not found in the reply's tokens"
            continue
        walk = _Walk(int(lo), int(hi), evidence)
        token = tokens[k]["token"]
        prefix = token[: a - starts[k]]  # e.g. a leading space that belongs to the same token
        reason = _walk(tokens, k, prefix, number, walk)
        total = sum(walk.weights.values())
        if reason is None and total <= 0:
            reason = "no alternative is an integer on the scale"
        if reason is not None:
            reasons[label] = reason
            continue
        scores[label] = sum(v * w for v, w in walk.weights.items()) / total
    return Expectation(scores, sorted(reasons), dict(sorted(reasons.items())))
