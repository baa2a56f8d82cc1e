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
    "Candidate": "._dataset",
    "ClipStore": "._audio",
    "Dataset": "._dataset",
    "Item": "._dataset",
    "PreparedClip": "._audio",
    "Turn": "._dataset",
    "check": "._audio",
    "load_dataset": "._dataset",
    "read_blob": "._audio",
    "require_audio_support": "._audio",
}

if TYPE_CHECKING:
    from dialbgm.data._audio import (
        AUDIO_FORMATS,
        AudioError,
        AudioSpec,
        ClipStore,
        PreparedClip,
        check,
        read_blob,
        require_audio_support,
    )
    from dialbgm.data._dataset import Candidate, Dataset, Item, Turn, load_dataset

__getattr__ = exports(__name__, _WHERE)
