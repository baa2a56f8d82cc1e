"""Backends answer requests: litellm (hosted, OpenAI-compatible and the local llama.cpp server),
a seeded random baseline, an offline text-embedding baseline and CLAP (audio-text retrieval).
Each implements :class:`Backend`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "Backend",
    "make_backend",
    "model_identity",
    "renders_prompts",
]

_WHERE = {
    "Backend": "._base",
    "make_backend": "._factory",
    "model_identity": "._factory",
    "renders_prompts": "._factory",
}

if TYPE_CHECKING:
    from dialbgm.calls.backends._base import Backend
    from dialbgm.calls.backends._factory import make_backend, model_identity, renders_prompts

__getattr__ = exports(__name__, _WHERE)
