"""Which file a candidate's audio player gets, if any: only a file that belongs to the data.

The request names an item and a candidate, never a path. The path comes from the run's index
(built from the data file the run read and the run's ``clips.jsonl``), and is served only if its
real location (symlinks followed) is a regular file inside the data file's folder — or, for the
prepared clip the judge was sent, inside the clip store's ``blobs/`` with its sha256 checked.
Anything else is "not found".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dialbgm.web._index import RunIndex

MEDIA_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}
_SHA = re.compile(r"[0-9a-f]{64}")
_FORMAT = re.compile(r"[a-z0-9]{1,8}")


@dataclass(frozen=True)
class Playable:
    path: Path
    media_type: str
    prepared: bool
    """True: the clip as the judge was sent it; False: the data's source file."""


def _inside(path: Path, folder: Path) -> Path | None:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_file() or not real.is_relative_to(folder.resolve()):
        return None
    return real


@lru_cache(maxsize=4096)
def _sha_matches(path: Path, size: int, mtime_ns: int, sha256: str) -> bool:
    # Keyed on the stat too, so a blob rewritten since is checked again.
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def _prepared(raw: str | None) -> Playable | None:
    clip = json.loads(raw) if raw else None
    if not isinstance(clip, dict) or not clip.get("store"):
        return None
    sha, fmt = str(clip.get("sha256", "")), str(clip.get("format", ""))
    if not _SHA.fullmatch(sha) or not _FORMAT.fullmatch(fmt):
        return None
    blobs = Path(clip["store"]) / "blobs"
    real = _inside(blobs / sha[:2] / f"{sha}.{fmt}", blobs)
    if real is None:
        return None
    st = real.stat()
    if not _sha_matches(real, st.st_size, st.st_mtime_ns, sha):
        return None
    mime = str(clip.get("mime") or MEDIA_TYPES.get(f".{fmt}", "application/octet-stream"))
    return Playable(real, mime, prepared=True)


def playable(index: RunIndex, data_folder: Path | None, item_id: str, candidate: str) -> Playable | None:
    """The file to play for this candidate of this item, or None (→ 404)."""
    row = index.clip(item_id, candidate)
    if row is None:
        return None
    found = _prepared(row["prepared"])
    if found is not None:
        return found
    if not row["source"] or data_folder is None:
        return None
    real = _inside(Path(row["source"]), data_folder)
    if real is None:
        return None
    media = MEDIA_TYPES.get(real.suffix.lower())
    if media is None:
        return None  # not a sound file by its name: nothing a player would want
    return Playable(real, media, prepared=False)
