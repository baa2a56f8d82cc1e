"""One item in every cell of an experiment: each cell's judgements, top pick, scores and status.

Items pair by id, as the comparison pairs them; a cell that lacks the item says so, and cells
whose rows for the id carry different content hashes (run on different data files) are flagged,
since the same id need not be the same item there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.analysis._catalog import SPEC_FILE
from dialbgm.analysis._readable import read_run_folder

Rows = Callable[[Path, str], tuple[dict[str, Any] | None, list[dict[str, Any]]]]
"""``(run folder, item id) -> (its items.jsonl row or None, its units.jsonl rows)``."""


@dataclass(frozen=True)
class CellItem:
    cell_id: str
    path: Path
    levels: dict[str, Any]
    state: str
    """The cell folder's state (:class:`dialbgm.analysis.RunFolder`); ``not_run`` when it has no folder."""
    reason: str | None = None
    item: dict[str, Any] | None = None
    """The item's row of the cell's items.jsonl; None when the cell lacks the item (or cannot be read)."""
    units: list[dict[str, Any]] = field(default_factory=list)
    judge: str | None = None

    @property
    def present(self) -> bool:
        return self.item is not None

    @property
    def top(self) -> list[str]:
        """The candidate(s) with the item's highest aggregated score (several on a tie)."""
        scores = (self.item or {}).get("scores") or {}
        if not scores:
            return []
        best = max(scores.values())
        return sorted(c for c, s in scores.items() if s == best)


@dataclass(frozen=True)
class ItemAcross:
    item_id: str
    cells: list[CellItem]
    mismatched: list[str]
    """Cells whose row for this id has another content hash than the first cell that has one."""

    @property
    def human_ranks(self) -> dict[str, int]:
        for c in self.cells:
            ranks = (c.item or {}).get("human_ranks")
            if ranks:
                return dict(ranks)
        return {}


def item_across_cells(exp_dir: Path, item_id: str, *, rows: Rows | None = None) -> ItemAcross:
    """``item_id`` in every cell of the experiment in ``exp_dir``, in the spec's cell order.

    ``rows`` reads one item of one run folder (the viewer passes its index); by default the
    folder's files are scanned, parsing only the lines that name the item.
    """
    spec = json.loads((exp_dir / SPEC_FILE).read_text(encoding="utf-8"))
    read = rows or scan_rows
    cells: list[CellItem] = []
    for c in spec["cells"]:
        cid, levels = str(c["cell_id"]), dict(c.get("levels") or {})
        d = exp_dir / cid
        if not d.is_dir():
            cells.append(CellItem(cid, d, levels, "not_run", "this cell has not been run"))
            continue
        folder = read_run_folder(d)
        if not folder.readable or folder.manifest is None:
            cells.append(CellItem(cid, d, levels, folder.state, folder.reason))
            continue
        item, units = read(d, item_id)
        judge = str(folder.manifest["config"]["judge"]["name"])
        cells.append(CellItem(cid, d, levels, "ok", None, item, units, judge))
    hashes = [(c.cell_id, (c.item or {}).get("item_sha256")) for c in cells]
    known = [(cid, h) for cid, h in hashes if isinstance(h, str)]
    mismatched = [cid for cid, h in known if h != known[0][1]] if known else []
    return ItemAcross(item_id, cells, mismatched)


def scan_rows(run_dir: Path, item_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The item's row and unit rows, read from the run's files."""
    item = next(iter(_matching(run_dir / "items.jsonl", item_id)), None)
    return item, _matching(run_dir / "units.jsonl", item_id)


def _matching(path: Path, item_id: str) -> list[dict[str, Any]]:
    # Most lines name other items: test for the id's JSON text before parsing a line.
    needles = {json.dumps(item_id, ensure_ascii=False), json.dumps(item_id)}
    out = []
    with path.open(encoding="utf-8", newline="\n") as f:
        for line in f:
            if any(n in line for n in needles):
                row = json.loads(line)
                if isinstance(row, dict) and row.get("item_id") == item_id:
                    out.append(row)
    return out
