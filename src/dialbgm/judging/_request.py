"""The effective request of one call, and the cache key derived from it.

The key covers everything that can change the answer: the backend and the identity of the
model behind it, the base URL where the model is user-chosen, every parameter actually sent,
the rendered messages (or embedding texts), the candidate order and the sample index, and a
schema version. Timeouts, retry settings and API keys are deliberately not part of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

CACHE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Request:
    backend: str
    """The backend kind: litellm, random, embedding."""
    model: str
    """What is sent as the model name (litellm route/model, or the embedding model id)."""
    identity: dict[str, Any]
    """What identifies the model that answers, beyond its name (e.g. the GGUF's sha256)."""
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    api_base: str | None = None
    order: tuple[str, ...] = ()
    sample: int = 0
    attempt: int = 0
    """0 for the first asking; n for the n-th re-ask of a reply that failed (``--retry-status``).
    Only the key changes, so a re-ask is not served the cached reply it replaces; nothing sent does."""

    def key_parts(self) -> dict[str, Any]:
        parts = {
            "schema": CACHE_SCHEMA_VERSION,
            "backend": self.backend,
            "model": self.model,
            "identity": self.identity,
            "api_base": self.api_base,
            "params": self.params,
            # Hashed on their own: equally collision-safe, and the hash is recorded per unit anyway.
            "messages": self.messages_sha256(),
            "order": list(self.order),
            "sample": self.sample,
        }
        if self.attempt:  # absent for a first asking: every key from before re-asks existed stays valid
            parts["attempt"] = self.attempt
        return parts

    def cache_key(self) -> str:
        # Computed once: a request is immutable once built (messages are never edited after).
        key: str | None = self.__dict__.get("_key")
        if key is None:
            key = _sha256_json(self.key_parts())
            object.__setattr__(self, "_key", key)
        return key

    def messages_sha256(self) -> str:
        digest: str | None = self.__dict__.get("_messages_sha256")
        if digest is None:
            digest = _sha256_json(self.messages)
            object.__setattr__(self, "_messages_sha256", digest)
        return digest


def _sha256_json(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Response:
    """A provider's raw answer: what is cached, and all that parsing ever sees."""

    text: str
    finish_reason: str | None = None
    model: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    logprobs: list[dict[str, Any]] | None = None
    """Per reply token: {"token": str, "top": [[token, logprob], ...]}, when asked for."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "model": self.model,
            "usage": self.usage,
        }
        if self.logprobs is not None:
            d["logprobs"] = self.logprobs
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Response:
        return cls(d["text"], d.get("finish_reason"), d.get("model"), dict(d.get("usage") or {}), d.get("logprobs"))
