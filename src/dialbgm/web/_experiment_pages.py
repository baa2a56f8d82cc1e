"""The routes of the experiment page and of an item followed across cells (see :mod:`._experiment`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dialbgm.web._experiment import (
    FIGURES_CSS_PATH,
    across_url,
    analyse_experiment,
    experiment_folder,
    figures_css,
    item_url,
)
from dialbgm.web._settings import ViewSettings

Page = Callable[..., Any]
"""The app's page renderer: ``page(template, status=200, **context) -> Response``."""


def experiment_routes(settings: ViewSettings, page: Page) -> list[Any]:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def not_found(message: str) -> Response:
        return page("error.html", status=404, title="Not found", message=message)  # type: ignore[no-any-return]

    # Plain functions: Starlette runs them in its thread pool, so an experiment's statistics
    # (seconds, the first time) never hold up the other requests.
    def experiment_page(request: Request) -> Response:
        key = request.path_params["key"]
        path = experiment_folder(settings, key)
        if path is None:
            return not_found("No experiment folder there.")
        return page("experiment.html", **experiment_context(path, key))  # type: ignore[no-any-return]

    def across_page(request: Request) -> Response:
        key = request.path_params["key"]
        path = experiment_folder(settings, key)
        item_id = request.query_params.get("item", "").strip()
        if path is None:
            return not_found("No experiment folder there.")
        if not item_id:
            return not_found("No item named (?item=ID).")
        return page("across.html", **across_context(path, key, item_id))  # type: ignore[no-any-return]

    def css(request: Request) -> Response:
        return Response(figures_css(), media_type="text/css")

    return [
        Route(FIGURES_CSS_PATH, css),
        Route("/experiment/{key:path}/across", across_page, name="across"),
        Route("/experiment/{key:path}", experiment_page, name="experiment"),
    ]


def experiment_context(path: Path, key: str) -> dict[str, Any]:
    from markupsafe import Markup

    from dialbgm.analysis import data_warning, experiment_entry
    from dialbgm.report import figure_sections

    entry = experiment_entry(path, key)
    sections: list[tuple[str, str, Any]] = []
    warning = None
    if entry.readable:
        result = analyse_experiment(path)
        # The report's own HTML, built by its figure functions, which escape every text they
        # take from data and configs: marked safe here, once, as report.html includes it.
        sections = [(k, title, Markup(html)) for k, title, html in figure_sections(result)]
        warning = data_warning(result.get("data") or [])
    ids = _item_ids(max((c for c in entry.cells if c.readable), key=lambda c: c.n_items or 0, default=None))
    return {
        "title": f"Experiment {entry.name}",
        "entry": entry,
        "key": key,
        "sections": sections,
        "warning": warning,
        "item_ids": ids,
        "across_base": f"/experiment/{key}/across",
        "figures_css": FIGURES_CSS_PATH,
    }


def _item_ids(cell: Any) -> list[str]:
    if cell is None:
        return []
    import json

    out = []
    with (cell.path / "items.jsonl").open(encoding="utf-8", newline="\n") as f:
        for line in f:
            if line.strip():
                out.append(str(json.loads(line)["item_id"]))
    return out


def across_context(path: Path, key: str, item_id: str) -> dict[str, Any]:
    from dialbgm.analysis import experiment_entry, item_across_cells

    entry = experiment_entry(path, key)
    across = item_across_cells(path, item_id)
    human = across.human_ranks
    present = [c for c in across.cells if c.present]
    item = _data_item(present[0].path if present else None, item_id)
    captions = {c.id: c.caption for c in item.candidates} if item is not None else {}
    candidates = sorted(human, key=lambda c: (human[c], c)) or sorted(
        {cid for c in present for cid in ((c.item or {}).get("scores") or {})}
    )
    return {
        "title": f"{item_id} across {entry.name}",
        "entry": entry,
        "key": key,
        "item_id": item_id,
        "across": across,
        "item": item,
        "human": human,
        "captions": captions,
        "candidates": candidates,
        "cells": [
            {
                "c": c,
                "rel": f"{key}/{c.cell_id}",
                "url": item_url(f"{key}/{c.cell_id}", item_id),
                "run_url": f"/run/{key}/{c.cell_id}",
                "scores": (c.item or {}).get("scores") or {},
                "metrics": (c.item or {}).get("metrics") or {},
                "top": c.top,
            }
            for c in across.cells
        ],
        "across_url": across_url,
    }


# ---------------------------------------------------------------- the item's dialogue and captions

_DATA_LOCK = threading.Lock()
_DATA: dict[tuple[str, int], Any] = {}


def _data_item(run_dir: Path | None, item_id: str) -> Any:
    """The item as the data file holds it, only while that file is the one the run read (an
    edited file would show other dialogues and captions beside the scores)."""
    if run_dir is None:
        return None
    import json

    from dialbgm.data import load_dataset
    from dialbgm.errors import DialbgmError

    try:
        dataset = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("dataset") or {}
        data_path = Path(dataset["path"])
        key = (str(data_path), data_path.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with _DATA_LOCK:
        ds = _DATA.get(key)
        if ds is None:
            try:
                ds = load_dataset(data_path)
            except (DialbgmError, OSError):
                return None
            _DATA.clear()  # one data file kept: the viewer shows one experiment at a time
            _DATA[key] = ds
    if ds.sha256 != dataset.get("sha256"):
        return None
    try:
        return ds.get(item_id)
    except KeyError:
        return None
