"""Encoding and preparing clips: the bytes a provider receives, byte-identical for equal input.

The one encoder that is not byte-stable on its own (libsndfile's Ogg writer picks a random stream
serial number) is made so by rewriting that serial (see :func:`_fix_ogg_serial`).
"""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from dialbgm.data._audio import (
    AUDIO_FORMATS,
    MIME,
    MP3_SAMPLE_RATES,
    SILENCE_DBFS,
    AudioError,
    AudioInfo,
    AudioSpec,
    PreparedClip,
)
from dialbgm.data._decode import (
    downmix,
    opened,
    peak_of,
    read_window,
    require_sound,
    resample,
    scan_peak,
    window_frames,
)

if TYPE_CHECKING:
    from dialbgm.data._decode import Samples

# libsndfile (format, subtype) used to write each encoding.
_SF_ENCODING = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
_OGG_SERIAL = 0x6442676D  # any fixed value; "dBgm"


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


def prepare(path: str | Path, spec: AudioSpec) -> tuple[PreparedClip, bytes]:
    """The clip as the spec wants it, and its bytes; the original bytes when the spec changes nothing."""
    with opened(path) as (f, info):
        start, count = window_frames(info, spec.start_s, spec.duration_s)
        if _passes_through(info, spec, start, count):
            require_sound(info, spec.start_s, count, scan_peak(f, info, start, count), SILENCE_DBFS)
            data = Path(path).read_bytes()
            clip = _clip(data, info.container, info.sample_rate, info.channels, info.frames, path)
        else:
            samples = read_window(f, info, start, count)
            require_sound(info, spec.start_s, len(samples), peak_of(samples), SILENCE_DBFS)
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
