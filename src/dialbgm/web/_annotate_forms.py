"""What an annotation page sends back, checked: the CSRF token and origin of a POST, and the ranks
and listening times of a submission."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

SESSION_COOKIE = "dialbgm_session"
MAX_FORM_BYTES = 64 * 1024


def csrf_token(secret: bytes, session: str, annotator: str) -> str:
    """Bound to the browser's session and to the annotator: a form of one annotator's page is
    no use with another's link, nor in another browser."""
    return hmac.new(secret, f"{session}\x00{annotator}".encode(), hashlib.sha256).hexdigest()


def same_origin(headers: Mapping[str, str], scheme: str, host: str) -> bool:
    """The POST comes from a page of this server: its Origin (else Referer) names this host.
    A request with neither is refused: every browser sends Origin with a form POST."""
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if referer is None:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin == f"{scheme}://{host}"


def parse_form(body: bytes) -> dict[str, str]:
    """An urlencoded form, last value wins (only single-valued fields are sent)."""
    if len(body) > MAX_FORM_BYTES:
        raise FormError("the form is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


class FormError(ValueError):
    """A submission that cannot be stored; the message is shown to the annotator."""


@dataclass(frozen=True)
class Ranking:
    ranks: dict[str, int]
    """Candidate id → competition rank."""
    listened: dict[str, float]


def competition(numbers: list[int]) -> list[int]:
    """Numbers as written (1, 1, 2, 3: two clips share the first place) → competition ranks (1, 1, 3, 4)."""
    return [1 + sum(1 for m in numbers if m < n) for n in numbers]


def parse_ranking(form: Mapping[str, str], shown_ids: list[str], ties: bool) -> Ranking:
    """The ranks of the clips in the order shown (fields ``rank-0`` ...), 1 = best."""
    n = len(shown_ids)
    numbers: list[int] = []
    for k in range(n):
        value = form.get(f"rank-{k}", "").strip()
        # ASCII digits only: str.isdigit() also takes '①' (int() refuses it) and '١' (another script).
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= n:
            raise FormError(f"give clip {_label(k)} a rank from 1 to {n}")
        numbers.append(int(value))
    if not ties and sorted(numbers) != list(range(1, n + 1)):
        raise FormError(f"this campaign allows no ties: give the clips the ranks 1 to {n}, each once")
    ranks = dict(zip(shown_ids, competition(numbers), strict=True))
    listened: dict[str, float] = {}
    for k, cid in enumerate(shown_ids):
        try:
            seconds = float(form.get(f"listened-{k}", "0") or 0)
        except ValueError:
            seconds = 0.0
        listened[cid] = seconds if math.isfinite(seconds) and seconds >= 0 else 0.0
    return Ranking(ranks, listened)


def _label(k: int) -> str:
    return chr(ord("A") + k)


LABELS = [_label(k) for k in range(26)]
