"""Audio clips as a provider receives them: the formats, the spec a provider asks for, a prepared clip.

The bytes sent for a clip are fully determined by the source file's content and an
:class:`AudioSpec`, so their sha256 can stand for the clip in request cache keys. Reading and
reshaping are in ``_decode``, encoding and preparing in ``_encode``, the store of prepared clips
in ``_clips``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.errors import InputError

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")
MIME: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}

# LAME refuses any other rate (MPEG-1, -2 and -2.5 rates).
MP3_SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
SILENCE_DBFS = -60.0
"""Default threshold of :func:`check` and :func:`prepare`: a window peaking below this is silent."""


class AudioError(InputError):
    """A clip that cannot be used: the message is '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        # The default pickling replays args=(message,), which this __init__ cannot take; clips are
        # prepared in worker processes, so the error must survive the trip back.
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """What the file's header says, before any audio is decoded."""

    path: str
    container: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int
    duration_s: float


@dataclass(frozen=True)
class AudioSpec:
    """How a provider wants its clips: accepted encodings (preferred first), shape and window."""

    formats: tuple[str, ...]
    sample_rate: int | None = None
    channels: int | None = 1
    start_s: float = 0.0
    duration_s: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        if not self.formats:
            raise ValueError("an audio spec needs at least one format")
        unknown = [f for f in self.formats if f not in AUDIO_FORMATS]
        if unknown:
            raise ValueError(f"unknown audio format(s) {unknown}; known: {', '.join(AUDIO_FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"audio formats repeat: {list(self.formats)}")
        if self.sample_rate is not None and not _positive_int(self.sample_rate):
            raise ValueError(f"sample_rate must be a positive integer, not {self.sample_rate!r}")
        if self.sample_rate is not None and self.formats[0] == "mp3" and self.sample_rate not in MP3_SAMPLE_RATES:
            raise ValueError(f"mp3 cannot be encoded at {self.sample_rate} Hz; use one of {sorted(MP3_SAMPLE_RATES)}")
        if self.channels is not None and self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 (mono), 2 (stereo) or None (keep), not {self.channels!r}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"start_s must be a finite number >= 0, not {self.start_s!r}")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"duration_s must be a finite number > 0, not {self.duration_s!r}")
        if self.max_bytes is not None and not _positive_int(self.max_bytes):
            raise ValueError(f"max_bytes must be a positive integer, not {self.max_bytes!r}")

    def key(self) -> dict[str, Any]:
        """Canonical, JSON-able identity of the spec (floats normalised so 10 and 10.0 agree)."""
        return {
            "formats": list(self.formats),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "start_s": float(self.start_s),
            "duration_s": None if self.duration_s is None else float(self.duration_s),
            "max_bytes": self.max_bytes,
        }


@dataclass(frozen=True)
class PreparedClip:
    """A clip exactly as it will be sent; ``sha256`` is the hash of those bytes."""

    sha256: str
    format: str
    mime: str
    sample_rate: int
    channels: int
    duration_s: float
    nbytes: int
    source: str

    def describe(self) -> str:
        """One short human line (never the bytes), for logs and dry runs."""
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        return (
            f"{self.format} · {self.duration_s:.2f} s · {self.sample_rate} Hz · {layout} · "
            f"{self.nbytes:,} B · sha256 {self.sha256[:12]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "format": self.format,
            "mime": self.mime,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "duration_s": self.duration_s,
            "nbytes": self.nbytes,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreparedClip:
        return cls(
            sha256=str(d["sha256"]),
            format=str(d["format"]),
            mime=str(d["mime"]),
            sample_rate=int(d["sample_rate"]),
            channels=int(d["channels"]),
            duration_s=float(d["duration_s"]),
            nbytes=int(d["nbytes"]),
            source=str(d["source"]),
        )


class AudioSupportMissing(InputError):
    """The optional audio dependencies are not installed."""


def require_audio_support() -> None:
    """Fail with the install command, not a traceback, when soundfile is absent."""
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError) as e:  # OSError: the wheel's libsndfile cannot be loaded
        raise AudioSupportMissing(
            f"reading audio clips needs the 'audio' extra ({e}); install it with  pip install 'dialbgm[audio]'"
        ) from None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
