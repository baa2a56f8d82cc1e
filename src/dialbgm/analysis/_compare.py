"""Compare the cells of an experiment (or two runs) from their folders, without any call.

Everything is read from the run folders (manifest.json, metrics.json, items.jsonl, units.jsonl);
each part of the comparison has its own module:

- :mod:`._cells`: a run folder as a cell, and when two cells may be paired;
- :mod:`._leaderboard`: each metric with its 95% interval, items scored, items lost to parse and
  to transport failures; the bias diagnostics;
- :mod:`._comparisons`: paired comparisons (B minus A) on the items that succeeded in *both*
  cells, with a paired bootstrap interval, a sign-flip permutation p-value, Holm's adjustment over
  every test of the comparison, and the difference the sample could detect;
- :mod:`._agreement`: mean per-item Kendall tau-b between every two cells (and each cell vs human);
- :mod:`._cost`: provider-reported tokens priced with the versioned price table, and what the cache saved;
- :mod:`._diff`: what changed between two runs.

This module puts them together (:func:`analyse`) and writes comparison.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.analysis._agreement import agreement
from dialbgm.analysis._cells import CellData, load_folder
from dialbgm.analysis._comparisons import adjust_family, compare_pair
from dialbgm.analysis._cost import cost
from dialbgm.analysis._human import human_block
from dialbgm.analysis._leaderboard import bias_table, leaderboard
from dialbgm.errors import DialbgmError

COMPARISON_FILE = "comparison.json"


def analyse(
    path: Path,
    *,
    ws: Any = None,
    n_flips: int = 10_000,
    n_resamples: int = 2000,
    seed: int = 0,
    by_content: bool = False,
) -> dict[str, Any]:
    """The full comparison of an experiment (or one run) folder, as a JSON-ready dict."""
    spec, cells = load_folder(path)
    return analyse_cells(
        path, spec, cells, ws=ws, n_flips=n_flips, n_resamples=n_resamples, seed=seed, by_content=by_content
    )


def analyse_cells(
    path: Path,
    spec: dict[str, Any] | None,
    cells: list[CellData],
    *,
    ws: Any = None,
    n_flips: int = 10_000,
    n_resamples: int = 2000,
    seed: int = 0,
    by_content: bool = False,
) -> dict[str, Any]:
    from dialbgm.config import PriceTable, load_prices
    from dialbgm.metrics import one_blas_thread

    with one_blas_thread():
        by_id = {c.cell_id: c for c in cells}
        pairs = [tuple(p) for p in spec["comparisons"]] if spec else []
        comps = [
            compare_pair(by_id[a], by_id[b], n_flips=n_flips, n_resamples=n_resamples, seed=seed, by_content=by_content)
            for a, b in pairs
        ]
        family = adjust_family(comps)
        prices = load_prices(ws) if ws is not None else PriceTable("none", "-", None)
        human = human_block(cells, n_flips=n_flips, n_resamples=n_resamples, seed=seed, by_content=by_content)
        result = {
            "folder": str(path),
            "experiment": spec,
            "leaderboard": leaderboard(cells),
            "comparisons": comps,
            "family": family,
            "agreement": agreement(cells, by_content=by_content),
            "data": data_files(cells),
            "pair_by_content": by_content,
            "bias": bias_table(cells),
            "cost": cost(cells, prices),
            "prices": {"version": prices.version, "date": prices.date, "file": prices.path},
        }
        if human is not None:  # only for annotated data: other comparisons stay as they were
            result["human"] = human
        return result


def data_files(cells: list[CellData]) -> list[dict[str, Any]]:
    """Each data file the cells read, and whether it is still the file they read: a report shows
    dialogues and captions from it only while its sha256 is the one recorded."""
    from dialbgm.run import file_sha256

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in cells:
        ds = c.manifest.get("dataset") or {}
        key = (str(ds.get("path")), str(ds.get("sha256")))
        if key in out:
            out[key]["cells"].append(c.cell_id)
            continue
        try:
            now: str | None = file_sha256(Path(key[0]))
        except DialbgmError:
            now = None
        status = "missing" if now is None else ("unchanged" if now == key[1] else "changed")
        out[key] = {"path": key[0], "sha256": key[1], "sha256_now": now, "status": status, "cells": [c.cell_id]}
    return list(out.values())


def data_warning(files: list[dict[str, Any]]) -> str | None:
    """A sentence for the user when a data file is gone or changed since the run, else None."""
    bad = [f for f in files if f["status"] != "unchanged"]
    if not bad:
        return None
    return "; ".join(
        f"the data file {f['path']} "
        + (
            "is gone"
            if f["status"] == "missing"
            else f"changed since the run (sha256 {f['sha256'][:12]} then, {str(f['sha256_now'])[:12]} now)"
        )
        + ": the report's metrics come from the run folder, but its dialogues and captions are not shown"
        for f in bad
    )


def write_comparison(path: Path, result: dict[str, Any]) -> Path:
    from dialbgm.storage import write_json, writing

    out = path / COMPARISON_FILE
    with writing(out):
        write_json(out, result)
    return out
