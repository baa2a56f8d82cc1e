"""A finished cell (run folder) as the comparison reads it, and the rule for pairing two of them.

Everything is read from the run folder: manifest.json, metrics.json and items.jsonl up front;
units.jsonl only when a reader needs the replies (the report's raw replies, the cost's tokens).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dialbgm.errors import ResultsError

_V = TypeVar("_V")
RUN_FILES = ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json")
"""What a comparison reads from a run folder (a run may hold more files; these are the ones needed)."""


@dataclass
class CellData:
    cell_id: str
    path: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    items: dict[str, dict[str, Any]]
    levels: dict[str, Any] = field(default_factory=dict)
    _units: list[dict[str, Any]] | None = None
    _ok_items: dict[str, dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def ok_items(self) -> dict[str, dict[str, Any]]:
        # Computed once: every comparison and agreement pair of a cell asks for it.
        if self._ok_items is None:
            self._ok_items = {k: r for k, r in self.items.items() if r["status"] == "ok"}
        return self._ok_items

    @property
    def units(self) -> list[dict[str, Any]]:
        if self._units is None:
            self._units = read_jsonl(self.path / "units.jsonl")
        return self._units

    @property
    def units_read(self) -> list[dict[str, Any]] | None:
        """The units if they have been read already (a reader that needs only some fields of each
        unit may then skip reading the file again)."""
        return self._units

    @property
    def judge(self) -> str:
        return str(self.manifest["config"]["judge"]["name"])

    @property
    def data_sha256(self) -> str | None:
        value = (self.manifest.get("dataset") or {}).get("sha256")
        return value if isinstance(value, str) else None

    def item_hashes(self) -> dict[str, str]:
        """Each item's content hash: from items.jsonl, or (a run from before they were recorded)
        from its data file, if that file is still the one the run read."""
        rows = self.items.values()
        if all(isinstance(r.get("item_sha256"), str) for r in rows):
            return {k: str(r["item_sha256"]) for k, r in self.items.items()}
        from dialbgm.data import load_dataset
        from dialbgm.errors import DialbgmError
        from dialbgm.run import item_sha256

        path = (self.manifest.get("dataset") or {}).get("path")
        try:
            ds = load_dataset(Path(path)) if path else None
        except DialbgmError:
            ds = None
        if ds is None or ds.sha256 != self.data_sha256:
            raise ResultsError(
                f"{self.path}: cannot compare its items by content: its items.jsonl predates per-item hashes "
                f"and its data file {path} is gone or changed since the run"
            )
        return {i.id: item_sha256(i) for i in ds}


def pairable(a: CellData, b: CellData, *, by_content: bool = False) -> set[str] | None:
    """The item ids on which two runs may be paired: None (every id) when both read the same data
    file; with ``by_content``, the ids whose content is identical in both; otherwise a refusal.

    Pairing by id alone would compare different items as if they were the same whenever the two
    runs read different data files.
    """
    sa, sb = a.data_sha256, b.data_sha256
    if sa is not None and sa == sb:
        return None
    if not by_content:
        what = (
            f"were run on different data files (sha256 {str(sa)[:12]} vs {str(sb)[:12]})"
            if sa and sb
            else "do not both record their data file's sha256"
        )
        raise ResultsError(
            f"{a.path} and {b.path} {what}: an item id need not be the same item in both, so they are not "
            "paired by id. Run both on one data file, or pass --pair-by-content to compare only the items "
            "whose content is identical in both."
        )
    ha, hb = a.item_hashes(), b.item_hashes()
    return {i for i, h in ha.items() if hb.get(i) == h}


def pairing_note(a: CellData, b: CellData, allowed: set[str] | None) -> dict[str, Any]:
    """How two runs were paired, for the output: same data file, or by content with counts."""
    if allowed is None:
        return {"by": "same data file", "data_sha256": a.data_sha256}
    shared = set(a.items) & set(b.items)
    return {
        "by": "identical item content",
        "data_sha256": [a.data_sha256, b.data_sha256],
        "n_identical": len(shared & allowed),
        "n_same_id_different_content": len(shared - allowed),
    }


def only_keys(items: dict[str, _V], allowed: set[str] | None) -> dict[str, _V]:
    return items if allowed is None else {k: r for k, r in items.items() if k in allowed}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_json(path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return obj


def load_cell(path: Path, cell_id: str | None = None, levels: dict[str, Any] | None = None) -> CellData:
    """One finished run folder as a cell of a comparison (not :func:`dialbgm.load_run`'s tables)."""
    missing = [f for f in RUN_FILES if not (path / f).exists()]
    if missing:
        raise ResultsError(f"{path}: not a complete run folder (missing {', '.join(missing)})")
    items = {r["item_id"]: r for r in read_jsonl(path / "items.jsonl")}
    return CellData(
        cell_id or path.name,
        path,
        _read_json(path / "manifest.json"),
        _read_json(path / "metrics.json"),
        items,
        dict(levels or {}),
    )


def load_folder(path: Path) -> tuple[dict[str, Any] | None, list[CellData]]:
    """An experiment folder (experiment.json + one folder per cell) or a single run folder."""
    from dialbgm.run import SPEC_FILE, read_spec

    if (path / SPEC_FILE).exists():
        spec = read_spec(path)
        cells = []
        for c in spec["cells"]:
            d = path / c["cell_id"]
            if not (d / "metrics.json").exists():
                raise ResultsError(f"{d}: cell {c['cell_id']} has not been run; run `dialbgm compare` first")
            cells.append(load_cell(d, c["cell_id"], c["levels"]))
        return spec, cells
    if (path / "manifest.json").exists():
        return None, [load_cell(path)]
    raise ResultsError(f"{path}: neither an experiment folder ({SPEC_FILE}) nor a run folder (manifest.json)")
