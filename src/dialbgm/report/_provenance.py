"""Where a report's numbers came from: one record per cell, read from its manifest alone.

A reader of a report must be able to tell, without the run folders, which code, which model and
settings and which data produced each figure. Everything here comes from what the run recorded
when it ran (``manifest.json``), never from the machine that writes the report, except the
report's own date and dialbgm version, which are labelled as such.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from dialbgm.storage import utc_now

# The judge settings a reader needs to reproduce a cell, in the order they are shown.
JUDGE_SETTINGS = (
    "provider",
    "model",
    "model_revision",
    "template",
    "mode",
    "context",
    "input",
    "cot",
    "few_shot",
    "few_shot_seed",
    "orders",
    "order_seed",
    "shuffle_labels",
    "samples",
    "aggregation",
    "score_by",
    "scale_min",
    "scale_max",
    "weights",
    "params",
    "api_base",
)
# litellm and the provider SDKs it calls through: their versions can change an answer.
CALL_PACKAGES = ("litellm", "openai", "httpx", "aiohttp", "google-genai", "anthropic", "llama-cpp-python")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cell_provenance(cell_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """One cell's provenance from its manifest; a field the run did not record is ``None``."""
    config = manifest.get("config") or {}
    judge = config.get("judge") or {}
    versions = manifest.get("versions") or {}
    git = manifest.get("git") or {}
    template = manifest.get("template") or {}
    dataset = manifest.get("dataset") or {}
    return {
        "cell_id": cell_id,
        "judge": judge.get("name"),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "dialbgm": versions.get("dialbgm"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "packages": {p: versions[p] for p in CALL_PACKAGES if p in versions},
        "settings": {k: judge[k] for k in JUDGE_SETTINGS if k in judge},
        "template_sha256": template.get("sha256"),
        "data_path": dataset.get("path"),
        "data_sha256": dataset.get("sha256"),
        "config_hash": manifest.get("config_hash"),
    }


def report_provenance(cells: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The report's own stamp plus every cell's record (cells as (cell id, manifest) pairs)."""
    return {
        "report_written": utc_now(),
        "report_dialbgm": _version("dialbgm"),
        "cells": [cell_provenance(cid, m) for cid, m in cells],
    }


def git_label(commit: str | None, dirty: bool | None) -> str:
    """``abc1234`` or ``abc1234 (dirty)``, or ``unknown`` when the run was not in a git checkout."""
    if not commit:
        return "unknown"
    return commit[:12] + (" (uncommitted changes)" if dirty else "")
