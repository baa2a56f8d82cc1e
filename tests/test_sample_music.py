"""The composed music of the audio sample: deterministic renders, distinct pieces, honest captions, an
idempotent set-up, and a data file that refers only to pieces that exist."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from dialbgm.data._audio import AUDIO_FORMATS, MIME
from dialbgm_tools import sample_music as sample_music
from dialbgm_tools.sample_music import PIECES, Piece, compose, render, soundfont_path, write_clips

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BY_ID = {piece.id: piece for piece in PIECES}


def by_id(piece_id: str) -> Piece:
    return BY_ID[piece_id]


def spectral_centroid(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.mean(axis=1)))
    return float((spectrum * np.fft.rfftfreq(len(x), 1 / rate)).sum() / spectrum.sum())


def active_fraction(x: np.ndarray, rate: int, floor_dbfs: float = -45.0) -> float:
    """Share of 100 ms frames louder than the floor: how much of the clip actually sounds."""
    hop = rate // 10
    frames = x.mean(axis=1)[: len(x) // hop * hop].reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-12)
    return float(np.mean(level > floor_dbfs))


@pytest.fixture(scope="module")
def strings_and_dnb() -> tuple[np.ndarray, np.ndarray]:
    return render(compose(by_id("p03-sad-strings")), 4.0), render(compose(by_id("p08-drum-and-bass")), 4.0)


# ---------------------------------------------------------------------------------------------
# Rendering


def test_render_is_deterministic_and_has_the_asked_shape(strings_and_dnb: tuple[np.ndarray, np.ndarray]) -> None:
    strings, _ = strings_and_dnb
    again = render(compose(by_id("p03-sad-strings")), 4.0)
    assert hashlib.sha256(strings.tobytes()).hexdigest() == hashlib.sha256(again.tobytes()).hexdigest()
    assert strings.dtype == np.float32 and strings.shape == (4 * sample_music.SAMPLE_RATE, 2)
    assert float(np.abs(strings).max()) == pytest.approx(10 ** (-3 / 20), abs=1e-4)
    # Music throughout, not a click: apart from the closing fade every 100 ms frame sounds.
    assert active_fraction(strings, sample_music.SAMPLE_RATE) > 0.9


def test_render_honours_length_and_rate() -> None:
    x = render(compose(by_id("p09-music-box")), seconds=1.5, sample_rate=22050)
    assert x.shape == (round(1.5 * 22050), 2)


def test_pieces_sound_different(strings_and_dnb: tuple[np.ndarray, np.ndarray]) -> None:
    strings, dnb = strings_and_dnb
    rate = sample_music.SAMPLE_RATE
    # Bright, percussive drum-and-bass against dark sustained strings.
    assert spectral_centroid(dnb, rate) > 1.5 * spectral_centroid(strings, rate)
    crest = [float(np.abs(x).max() / np.sqrt(np.mean(x**2))) for x in (strings, dnb)]
    assert crest[1] > 1.3 * crest[0]


def test_a_file_path_renders_like_the_score(tmp_path: Path) -> None:
    midi = compose(by_id("p07-bossa-guitar"))
    midi.write(str(tmp_path / "bossa.mid"))
    np.testing.assert_array_equal(render(tmp_path / "bossa.mid", 2.0), render(midi, 2.0))


def test_soundfont_is_pretty_midis_general_midi_font() -> None:
    path = soundfont_path()
    assert path.name == "TimGM6mb.sf2" and path.is_file() and path.read_bytes()[:4] == b"RIFF"


def test_unknown_piece_has_no_composition() -> None:
    with pytest.raises(ValueError, match="no composition"):
        compose(Piece("p99-nothing", "Nothing.", 100, "wav"))


def test_real_midi_file_renders() -> None:
    folder = SHARED_DATA / "openmsx"
    if not SHARED_DATA.is_dir() or not folder.is_dir():
        pytest.skip(f"shared corpora not present at {SHARED_DATA} (a user's clone has none)")
    for path in sorted(folder.glob("*.mid"))[:20]:
        notes = [n.start for inst in pretty_midi.PrettyMIDI(str(path)).instruments for n in inst.notes]
        if notes and min(notes) < 1.0:
            break
    else:
        pytest.skip("no MIDI file in the shared corpus starts within its first second")
    x = render(path, seconds=5.0)
    assert x.shape == (5 * sample_music.SAMPLE_RATE, 2)
    assert active_fraction(x, sample_music.SAMPLE_RATE) > 0.5, path.name


# ---------------------------------------------------------------------------------------------
# The pieces and their captions


def test_piece_catalogue_is_complete_and_mixed() -> None:
    assert len(PIECES) == 16 and len(BY_ID) == 16
    assert all(re.fullmatch(r"p\d\d-[a-z-]+", p.id) for p in PIECES)
    formats = Counter(p.fmt for p in PIECES)
    assert set(formats) == set(AUDIO_FORMATS)  # the sample exercises every decoder
    assert formats["flac"] + formats["ogg"] > len(PIECES) / 2


@pytest.mark.parametrize("piece", PIECES, ids=lambda p: p.id)
def test_each_piece_fills_its_clip_and_matches_its_caption(piece: Piece) -> None:
    midi = compose(piece)
    assert 10.0 <= midi.get_end_time() <= 15.0  # music until the end of a 10 s clip, nothing long cut off
    assert f"{piece.tempo:g} bpm" in piece.caption
    assert len(re.findall(r"[.!?](\s|$)", piece.caption)) == 2  # two sentences
    has_drums = any(inst.is_drum for inst in midi.instruments)
    says_no_drums = re.search(r"no (drums|percussion)|no vocals or percussion", piece.caption) is not None
    assert not (has_drums and says_no_drums), "the caption denies drums the score has"
    if re.search(r"drums?\b|percussion|congas|snare", piece.caption) and not says_no_drums:
        assert has_drums, "the caption promises drums the score lacks"
    # Every named General MIDI family is really played.
    programs = {inst.program for inst in midi.instruments if not inst.is_drum}
    for pattern, family in CAPTION_PROGRAMS.items():
        if re.search(pattern, piece.caption):
            assert programs & family, f"caption matches {pattern!r} but no program in {sorted(family)} plays"


CAPTION_PROGRAMS: dict[str, set[int]] = {
    r"\bpiano\b": set(range(0, 8)),
    r"\borgan\b": set(range(16, 24)),
    r"\bguitar\b": set(range(24, 32)),
    r"(?<!thumb )(?<!pedal )\bbass\b(?! drum)": set(range(32, 40)) | {43},  # a guitar thumb, an organ pedal
    r"\bcello\b": {42},
    r"\bharp\b": {46},
    r"\btimpani\b": {47},
    r"(?<!-)\bstrings?\b": set(range(40, 52)),  # not "nylon-string guitar"
    r"\btrumpet\b": {56},
    r"\btuba\b": {58},
    r"\bbrass\b": set(range(56, 64)),
    r"\bflute\b": {73},
    r"\bsynth": set(range(80, 104)) | {38, 39},
    r"\bmarimba\b": {12},
    r"\bsteel drum\b": {114},
    r"\bmusic-box\b": {10},
    r"\bcelesta\b": {8},
    r"\bclavinet\b": {7},
}


# ---------------------------------------------------------------------------------------------
# Writing the sample's clips

FOUR = [by_id("p01-jazz-trio"), by_id("p02-upbeat-pop"), by_id("p05-brass-march"), by_id("p08-drum-and-bass")]


def test_write_clips_writes_every_format_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_clips(tmp_path, FOUR, seconds=1.0)
    assert [p.name for p in paths] == [f"{p.id}.{p.fmt}" for p in FOUR]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for path in paths:
        x, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == sample_music.SAMPLE_RATE and x.shape == (rate, 2)
        assert manifest[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    mtimes = [p.stat().st_mtime_ns for p in paths]

    def no_render(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("intact clips must not be rendered again")

    monkeypatch.setattr(sample_music, "render", no_render)
    assert write_clips(tmp_path, FOUR, seconds=1.0) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes


def test_write_clips_renders_again_what_is_missing_corrupt_or_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_clips(tmp_path, FOUR, seconds=1.0)
    originals = {p.name: p.read_bytes() for p in paths}
    paths[0].unlink()
    corrupt = bytearray(paths[1].read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, different content
    paths[1].write_bytes(bytes(corrupt))
    rendered: list[str] = []
    real_render = sample_music.render

    def counting_render(midi: Any, *args: Any, **kwargs: Any) -> Any:
        rendered.append(midi.instruments[0].name)
        return real_render(midi, *args, **kwargs)

    monkeypatch.setattr(sample_music, "render", counting_render)
    fresh: list[tuple[str, bool]] = []
    write_clips(tmp_path, FOUR, seconds=1.0, on_clip=lambda path, new: fresh.append((path.name, new)))
    assert [new for _, new in fresh] == [True, True, False, False] and len(rendered) == 2
    assert {p.name: p.read_bytes() for p in paths} == originals  # rendering is deterministic
    # Another length is another clip: everything is rendered again.
    write_clips(tmp_path, FOUR[:1], seconds=1.5)
    assert len(rendered) == 3


def test_main_renders_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sample_music.main([str(tmp_path), "--seconds", "0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(PIECES) + 1 and all(line.startswith("rendered ") for line in lines[:-1])
    assert lines[-1].startswith(f"{len(PIECES)} clips in {tmp_path} ({len(PIECES)} rendered, 0 kept)")
    assert sample_music.main([str(tmp_path), "--seconds", "0.5"]) == 0
    assert f"(0 rendered, {len(PIECES)} kept)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# data/sample-audio.jsonl


def test_sample_audio_items_refer_to_real_pieces() -> None:
    items = [json.loads(line) for line in (ROOT / "data" / "sample-audio.jsonl").read_text("utf-8").splitlines()]
    source = [json.loads(line) for line in (ROOT / "data" / "sample.jsonl").read_text("utf-8").splitlines()[:12]]
    assert [item["id"] for item in items] == [f"a{i:03d}" for i in range(1, 13)]
    first_positions = []
    for item, original in zip(items, source, strict=True):
        assert item["dialogue"] == original["dialogue"] and item["summary"] == original["summary"]
        candidates = item["candidates"]
        assert sorted(c["rank"] for c in candidates) == [1, 2, 3, 4]
        assert len({c["id"] for c in candidates}) == 4
        for c in candidates:
            piece = BY_ID[c["id"]]
            assert c["caption"] == piece.caption and c["audio"] == f"clips/{piece.id}.{piece.fmt}"
            assert piece.fmt in MIME
        first_positions.append([c["rank"] for c in candidates].index(1))
    # A judge that always picks one position cannot do well by accident.
    assert Counter(first_positions) == {0: 3, 1: 3, 2: 3, 3: 3}


def test_the_runtime_knows_exactly_the_clips_the_composer_writes() -> None:
    """The missing-clips hint lives in the runtime, the composer outside it: one list each."""
    from dialbgm.judging import SAMPLE_CLIPS
    from dialbgm_tools.sample_music import PIECES

    assert {f"{p.id}.{p.fmt}" for p in PIECES} == SAMPLE_CLIPS
