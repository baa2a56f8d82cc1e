"""A plan's per-unit digests (cache keys, message hashes) on disk, not in memory.

A run's plan holds two 64-character hex digests per unit; as Python strings in lists they cost
~230 bytes a unit and fragment the heap while prompts are rendered around them. Here they are
fixed-width records of an anonymous temporary file (deleted by the OS whatever happens to the
process), read back by offset: a long run's plan costs the memory of a short one's.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

WIDTH = 64  # a sha256 in hex
_FLUSH = 1 << 16  # bytes appended before they go to the file
_READ = 1024  # records per read when iterating


def _temporary_fd(directory: Path | None) -> int:
    try:  # on the workspace's disk: /tmp may be memory (tmpfs), which would defeat the table
        f = tempfile.TemporaryFile(dir=directory, buffering=0)  # noqa: SIM115 (only its descriptor is kept)
    except OSError:  # e.g. a read-only workspace: the system's temporary folder will do
        f = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
    with f:
        return os.dup(f.fileno())


class DigestTable(Sequence[str]):
    """A list of digests, appended in plan order and overwritten in place (a re-asked unit's new
    key). A value that is not 64 ASCII characters is kept in memory instead, so any string works.
    Equal to any sequence of the same strings, as a list is."""

    def __init__(self, values: Iterable[str] = (), directory: Path | None = None) -> None:
        self._fd = _temporary_fd(directory)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self._n = 0
        self._written = 0  # records in the file; the rest wait in _tail
        self._tail = bytearray()
        self._odd: dict[int, str] = {}
        for v in values:
            self.append(v)

    def append(self, value: str) -> None:
        self._n += 1
        self._tail += self._encode(self._n - 1, value)
        if len(self._tail) >= _FLUSH:
            os.pwrite(self._fd, self._tail, self._written * WIDTH)
            self._written += len(self._tail) // WIDTH
            self._tail.clear()

    def __setitem__(self, i: int, value: str) -> None:
        i = self._index(i)
        self._odd.pop(i, None)
        record = self._encode(i, value)
        if i >= self._written:
            at = (i - self._written) * WIDTH
            self._tail[at : at + WIDTH] = record
        else:
            os.pwrite(self._fd, record, i * WIDTH)

    def _encode(self, i: int, value: str) -> bytes:
        record = value.encode("utf-8")
        if len(record) != WIDTH or not value.isascii():
            self._odd[i] = value
            return b"\0" * WIDTH
        return record

    def _index(self, i: int) -> int:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("digest index out of range")
        return i

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        i = self._index(i)
        if i in self._odd:
            return self._odd[i]
        if i >= self._written:
            at = (i - self._written) * WIDTH
            return self._tail[at : at + WIDTH].decode("ascii")
        return os.pread(self._fd, WIDTH, i * WIDTH).decode("ascii")

    def __iter__(self) -> Iterator[str]:
        for start in range(0, self._written, _READ):
            count = min(_READ, self._written - start)
            block = os.pread(self._fd, count * WIDTH, start * WIDTH)
            for k in range(count):
                odd = self._odd.get(start + k)
                yield odd if odd is not None else block[k * WIDTH : (k + 1) * WIDTH].decode("ascii")
        for i in range(self._written, self._n):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"DigestTable({self._n} digests)"

    def close(self) -> None:
        self._closer()
