"""The seam between the runner and whatever answers: a Protocol, so tests and new backends plug in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from dialbgm.data import Candidate, Item
from dialbgm.judging import Request, Response


class Backend(Protocol):
    kind: str
    cacheable: bool
    """False for backends whose answer costs less than a cache lookup (the random baseline)."""
    score_range: tuple[float, float]
    integer_scores: bool

    def build_request(
        self,
        item: Item,
        shown: Sequence[Candidate],
        messages: list[dict[str, Any]] | None,
        schema: dict[str, Any] | None,
        sample: int,
    ) -> Request: ...

    def complete(self, request: Request) -> Response:
        """One attempt; raises RetryableError or PermanentError (dialbgm.calls._retry)."""
        ...

    def close(self) -> None: ...

    @property
    def needs_messages(self) -> bool: ...
