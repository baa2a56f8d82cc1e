"""The run list: every run folder under the results folder, newest first, from its small files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.metrics import METRICS
from dialbgm.web._settings import ViewSettings

HEADLINE = ("hit_at_1", "kendall_tau_b")


@dataclass(frozen=True)
class RunEntry:
    key: str
    """The folder relative to the results folder, ``/``-separated: the run's address in the app."""
    judge: str
    data: str
    started: str
    n_items: int | None
    n_total: int | None
    n_failed: int | None
    failed_by_status: dict[str, int] = field(default_factory=dict)
    headline: dict[str, float | None] = field(default_factory=dict)
    problem: str | None = None
    """Why this folder cannot be shown (an unreadable or unfinished run), else None."""


def _read(path: Path) -> dict[str, Any]:
    obj = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def run_entry(settings: ViewSettings, folder: Path) -> RunEntry:
    key = folder.relative_to(settings.results_dir).as_posix()
    try:
        manifest = _read(folder / "manifest.json")
        metrics = _read(folder / "metrics.json")
    except (OSError, ValueError) as e:
        return RunEntry(key, "", "", "", None, None, None, problem=f"cannot be read: {e}")
    config = manifest.get("config") or {}
    return RunEntry(
        key=key,
        judge=str((config.get("judge") or {}).get("name", "")),
        data=str((manifest.get("dataset") or {}).get("path", "")),
        started=str(manifest.get("started", "")),
        n_items=metrics.get("n_items"),
        n_total=metrics.get("n_total"),
        n_failed=metrics.get("n_failed"),
        failed_by_status=dict(metrics.get("failed_by_status") or {}),
        headline={m: metrics.get(m) for m in METRICS if m in HEADLINE},
    )


def run_folders(root: Path) -> list[Path]:
    """Run folders (a ``manifest.json``) directly under ``root`` — not inside experiment folders,
    whose cells their experiment lists — skipping hidden ones (``.replaced-*``)."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.name.startswith(".") or not p.is_dir() or (p / "experiment.json").is_file():
            continue
        if (p / "manifest.json").is_file():
            out.append(p)
    return out


def list_runs(settings: ViewSettings) -> list[RunEntry]:
    entries = [run_entry(settings, p) for p in run_folders(settings.results_dir)]
    return sorted(entries, key=lambda e: (e.started, e.key), reverse=True)
