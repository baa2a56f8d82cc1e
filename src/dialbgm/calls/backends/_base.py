"""The seam between the runner and whatever answers: a Protocol, so tests and new backends plug in.

Every ability the runner and the engine act on is declared here and implemented by every
backend, so that nothing is discovered by probing for attributes: a backend that forgets one
fails mypy, not a run."""

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
    batch_api: str
    """The provider's batch API (``openai``, ``anthropic``, ``gemini``), or ``none``."""

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

    async def acomplete(self, request: Request) -> Response:
        """The same attempt on the engine's event loop: a network backend awaits its client
        (many requests in flight), a local one hands CPU-bound work to a thread or answers inline."""
        ...

    def batch_bridge(self) -> Any:
        """What builds this backend's batch lines and reads its batch results
        (:class:`dialbgm.calls.backends._litellm_batch.BatchBridge`); only when ``batch_api`` is set."""
        ...

    def close(self) -> None: ...

    @property
    def needs_messages(self) -> bool:
        """Whether requests carry rendered prompts (LLM judges) rather than raw texts."""
        ...

    @property
    def needs_key(self) -> bool:
        """Whether a call needs the provider's API key (checked before the first call is made)."""
        ...
