"""Items: the dialogue, its candidates and their human ranks; loaders (JSONL, long CSV, Parquet)
and the audio clips."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "AUDIO_FORMATS",
    "AudioError",
    "AudioSpec",
    "Candidate",
    "ClipStore",
    "Dataset",
    "Item",
    "PreparedClip",
    "Turn",
    "check",
    "load_dataset",
    "read_blob",
    "require_audio_support",
]

_WHERE = {
    "AUDIO_FORMATS": "._audio",
    "AudioError": "._audio",
    "AudioSpec": "._audio",
    "Candidate": "._items",
    "ClipStore": "._clips",
    "Dataset": "._items",
    "Item": "._items",
    "PreparedClip": "._audio",
    "Turn": "._items",
    "check": "._decode",
    "load_dataset": "._dataset",
    "read_blob": "._clips",
    "require_audio_support": "._audio",
}

if TYPE_CHECKING:
    from dialbgm.data._audio import AUDIO_FORMATS, AudioError, AudioSpec, PreparedClip, require_audio_support
    from dialbgm.data._clips import ClipStore, read_blob
    from dialbgm.data._dataset import load_dataset
    from dialbgm.data._decode import check
    from dialbgm.data._items import Candidate, Dataset, Item, Turn

__getattr__ = exports(__name__, _WHERE)
