"""The store of prepared clips: content-addressed blobs and an index from a source's identity and
spec to its prepared clip, so an unchanged source is never decoded twice."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dialbgm.data._audio import AudioError, AudioSpec, PreparedClip
from dialbgm.data._decode import stat_source
from dialbgm.data._encode import prepare

if TYPE_CHECKING:
    from dialbgm.storage import Store

T = TypeVar("T")


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
        st = stat_source(path)
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
