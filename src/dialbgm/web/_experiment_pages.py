"""The routes of the experiment page and of an item followed across cells (see :mod:`._experiment`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dialbgm.web._experiment import (
    FIGURES_CSS_PATH,
    across_url,
    analyse_experiment,
    experiment_folder,
    experiment_of,
    experiment_url,
    figures_css,
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
        return page("across.html", **across_context(settings, path, key, item_id))  # type: ignore[no-any-return]

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
    from dialbgm.web._pages import run_url

    return {
        "title": f"Experiment {entry.name}",
        "run_url": run_url,
        "entry": entry,
        "key": key,
        "sections": sections,
        "warning": warning,
        "item_ids": ids,
        "across_base": f"/experiment/{key}/across",
        "figures_css": FIGURES_CSS_PATH,
    }


def _item_ids(cell: Any) -> list[str]:
    """The item ids of a cell, for the follow box: read from the head of each items.jsonl row
    (its first field), not by parsing rows that can hold every judgement of a long run."""
    if cell is None:
        return []
    import json
    import re

    head = re.compile(r'\{"item_id": ("(?:[^"\\]|\\.)*")')
    out = []
    with (cell.path / "items.jsonl").open(encoding="utf-8", newline="\n") as f:
        for line in f:
            if not line.strip():
                continue
            m = head.match(line)
            out.append(str(json.loads(m.group(1)) if m else json.loads(line)["item_id"]))
    return out


def across_context(settings: ViewSettings, path: Path, key: str, item_id: str) -> dict[str, Any]:
    import json

    from dialbgm.analysis import experiment_entry, item_across_cells
    from dialbgm.web._audio import playable
    from dialbgm.web._index import data_path_of
    from dialbgm.web._pages import NotFound, audio_url, index_of, item_url, run_url

    contents: list[Any] = []
    audio: dict[str, str] = {}

    def rows(run_dir: Path, wanted: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        # The run pages' own index of each cell: one item's rows without reading the whole run.
        try:
            index = index_of(settings, f"{key}/{run_dir.name}")
        except NotFound:
            return None, []
        row = index.item_row(wanted)
        if row is None:
            return None, []
        if row["content"] and not contents:
            contents.append(json.loads(row["content"]))
            # The clips as the first cell with the data file had them (the run pages' own rule
            # of which files may be served).
            data_path = data_path_of(index.meta()["manifest"])
            for cand in contents[0]["candidates"]:
                if playable(index, data_path.parent if data_path else None, wanted, cand["id"]):
                    audio[cand["id"]] = audio_url(f"{key}/{run_dir.name}", wanted, cand["id"])
        return index.item_record(row), index.units(wanted)

    entry = experiment_entry(path, key)
    across = item_across_cells(path, item_id, rows=rows)
    human = across.human_ranks
    present = [c for c in across.cells if c.present]
    # The dialogue and captions once, from the first cell whose data file is still the one it read.
    content = contents[0] if contents else None
    captions = {c["id"]: c.get("caption") for c in content["candidates"]} if content else {}
    candidates = sorted(human, key=lambda c: (human[c], c)) or sorted(
        {cid for c in present for cid in ((c.item or {}).get("scores") or {})}
    )
    return {
        "title": f"{item_id} across {entry.name}",
        "experiment_url": experiment_url(key),
        "entry": entry,
        "key": key,
        "item_id": item_id,
        "across": across,
        "item": content,
        "human": human,
        "captions": captions,
        "audio": audio,
        "candidates": candidates,
        "cells": [
            {
                "c": c,
                "url": item_url(f"{key}/{c.cell_id}", item_id),
                "run_url": run_url(f"{key}/{c.cell_id}"),
                "scores": (c.item or {}).get("scores") or {},
                "metrics": (c.item or {}).get("metrics") or {},
                "top": c.top,
            }
            for c in across.cells
        ],
    }


def experiment_link(settings: ViewSettings, run_key: str) -> dict[str, str] | None:
    """``{"url", "key", "cell"}`` of the experiment the run ``run_key`` is a cell of, if any."""
    found = experiment_of(settings, run_key)
    return {"url": experiment_url(found[0]), "key": found[0], "cell": found[1]} if found else None


def across_link(settings: ViewSettings, run_key: str, item_id: str) -> str | None:
    """The address of ``item_id`` across the cells of the experiment ``run_key`` is a cell of, if any."""
    found = experiment_of(settings, run_key)
    return across_url(found[0], item_id) if found else None


def listing_extra(settings: ViewSettings) -> dict[str, Any]:
    """What the run list adds from the results catalog: the experiments (newest first) and the
    folders that cannot be shown, each with the reason and what to do."""
    from dialbgm.analysis import catalog

    entries = catalog(settings.results_dir)
    return {
        "experiments": [e for e in entries if e.kind == "experiment"],
        # The run list already shows (with the reason) the folders holding a manifest.
        "unreadable": [
            e for e in entries if e.kind == "run" and not e.readable and not (e.path / "manifest.json").is_file()
        ],
        "experiment_url": experiment_url,
    }
