"""Experiment files: judges × factors crossed into cells, each cell one cached run (what an
experiment *is*; running its cells is :mod:`dialbgm.run._cells`).

An experiment file (``experiments/NAME.toml``)::

    name = "offline-demo"            # optional; default: the file's stem
    baseline = "random"              # optional: a cell id every other cell is compared with
    pairs = [["local__cot=false", "local__cot=true"]]   # optional explicit comparisons

    [data]
    path = "data/sample.jsonl"       # relative to the workspace root
    limit = 40                       # optional

    [judges.local]                   # a judge file name (or any label, with judge = "FILE")
    limit = 8                        # optional, this judge's own item limit
    cot = [false, true]              # a list = a factor, its elements the levels
    few_shot = [0, 2]
    max_tokens = 256                 # a scalar = a fixed setting of every cell of this judge
    [judges.local.params]
    temperature = [0.0, 0.7]         # params.* and weights.* may be factors too

Every judge's factors are crossed fully; each combination is a *cell*, run with those settings
as overrides into ``results/experiments/NAME/CELL_ID/``. Cells share the response cache, so a
re-run, or a new level, only calls for what is not cached yet.
"""

from __future__ import annotations

import itertools
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.config._config import check_recordable, load_judge
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError

_RESERVED = ("judge", "limit")
_SAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


class ExperimentError(ConfigError):
    """An experiment file is missing or malformed (exit status 2, nothing run)."""


@dataclass(frozen=True)
class Cell:
    cell_id: str
    label: str
    """The judge's key in the experiment file."""
    judge: str
    """The judge file (judges/JUDGE.toml)."""
    levels: dict[str, Any]
    """The factor levels that define this cell (what its id spells)."""
    overrides: dict[str, Any]
    """Everything passed to the run: fixed settings and levels."""
    limit: int | None


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    data_path: Path
    limit: int | None
    cells: list[Cell]
    baseline: str | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    description: str = ""
    batch: bool = False
    """Send every cell's uncached calls through its provider's batch API (``compare --batch``)."""

    def comparisons(self) -> list[tuple[str, str]]:
        """Explicit pairs first, then every cell against the baseline; (A, B) reads "B minus A"."""
        out = list(self.pairs)
        if self.baseline is not None:
            out += [(self.baseline, c.cell_id) for c in self.cells if c.cell_id != self.baseline]
        if not out and len(self.cells) > 1:
            # Neither given: the first cell is the reference, so a comparison is always written.
            first = self.cells[0].cell_id
            out = [(first, c.cell_id) for c in self.cells[1:]]
        return list(dict.fromkeys(out))  # de-duplicated, first occurrence kept

    def out_dir(self, ws: Workspace) -> Path:
        return ws.results_dir / "experiments" / self.name

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.cell_id == cell_id:
                return c
        raise KeyError(cell_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": str(self.path),
            "description": self.description,
            "data": {"path": str(self.data_path), "limit": self.limit},
            "baseline": self.baseline,
            "pairs": [list(p) for p in self.pairs],
            "comparisons": [list(p) for p in self.comparisons()],
            "cells": [asdict(c) for c in self.cells],
        }


def format_level(value: Any) -> str:
    """A level as it appears in a cell id: TOML-like, and safe as a folder name."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ""))
    return _SAFE.sub("-", text).strip("-") or "_"


def cell_id(label: str, levels: dict[str, Any]) -> str:
    return "__".join([_SAFE.sub("-", label), *(f"{k}={format_level(v)}" for k, v in levels.items())])


def resolve_experiment_path(ws: Workspace, arg: str | Path) -> Path:
    """A path as given, else ``experiments/ARG.toml`` in the workspace, else in the built-ins."""
    p = Path(arg)
    if p.exists():
        return p
    if ws.found and (ws.root / p).exists():
        return ws.root / p
    for rel in (f"experiments/{arg}.toml", f"experiments/{arg}"):
        if found := ws.find(rel):
            return found
    looked = " and ".join(str(d) for d in ws.where("experiments")) or "no experiments/ folder"
    raise ExperimentError(f"{arg}: no such experiment file (also looked in {looked})")


def load_experiment(ws: Workspace, arg: str | Path) -> Experiment:
    path = resolve_experiment_path(ws, arg)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise ExperimentError(f"{path}: cannot read ({e.strerror})") from None
    return parse_experiment(ws, raw, path)


def _fail(path: Path, key: str, message: str) -> ExperimentError:
    return ExperimentError(f"{path}: {key}: {message}")


def _limit(value: Any, path: Path, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(path, key, f"must be a whole number >= 1, got {value!r}")
    return value


def _folder_name(value: str) -> bool:
    """Usable as one folder under results/experiments/: "." and ".." would be another folder."""
    return value not in (".", "..")


def parse_experiment(ws: Workspace, raw: dict[str, Any], path: Path) -> Experiment:
    try:
        check_recordable(raw, str(path))
    except ConfigError as e:
        raise ExperimentError(str(e)) from None
    known = {"name", "description", "data", "judges", "baseline", "pairs", "batch"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name or _SAFE.search(name) or not _folder_name(name):
        raise _fail(path, "name", f"must be a non-empty name of letters, digits, '.', '_', '-', got {name!r}")
    data = raw.get("data")
    if not isinstance(data, dict) or "path" not in data:
        raise _fail(path, "data.path", "missing (the data file to evaluate on)")
    bad = sorted(set(data) - {"path", "limit"})
    if bad:
        raise _fail(path, f"data.{bad[0]}", "unknown key (known: path, limit)")
    if not isinstance(data["path"], str):
        raise _fail(path, "data.path", "must be a string")
    data_path = ws.resolve(data["path"], origin=path)
    if not data_path.is_file():
        raise _fail(path, "data.path", f"{data_path}: {'is a folder' if data_path.is_dir() else 'no such file'}")
    limit = _limit(data.get("limit"), path, "data.limit")
    judges = raw.get("judges")
    if not isinstance(judges, dict) or not judges:
        raise _fail(path, "judges", "missing: add at least one [judges.NAME] table")
    cells: list[Cell] = []
    for label, table in judges.items():
        cells.extend(_cells_of(ws, path, label, table, limit))
    ids = [c.cell_id for c in cells]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise _fail(path, "judges", f"two cells share the id {dupes[0]!r}; give each judge its own label")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in ids:
        raise _fail(path, "baseline", f"{baseline!r} is not a cell; cells: {', '.join(ids)}")
    pairs: list[tuple[str, str]] = []
    raw_pairs = raw.get("pairs", [])
    if not isinstance(raw_pairs, list):
        raise _fail(path, "pairs", "must be a list of [A, B] cell-id pairs")
    for k, pair in enumerate(raw_pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise _fail(path, f"pairs[{k}]", f"must be [A, B] (two cell ids), got {pair!r}")
        for x in pair:
            if x not in ids:
                raise _fail(path, f"pairs[{k}]", f"{x!r} is not a cell; cells: {', '.join(ids)}")
        if pair[0] == pair[1]:
            raise _fail(path, f"pairs[{k}]", "compares a cell with itself")
        pairs.append((pair[0], pair[1]))
    description = raw.get("description", "")
    batch = raw.get("batch", False)
    if not isinstance(batch, bool):
        raise _fail(path, "batch", f"must be true or false, got {batch!r}")
    return Experiment(name, path, data_path, limit, cells, baseline, pairs, str(description), batch)


def _cells_of(ws: Workspace, path: Path, label: Any, table: Any, data_limit: int | None) -> list[Cell]:
    key = f"judges.{label}"
    if not isinstance(table, dict):
        raise _fail(path, key, "must be a table ([judges.NAME])")
    judge = table.get("judge", label)
    if not isinstance(judge, str):
        raise _fail(path, f"{key}.judge", "must be a judge name")
    limit = _limit(table.get("limit", data_limit), path, f"{key}.limit")
    fixed: dict[str, Any] = {}
    factors: dict[str, list[Any]] = {}
    for name, value in _flatten(table, path, key):
        if isinstance(value, list):
            if not value:
                raise _fail(path, f"{key}.{name}", "a factor needs at least one level")
            levels_seen = [json.dumps(v, sort_keys=True) for v in value]
            if len(set(levels_seen)) != len(levels_seen):
                raise _fail(path, f"{key}.{name}", f"repeated level in {value!r}")
            factors[name] = value
        else:
            fixed[name] = value
    cells = []
    for combo in itertools.product(*factors.values()):
        levels = dict(zip(factors, combo, strict=True))
        overrides = {**fixed, **levels}
        try:
            load_judge(ws, judge, overrides)
        except ConfigError as e:
            where = f"{key} ({', '.join(f'{k}={v!r}' for k, v in levels.items())})" if levels else key
            raise ExperimentError(f"{path}: {where}: {e}") from None
        cid = cell_id(str(label), levels)
        if not _folder_name(cid):
            raise _fail(path, key, f"the cell id {cid!r} cannot be a folder name; rename the judge's label")
        cells.append(Cell(cid, str(label), judge, levels, overrides, limit))
    return cells


def _flatten(table: dict[str, Any], path: Path, key: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in table.items():
        if name in _RESERVED:
            continue
        if isinstance(value, dict):
            if name not in ("params", "weights"):
                raise _fail(path, f"{key}.{name}", "only params and weights may be tables")
            out.extend((f"{name}.{sub}", v) for sub, v in value.items())
        else:
            out.append((name, value))
    return out
