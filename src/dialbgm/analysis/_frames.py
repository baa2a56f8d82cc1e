"""A run or an experiment folder as tables: ``load_run(path).items`` is a pandas DataFrame.

The files of a run folder stay the record (``units.jsonl``, ``items.jsonl``, ``metrics.json``,
``manifest.json``); this module only reads them, so a table can never disagree with them. Every
table is also available as plain records (``Run.records("units")``) for users without pandas in
their own code, and as the rows of ``dialbgm export``.

Columns
-------
``items``  one row per item: ``item_id``, ``status``, ``error``, ``n_candidates``, ``n_units``, one
           column per metric (``hit_at_1`` ... ``spearman``; empty for a failed item), and the
           nested ``scores`` / ``human_ranks`` (candidate id → value).
``units``  one row per call: every field of ``units.jsonl``; nested fields (``shown``, ``scores``,
           ``usage``, ``variant``...) stay Python objects.
``metrics`` one row per metric: ``metric``, ``mean``, ``ci_low``, ``ci_high``, ``chance``, ``n_items``.

An experiment adds ``cell_id`` (and one column per factor level) in front of each table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dialbgm.errors import ResultsError
from dialbgm.metrics import METRICS

if TYPE_CHECKING:
    import pandas as pd

Table = Literal["items", "units", "metrics"]
TABLES: tuple[Table, ...] = ("items", "units", "metrics")
_RUN_FILES = ("manifest.json", "metrics.json", "items.jsonl", "units.jsonl")
_SPEC_FILE = "experiment.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    return obj


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        f = path.open(encoding="utf-8", newline="\n")
    except OSError as e:
        raise ResultsError(f"{path}: cannot be read ({e})") from None
    with f:
        # Split on "\n" only: a reply may hold U+2028, which str.splitlines would cut.
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ResultsError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ResultsError(f"{path}:{lineno}: expected a JSON object per line")
            yield row


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a core dependency
        raise ResultsError("tables need pandas: pip install pandas (or use .records(...))") from None
    return pandas


class _Tables:
    """The three tables of a run or an experiment, each built from ``records`` the first time."""

    def records(self, table: Table) -> list[dict[str, Any]]:
        raise NotImplementedError

    def columns(self, table: Table) -> list[str]:
        raise NotImplementedError

    def frame(self, table: Table) -> pd.DataFrame:
        return to_frame(self.records(table), self.columns(table))

    @cached_property
    def items(self) -> pd.DataFrame:
        return self.frame("items")

    @cached_property
    def units(self) -> pd.DataFrame:
        return self.frame("units")

    @cached_property
    def metrics(self) -> pd.DataFrame:
        return self.frame("metrics")


@dataclass(frozen=True)
class Run(_Tables):
    """One run folder, read lazily: a table is built the first time it is asked for."""

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    """``metrics.json`` as written (means, intervals, chance, counts, bias diagnostics)."""
    cell_id: str | None = None
    levels: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The effective config the run was made with (secrets redacted), as hashed."""
        config: dict[str, Any] = self.manifest.get("config", {})
        return config

    @property
    def config_hash(self) -> str | None:
        value = self.manifest.get("config_hash")
        return str(value) if value is not None else None

    @property
    def judge(self) -> str:
        return str(self.config.get("judge", {}).get("name", ""))

    def records(self, table: Table) -> list[dict[str, Any]]:
        """The rows of ``table`` as plain dicts (the rows of the DataFrame of the same name)."""
        if table == "units":
            return list(_iter_jsonl(self.path / "units.jsonl"))
        if table == "items":
            return [_item_record(r) for r in _iter_jsonl(self.path / "items.jsonl")]
        if table == "metrics":
            return _metric_records(self.summary)
        raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")

    def columns(self, table: Table) -> list[str]:
        """The stated leading columns of ``table`` (newer fields follow them)."""
        return list(_COLUMNS[table])


@dataclass(frozen=True)
class Experiment(_Tables):
    """An experiment folder: its spec and one :class:`Run` per cell, in the spec's order."""

    path: Path
    spec: dict[str, Any]
    cells: dict[str, Run]

    @property
    def name(self) -> str:
        return str(self.spec.get("name", self.path.name))

    def records(self, table: Table) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for cell_id, run in self.cells.items():
            front = {"cell_id": cell_id, **{f"level.{k}": v for k, v in run.levels.items()}}
            out.extend({**front, **r} for r in run.records(table))
        return out

    def columns(self, table: Table) -> list[str]:
        return ["cell_id", *(f"level.{k}" for k in self._level_names()), *_COLUMNS[table]]

    def _level_names(self) -> list[str]:
        names: list[str] = []
        for run in self.cells.values():
            names.extend(k for k in run.levels if k not in names)
        return names


_ITEM_COLUMNS = ["item_id", "status", "error", "n_candidates", "n_units", *METRICS, "scores", "human_ranks"]
_METRIC_COLUMNS = ["metric", "mean", "ci_low", "ci_high", "chance", "n_items"]
_COLUMNS: dict[str, list[str]] = {"items": _ITEM_COLUMNS, "units": [], "metrics": _METRIC_COLUMNS}


def _item_record(row: dict[str, Any]) -> dict[str, Any]:
    """Metrics lifted to columns of their own; the rest of the row kept as written."""
    metrics = row.get("metrics") or {}
    out = {k: v for k, v in row.items() if k != "metrics"}
    for m in METRICS:
        out[m] = metrics.get(m)
    return out


def _metric_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    ci = summary.get("ci95") or {}
    chance = summary.get("chance") or {}
    rows = []
    for m in METRICS:
        lo_hi = ci.get(m) or [None, None]
        rows.append(
            {
                "metric": m,
                "mean": summary.get(m),
                "ci_low": lo_hi[0],
                "ci_high": lo_hi[1],
                "chance": chance.get(m),
                "n_items": summary.get("n_items"),
            }
        )
    return rows


def to_frame(records: list[dict[str, Any]], front: list[str]) -> pd.DataFrame:
    """A DataFrame of ``records`` with the ``front`` columns first, in that order."""
    pandas = _pandas()
    df: pd.DataFrame = pandas.DataFrame.from_records(records)
    if df.empty and front:
        empty: pd.DataFrame = pandas.DataFrame(columns=front)
        return empty
    # Stated columns first, in their stated order; any others (newer fields) after them.
    first = [c for c in front if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _check_run_folder(path: Path) -> None:
    if not path.is_dir():
        raise ResultsError(f"{path}: not a folder")
    missing = [f for f in _RUN_FILES if not (path / f).is_file()]
    if missing:
        raise ResultsError(f"{path}: not a finished run folder (missing {', '.join(missing)})")


def load_run(path: str | Path, *, cell_id: str | None = None, levels: dict[str, Any] | None = None) -> Run:
    """Read a finished run folder (``results/<run>`` or one cell of an experiment)."""
    p = Path(path)
    _check_run_folder(p)
    return Run(p, _read_json(p / "manifest.json"), _read_json(p / "metrics.json"), cell_id, dict(levels or {}))


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment folder written by ``dialbgm compare``; every cell must have been run."""
    p = Path(path)
    spec_path = p / _SPEC_FILE
    if not spec_path.is_file():
        raise ResultsError(f"{p}: not an experiment folder (no {_SPEC_FILE}); for one run use load_run")
    spec = _read_json(spec_path)
    cells: dict[str, Run] = {}
    for c in spec.get("cells", []):
        cid = str(c["cell_id"])
        d = p / cid
        if not (d / "metrics.json").is_file():
            raise ResultsError(f"{d}: cell {cid} has not been run; run `dialbgm compare` first")
        cells[cid] = load_run(d, cell_id=cid, levels=c.get("levels") or {})
    return Experiment(p, spec, cells)


def load_any(path: str | Path) -> Run | Experiment:
    """An experiment folder when it holds ``experiment.json``, else a run folder."""
    p = Path(path)
    return load_experiment(p) if (p / _SPEC_FILE).is_file() else load_run(p)
