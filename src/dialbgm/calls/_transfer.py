"""Moving cached responses between caches (the folder cache and a shared server): one JSON Lines
file, every entry with the sha256 of its bytes, and a last line that counts them and hashes the
list of hashes.

An import reads the whole file and checks every hash, the count and the last line before it stores
anything (a truncated or edited file imports nothing); an entry is stored only where the key is
absent (set-if-absent on a server), then read back and compared by hash. Entries are moved as
they are stored (JSON text, never pickle), so an answer is served after the move exactly as
before it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.calls._cache import ResponseCache, _decode
from dialbgm.errors import DialbgmError, InputError
from dialbgm.judging import CACHE_SCHEMA_VERSION
from dialbgm.storage import UnreadableEntry, atomic_file

FORMAT = "dialbgm-cache-export"
VERSION = 1


@dataclass
class Transfer:
    entries: int = 0
    """Exported: entries written. Imported: entries in the file."""
    stored: int = 0
    present: int = 0
    """Already in the cache with the same bytes."""
    differ: int = 0
    """Already in the cache under the key with other bytes (kept: a stored answer is never replaced)."""
    skipped: list[str] = field(default_factory=list)
    """Exported: entries that do not decode, left out (``cache verify`` names them)."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def export_entries(cache: ResponseCache, path: Path) -> Transfer:
    """Write every entry of ``cache`` that decodes to ``path`` (whole or not at all)."""
    out = Transfer()
    store = cache.store
    digest = hashlib.sha256()
    with atomic_file(path) as f:
        header = {"format": FORMAT, "version": VERSION, "schema": CACHE_SCHEMA_VERSION, "source": cache.backend}
        f.write(json.dumps(header) + "\n")
        for key in store.iterkeys():
            try:
                blob = store.get(key)
            except UnreadableEntry as e:
                out.skipped.append(f"{key}: {e}")
                continue
            if blob is None:
                continue  # deleted by another process since it was listed
            if _decode(key, blob)[1] is not None:
                out.skipped.append(f"{key}: {_decode(key, blob)[1]}")
                continue
            sha = _sha(blob)
            digest.update(sha.encode())
            f.write(json.dumps({"key": key, "sha256": sha, "entry": blob}, ensure_ascii=False) + "\n")
            out.entries += 1
        f.write(json.dumps({"end": True, "entries": out.entries, "sha256": digest.hexdigest()}) + "\n")
    return out


def _read_checked(path: Path) -> list[tuple[str, str, str]]:
    """Every (key, sha256, entry) of an export file, after every check passed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be read ({e})") from None

    def row(n: int) -> dict[str, Any]:
        try:
            obj = json.loads(lines[n])
        except (ValueError, IndexError):
            raise InputError(f"{path}:{n + 1}: not a JSON line of a dialbgm cache export") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n + 1}: not a JSON object")
        return obj

    header = row(0)
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise InputError(f"{path}:1: not a dialbgm cache export (format {FORMAT!r}, version {VERSION})")
    if header.get("schema") != CACHE_SCHEMA_VERSION:
        raise InputError(
            f"{path}:1: entries of cache schema {header.get('schema')!r}; this dialbgm reads schema "
            f"{CACHE_SCHEMA_VERSION} (its keys would never be asked for)"
        )
    trailer = row(len(lines) - 1) if len(lines) > 1 else {}
    if trailer.get("end") is not True:
        raise InputError(f"{path}: has no closing line (the file was cut short): nothing stored")
    digest = hashlib.sha256()
    out = []
    for n in range(1, len(lines) - 1):
        r = row(n)
        key, sha, entry = r.get("key"), r.get("sha256"), r.get("entry")
        if not (isinstance(key, str) and isinstance(sha, str) and isinstance(entry, str)):
            raise InputError(f"{path}:{n + 1}: needs key, sha256 and entry strings")
        if _sha(entry) != sha:
            raise InputError(
                f"{path}:{n + 1}: entry {key} does not match its sha256 (damaged or edited): nothing stored"
            )
        problem = _decode(key, entry)[1]
        if problem is not None:
            raise InputError(f"{path}:{n + 1}: entry {key}: {problem}: nothing stored")
        digest.update(sha.encode())
        out.append((key, sha, entry))
    if trailer.get("entries") != len(out) or trailer.get("sha256") != digest.hexdigest():
        raise InputError(
            f"{path}: the closing line counts {trailer.get('entries')} entries with hash "
            f"{str(trailer.get('sha256'))[:12]}..., the file holds {len(out)} with {digest.hexdigest()[:12]}...: "
            "nothing stored"
        )
    return out


def import_entries(cache: ResponseCache, path: Path) -> Transfer:
    """Store every entry of an export file that the cache lacks; verified before and after."""
    rows = _read_checked(path)
    out = Transfer(entries=len(rows))
    store = cache.store
    for key, sha, entry in rows:
        stored = store.set_if_absent(key, entry)
        back = store.get(key)
        if back is None:
            raise DialbgmError(f"entry {key} was stored in {cache.where} but cannot be read back")
        if stored and _sha(back) != sha:
            raise DialbgmError(f"entry {key} reads back from {cache.where} with other bytes than were stored")
        if stored:
            out.stored += 1
        elif _sha(back) == sha:
            out.present += 1
        else:
            out.differ += 1
    return out
