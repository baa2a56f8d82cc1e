"""Music composed in code for the bundled audio sample, rendered at set-up time.

Sixteen short pieces of clearly different character are written note by note with pretty_midi
(General MIDI programs, drums on channel 10) and rendered with tinysoundfont through the
General MIDI SoundFont that pretty_midi ships (TimGM6mb). Nothing depends on the clock or on
unseeded randomness, so a fresh machine renders the same samples; the rendered files are not
committed, only the code and the captions that describe it.

    python -m dialbgm_tools.sample_music data/clips

renders every piece into ``data/clips/<id>.<fmt>``, skipping files that are already there and
intact (a small ``manifest.json`` keeps their hashes).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import random
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dialbgm.errors import DialbgmError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pretty_midi

    Samples = npt.NDArray[np.float32]

SAMPLE_RATE = 32000
"""Rate of the stored sample clips: full music bandwidth at a third less data than 48 kHz."""
PEAK_DBFS = -3.0
FADE_OUT_S = 0.5
COMPOSITION_VERSION = 1
"""Bump when a composition or the renderer changes, so existing sample clips are rendered again."""
MANIFEST = "manifest.json"


class SoundFontMissing(DialbgmError):
    """The General MIDI SoundFont that pretty_midi ships cannot be found."""


@dataclass(frozen=True)
class Piece:
    """One composed clip: its id, an honest MusicCaps-style caption, its tempo and storage format."""

    id: str
    caption: str
    tempo: float
    fmt: str


PIECES: tuple[Piece, ...] = (
    Piece(
        "p01-jazz-trio",
        "A mellow jazz piano trio with soft piano chords and a gentle swinging melody, a walking upright bass and "
        "brushed drums with a swung ride cymbal at about 100 bpm. Warm, relaxed and easygoing; softly played, "
        "sparse and unobtrusive, like a café in the background.",
        100,
        "flac",
    ),
    Piece(
        "p02-upbeat-pop",
        "An upbeat pop instrumental with a four-on-the-floor kick, handclaps, a bouncing synth bass, poly-synth "
        "chord stabs and a bright square-wave synth lead at 120 bpm. Cheerful and energetic; loud, dense and busy "
        "from start to finish.",
        120,
        "ogg",
    ),
    Piece(
        "p03-sad-strings",
        "A slow, melancholic minor-key string piece with a sustained string ensemble, a mournful cello melody and a "
        "soft contrabass at about 60 bpm. Sad and reflective; quiet, with long legato notes and very little "
        "movement.",
        60,
        "flac",
    ),
    Piece(
        "p04-ambient-pad",
        "An ambient electronic soundscape of slowly evolving warm synth pads with a few sparse, bell-like celesta "
        "notes and no drums, at a very slow pulse of about 70 bpm. Calm, dreamy and spacious; soft, static and "
        "unobtrusive.",
        70,
        "ogg",
    ),
    Piece(
        "p05-brass-march",
        "A brass band march with a bright trumpet melody, full brass section chords, an oom-pah tuba, a snappy snare "
        "drum, bass drum and cymbal crashes at about 116 bpm. Proud, festive and ceremonial, like a parade; loud and "
        "busy.",
        116,
        "wav",
    ),
    Piece(
        "p06-harp-arpeggios",
        "A gentle solo harp piece of flowing, rippling arpeggios over a simple major-key progression at about "
        "80 bpm. Serene, graceful and hopeful; soft, with a continuous but delicate texture and no percussion.",
        80,
        "flac",
    ),
    Piece(
        "p07-bossa-guitar",
        "A solo nylon-string acoustic guitar playing a bossa nova pattern, with a steady alternating thumb bass and "
        "syncopated jazzy seventh chords at about 132 bpm. Relaxed, sunny and intimate; softly played and "
        "uncluttered, with no vocals or percussion.",
        132,
        "ogg",
    ),
    Piece(
        "p08-drum-and-bass",
        "A fast drum-and-bass groove with rapid breakbeat drums, skittering hi-hats, a deep rolling synth sub-bass "
        "and dark saw-synth stabs over a sweeping pad at about 172 bpm. Urgent, driving and energetic; loud and "
        "very busy.",
        172,
        "mp3",
    ),
    Piece(
        "p09-music-box",
        "A tinkling music-box lullaby in three-four time with a simple, high-pitched melody over a gently broken "
        "chord accompaniment at about 90 bpm. Sweet, innocent and sleepy; delicate, thin and sparse.",
        90,
        "flac",
    ),
    Piece(
        "p10-tense-strings",
        "A tense, dark orchestral cue with low tremolo strings on dissonant chords, a pulsing cello ostinato on one "
        "note, a sustained contrabass pedal and rumbling timpani at about 70 bpm. Suspenseful and ominous; "
        "restrained, with swelling timpani rolls.",
        70,
        "ogg",
    ),
    Piece(
        "p11-funk-slap",
        "A funky groove with a syncopated slap bass line, tight drums with ghost-note snare and sixteenth-note "
        "hi-hats, and short clavinet stabs at about 100 bpm. Groovy, playful and confident; punchy and fairly busy.",
        100,
        "wav",
    ),
    Piece(
        "p12-organ-chorale",
        "A solemn church organ chorale with slow, sustained four-part hymn harmony over a deep pedal bass at about "
        "66 bpm. Reverent, dignified and calm; full-sounding but slow-moving, with no percussion.",
        66,
        "flac",
    ),
    Piece(
        "p13-piano-waltz",
        "A solo piano waltz in three-four time with an oom-pah-pah left hand and a lilting, singable right-hand "
        "melody at about 150 bpm. Elegant, nostalgic and light; moderately soft and flowing.",
        150,
        "mp3",
    ),
    Piece(
        "p14-celtic-jig",
        "A lively Celtic jig in six-eight time with a nimble flute playing running melodies over strummed "
        "steel-string guitar chords and a frame-drum pulse at about 116 bpm. Joyful, rustic and dance-like; bright "
        "and busy.",
        116,
        "ogg",
    ),
    Piece(
        "p15-rock-guitar",
        "A driving rock instrumental with chugging overdriven electric guitar power chords, a picked bass doubling "
        "the roots and hard-hitting drums with crash cymbals and a tom fill at about 128 bpm. Energetic, gritty and "
        "aggressive; loud and dense.",
        128,
        "flac",
    ),
    Piece(
        "p16-marimba-tropical",
        "A sunny tropical groove with a bouncing marimba pattern, a steel drum melody, a fingered bass, congas, "
        "maracas and claves at about 108 bpm. Cheerful, carefree and breezy; moderately busy with a light, summery "
        "feel.",
        108,
        "ogg",
    ),
)


# --------------------------------------------------------------------------------------------
# Composition tools

_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_SHAPES = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "5": (0, 7, 12),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
}
# General MIDI percussion keys (channel 10).
KICK, SIDE_STICK, SNARE, CLAP, LOW_FLOOR_TOM, CLOSED_HAT = 36, 37, 38, 39, 41, 42
PEDAL_HAT, LOW_TOM, OPEN_HAT, LOW_MID_TOM, HIGH_MID_TOM, CRASH, HIGH_TOM, RIDE = 44, 45, 46, 47, 48, 49, 50, 51
MUTE_CONGA, OPEN_CONGA, LOW_CONGA, MARACAS, CLAVES = 62, 63, 64, 70, 75


def pitch(name: str) -> int:
    """MIDI number of a note name such as 'C4' (60), 'Bb2' or 'F#5'."""
    step = _STEPS[name[0]]
    rest = name[1:]
    while rest and rest[0] in "#b":
        step += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    return 12 * (int(rest) + 1) + step


def chord(root: str, quality: str = "maj") -> list[int]:
    """Close-position chord on a root note name, e.g. chord('C3', 'm7')."""
    base = pitch(root)
    return [base + interval for interval in _SHAPES[quality]]


def _notes(names: str) -> list[int]:
    return [pitch(n) for n in names.split()]


class _Score:
    """A PrettyMIDI under construction, addressed in beats of the piece's tempo."""

    def __init__(self, piece: Piece, beats_per_bar: int = 4, beat_unit: int = 4) -> None:
        import pretty_midi

        self._pm = pretty_midi
        self.midi = pretty_midi.PrettyMIDI(initial_tempo=piece.tempo)
        self.midi.time_signature_changes.append(pretty_midi.TimeSignature(beats_per_bar, beat_unit, 0.0))
        self.beat_s = 60.0 / piece.tempo
        self.bar = beats_per_bar
        # Seeded from the id: the same piece always gets the same small velocity variations.
        self.rng = random.Random(zlib.crc32(piece.id.encode()))

    def part(self, program: int, name: str, drum: bool = False) -> pretty_midi.Instrument:
        instrument = self._pm.Instrument(program=program, is_drum=drum, name=name)
        self.midi.instruments.append(instrument)
        return instrument

    def note(self, part: pretty_midi.Instrument, key: int, beat: float, length: float, velocity: int) -> None:
        """One note; velocity gets a little seeded variation so repeated notes do not sound machine-gunned."""
        velocity = max(1, min(127, velocity + self.rng.randint(-4, 4)))
        start = beat * self.beat_s
        part.notes.append(self._pm.Note(velocity=velocity, pitch=key, start=start, end=start + length * self.beat_s))

    def chord(
        self,
        part: pretty_midi.Instrument,
        keys: Iterable[int],
        beat: float,
        length: float,
        velocity: int,
        strum: float = 0.0,
    ) -> None:
        """Several notes at once; ``strum`` delays each higher note by that many beats, like a guitar."""
        for i, key in enumerate(sorted(keys)):
            self.note(part, key, beat + i * strum, length - i * strum, velocity)

    def line(
        self, part: pretty_midi.Instrument, start: float, notes: Sequence[tuple[str, float]], velocity: int
    ) -> float:
        """A melody of (note name or 'r' for a rest, length in beats); returns the beat after it."""
        beat = start
        for name, length in notes:
            if name != "r":
                self.note(part, pitch(name), beat, length * 0.95, velocity)
            beat += length
        return beat

    def drums(
        self,
        part: pretty_midi.Instrument,
        beat: float,
        pattern: dict[int, str],
        steps_per_beat: int = 4,
        level: float = 1.0,
    ) -> None:
        """One bar of a step pattern per drum key: 'X' accent, 'x' normal, 'o' ghost, '.' rest.

        ``level`` scales the velocities, to sit the kit under the melody of the piece.
        """
        levels = {"X": round(112 * level), "x": round(88 * level), "o": round(52 * level)}
        step = 1.0 / steps_per_beat
        for key, hits in pattern.items():
            for i, hit in enumerate(hits):
                if hit in levels:
                    self.note(part, key, beat + i * step, step, levels[hit])


def compose(piece: Piece) -> pretty_midi.PrettyMIDI:
    """The piece's score, note for note; the same piece always gives the same MIDI."""
    try:
        composer = _COMPOSERS[piece.id]
    except KeyError:
        raise ValueError(f"no composition for piece {piece.id!r}") from None
    score = _Score(piece, *_METERS.get(piece.id, (4, 4)))
    composer(score)
    return score.midi


# --------------------------------------------------------------------------------------------
# The pieces


def _jazz_trio(s: _Score) -> None:
    piano, bass, drums = s.part(0, "piano"), s.part(32, "upright bass"), s.part(40, "brush kit", drum=True)
    # Rootless voicings of a ii-V-I in Bb and a turnaround, comped Charleston-style.
    voicings = ["Eb3 G3 Bb3 D4", "Eb3 G3 A3 D4", "D3 F3 A3 C4", "F3 A3 B3 E4", "Eb3 G3 Bb3 D4"]
    walking = ["C2 D2 Eb2 E2", "F2 A2 C3 A2", "Bb1 D2 F2 F#2", "G2 B2 D3 Db3", "C3 G2 F2 Eb2"]
    for bar, (voicing, walk) in enumerate(zip(voicings, walking, strict=True)):
        b = bar * 4
        s.chord(piano, _notes(voicing), b, 1.3, 75)
        s.chord(piano, _notes(voicing), b + 2 + 2 / 3, 0.9, 68)
        for i, key in enumerate(_notes(walk)):
            s.note(bass, key, b + i, 0.92, 46)
        for offset, velocity in ((0, 68), (1, 60), (1 + 2 / 3, 48), (2, 64), (3, 60), (3 + 2 / 3, 48)):
            s.note(drums, RIDE, b + offset, 0.3, velocity)
        for offset in (1, 3):
            s.note(drums, SNARE, b + offset, 0.5, 42)
            s.note(drums, PEDAL_HAT, b + offset, 0.2, 45)
        for offset in (0, 2):
            s.note(drums, KICK, b + offset, 0.2, 30)
    swung = 2 / 3
    melody = [
        ("r", 1.0), ("G4", swung), ("Bb4", 1 - swung), ("D5", 1.0), ("C5", swung), ("Bb4", 1 - swung),
        ("A4", 1.67), ("C5", 0.33), ("Eb5", swung), ("D5", 1 - swung), ("C5", 1.0),
        ("D5", 2.0), ("F4", swung), ("A4", 1 - swung), ("C5", 1.0),
        ("B4", 1.0), ("D5", swung), ("F5", 1 - swung), ("E5", 1.0), ("D5", 1.0),
        ("Eb5", 1.0), ("D5", swung), ("C5", 1 - swung), ("A4", 2.0),
    ]  # fmt: skip
    s.line(piano, 0, melody, 100)


def _upbeat_pop(s: _Score) -> None:
    drums, bass = s.part(0, "drums", drum=True), s.part(38, "synth bass")
    stabs, lead = s.part(90, "poly synth"), s.part(80, "square lead")
    roots = ["C", "G", "A", "F", "C", "G"]
    qualities = ["maj", "maj", "min", "maj", "maj", "maj"]
    for bar, (root, quality) in enumerate(zip(roots, qualities, strict=True)):
        b = bar * 4
        pattern = {
            KICK: "X...X...X...X...",
            CLAP: "....X.......X...",
            CLOSED_HAT: "x.X.x.X.x.X.x.X.",
            OPEN_HAT: "..............x.",
        }
        if bar % 4 == 0:
            pattern[CRASH] = "X..............."
        s.drums(drums, b, pattern)
        low = pitch(f"{root}2")
        for i, key in enumerate([low, low, low + 12, low, low, low, low + 12, low]):
            s.note(bass, key, b + i / 2, 0.45, 52)
        for offset in (0.5, 1.5, 2.5, 3.5):
            s.chord(stabs, chord(f"{root}4", quality), b + offset, 0.35, 80)
    melody = [
        ("E5", 0.5), ("G5", 0.5), ("G5", 0.5), ("A5", 0.5), ("G5", 1), ("E5", 1),
        ("D5", 0.5), ("D5", 0.5), ("B4", 0.5), ("D5", 0.5), ("G5", 1.5), ("r", 0.5),
        ("C5", 0.5), ("E5", 0.5), ("E5", 0.5), ("G5", 0.5), ("A5", 1), ("G5", 1),
        ("F5", 0.5), ("E5", 0.5), ("D5", 0.5), ("C5", 0.5), ("A4", 1), ("C5", 1),
        ("E5", 0.5), ("G5", 0.5), ("C6", 1), ("B5", 0.5), ("A5", 0.5), ("G5", 1),
        ("D5", 0.5), ("E5", 0.5), ("G5", 1), ("D5", 2),
    ]  # fmt: skip
    s.line(lead, 0, melody, 120)


def _sad_strings(s: _Score) -> None:
    strings, cello, contrabass = s.part(49, "string ensemble"), s.part(42, "cello"), s.part(43, "contrabass")
    progression = [("A2", "A3 C4 E4"), ("F2", "A3 C4 F4"), ("D2", "A3 D4 F4"), ("E2", "G#3 B3 E4")]
    for i, (root, voicing) in enumerate(progression):
        s.chord(strings, _notes(voicing), i * 3, 3.1, 58)
        s.note(contrabass, pitch(root), i * 3, 3.0, 62)
    melody = [("E4", 2), ("D4", 1), ("C4", 2), ("A3", 1), ("F4", 1.5), ("E4", 0.5), ("D4", 1), ("B3", 2), ("G#3", 1)]
    s.line(cello, 0, melody, 72)


def _ambient_pad(s: _Score) -> None:
    warm, halo, celesta = s.part(89, "warm pad"), s.part(94, "halo pad"), s.part(8, "celesta")
    voicings = ["C3 G3 B3 E4", "A2 E3 G3 B3 C4", "F2 C3 E3 A3", "C3 G3 B3 E4"]
    for i, voicing in enumerate(voicings):
        s.chord(warm, _notes(voicing), i * 4, 4.6, 50)
        s.chord(halo, [k + 12 for k in _notes(voicing)[1:]], i * 4 + 0.5, 4.2, 42)
    for beat, name in ((1.5, "E5"), (4.5, "B5"), (6.0, "G5"), (9.5, "E6"), (11.0, "C6"), (13.0, "G5")):
        s.note(celesta, pitch(name), beat, 1.5, 100)


def _brass_march(s: _Score) -> None:
    tuba, brass = s.part(58, "tuba"), s.part(61, "brass section")
    trumpet, drums = s.part(56, "trumpet"), s.part(0, "marching drums", drum=True)
    harmony = [["Bb"], ["Eb", "Bb"], ["F"], ["Bb"], ["Eb", "F"], ["Bb"]]
    for bar, chords_in_bar in enumerate(harmony):
        b = bar * 4
        for half in range(2):
            root = chords_in_bar[half % len(chords_in_bar)]
            # Oom: the root, or the fifth when one chord fills the bar; pah: the chord off the beat.
            fifth = 7 if half == 1 and len(chords_in_bar) == 1 else 0
            s.note(tuba, pitch(f"{root}1") + fifth, b + 2 * half, 0.9, 110)
            s.chord(brass, chord(f"{root}3"), b + 2 * half + 1, 0.7, 105)
        pattern = {SNARE: "X.xxX.x.X.xxX.X.", KICK: "X.......X......."}
        if bar % 2 == 0:
            pattern[CRASH] = "X..............."
        s.drums(drums, b, pattern, level=0.8)
    melody = [
        ("F4", 0.75), ("F4", 0.25), ("Bb4", 1), ("D5", 1), ("F5", 1),
        ("Eb5", 1.5), ("D5", 0.5), ("C5", 1), ("Bb4", 1),
        ("C5", 0.75), ("C5", 0.25), ("F5", 1), ("A4", 1), ("C5", 1),
        ("D5", 3), ("F4", 0.75), ("G4", 0.25),
        ("Eb5", 1), ("G5", 1), ("F5", 1), ("A4", 1),
        ("Bb4", 3),
    ]  # fmt: skip
    s.line(trumpet, 0, melody, 100)


def _harp_arpeggios(s: _Score) -> None:
    harp = s.part(46, "harp")
    for bar, (root, quality) in enumerate([("D", "maj"), ("B", "min"), ("G", "maj"), ("A", "maj")]):
        b = bar * 4
        tones = chord(f"{root}3", quality) + chord(f"{root}4", quality)
        rising = [*tones, tones[0] + 24]
        arpeggio = rising + rising[-2:0:-1]  # up two octaves and back down, 12 triplet eighths a bar
        s.note(harp, pitch(f"{root}2"), b, 4.0, 70)
        for i, key in enumerate(arpeggio[:12]):
            s.note(harp, key, b + i / 3, 1.5, 72 if i % 3 == 0 else 60)


def _bossa_guitar(s: _Score) -> None:
    guitar = s.part(24, "nylon guitar")
    bars = [
        ("C3", "G2", "C3 E3 G3 B3"),
        ("C3", "G2", "C3 G3 B3 E4"),
        ("D3", "A2", "D3 A3 C4 F#4"),
        ("D3", "A2", "D3 F#3 C4 E4"),
        ("D3", "A2", "D3 A3 C4 F4"),
        ("G2", "D3", "G2 F3 B3 D4"),
        ("C3", "G2", "C3 G3 B3 E4"),
    ]
    for bar, (root, fifth, _) in enumerate(bars):
        for offset, key, length in ((0, root, 1.4), (1.5, fifth, 0.45), (2, fifth, 1.4), (3.5, root, 0.45)):
            s.note(guitar, pitch(key), bar * 4 + offset, length, 66)
    # The chords follow the bossa clave, a two-bar pattern; each hit takes the chord of its bar.
    clave = (0.0, 1.5, 3.0, 5.0, 6.5)
    for pair in range(0, len(bars), 2):
        for hit in clave:
            beat = pair * 4 + hit
            if int(beat // 4) < len(bars):
                s.chord(guitar, _notes(bars[int(beat // 4)][2])[1:], beat, 0.5, 58, strum=0.03)


def _drum_and_bass(s: _Score) -> None:
    drums, sub = s.part(0, "breakbeat", drum=True), s.part(38, "sub bass")
    stabs, pad = s.part(81, "saw stabs"), s.part(95, "sweep pad")
    roots = ["A1", "A1", "F1", "G1", "A1", "A1", "F1", "E1"]
    for bar, root in enumerate(roots):
        b = bar * 4
        pattern = {
            KICK: "X.........X.....",
            SNARE: "....X..o.o..X..o",
            CLOSED_HAT: "x.xxx.xxx.xxx.xx",
            RIDE: "x...x...x...x...",
        }
        s.drums(drums, b, pattern)
        s.note(sub, pitch(root), b, 1.45, 104)
        s.note(sub, pitch(root), b + 2.5, 1.45, 98)
        s.chord(stabs, [k + 24 for k in chord(root, "min")], b + 1.5, 0.3, 110)
        if bar % 2 == 0:
            s.chord(pad, [k + 36 for k in chord(root, "min")], b, 8.0, 50)


def _music_box(s: _Score) -> None:
    box = s.part(10, "music box")
    harmony = [("F", "maj"), ("C", "7"), ("F", "maj"), ("Bb", "maj"), ("C", "7"), ("F", "maj")]
    for bar, (root, quality) in enumerate(harmony):
        b = bar * 3
        tones = chord(f"{root}4", quality)
        for beat, key in enumerate([tones[0], tones[2], tones[1] + 12]):
            s.note(box, key, b + beat, 1.0, 56)
    melody = [
        ("A5", 1), ("C6", 1), ("A5", 1),
        ("G5", 1.5), ("F5", 0.5), ("E5", 1),
        ("F5", 1), ("A5", 1), ("C6", 1),
        ("D6", 2), ("Bb5", 1),
        ("A5", 1), ("G5", 1), ("E5", 1),
        ("F5", 3),
    ]  # fmt: skip
    s.line(box, 0, melody, 70)


def _tense_strings(s: _Score) -> None:
    tremolo, cello = s.part(44, "tremolo strings"), s.part(42, "cello")
    contrabass, timpani = s.part(43, "contrabass"), s.part(47, "timpani")
    clusters = ["C3 Eb3 G3", "Db3 F3 Ab3", "B2 D3 F3 Ab3", "C3 Eb3 G3"]
    for i, cluster in enumerate(clusters):
        s.chord(tremolo, _notes(cluster), i * 3.5, 3.6, 56 + 6 * i)
    s.note(contrabass, pitch("C2"), 0, 14.0, 70)
    for eighth in range(28):
        s.note(cello, pitch("C3"), eighth / 2, 0.4, 78 if eighth % 2 == 0 else 58)
    for beat, velocity in ((0, 90), (6, 80), (10, 84)):
        s.note(timpani, pitch("C2"), beat, 1.5, velocity)
    for i in range(12):  # a roll swelling into the last chord
        s.note(timpani, pitch("G1"), 11 + i / 4, 0.3, 50 + 4 * i)
    s.note(timpani, pitch("C2"), 14, 1.5, 104)


def _funk_slap(s: _Score) -> None:
    bass, drums, clav = s.part(36, "slap bass"), s.part(0, "drums", drum=True), s.part(7, "clavinet")
    groove = [
        (0, "E1", 112, 2), (2, "E1", 55, 1), (3, "E2", 106, 1), (5, "D2", 96, 1), (6, "E1", 108, 2),
        (8, "E1", 60, 1), (10, "G1", 100, 1), (11, "A1", 100, 1),
    ]  # fmt: skip
    endings = [[(12, "E2", 110, 1), (14, "D2", 96, 1), (15, "B1", 92, 1)], [(12, "A1", 100, 1), (13, "B1", 98, 1)]]
    for bar in range(5):
        b = bar * 4
        for step, name, velocity, length in groove + endings[bar % 2]:
            s.note(bass, pitch(name), b + step / 4, length / 4 * 0.9, velocity)
        pattern = {
            KICK: "X..x..X...X.....",
            SNARE: "....X..o.o..X..o",
            CLOSED_HAT: "XxXxXxXxXxXxXx.x",
            OPEN_HAT: "..............x.",
        }
        s.drums(drums, b, pattern)
        for step in (2, 7, 10, 13):
            s.chord(clav, _notes("G3 D4 F#4"), b + step / 4, 0.2, 115)


def _organ_chorale(s: _Score) -> None:
    organ, pedal = s.part(19, "church organ"), s.part(19, "organ pedal")
    # Four-part hymn harmony in G major (bass, tenor, alto, soprano) with its length in beats.
    chorale = [
        ("G2 G3 D4 B4", 1), ("C3 G3 E4 C5", 1), ("B2 G3 D4 D5", 1), ("E3 G3 B3 E5", 2), ("C3 G3 E4 C5", 1),
        ("D3 F#3 D4 A4", 2), ("G2 G3 D4 B4", 1), ("A2 A3 E4 C5", 1), ("D3 F#3 C4 A4", 1), ("G2 G3 B3 G4", 3),
    ]  # fmt: skip
    beat = 0.0
    for voicing, length in chorale:
        keys = _notes(voicing)
        s.chord(organ, keys, beat, length * 0.96, 84)
        s.note(pedal, keys[0] - 12, beat, length * 0.96, 80)
        beat += length


def _piano_waltz(s: _Score) -> None:
    piano = s.part(0, "piano")
    harmony = [("G", "maj"), ("E", "min"), ("A", "min"), ("D", "7"), ("G", "maj")]
    harmony += [("E", "min"), ("C", "maj"), ("D", "7"), ("G", "maj"), ("G", "maj")]
    for bar, (root, quality) in enumerate(harmony):
        b = bar * 3
        s.note(piano, pitch(f"{root}2"), b, 0.9, 62)
        upper = chord(f"{root}3", quality)[1:]
        s.chord(piano, upper, b + 1, 0.8, 44)
        s.chord(piano, upper, b + 2, 0.8, 42)
    melody = [
        ("D5", 2), ("B4", 1), ("G5", 2), ("E5", 1), ("C5", 2), ("E5", 1), ("D5", 1), ("C5", 1), ("A4", 1),
        ("B4", 2), ("D5", 1), ("G5", 1.5), ("F#5", 0.5), ("E5", 1), ("E5", 2), ("C5", 1),
        ("A4", 1), ("B4", 1), ("C5", 1), ("B4", 3), ("G4", 3),
    ]  # fmt: skip
    s.line(piano, 0, melody, 72)


def _celtic_jig(s: _Score) -> None:
    flute, guitar, drum = s.part(73, "flute"), s.part(25, "steel guitar"), s.part(0, "frame drum", drum=True)
    tune = [
        ("D", "A4 F#4 A4 D5 A4 F#4"),
        ("G", "G4 B4 D5 G5 F#5 E5"),
        ("D", "F#5 D5 F#5 A5 F#5 D5"),
        ("A", "E5 C#5 A4 A4 B4 C#5"),
        ("D", "D5 F#5 A5 F#5 D5 A4"),
        ("G", "B4 G4 B4 D5 B4 G4"),
        ("A", "A4 C#5 E5 A5 E5 C#5"),
        ("D", "D5 D5 A4 D5 D5 D5"),
    ]
    voicings = {"D": "D3 A3 D4 F#4", "G": "G2 B2 D3 G3 B3", "A": "A2 E3 A3 C#4 E4"}
    for bar in range(12):
        root, notes = tune[bar % len(tune)]
        b = bar * 2  # two dotted-quarter beats a bar, each of three eighths
        for i, key in enumerate(_notes(notes)):
            s.note(flute, key, b + i / 3, 0.31, 84 if i % 3 == 0 else 70)
        for beat in (0, 1):
            s.chord(guitar, _notes(voicings[root]), b + beat, 0.9, 60, strum=0.02)
        s.drums(drum, b, {LOW_FLOOR_TOM: "X..X..", LOW_TOM: "..x..x"}, steps_per_beat=3, level=0.6)


def _rock_guitar(s: _Score) -> None:
    guitar, lead, bass = s.part(29, "overdriven guitar"), s.part(30, "distortion guitar"), s.part(34, "picked bass")
    drums = s.part(0, "rock kit", drum=True)
    riff = [["E2"] * 8, ["G2"] * 4 + ["A2"] * 4, ["E2"] * 8, ["C3"] * 4 + ["D3"] * 4]
    for bar in range(6):
        b = bar * 4
        for i, root in enumerate(riff[bar % 4]):
            s.chord(guitar, chord(root, "5"), b + i / 2, 0.42, 118 if i % 2 == 0 else 104)
            s.note(bass, pitch(root) - 12, b + i / 2, 0.45, 85)
        if bar >= 4:  # a sustained second guitar lifts the last two bars
            for half, root in enumerate((riff[bar % 4][0], riff[bar % 4][-1])):
                s.chord(lead, [k + 12 for k in chord(root, "5")], b + 2 * half, 2.0, 96)
        pattern = {KICK: "X.......X.X.....", SNARE: "....X.......X...", CLOSED_HAT: "x.x.x.x.x.x.x.x."}
        if bar % 4 == 0:
            pattern[CRASH] = "X..............."
        if bar == 5:
            pattern[SNARE] = "....X.......XX.."
            pattern.update({HIGH_MID_TOM: "............X...", LOW_TOM: "..............XX"})
            pattern[CLOSED_HAT] = "x.x.x.x.x.x....."
        s.drums(drums, b, pattern, level=0.85)


def _marimba_tropical(s: _Score) -> None:
    marimba, steel = s.part(12, "marimba"), s.part(114, "steel drum")
    bass, percussion = s.part(33, "fingered bass"), s.part(0, "latin percussion", drum=True)
    harmony = [["F"], ["Bb"], ["C"], ["F"], ["Bb", "C"], ["F"]]
    for bar, roots in enumerate(harmony):
        b = bar * 4
        for half in range(2):
            root = roots[min(half, len(roots) - 1)]
            tones = [*chord(f"{root}4", "maj"), pitch(f"{root}5")]
            for i, step in enumerate((0, 3, 6)):
                s.note(marimba, tones[(i + half) % 4], b + half * 2 + step / 4, 0.6, 100)
            low = pitch(f"{root}2")
            s.note(bass, low, b + half * 2, 0.9, 54)
            s.note(bass, low + 7, b + half * 2 + 1.5, 0.45, 50)
        pattern = {
            MUTE_CONGA: "x.......x.......",
            OPEN_CONGA: "......xx......x.",
            LOW_CONGA: "..........x.x...",
            MARACAS: "xoxoxoxoxoxoxoxo",
            CLAVES: "x..x..x...x.x...",
        }
        s.drums(percussion, b, pattern, level=0.8)
    melody = [
        ("A5", 0.75), ("G5", 0.75), ("F5", 0.5), ("A5", 1), ("C6", 1),
        ("D6", 0.75), ("C6", 0.75), ("Bb5", 0.5), ("D6", 1), ("Bb5", 1),
        ("G5", 0.75), ("A5", 0.75), ("Bb5", 0.5), ("C6", 1), ("E5", 1),
        ("F5", 1.5), ("A5", 0.5), ("C6", 2),
        ("D6", 1), ("Bb5", 1), ("C6", 1), ("G5", 1),
        ("F5", 3),
    ]  # fmt: skip
    s.line(steel, 0, melody, 115)


_COMPOSERS: dict[str, Callable[[_Score], None]] = {
    "p01-jazz-trio": _jazz_trio,
    "p02-upbeat-pop": _upbeat_pop,
    "p03-sad-strings": _sad_strings,
    "p04-ambient-pad": _ambient_pad,
    "p05-brass-march": _brass_march,
    "p06-harp-arpeggios": _harp_arpeggios,
    "p07-bossa-guitar": _bossa_guitar,
    "p08-drum-and-bass": _drum_and_bass,
    "p09-music-box": _music_box,
    "p10-tense-strings": _tense_strings,
    "p11-funk-slap": _funk_slap,
    "p12-organ-chorale": _organ_chorale,
    "p13-piano-waltz": _piano_waltz,
    "p14-celtic-jig": _celtic_jig,
    "p15-rock-guitar": _rock_guitar,
    "p16-marimba-tropical": _marimba_tropical,
}
# (beats per bar, beat unit) where not 4/4; the jig counts its two dotted-quarter beats.
_METERS = {"p09-music-box": (3, 4), "p13-piano-waltz": (3, 4), "p14-celtic-jig": (6, 8)}


# --------------------------------------------------------------------------------------------
# Rendering


def soundfont_path() -> Path:
    """pretty_midi's bundled General MIDI SoundFont (TimGM6mb.sf2), located without importing pretty_midi."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise SoundFontMissing(
            "pretty_midi is not installed, so its TimGM6mb.sf2 SoundFont is missing; "
            "install the audio extra: pip install 'dialbgm[audio]'"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "TimGM6mb.sf2"
        if candidate.is_file():
            return candidate
    raise SoundFontMissing(
        f"TimGM6mb.sf2 is not in pretty_midi's package folder ({', '.join(spec.submodule_search_locations)}); "
        "reinstall pretty_midi"
    )


def render(
    midi: pretty_midi.PrettyMIDI | str | Path,
    seconds: float = 10.0,
    sample_rate: int = SAMPLE_RATE,
    soundfont: Path | None = None,
) -> Samples:
    """The first ``seconds`` of a score or MIDI file as float32 stereo ``[frames, 2]``, peak-normalised to -3 dBFS.

    A short fade-out ends the clip, since pieces are cut at ``seconds`` rather than ending there.
    """
    import numpy as np
    import tinysoundfont

    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, not {seconds!r}")
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont or soundfont_path()))
    # General MIDI plays channel 10 as drums even in files that never send it a program change.
    synth.program_select(9, sfid, 0, 0, is_drums=True)
    sequencer = tinysoundfont.Sequencer(synth)
    # Not persistent: played events leave the queue, so long files do not rescan it at every event.
    sequencer.add(tinysoundfont.midi.load_memory(_midi_bytes(midi), persistent=False))
    frames = round(seconds * sample_rate)
    audio = np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(-1, 2).copy()
    fade = min(len(audio), round(FADE_OUT_S * sample_rate))
    audio[len(audio) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio *= np.float32(10 ** (PEAK_DBFS / 20) / peak)
    return audio


def _midi_bytes(midi: pretty_midi.PrettyMIDI | str | Path) -> bytes:
    if isinstance(midi, str | Path):
        return Path(midi).read_bytes()
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The sample's clips


def write_clips(
    out_dir: Path,
    pieces: Sequence[Piece] = PIECES,
    seconds: float = 10.0,
    *,
    on_clip: Callable[[Path, bool], None] | None = None,
) -> list[Path]:
    """Render each piece to ``out_dir/<id>.<fmt>``, keeping files already present and intact.

    A file is intact when ``manifest.json`` records its sha256 for the same composition version,
    length and rate; anything else (missing, edited, truncated) is rendered again. ``on_clip`` is
    told each path and whether it was rendered now.
    """
    from dialbgm.data._clips import write_atomically
    from dialbgm.data._encode import encode

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out_dir)
    paths = []
    for piece in pieces:
        path = out_dir / f"{piece.id}.{piece.fmt}"
        wanted = {"version": COMPOSITION_VERSION, "seconds": float(seconds), "sample_rate": SAMPLE_RATE}
        entry = manifest.get(path.name)
        intact = (
            isinstance(entry, dict)
            and all(entry.get(k) == v for k, v in wanted.items())
            and path.is_file()
            and _sha256(path.read_bytes()) == entry.get("sha256")
        )
        if not intact:
            data = encode(render(compose(piece), seconds, SAMPLE_RATE), SAMPLE_RATE, piece.fmt)
            write_atomically(path, data)
            manifest[path.name] = {**wanted, "sha256": _sha256(data), "bytes": len(data)}
            # Saved after every clip: an interrupted set-up keeps what it already rendered.
            write_atomically(out_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        if on_clip is not None:
            on_clip(path, not intact)
        paths.append(path)
    return paths


def _read_manifest(out_dir: Path) -> dict[str, object]:
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Render the audio sample's clips: ``python -m dialbgm_tools.sample_music OUT_DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m dialbgm_tools.sample_music", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("out_dir", type=Path, help="folder for the clips, e.g. data/clips")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip (default 10)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rendered: list[Path] = []

    def report(path: Path, fresh: bool) -> None:
        if fresh:
            rendered.append(path)
        print(f"{'rendered' if fresh else 'kept    '} {path}  ({path.stat().st_size:,} B)", flush=True)

    try:
        paths = write_clips(args.out_dir, seconds=args.seconds, on_clip=report)
    except DialbgmError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    total = sum(p.stat().st_size for p in paths)
    print(
        f"{len(paths)} clips in {args.out_dir} ({len(rendered)} rendered, {len(paths) - len(rendered)} kept), "
        f"{total:,} B, {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
