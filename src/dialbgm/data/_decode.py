"""Reading clips: probe, check, decode one window, and reshape (downmix, resample).

Sources are read through libsndfile (the ``soundfile`` wheel ships it, with FLAC, Ogg and MP3),
always one window at a time: a 3-minute track costs a 10-second read, never a whole-file load.
Resampling is polyphase with a fixed filter, so equal input gives equal samples.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dialbgm.data._audio import SILENCE_DBFS, AudioError, AudioInfo, require_audio_support

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import soundfile

    Samples = npt.NDArray[np.float32]

# libsndfile names a WAVE_FORMAT_EXTENSIBLE file "WAVEX"; for a provider it is just a wav.
_CONTAINER_ALIASES = {"wavex": "wav"}
# Decoders whose first samples after a seek can be wrong: libsndfile 1.2.2's Vorbis seek into the
# last block, or a second forward seek on one handle, returns a few hundred bad samples. Seeking
# this many frames early and discarding them gives sample-exact windows (measured on Vorbis, MP3).
_LOSSY_SUBTYPES = frozenset({"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"})
_PREROLL_FRAMES = 8192


def probe(path: str | Path) -> AudioInfo:
    """Read the header only; :class:`AudioError` if the file is missing, unreadable or holds no audio."""
    with opened(path) as (_, info):
        return info


def check(
    path: str | Path, start_s: float = 0.0, duration_s: float | None = None, silence_dbfs: float = SILENCE_DBFS
) -> AudioInfo:
    """Validate that the window exists and is audible, reading it in ~1 s blocks (never the whole file)."""
    _require_window_args(start_s, duration_s)
    with opened(path) as (f, info):
        start, count = window_frames(info, start_s, duration_s)
        require_sound(info, start_s, count, scan_peak(f, info, start, count), silence_dbfs)
        return info


def decode(path: str | Path, start_s: float = 0.0, duration_s: float | None = None) -> tuple[Samples, int]:
    """The window as float32 ``[frames, channels]`` and its sample rate; seeks, reads only the window."""
    _require_window_args(start_s, duration_s)
    with opened(path) as (f, info):
        start, count = window_frames(info, start_s, duration_s)
        return read_window(f, info, start, count), info.sample_rate


@contextmanager
def opened(path: str | Path) -> Iterator[tuple[soundfile.SoundFile, AudioInfo]]:
    """An open handle and its header, with every way a file can be unusable turned into AudioError."""
    require_audio_support()
    import soundfile as sf

    stat_source(path)
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


def stat_source(path: str | Path) -> os.stat_result:
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


def window_frames(info: AudioInfo, start_s: float, duration_s: float | None) -> tuple[int, int]:
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


def scan_peak(f: soundfile.SoundFile, info: AudioInfo, start: int, count: int) -> float:
    """Peak magnitude of the window, streamed block by block."""
    peak, frames = 0.0, 0
    for block in _read_blocks(f, info, start, count):
        peak = max(peak, peak_of(block))
        frames += len(block)
    if frames == 0:  # the header promised frames the stream does not hold
        raise AudioError(info.path, f"no audio could be decoded from {start / info.sample_rate:.2f} s on")
    return peak


def read_window(f: soundfile.SoundFile, info: AudioInfo, start: int, count: int) -> Samples:
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


def peak_of(samples: Samples) -> float:
    return max(float(samples.max()), -float(samples.min()))


def require_sound(info: AudioInfo, start_s: float, count: int, peak: float, silence_dbfs: float) -> None:
    peak_dbfs = 20 * math.log10(peak) if peak > 0 else -math.inf
    if peak_dbfs < silence_dbfs:
        end_s = start_s + count / info.sample_rate
        raise AudioError(
            info.path,
            f"the window {start_s:.2f}–{end_s:.2f} s is silent "
            f"(peak {peak_dbfs:.1f} dBFS, below the {silence_dbfs:.0f} dBFS threshold)",
        )


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
