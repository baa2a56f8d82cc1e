"""The experiment page (the report's figures, from the report's own functions) and one item
followed across every cell of its experiment.

An experiment is addressed by its folder under the results folder (``/experiment/experiments/NAME``);
nothing outside the results folder is ever read, and a path that leaves it is a 404.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dialbgm.web._settings import ViewSettings

SPEC_FILE = "experiment.json"
FIGURES_CSS_PATH = "/figures.css"


def experiment_folder(settings: ViewSettings, key: str) -> Path | None:
    """The experiment folder ``key`` names under the results folder, or None (not one, or outside)."""
    root = settings.results_dir.resolve()
    try:
        path = (root / key).resolve()
    except (OSError, ValueError):
        return None
    if path == root or not path.is_relative_to(root) or not (path / SPEC_FILE).is_file():
        return None
    return path


def experiment_of(settings: ViewSettings, run_key: str) -> tuple[str, str] | None:
    """``(experiment key, cell id)`` when the run ``run_key`` is a cell of an experiment, else None."""
    parts = run_key.strip("/").split("/")
    if len(parts) < 2:
        return None
    exp_key = "/".join(parts[:-1])
    path = experiment_folder(settings, exp_key)
    if path is None:
        return None
    import json

    # The spec alone (every item page asks): not each cell's files.
    try:
        spec = json.loads((path / SPEC_FILE).read_text(encoding="utf-8"))
        cells = {str(c["cell_id"]) for c in spec["cells"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (exp_key, parts[-1]) if parts[-1] in cells else None


def experiment_url(exp_key: str) -> str:
    from urllib.parse import quote

    return f"/experiment/{quote(exp_key, safe='/-_.~')}"


def across_url(exp_key: str, item_id: str) -> str:
    from urllib.parse import quote

    return f"{experiment_url(exp_key)}/across?item={quote(item_id, safe='')}"


# ---------------------------------------------------------------- the analysis, once per state of the folder


class _Analyses:
    """``analyse_cells`` of each experiment folder, kept while none of its files change (the
    statistics of a large experiment take seconds; a page view should not pay them again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[Path, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def get(self, path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        sig = _signature(path)
        with self._lock:  # one computation at a time: two page views never compute it twice
            hit = self._done.get(path)
            if hit is not None and hit[0] == sig:
                return hit[1]
            result = compute()
            self._done[path] = (sig, result)
            return result


def _signature(path: Path) -> tuple[Any, ...]:
    out: list[Any] = []
    for p in [path / SPEC_FILE, *sorted(path.glob("*/metrics.json")), *sorted(path.glob("*/items.jsonl"))]:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


ANALYSES = _Analyses()


def analyse_experiment(path: Path) -> dict[str, Any]:
    """What ``dialbgm report`` computes for the folder: the same call, with the same workspace
    (for the price table) and defaults, so the figures are the report's."""
    from dialbgm.analysis import analyse_cells, load_folder

    def compute() -> dict[str, Any]:
        spec, cells = load_folder(path)
        return analyse_cells(path, spec, cells, ws=report_workspace())

    return ANALYSES.get(path, compute)


def report_workspace() -> Any:
    """The workspace ``dialbgm report`` would use from here (None when there is none)."""
    from dialbgm.config import find_workspace
    from dialbgm.errors import DialbgmError

    try:
        return find_workspace()
    except DialbgmError:
        return None


def figures_css() -> str:
    """The report's figure styles, nested under the page's figure sections (they style bare
    ``table``/``th``/``td``, which must not restyle the rest of the app's pages)."""
    from dialbgm.report import FIGURE_CSS

    return "section.figure{\n" + FIGURE_CSS + "}\n"
