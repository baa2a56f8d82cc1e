"""Audio clips as a provider receives them: probe, check, decode a window, reshape, encode, hash, store.

The bytes sent for a clip are fully determined by the source file's content and an
:class:`AudioSpec`, so their sha256 can stand for the clip in request cache keys. Everything here
is deterministic: resampling is polyphase with a fixed filter, and the one encoder that is not
byte-stable on its own (libsndfile's Ogg writer picks a random stream serial number) is made so
by rewriting that serial (see :func:`_fix_ogg_serial`).

Sources are read through libsndfile (the ``soundfile`` wheel ships it, with FLAC, Ogg and MP3),
always one window at a time: a 3-minute track costs a 10-second read, never a whole-file load.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import stat
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dialbgm.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import soundfile

    from dialbgm.storage import Store

    Samples = npt.NDArray[np.float32]

T = TypeVar("T")

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg")
MIME: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg"}

# libsndfile (format, subtype) used to write each encoding.
_SF_ENCODING = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
# LAME refuses any other rate (MPEG-1, -2 and -2.5 rates).
MP3_SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
SILENCE_DBFS = -60.0
"""Default threshold of :func:`check` and :func:`prepare`: a window peaking below this is silent."""

# libsndfile names a WAVE_FORMAT_EXTENSIBLE file "WAVEX"; for a provider it is just a wav.
_CONTAINER_ALIASES = {"wavex": "wav"}
# Decoders whose first samples after a seek can be wrong: libsndfile 1.2.2's Vorbis seek into the
# last block, or a second forward seek on one handle, returns a few hundred bad samples. Seeking
# this many frames early and discarding them gives sample-exact windows (measured on Vorbis, MP3).
_LOSSY_SUBTYPES = frozenset({"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"})
_PREROLL_FRAMES = 8192
_OGG_SERIAL = 0x6442676D  # any fixed value; "dBgm"


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


# --------------------------------------------------------------------------------------------
# Reading


def probe(path: str | Path) -> AudioInfo:
    """Read the header only; :class:`AudioError` if the file is missing, unreadable or holds no audio."""
    with _opened(path) as (_, info):
        return info


def check(
    path: str | Path, start_s: float = 0.0, duration_s: float | None = None, silence_dbfs: float = SILENCE_DBFS
) -> AudioInfo:
    """Validate that the window exists and is audible, reading it in ~1 s blocks (never the whole file)."""
    _require_window_args(start_s, duration_s)
    with _opened(path) as (f, info):
        start, count = _window(info, start_s, duration_s)
        _require_sound(info, start_s, count, _scan_peak(f, info, start, count), silence_dbfs)
        return info


def decode(path: str | Path, start_s: float = 0.0, duration_s: float | None = None) -> tuple[Samples, int]:
    """The window as float32 ``[frames, channels]`` and its sample rate; seeks, reads only the window."""
    _require_window_args(start_s, duration_s)
    with _opened(path) as (f, info):
        start, count = _window(info, start_s, duration_s)
        return _read_window(f, info, start, count), info.sample_rate


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


@contextmanager
def _opened(path: str | Path) -> Iterator[tuple[soundfile.SoundFile, AudioInfo]]:
    """An open handle and its header, with every way a file can be unusable turned into AudioError."""
    require_audio_support()
    import soundfile as sf

    _stat_source(path)
    _require_readable(path)
    try:
        handle = sf.SoundFile(str(path))
    except RuntimeError as e:  # LibsndfileError and its parents are RuntimeErrors
        raise AudioError(path, f"not a readable audio file ({_libsndfile_reason(e)})") from e
    with handle as f:
        container = f.format.lower()
        info = AudioInfo(
            path=str(path),
            container=_CONTAINER_ALIASES.get(container, container),
            subtype=f.subtype,
            sample_rate=int(f.samplerate),
            channels=int(f.channels),
            frames=int(f.frames),
            duration_s=f.frames / f.samplerate if f.samplerate else 0.0,
        )
        if info.frames <= 0:
            raise AudioError(path, "contains no audio (0 frames)")
        yield f, info


def _stat_source(path: str | Path) -> os.stat_result:
    """Stat a source, naming the problem in plain words (one syscall: the store's hit path uses only this)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as e:
        raise AudioError(path, f"cannot be read ({e.strerror or e})") from e
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(path, "is not a regular file")
    if st.st_size == 0:
        raise AudioError(path, "is empty (0 bytes)")
    return st


def _require_readable(path: str | Path) -> None:
    # libsndfile reports a permission problem as an unknown format; say what it is.
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(path, f"cannot be read ({e.strerror or e})") from e


def _libsndfile_reason(e: BaseException) -> str:
    # LibsndfileError's str() repeats the path ("Error opening '/x': ..."); its error_string does not.
    reason = getattr(e, "error_string", None) or str(e)
    return str(reason).strip().rstrip(".")


def _require_window_args(start_s: float, duration_s: float | None) -> None:
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"start_s must be a finite number >= 0, not {start_s!r}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0, not {duration_s!r}")


def _window(info: AudioInfo, start_s: float, duration_s: float | None) -> tuple[int, int]:
    """(first frame, frame count) of the window, clipped to the clip's end."""
    start = round(start_s * info.sample_rate)
    if start >= info.frames:
        raise AudioError(info.path, f"window starts at {start_s:.2f} s but the clip lasts {info.duration_s:.2f} s")
    if duration_s is None:
        return start, info.frames - start
    return start, min(info.frames - start, max(1, round(duration_s * info.sample_rate)))


def _read_blocks(f: soundfile.SoundFile, info: AudioInfo, start: int, count: int) -> Iterator[Samples]:
    """The window in blocks of about one second, after a pre-roll for lossy decoders."""
    block = max(1, info.sample_rate)
    _seek(f, info, start)
    remaining = count
    while remaining > 0:
        data = _read(f, info, min(block, remaining))
        if len(data) == 0:
            break
        remaining -= len(data)
        yield data


def _scan_peak(f: soundfile.SoundFile, info: AudioInfo, start: int, count: int) -> float:
    """Peak magnitude of the window, streamed block by block."""
    peak, frames = 0.0, 0
    for block in _read_blocks(f, info, start, count):
        peak = max(peak, _peak(block))
        frames += len(block)
    if frames == 0:  # the header promised frames the stream does not hold
        raise AudioError(info.path, f"no audio could be decoded from {start / info.sample_rate:.2f} s on")
    return peak


def _read_window(f: soundfile.SoundFile, info: AudioInfo, start: int, count: int) -> Samples:
    _seek(f, info, start)
    data = _read(f, info, count)
    if len(data) == 0:
        raise AudioError(info.path, f"no audio could be decoded from {start / info.sample_rate:.2f} s on")
    return data


def _seek(f: soundfile.SoundFile, info: AudioInfo, start: int) -> None:
    preroll = min(start, _PREROLL_FRAMES) if info.subtype in _LOSSY_SUBTYPES else 0
    try:
        if start - preroll:
            f.seek(start - preroll)
    except RuntimeError as e:
        raise AudioError(info.path, f"cannot seek to {start / info.sample_rate:.2f} s ({_libsndfile_reason(e)})") from e
    if preroll:
        _read(f, info, preroll)


def _read(f: soundfile.SoundFile, info: AudioInfo, frames: int) -> Samples:
    try:
        data: Samples = f.read(frames, dtype="float32", always_2d=True)
    except RuntimeError as e:
        raise AudioError(info.path, f"could not be decoded ({_libsndfile_reason(e)})") from e
    return data


def _peak(samples: Samples) -> float:
    return max(float(samples.max()), -float(samples.min()))


def _require_sound(info: AudioInfo, start_s: float, count: int, peak: float, silence_dbfs: float) -> None:
    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_dbfs < silence_dbfs:
        end_s = start_s + count / info.sample_rate
        raise AudioError(
            info.path,
            f"the window {start_s:.2f}–{end_s:.2f} s is silent "
            f"(peak {peak_dbfs:.1f} dBFS, below the {silence_dbfs:.0f} dBFS threshold)",
        )


# --------------------------------------------------------------------------------------------
# Reshaping and encoding


def downmix(samples: Samples, channels: int | None) -> Samples:
    """Mono is the mean of the channels; stereo from mono duplicates it; None keeps the layout."""
    import numpy as np

    have = samples.shape[1]
    if channels is None or channels == have:
        return samples
    if channels == 1:
        # Summing column by column: numpy's mean(axis=1) over 2 channels is ~10x slower.
        mono = np.array(samples[:, 0], dtype=np.float32)
        for c in range(1, have):
            mono += samples[:, c]
        mono /= np.float32(have)
        return mono[:, None]
    if have == 1:
        return np.repeat(samples, channels, axis=1)
    raise ValueError(f"cannot map {have} channels to {channels}")


def resample(samples: Samples, rate_from: int, rate_to: int) -> Samples:
    """Polyphase resampling (scipy's resample_poly); exactly round(frames * to / from) frames out."""
    import numpy as np

    if rate_from == rate_to:
        return samples
    from scipy.signal import resample_poly

    g = math.gcd(rate_from, rate_to)
    out = resample_poly(samples, rate_to // g, rate_from // g, axis=0)
    # resample_poly returns ceil(n * up / down) frames; trimming makes the length predictable.
    frames = round(len(samples) * rate_to / rate_from)
    trimmed: Samples = np.ascontiguousarray(out[:frames], dtype=np.float32)
    return trimmed


def encode(samples: Samples, sample_rate: int, fmt: str) -> bytes:
    """Encode float samples ([frames] or [frames, channels], clipped to [-1, 1]); byte-identical for equal input."""
    import numpy as np
    import soundfile as sf

    if fmt not in _SF_ENCODING:
        raise ValueError(f"unknown audio format {fmt!r}; known: {', '.join(AUDIO_FORMATS)}")
    if fmt == "mp3" and sample_rate not in MP3_SAMPLE_RATES:
        raise ValueError(f"mp3 cannot be encoded at {sample_rate} Hz; use one of {sorted(MP3_SAMPLE_RATES)}")
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or len(data) == 0:
        raise ValueError(f"cannot encode samples of shape {data.shape}")
    if fmt == "mp3" and data.shape[1] > 2:
        raise ValueError(f"mp3 holds at most 2 channels, not {data.shape[1]}")
    container, subtype = _SF_ENCODING[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(data, -1.0, 1.0), sample_rate, format=container, subtype=subtype)
    encoded = buffer.getvalue()
    return _fix_ogg_serial(encoded) if fmt == "ogg" else encoded


_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (poly 0x04C11DB7, not reflected, init 0), via zlib's reflected CRC on bit-reversed bytes."""
    raw = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{raw:032b}"[::-1], 2)


def _fix_ogg_serial(data: bytes) -> bytes:
    """Give every page one fixed stream serial and re-checksum it.

    libsndfile draws the serial from a time-seeded generator, so two encodings of the same samples
    differ in those 4 bytes (and the page CRCs) only. A single-stream file may use any serial.
    """
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        if out[pos : pos + 4] != b"OggS" or pos + 27 > len(out):
            raise ValueError(f"unexpected Ogg page structure at byte {pos}")
        segments = out[pos + 26]
        size = 27 + segments + sum(out[pos + 27 : pos + 27 + segments])
        out[pos + 14 : pos + 18] = _OGG_SERIAL.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = b"\0\0\0\0"
        out[pos + 22 : pos + 26] = _ogg_crc(bytes(out[pos : pos + size])).to_bytes(4, "little")
        pos += size
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Preparing


def prepare(path: str | Path, spec: AudioSpec) -> tuple[PreparedClip, bytes]:
    """The clip as the spec wants it, and its bytes; the original bytes when the spec changes nothing."""
    with _opened(path) as (f, info):
        start, count = _window(info, spec.start_s, spec.duration_s)
        if _passes_through(info, spec, start, count):
            _require_sound(info, spec.start_s, count, _scan_peak(f, info, start, count), SILENCE_DBFS)
            data = Path(path).read_bytes()
            clip = _clip(data, info.container, info.sample_rate, info.channels, info.frames, path)
        else:
            samples = _read_window(f, info, start, count)
            _require_sound(info, spec.start_s, len(samples), _peak(samples), SILENCE_DBFS)
            data, clip = _transform(path, info, samples, spec)
    if spec.max_bytes is not None and clip.nbytes > spec.max_bytes:
        raise AudioError(
            path,
            f"the prepared clip is {clip.nbytes:,} B ({clip.describe()}), over the limit of {spec.max_bytes:,} B; "
            "shorten the window, lower the sample rate or allow a compressed format",
        )
    return clip, data


def _passes_through(info: AudioInfo, spec: AudioSpec, start: int, count: int) -> bool:
    return (
        info.container in spec.formats
        and start == 0
        and count == info.frames
        and spec.sample_rate in (None, info.sample_rate)
        and spec.channels in (None, info.channels)
    )


def _transform(path: str | Path, info: AudioInfo, samples: Samples, spec: AudioSpec) -> tuple[bytes, PreparedClip]:
    fmt = spec.formats[0]
    rate = spec.sample_rate or info.sample_rate
    try:
        shaped = resample(downmix(samples, spec.channels), info.sample_rate, rate)
        data = encode(shaped, rate, fmt)
    except (ValueError, RuntimeError) as e:
        raise AudioError(path, f"cannot be converted to {fmt} at {rate} Hz ({e})") from e
    return data, _clip(data, fmt, rate, shaped.shape[1], len(shaped), path)


def _clip(data: bytes, fmt: str, rate: int, channels: int, frames: int, path: str | Path) -> PreparedClip:
    return PreparedClip(
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        mime=MIME.get(fmt, f"audio/{fmt}"),
        sample_rate=rate,
        channels=channels,
        duration_s=frames / rate,
        nbytes=len(data),
        source=str(path),
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --------------------------------------------------------------------------------------------
# The store


_INDEX_VERSION = 1
# Timestamps are only as fine as the filesystem clock tick (a few ms on ext4, 1-2 s on some), so
# a file rewritten within one tick keeps its stat identity. As git does for its index, an entry
# recorded while the file was that fresh also keeps the source's hash and is verified by content.
_RACY_WINDOW_NS = 3_000_000_000


class ClipStore:
    """Prepared clips on disk: a content-addressed blob store plus an index from (source file identity, spec)
    to PreparedClip.

    Blobs live under ``root/blobs/<sha[:2]>/<sha>.<fmt>`` and are written atomically, so several
    processes may share a root; the index is a diskcache under ``root/index`` holding JSON.
    """

    def __init__(self, root: Path) -> None:
        from dialbgm.storage import Place

        self.root = root
        self.blobs = root / "blobs"
        self._place = Place("the prepared-audio index", root / "index", "")
        self._index = self._open_index()
        self.hits = 0
        self.misses = 0
        self.unreadable = 0

    def __enter__(self) -> ClipStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._index.close()
        if self.unreadable:
            sys.stderr.write(
                f"warning: {self.unreadable} entries of {self._place.directory} could not be read; "
                "their clips were prepared again\n"
            )
            self.unreadable = 0

    def _open_index(self) -> Store:
        from dialbgm.storage import StoreError, open_store

        try:
            return open_store(self._place)
        except StoreError as e:
            if not e.corrupt:
                raise
            return self._start_a_new_index(e)

    def _start_a_new_index(self, problem: Exception) -> Store:
        """The index only remembers work that can be redone (blobs are checked by their hash when
        read): a damaged one is set aside and a new one started, instead of failing the run."""
        from dialbgm.storage import move_aside, open_store

        moved = move_aside(self._place)
        reason = str(problem).splitlines()[0]
        sys.stderr.write(
            f"warning: {reason}; started a new index (clips are prepared again from their sources)"
            f"{f', the damaged file is {moved}' if moved else ''}\n"
        )
        return open_store(self._place)

    def _indexed(self, op: Callable[[Store], T]) -> T:
        """``op`` on the index; a database found damaged on the way is replaced, and ``op`` retried once."""
        from dialbgm.storage import StoreError

        try:
            return op(self._index)
        except StoreError as e:
            if not e.corrupt:
                raise
            self._index.close()
            self._index = self._start_a_new_index(e)
            return op(self._index)

    def blob_path(self, clip: PreparedClip) -> Path:
        return blob_path(self.root, clip)

    def get_or_prepare(self, path: str | Path, spec: AudioSpec) -> PreparedClip:
        """The prepared clip, from the index when the source is unchanged (a stat, no decode)."""
        st = _stat_source(path)
        key = _index_key(path, st, spec)
        clip = self._lookup(key, path, st)
        if clip is not None:
            self.hits += 1
            return replace(clip, source=str(path))
        self.misses += 1
        if self._index.read_only:
            from dialbgm.storage import StoreError

            raise StoreError(
                f"{path}: not prepared yet for these audio settings, and the prepared-audio store {self.root} "
                "is read-only; prepare the clips where the store can be written, or set DIALBGM_CACHE_DIR "
                "to a folder you can write"
            )
        racy_hash = _file_sha256(path) if _is_racy(st) else None
        clip, data = prepare(path, spec)
        self._write_blob(clip, data)
        if _identity(os.stat(path)) == _identity(st):  # not rewritten while we read it
            entry = json.dumps({"version": _INDEX_VERSION, "clip": clip.to_dict(), "source_sha256": racy_hash})
            self._indexed(lambda index: index.set(key, entry))
        return clip

    def read(self, clip: PreparedClip) -> bytes:
        """The clip's bytes, verified against its sha256; a corrupt blob is removed so it is prepared again."""
        return read_blob(self.root, clip)

    def stats(self) -> dict[str, int]:
        """Blob count and bytes on disk, index entries, and this instance's hits and misses."""
        count = size = 0
        if self.blobs.is_dir():
            for blob in self.blobs.glob("*/*"):
                if not blob.name.startswith("."):
                    count += 1
                    size += blob.stat().st_size
        entries = self._indexed(lambda index: index.count())
        return {"blobs": count, "bytes": size, "entries": entries, "hits": self.hits, "misses": self.misses}

    def _lookup(self, key: str, path: str | Path, st: os.stat_result) -> PreparedClip | None:
        from dialbgm.storage import UnreadableEntry

        try:
            raw = self._indexed(lambda index: index.get(key))
            if raw is None:
                return None
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise TypeError("not an entry")
            if entry.get("version") != _INDEX_VERSION:  # written by another version: redone, not damage
                return None
            clip = PreparedClip.from_dict(entry["clip"])
        except (UnreadableEntry, TypeError, ValueError, KeyError, AttributeError):
            self.unreadable += 1
            return None
        blob = self.blob_path(clip)
        if not blob.is_file() or blob.stat().st_size != clip.nbytes:
            return None
        recorded = entry.get("source_sha256")
        if recorded is not None:
            if _file_sha256(path) != recorded:
                return None
            if not _is_racy(st) and not self._index.read_only:  # old enough: the stat identity will do
                aged = json.dumps({**entry, "source_sha256": None})
                self._indexed(lambda index: index.set(key, aged))
        return clip

    def _write_blob(self, clip: PreparedClip, data: bytes) -> None:
        blob = self.blob_path(clip)
        if blob.is_file() and blob.stat().st_size == len(data):
            return
        try:
            write_atomically(blob, data)
        except OSError as e:
            from dialbgm.storage import StoreError

            raise StoreError(
                f"the prepared clip of {clip.source} cannot be stored in {blob.parent} ({e.strerror or e})"
            ) from e


def blob_path(root: Path, clip: PreparedClip) -> Path:
    return root / "blobs" / clip.sha256[:2] / f"{clip.sha256}.{clip.format}"


def read_blob(root: Path, clip: PreparedClip) -> bytes:
    """A stored clip's bytes, verified against its sha256, without opening the store's index (so
    a sender in any thread needs no handle to close); a corrupt blob is removed."""
    blob = blob_path(root, clip)
    try:
        data = blob.read_bytes()
    except FileNotFoundError:
        raise AudioError(blob, f"the stored clip of {clip.source} is missing; prepare it again") from None
    if hashlib.sha256(data).hexdigest() != clip.sha256:
        blob.unlink(missing_ok=True)
        raise AudioError(blob, f"the stored clip of {clip.source} is corrupt (sha256 mismatch); prepare it again")
    return data


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    # ctime cannot be set from user space, so it also catches an edit whose mtime was restored.
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _index_key(path: str | Path, st: os.stat_result, spec: AudioSpec) -> str:
    size, mtime_ns, ctime_ns, ino = _identity(st)
    parts = {
        "version": _INDEX_VERSION,
        "path": str(Path(path).resolve()),
        "size": size,
        "mtime_ns": mtime_ns,
        "ctime_ns": ctime_ns,
        "ino": ino,
        "spec": spec.key(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _is_racy(st: os.stat_result) -> bool:
    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_WINDOW_NS


def _file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise AudioError(path, f"cannot be read ({e.strerror or e})") from e
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temp file in the same folder, then an atomic rename.

    A concurrent reader (another process sharing the folder) sees the old file or the new one,
    never a partial write; a crash leaves at most a hidden ``.tmp-`` file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, _file_mode())  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def _file_mode() -> int:
    """The mode an ordinary new file gets here (0666 less the umask), read once."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
