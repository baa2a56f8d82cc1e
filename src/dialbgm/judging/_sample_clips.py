"""The bundled audio sample's clips: which files they are, and how to make them when missing.

They are composed in code by ``dialbgm_tools.sample_music`` (set-up tooling, outside the runtime
package); a test checks that the composer writes exactly these files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm.judging._audio_input import clip_path

if TYPE_CHECKING:
    from dialbgm.data import Dataset

SAMPLE_CLIPS = frozenset(
    {
        "p01-jazz-trio.flac",
        "p02-upbeat-pop.ogg",
        "p03-sad-strings.flac",
        "p04-ambient-pad.ogg",
        "p05-brass-march.wav",
        "p06-harp-arpeggios.flac",
        "p07-bossa-guitar.ogg",
        "p08-drum-and-bass.mp3",
        "p09-music-box.flac",
        "p10-tense-strings.ogg",
        "p11-funk-slap.wav",
        "p12-organ-chorale.flac",
        "p13-piano-waltz.mp3",
        "p14-celtic-jig.ogg",
        "p15-rock-guitar.flac",
        "p16-marimba-tropical.ogg",
    }
)


def missing_clips_hint(dataset: Dataset) -> str | None:
    """How to make the clips, when ``dataset`` names clips of this sample that are missing (they
    are rendered at set-up, never committed), else None."""
    folders = sorted(
        {
            path.parent
            for item in dataset
            for c in item.candidates
            if c.audio and (path := clip_path(dataset.path, c.audio)).name in SAMPLE_CLIPS and not path.exists()
        }
    )
    if not folders:
        return None
    commands = "; ".join(f"python -m dialbgm_tools.sample_music {folder}" for folder in folders)
    return (
        "the bundled audio sample's clips are composed in code and rendered at set-up, not committed; "
        f"render them with  {commands}  (make setup does it; needs the audio extra: pip install 'dialbgm[audio]')"
    )
