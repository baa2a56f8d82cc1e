"""Clips as sent to a provider: exact windows, faithful reshaping, stable bytes, honest errors, a store that
remembers without decoding."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from dialbgm.data import _audio as audio
from dialbgm.data import _clips as clips
from dialbgm.data import _decode as decoding
from dialbgm.data import _encode as encoding
from dialbgm.data._audio import AudioError, AudioSpec, PreparedClip
from dialbgm.data._clips import ClipStore
from dialbgm.errors import InputError
from dialbgm_tools.sample_music import PIECES, compose, render

SUBTYPES = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}
LSB = 1 / 32768


def write(path: Path, samples: np.ndarray, rate: int) -> Path:
    fmt = path.suffix[1:]
    sf.write(path, samples, rate, format=fmt.upper(), subtype=SUBTYPES[fmt])
    return path


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def stereo_test_signal(rate: int, seconds: float) -> np.ndarray:
    """Left a 440 Hz sine, right seeded noise: the channels differ, so a downmix is visible."""
    left = sine(440, rate, seconds, 0.4)
    right = (0.2 * np.random.default_rng(7).standard_normal(len(left))).astype(np.float32)
    return np.stack([left, right], axis=1)


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """Eight seconds of real rendered music (the pop piece: drums, bass, synths), 44.1 kHz stereo."""
    return render(compose(PIECES[1]), seconds=8.0, sample_rate=44100)


@pytest.fixture(scope="module")
def music_files(tmp_path_factory: pytest.TempPathFactory, music: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("music")
    return {fmt: write(folder / f"music.{fmt}", music, 44100) for fmt in SUBTYPES}


# ---------------------------------------------------------------------------------------------
# Decoding windows


@pytest.mark.parametrize("fmt", list(SUBTYPES))
@pytest.mark.parametrize("start_s, duration_s", [(0.0, 2.0), (1.37, 2.5), (5.0, None), (7.95, 1.0)])
def test_decoded_window_is_the_slice_of_the_full_decode(
    music_files: dict[str, Path], fmt: str, start_s: float, duration_s: float | None
) -> None:
    full, rate = sf.read(music_files[fmt], dtype="float32", always_2d=True)
    window, window_rate = decoding.decode(music_files[fmt], start_s, duration_s)
    start = round(start_s * rate)
    stop = len(full) if duration_s is None else min(len(full), start + round(duration_s * rate))
    assert window_rate == rate == 44100
    assert window.dtype == np.float32 and window.shape == (stop - start, 2)
    # Sample-exact even for Vorbis near its last block, where a bare libsndfile seek is off.
    np.testing.assert_array_equal(window, full[start:stop])


@pytest.fixture
def requested(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frame counts asked of every SoundFile.read (-1: the whole file)."""
    asked: list[int] = []
    real_read = sf.SoundFile.read

    def counting_read(self: sf.SoundFile, frames: int = -1, *args: Any, **kwargs: Any) -> Any:
        asked.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    return asked


def test_decode_reads_only_the_window(music_files: dict[str, Path], requested: list[int]) -> None:
    for fmt in ("flac", "ogg"):
        requested.clear()
        window, rate = decoding.decode(music_files[fmt], 6.0, 1.0)
        assert len(window) == rate
        assert -1 not in requested
        # The window plus at most the lossy decoders' pre-roll, far from the 8 s file.
        assert sum(requested) <= rate + decoding._PREROLL_FRAMES


def test_check_reads_in_blocks_of_about_a_second(tmp_path: Path, requested: list[int]) -> None:
    path = write(tmp_path / "long.flac", sine(300, 8000, 30.0), 8000)
    requested.clear()
    info = decoding.check(path)
    assert info.frames == 30 * 8000
    assert max(requested) <= 8000 and sum(requested) == 30 * 8000


def test_probe_reports_the_header(music_files: dict[str, Path]) -> None:
    for fmt, path in music_files.items():
        info = decoding.probe(path)
        assert (info.container, info.sample_rate, info.channels, info.frames) == (fmt, 44100, 2, 8 * 44100)
        assert info.subtype == SUBTYPES[fmt] and info.duration_s == pytest.approx(8.0)
        assert info.path == str(path)


# ---------------------------------------------------------------------------------------------
# Reshaping


@pytest.mark.parametrize("frames", [44100 * 3, 12345, 44101, 7])
def test_resample_length_is_exactly_rounded(frames: int) -> None:
    x = np.zeros((frames, 1), dtype=np.float32)
    y = decoding.resample(x, 44100, 16000)
    assert len(y) == round(frames * 16000 / 44100) and y.dtype == np.float32


def test_resampled_1khz_sine_is_still_1khz(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.wav", sine(1000, 44100, 3.0), 44100)
    clip, data = encoding.prepare(path, AudioSpec(("wav",), sample_rate=16000))
    y, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == clip.sample_rate == 16000
    assert len(y) == round(3 * 44100 * 16000 / 44100)
    assert abs(peak_frequency(y, rate) - 1000) <= rate / len(y)
    # The tone keeps its level: resampling must not attenuate the passband.
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resampling_is_deterministic() -> None:
    x = np.random.default_rng(3).uniform(-0.5, 0.5, (20000, 2)).astype(np.float32)
    np.testing.assert_array_equal(decoding.resample(x, 44100, 16000), decoding.resample(x, 44100, 16000))


def test_downmix_is_the_mean_of_the_channels(tmp_path: Path) -> None:
    x = stereo_test_signal(16000, 2.0)
    path = write(tmp_path / "stereo.wav", x, 16000)
    clip, data = encoding.prepare(path, AudioSpec(("wav",), channels=1))
    mono, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    source, _ = sf.read(path, dtype="float32", always_2d=True)
    assert clip.channels == 1 and mono.shape == (len(x), 1)
    np.testing.assert_allclose(mono[:, 0], source.mean(axis=1), atol=1.01 * LSB)
    # Not just one channel: both differ from the mix by far more than quantisation.
    assert np.abs(mono[:, 0] - source[:, 0]).max() > 0.05 and np.abs(mono[:, 0] - source[:, 1]).max() > 0.05


def test_stereo_from_mono_duplicates_the_channel() -> None:
    x = sine(200, 8000, 0.5)[:, None]
    y = decoding.downmix(x, 2)
    assert y.shape == (len(x), 2)
    np.testing.assert_array_equal(y[:, 0], y[:, 1])
    with pytest.raises(ValueError, match="cannot map 3 channels to 2"):
        decoding.downmix(np.zeros((10, 3), dtype=np.float32), 2)


# ---------------------------------------------------------------------------------------------
# Encoding


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_round_trip_is_exact_to_16_bits(fmt: str) -> None:
    x = np.random.default_rng(1).uniform(-1, 1, (16000, 2)).astype(np.float32)
    x[0] = 1.5  # out of range: clipped to full scale, never wrapped around
    y, rate = sf.read(io.BytesIO(encoding.encode(x, 16000, fmt)), dtype="float32", always_2d=True)
    assert rate == 16000 and y.shape == x.shape
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1.01 * LSB)


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
@pytest.mark.parametrize("rate", [16000, 44100])
def test_lossy_round_trip_is_close_and_aligned(music: np.ndarray, fmt: str, rate: int) -> None:
    x = decoding.resample(music[: 3 * 44100], 44100, rate)
    y, got_rate = sf.read(io.BytesIO(encoding.encode(x, rate, fmt)), dtype="float32", always_2d=True)
    # Measured with libsndfile 1.2.2: the Vorbis pre-skip and LAME's delay and padding are both
    # compensated on decode, so the length is exact and the signal aligned at lag 0.
    assert got_rate == rate and y.shape == x.shape
    rms = float(np.sqrt(np.mean(x**2)))
    assert float(np.sqrt(np.mean((y - x) ** 2))) < 0.25 * rms
    assert float(np.sqrt(np.mean(y**2))) == pytest.approx(rms, rel=0.05)


@pytest.mark.parametrize("fmt", audio.AUDIO_FORMATS)
def test_encoding_is_byte_identical_for_the_same_input(music: np.ndarray, fmt: str) -> None:
    x = music[:44100]
    first, second = encoding.encode(x, 44100, fmt), encoding.encode(x.copy(), 44100, fmt)
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_ogg_serial_fix_keeps_a_valid_stream(music: np.ndarray) -> None:
    data = encoding.encode(music[:44100], 44100, "ogg")
    assert data[14:18] == encoding._OGG_SERIAL.to_bytes(4, "little")
    # libogg drops pages whose CRC is wrong, so a full-length decode proves every checksum.
    y, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert len(y) == 44100


def test_encode_refuses_what_it_cannot_write() -> None:
    x = np.zeros(100, dtype=np.float32)
    with pytest.raises(ValueError, match="unknown audio format"):
        encoding.encode(x, 16000, "aac")
    with pytest.raises(ValueError, match="mp3 cannot be encoded at 20000 Hz"):
        encoding.encode(x, 20000, "mp3")
    with pytest.raises(ValueError, match="shape"):
        encoding.encode(np.zeros(0, dtype=np.float32), 16000, "wav")


# ---------------------------------------------------------------------------------------------
# Preparing


def test_pass_through_sends_the_original_bytes(music_files: dict[str, Path]) -> None:
    path = music_files["mp3"]
    clip, data = encoding.prepare(path, AudioSpec(("wav", "mp3"), channels=None))
    assert data == path.read_bytes()
    assert clip.format == "mp3" and clip.mime == "audio/mpeg" and clip.channels == 2
    assert clip.sha256 == hashlib.sha256(data).hexdigest() and clip.nbytes == len(data)
    # A window longer than the clip and the same rate and layout change nothing either.
    same, _ = encoding.prepare(path, AudioSpec(("mp3",), sample_rate=44100, channels=2, duration_s=60))
    assert same.sha256 == clip.sha256


@pytest.mark.parametrize(
    "spec",
    [
        AudioSpec(("mp3", "wav"), channels=1),
        AudioSpec(("wav", "mp3"), channels=None, sample_rate=16000),
        AudioSpec(("wav", "mp3"), channels=None, start_s=1.0),
        AudioSpec(("wav", "mp3"), channels=None, duration_s=4.0),
        AudioSpec(("flac",), channels=None),
    ],
)
def test_any_change_re_encodes_in_the_first_format(music_files: dict[str, Path], spec: AudioSpec) -> None:
    clip, data = encoding.prepare(music_files["mp3"], spec)
    assert data != music_files["mp3"].read_bytes()
    assert clip.format == spec.formats[0] and clip.mime == audio.MIME[spec.formats[0]]
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert rate == clip.sample_rate and decoded.shape[1] == clip.channels
    assert len(decoded) / rate == pytest.approx(clip.duration_s, abs=1e-9)


def test_spec_changes_give_different_clips(music_files: dict[str, Path]) -> None:
    specs = [
        AudioSpec(("wav",)),
        AudioSpec(("wav",), sample_rate=16000),
        AudioSpec(("wav",), channels=None),
        AudioSpec(("wav",), start_s=0.5),
        AudioSpec(("wav",), duration_s=3.0),
        AudioSpec(("flac",)),
        AudioSpec(("ogg",)),
    ]
    hashes = [encoding.prepare(music_files["flac"], spec)[0].sha256 for spec in specs]
    assert len(set(hashes)) == len(specs)


def test_identical_files_give_the_same_clip_and_edits_a_different_one(tmp_path: Path) -> None:
    x = stereo_test_signal(22050, 2.0)
    first = write(tmp_path / "first.flac", x, 22050)
    copy = tmp_path / "copy.flac"
    shutil.copyfile(first, copy)
    spec = AudioSpec(("wav",), sample_rate=16000)
    a, b = encoding.prepare(first, spec)[0], encoding.prepare(copy, spec)[0]
    assert a.sha256 == b.sha256 and (a.source, b.source) == (str(first), str(copy))
    edited = write(tmp_path / "edited.flac", x * 0.9, 22050)
    assert encoding.prepare(edited, spec)[0].sha256 != a.sha256


def test_max_bytes_refuses_an_oversized_clip(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.wav", sine(440, 16000, 2.0), 16000)
    clip, _ = encoding.prepare(path, AudioSpec(("wav",), max_bytes=64044))
    assert clip.nbytes == 64044  # 2 s of 16-bit mono at 16 kHz plus a 44-byte header
    with pytest.raises(AudioError) as caught:
        encoding.prepare(path, AudioSpec(("wav",), max_bytes=64043))
    assert (
        str(path) in str(caught.value) and "64,044 B" in str(caught.value) and "limit of 64,043 B" in str(caught.value)
    )
    # A compressed format fits where the wav did not.
    assert encoding.prepare(path, AudioSpec(("ogg",), max_bytes=64043))[0].nbytes < 64043


# ---------------------------------------------------------------------------------------------
# Bad clips


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, dict[str, Any], str]]:
    good = write(tmp_path / "ten.wav", sine(440, 8000, 10.0), 8000)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "truncated.wav").write_bytes(good.read_bytes()[:30])
    (tmp_path / "folder.wav").mkdir()
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), dtype=np.float32), 8000)
    write(tmp_path / "silent.flac", np.zeros(8000, dtype=np.float32), 8000)
    write(tmp_path / "hum.wav", sine(50, 8000, 1.0, amplitude=10 * LSB), 8000)  # peaks at exactly 10 LSB
    return {
        "missing": (tmp_path / "nowhere.wav", {}, "file not found"),
        "directory": (tmp_path / "folder.wav", {}, "is a directory"),
        "empty": (tmp_path / "empty.wav", {}, "is empty (0 bytes)"),
        "random bytes": (tmp_path / "random.wav", {}, "not a readable audio file ("),
        "truncated header": (tmp_path / "truncated.wav", {}, "not a readable audio file ("),
        "zero frames": (tmp_path / "zero.wav", {}, "contains no audio (0 frames)"),
        "window past the end": (good, {"start_s": 12.0}, "window starts at 12.00 s but the clip lasts 10.00 s"),
        "window at the end": (good, {"start_s": 10.0}, "window starts at 10.00 s but the clip lasts 10.00 s"),
        "digital silence": (tmp_path / "silent.flac", {}, "is silent (peak -inf dBFS"),
        "very quiet": (tmp_path / "hum.wav", {}, "is silent (peak -70.3 dBFS"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "random bytes",
        "truncated header",
        "zero frames",
        "window past the end",
        "window at the end",
        "digital silence",
        "very quiet",
    ],
)
def test_bad_clips_raise_audio_error_naming_path_and_reason(tmp_path: Path, case: str) -> None:
    path, window, reason = _bad_files(tmp_path)[case]
    for attempt in (
        lambda: decoding.check(path, **window),
        lambda: encoding.prepare(path, AudioSpec(("wav",), sample_rate=16000, **window)),
    ):
        with pytest.raises(AudioError) as caught:
            attempt()
        error = caught.value
        assert str(error).startswith(f"{path}: ") and reason in str(error)
        assert error.path == str(path) and reason in error.reason
        assert isinstance(error, InputError) and error.exit_code == 2


def test_quiet_but_audible_clip_passes_and_threshold_is_adjustable(tmp_path: Path) -> None:
    path = write(tmp_path / "quiet.wav", sine(440, 8000, 1.0, amplitude=10 ** (-50 / 20)), 8000)
    assert decoding.check(path).frames == 8000
    with pytest.raises(AudioError, match=r"peak -50\.0 dBFS, below the -40 dBFS threshold"):
        decoding.check(path, silence_dbfs=-40)


def test_audio_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(AudioError("/x/clip.wav", "file not found")))
    assert (error.path, error.reason, str(error)) == ("/x/clip.wav", "file not found", "/x/clip.wav: file not found")


# ---------------------------------------------------------------------------------------------
# Specs and clips


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"formats": ()}, "at least one format"),
        ({"formats": ("aac",)}, "unknown audio format"),
        ({"formats": ("wav", "wav")}, "repeat"),
        ({"formats": ("wav",), "sample_rate": 0}, "sample_rate"),
        ({"formats": ("mp3",), "sample_rate": 20000}, "mp3 cannot be encoded at 20000 Hz"),
        ({"formats": ("wav",), "channels": 3}, "channels"),
        ({"formats": ("wav",), "start_s": -1.0}, "start_s"),
        ({"formats": ("wav",), "duration_s": 0.0}, "duration_s"),
        ({"formats": ("wav",), "duration_s": float("nan")}, "duration_s"),
        ({"formats": ("wav",), "max_bytes": 0}, "max_bytes"),
    ],
)
def test_invalid_specs_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioSpec(**kwargs)


def test_spec_key_is_canonical() -> None:
    a = AudioSpec(["wav", "mp3"], sample_rate=16000, duration_s=10)  # type: ignore[arg-type]
    b = AudioSpec(("wav", "mp3"), sample_rate=16000, duration_s=10.0)
    assert a == b and a.key() == b.key()
    assert a.key() == {
        "formats": ["wav", "mp3"],
        "sample_rate": 16000,
        "channels": 1,
        "start_s": 0.0,
        "duration_s": 10.0,
        "max_bytes": None,
    }
    assert AudioSpec(("wav",), channels=None).key() != AudioSpec(("wav",)).key()


def test_prepared_clip_describes_itself_in_one_short_line(tmp_path: Path) -> None:
    path = write(tmp_path / "tone.wav", sine(440, 44100, 10.0), 44100)
    clip, _ = encoding.prepare(path, AudioSpec(("wav",), sample_rate=16000))
    assert clip.describe() == f"wav · 10.00 s · 16000 Hz · mono · 320,044 B · sha256 {clip.sha256[:12]}"
    assert PreparedClip.from_dict(clip.to_dict()) == clip
    assert re.fullmatch(r"[0-9a-f]{64}", clip.sha256)


# ---------------------------------------------------------------------------------------------
# The store

SPEC = AudioSpec(("wav",), sample_rate=16000, duration_s=2.0)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return write(tmp_path / "src" / "clip.flac", stereo_test_signal(44100, 3.0), 44100)


def test_second_get_is_a_hit_without_decoding(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ClipStore(tmp_path / "store") as store:
        clip = store.get_or_prepare(source, SPEC)
        assert store.read(clip) == encoding.prepare(source, SPEC)[1]

        def no_decoding(*args: object, **kwargs: object) -> Any:
            raise AssertionError("a hit must not decode")

        monkeypatch.setattr(clips, "prepare", no_decoding)
        monkeypatch.setattr(sf, "SoundFile", no_decoding)
        assert store.get_or_prepare(source, SPEC) == clip
        assert store.stats() == {"blobs": 1, "bytes": clip.nbytes, "entries": 1, "hits": 1, "misses": 1}
        blob = store.blob_path(clip)
        assert blob == tmp_path / "store" / "blobs" / clip.sha256[:2] / f"{clip.sha256}.wav"


def test_two_stores_on_one_root_agree(tmp_path: Path, source: Path) -> None:
    with ClipStore(tmp_path / "store") as first, ClipStore(tmp_path / "store") as second:
        clip = first.get_or_prepare(source, SPEC)
        assert second.get_or_prepare(source, SPEC) == clip
        assert (first.misses, second.hits, second.misses) == (1, 1, 0)
        assert second.read(clip) == first.read(clip)


def test_a_different_path_to_identical_content_shares_the_blob(tmp_path: Path, source: Path) -> None:
    copy = source.with_name("copy.flac")
    shutil.copyfile(source, copy)
    with ClipStore(tmp_path / "store") as store:
        a, b = store.get_or_prepare(source, SPEC), store.get_or_prepare(copy, SPEC)
        assert a.sha256 == b.sha256 and b.source == str(copy)
        assert store.stats()["blobs"] == 1 and store.stats()["entries"] == 2


@pytest.mark.parametrize("restore_mtime", [True, False])
def test_an_edit_of_the_same_size_is_seen(tmp_path: Path, restore_mtime: bool) -> None:
    # A wav's size depends only on its length, so new samples keep the size exactly.
    path = write(tmp_path / "clip.wav", stereo_test_signal(44100, 3.0), 44100)
    with ClipStore(tmp_path / "store") as store:
        before = store.get_or_prepare(path, SPEC)
        st = path.stat()
        write(path, stereo_test_signal(44100, 3.0)[::-1].copy(), 44100)
        if restore_mtime:
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            assert path.stat().st_mtime_ns == st.st_mtime_ns
        assert path.stat().st_size == st.st_size
        after = store.get_or_prepare(path, SPEC)
        assert after.sha256 != before.sha256 and store.misses == 2
        assert after.sha256 == encoding.prepare(path, SPEC)[0].sha256


def test_a_fresh_file_is_verified_by_content_until_its_timestamp_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a rewrite within one filesystem clock tick: nothing in the stat identity changes.
    monkeypatch.setattr(clips, "_identity", lambda st: (st.st_size, 0, 0, 0))
    path = write(tmp_path / "clip.wav", stereo_test_signal(44100, 3.0), 44100)
    with ClipStore(tmp_path / "store") as store:
        before = store.get_or_prepare(path, SPEC)
        write(path, stereo_test_signal(44100, 3.0)[::-1].copy(), 44100)
        after = store.get_or_prepare(path, SPEC)
        assert after.sha256 != before.sha256
        # Seconds later the entry is trusted on its stat alone: a hit then reads nothing at all.
        real_ns = clips.time.time_ns
        monkeypatch.setattr(clips.time, "time_ns", lambda: real_ns() + 10 * clips._RACY_WINDOW_NS)
        assert store.get_or_prepare(path, SPEC) == after  # verifies once more, then drops the hash
        monkeypatch.setattr(clips, "_file_sha256", lambda path: pytest.fail("a settled hit must not read the file"))
        assert store.get_or_prepare(path, SPEC) == after
        assert store.hits == 2


def test_a_tampered_blob_fails_read_and_is_prepared_again(tmp_path: Path, source: Path) -> None:
    with ClipStore(tmp_path / "store") as store:
        clip = store.get_or_prepare(source, SPEC)
        blob = store.blob_path(clip)
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.write_bytes(bytes(data))
        with pytest.raises(AudioError, match="corrupt") as caught:
            store.read(clip)
        assert str(blob) in str(caught.value) and str(source) in str(caught.value)
        again = store.get_or_prepare(source, SPEC)
        assert again.sha256 == clip.sha256 and store.misses == 2
        assert hashlib.sha256(store.read(again)).hexdigest() == clip.sha256


def test_a_deleted_blob_is_prepared_again(tmp_path: Path, source: Path) -> None:
    with ClipStore(tmp_path / "store") as store:
        clip = store.get_or_prepare(source, SPEC)
        store.blob_path(clip).unlink()
        with pytest.raises(AudioError, match="missing"):
            store.read(clip)
        assert store.get_or_prepare(source, SPEC) == clip
        assert store.misses == 2 and store.blob_path(clip).is_file()
        assert len(store.read(clip)) == clip.nbytes


def test_store_errors_for_bad_sources_are_audio_errors(tmp_path: Path) -> None:
    with ClipStore(tmp_path / "store") as store:
        with pytest.raises(AudioError, match="file not found"):
            store.get_or_prepare(tmp_path / "nowhere.wav", SPEC)
        assert store.stats()["entries"] == 0
