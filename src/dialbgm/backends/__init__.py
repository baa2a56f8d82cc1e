"""Backends answer requests: litellm (hosted, OpenAI-compatible and the local llama.cpp server),
a seeded random baseline, and an offline text-embedding baseline."""

from __future__ import annotations

from dialbgm.backends.base import Backend
from dialbgm.config import JudgeConfig, ProviderConfig
from dialbgm.workspace import Workspace


def make_backend(judge: JudgeConfig, provider: ProviderConfig, ws: Workspace) -> Backend:
    if provider.kind == "random":
        from dialbgm.backends.random_backend import RandomBackend

        return RandomBackend(judge)
    if provider.kind == "embedding":
        from dialbgm.backends.embedding import EmbeddingBackend

        return EmbeddingBackend(judge, provider)
    from dialbgm.backends.litellm_backend import LiteLLMBackend

    return LiteLLMBackend(judge, provider, ws)


__all__ = ["Backend", "make_backend"]
