"""The store of CLAP embeddings: each vector once per model, by the content it embeds.

Keys are the model's identity (the weights' hash and the embedding settings) and the sha256 of
what was embedded — the exact bytes of a prepared clip, or a text — never a path. So a re-run, a
second experiment cell (another query, another order) or another data file with the same clips
embeds nothing again, and new weights never meet old vectors. Values are JSON text (the store
holds no pickles): the vector as base64 float32, with its length.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dialbgm.storage import Store

_VERSION = 1


@dataclass
class EmbeddingCounts:
    """What one backend did: vectors computed by each tower, and vectors read from the store."""

    audio_computed: int = 0
    audio_stored: int = 0
    text_computed: int = 0
    text_stored: int = 0

    def add(self, kind: str, computed: int, stored: int) -> None:
        if kind == "audio":
            self.audio_computed += computed
            self.audio_stored += stored
        else:
            self.text_computed += computed
            self.text_stored += stored

    def reset(self) -> None:
        self.audio_computed = self.audio_stored = self.text_computed = self.text_stored = 0


class EmbeddingStore:
    def __init__(self, directory: Path, model_key: str) -> None:
        from dialbgm.storage import Place, open_store

        self.directory = directory
        self.model_key = model_key
        place = Place(
            "the CLAP embedding store",
            directory,
            f"It only holds vectors that can be computed again: delete {directory} and run again.",
        )
        self._store: Store = open_store(place)

    def _key(self, kind: str, content_sha256: str) -> str:
        return f"{kind}:{self.model_key}:{content_sha256}"

    def get(self, kind: str, content_sha256: str) -> Any:
        """The stored vector (a float32 numpy array), or None (absent, unreadable, another version)."""
        import numpy as np

        from dialbgm.storage import UnreadableEntry

        try:
            raw = self._store.get(self._key(kind, content_sha256))
            if raw is None:
                return None
            entry = json.loads(raw)
            if entry.get("version") != _VERSION:
                return None
            vector = np.frombuffer(base64.b64decode(entry["f32"]), dtype=np.float32)
            if len(vector) != entry["dim"]:
                return None
            return vector
        except (UnreadableEntry, ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged entry is computed again, never read as a vector

    def put(self, kind: str, content_sha256: str, vector: Any) -> None:
        import numpy as np

        if self._store.read_only:
            return  # a read-only store still serves what it holds
        data = np.ascontiguousarray(vector, dtype=np.float32)
        entry = {"version": _VERSION, "dim": int(data.shape[0]), "f32": base64.b64encode(data.tobytes()).decode()}
        self._store.set(self._key(kind, content_sha256), json.dumps(entry, separators=(",", ":")))

    def close(self) -> None:
        self._store.close()
