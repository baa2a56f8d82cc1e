"""Every run and experiment under a results folder, newest first, with what a list shows of each.

Only each folder's small files are read (``manifest.json``, ``metrics.json``, ``experiment.json``;
the first line of ``units.jsonl`` for its generation), so listing a folder of long runs stays
quick. A folder that cannot be read is listed too, with the reason (:mod:`._readable`).

Layout read: ``RESULTS/<run>/`` for ``dialbgm eval``, ``RESULTS/experiments/<name>/`` holding
``experiment.json`` and one run folder per cell for ``dialbgm compare``; any other nesting is
searched a few levels deep, hidden folders (``.replaced-*``) excepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dialbgm.analysis._readable import RunFolder, State, is_run_folder, read_run_folder
from dialbgm.metrics import METRICS

SPEC_FILE = "experiment.json"
HEADLINE = ("hit_at_1", "kendall_tau_b")
"""The metrics a list shows (the paper's two)."""
MAX_DEPTH = 4


@dataclass(frozen=True)
class CatalogEntry:
    """A run or an experiment as a list shows it. ``rel`` is its path under the results folder
    (``/``-separated), which names it in the viewer's addresses."""

    kind: Literal["run", "experiment"]
    path: Path
    rel: str
    state: State
    reason: str | None = None
    hint: str | None = None
    date: str | None = None
    """When it finished (UTC, ISO 8601): the manifest's ``finished``, else its folder's last change."""
    judge: str | None = None
    data: str | None = None
    n_items: int | None = None
    """Items in the data as run (scored + failed); an experiment's: its largest cell's."""
    n_scored: int | None = None
    n_failed: int | None = None
    failed_by_status: dict[str, int] = field(default_factory=dict)
    headline: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """``{metric: {"mean", "ci_low", "ci_high"}}`` for :data:`HEADLINE`; an experiment's is its best cell's."""
    best_cell: str | None = None
    cells: tuple[CatalogEntry, ...] = ()
    levels: dict[str, Any] = field(default_factory=dict)
    generation: str | None = None
    notes: tuple[str, ...] = ()
    name: str = ""

    @property
    def readable(self) -> bool:
        return self.state == "ok"


def catalog(results: Path) -> list[CatalogEntry]:
    """The runs and experiments under ``results``, newest first (unreadable ones included, by
    their folder's time). An experiment's cells are listed inside it, not beside it."""
    found: list[CatalogEntry] = []
    if results.is_dir():
        _walk(results, results, 0, found)
    return sorted(found, key=lambda e: (e.date or "", e.rel), reverse=True)


def _walk(root: Path, folder: Path, depth: int, out: list[CatalogEntry]) -> None:
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return
    for child in children:
        if (child / SPEC_FILE).exists():
            out.append(experiment_entry(child, _rel(root, child)))
        elif is_run_folder(child):
            out.append(run_entry(read_run_folder(child), _rel(root, child)))
        elif depth + 1 < MAX_DEPTH:
            _walk(root, child, depth + 1, out)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def run_entry(
    folder: RunFolder, rel: str, *, cell_id: str | None = None, levels: dict[str, Any] | None = None
) -> CatalogEntry:
    base: dict[str, Any] = {
        "kind": "run",
        "path": folder.path,
        "rel": rel,
        "name": cell_id or folder.path.name,
        "levels": dict(levels or {}),
        "state": folder.state,
        "reason": folder.reason,
        "hint": folder.hint,
    }
    if folder.manifest is None or folder.metrics is None:
        return CatalogEntry(**base, date=_mtime(folder.path))
    man, met = folder.manifest, folder.metrics
    return CatalogEntry(
        **base,
        date=_str(man.get("finished")) or _str(man.get("started")) or _mtime(folder.path),
        judge=str(man["config"]["judge"]["name"]),
        data=_str(man["dataset"].get("path")),
        n_items=met["n_total"],
        n_scored=met["n_items"],
        n_failed=met["n_failed"],
        failed_by_status=dict(met.get("failed_by_status") or {}),
        headline={m: _interval(met, m) for m in HEADLINE},
        generation=f"{folder.generation.date} ({folder.generation.name})" if folder.generation else None,
        notes=folder.notes,
    )


def experiment_entry(path: Path, rel: str) -> CatalogEntry:
    """An experiment folder: its spec and each cell's entry; ``ok`` only when every cell is."""
    try:
        spec = json.loads((path / SPEC_FILE).read_text(encoding="utf-8"))
        if not isinstance(spec, dict) or not isinstance(spec.get("cells"), list):
            raise ValueError("no list of cells")
        cell_specs = [(str(c["cell_id"]), dict(c.get("levels") or {})) for c in spec["cells"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return CatalogEntry(
            "experiment",
            path,
            rel,
            "damaged",
            f"{SPEC_FILE}: cannot be read ({e})",
            "run `dialbgm compare` on its experiment file again",
            date=_mtime(path),
            name=path.name,
        )
    again = f"finish it with: dialbgm compare {spec.get('file') or spec.get('name') or path.name}"
    cells = []
    for cid, levels in cell_specs:
        d = path / cid
        if not d.is_dir() or not is_run_folder(d):
            cells.append(
                CatalogEntry(
                    "run", d, f"{rel}/{cid}", "not_run", "this cell has not been run", again, name=cid, levels=levels
                )
            )
            continue
        cells.append(run_entry(read_run_folder(d, resume_hint=again), f"{rel}/{cid}", cell_id=cid, levels=levels))
    ok = [c for c in cells if c.readable]
    bad = [c for c in cells if not c.readable]
    best = max(ok, key=lambda c: _mean(c, "hit_at_1"), default=None)
    judges = list(dict.fromkeys(c.judge for c in ok if c.judge))
    data: dict[str, Any] = spec["data"] if isinstance(spec.get("data"), dict) else {}
    return CatalogEntry(
        "experiment",
        path,
        rel,
        "ok" if not bad else bad[0].state,
        None
        if not bad
        else f"{len(bad)} of {len(cells)} cells cannot be read: " + "; ".join(f"{c.name}: {c.reason}" for c in bad),
        None if not bad else bad[0].hint,
        date=max((c.date for c in cells if c.date), default=None) or _mtime(path),
        judge=", ".join(judges) or None,
        data=_str(data.get("path")),
        n_items=max((c.n_items for c in ok if c.n_items is not None), default=None),
        n_scored=None,
        n_failed=sum(c.n_failed or 0 for c in ok),
        failed_by_status=_sum_counts(c.failed_by_status for c in ok),
        headline=dict(best.headline) if best else {},
        best_cell=best.name if best else None,
        cells=tuple(cells),
        name=str(spec.get("name") or path.name),
    )


def _interval(metrics: dict[str, Any], m: str) -> dict[str, float | None]:
    ci = metrics["ci95"].get(m) or [None, None]
    mean = metrics.get(m)
    return {"mean": mean if isinstance(mean, int | float) else None, "ci_low": ci[0], "ci_high": ci[1]}


def _mean(e: CatalogEntry, m: str) -> float:
    v = (e.headline.get(m) or {}).get("mean")
    return float(v) if v is not None else float("-inf")


def _sum_counts(counts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))


def _str(x: Any) -> str | None:
    return x if isinstance(x, str) and x else None


def _mtime(path: Path) -> str | None:
    try:
        t = path.stat().st_mtime
    except OSError:
        return None
    # The format of a manifest's `finished`, so both sort together.
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


assert set(HEADLINE) <= set(METRICS)
