"""Files written whole or not at all: temporary name, then rename; JSON and JSONL writers."""

from __future__ import annotations

import errno
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from dialbgm.errors import ResultsError


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cannot_write(path: Path, e: OSError) -> ResultsError:
    """An OSError on a results path, as the one-line error the CLI prints (exit 2)."""
    why = e.strerror or str(e)
    if isinstance(e, NotADirectoryError | FileExistsError) or e.errno in (errno.ENOTDIR, errno.EEXIST):
        why = f"{why} (a part of the path is a file, not a folder)"
    return ResultsError(f"cannot write {path}: {why}")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a :class:`ResultsError`."""
    try:
        yield
    except OSError as e:
        raise cannot_write(path, e) from e


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name, fsynced and renamed into place only when the
    ``with`` block ends without an error: readers see the whole file or none of it, and a failed
    write leaves no temporary behind."""
    # Unique per process and call: two writers of one name never share (or delete) a temporary.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _atomic_write(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with JsonlWriter(path) as out:
        for r in rows:
            out.write(r)


class JsonlWriter:
    """Rows written one at a time into an :func:`atomic_file`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = ExitStack()
        self._f: IO[str] | None = None

    def __enter__(self) -> JsonlWriter:
        self._f = self._stack.enter_context(atomic_file(self.path))
        return self

    def write(self, row: dict[str, Any]) -> None:
        assert self._f is not None, "JsonlWriter used outside its with block"
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)
