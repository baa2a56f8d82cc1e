"""Experiment files: judges × factors crossed into cells, each cell one cached run.

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

import contextlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dialbgm.config import Workspace
from dialbgm.errors import ConfigError

SPEC_FILE = "experiment.json"
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
    from dialbgm.config import check_recordable

    try:
        check_recordable(raw, str(path))
    except ConfigError as e:
        raise ExperimentError(str(e)) from None
    known = {"name", "description", "data", "judges", "baseline", "pairs"}
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
    return Experiment(name, path, data_path, limit, cells, baseline, pairs, str(description))


def _cells_of(ws: Workspace, path: Path, label: Any, table: Any, data_limit: int | None) -> list[Cell]:
    from dialbgm.config import load_judge

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


# ---------------------------------------------------------------- dry run


@dataclass
class CellPlan:
    cell_id: str
    judge: str
    model: str
    provider_kind: str
    calls: int
    cached: int
    cacheable: bool
    prompt_chars_uncached: int
    max_output_tokens: int | None
    price: Any
    """A :class:`dialbgm.config._prices.Price`, or None when the model has no price in the table."""
    audio_seconds_uncached: float = 0.0
    part: str = "judge"
    """``judge``: the cell's own calls; ``summaries``: the summaries its summarizer must write
    first (its ``cell_id`` is then ``CELL (summaries)`` and ``judge`` the summarizer)."""
    reused: bool = False
    """A finished cell that ``compare`` reuses as it is: nothing to call, whatever the cache holds."""

    @property
    def uncached(self) -> int:
        return self.calls - self.cached

    @property
    def prompt_tokens_est(self) -> int:
        # An estimate (characters / 4, and audio at the highest per-second rate a provider bills),
        # not a tokenizer count: providers tokenise differently.
        from dialbgm.calls import AUDIO_TOKENS_PER_SECOND

        return round(self.prompt_chars_uncached / 4 + self.audio_seconds_uncached * AUDIO_TOKENS_PER_SECOND)

    @property
    def cost_est(self) -> float | None:
        """Upper-bound cost of the uncached calls: estimated input + every reply at its token cap."""
        if self.uncached == 0:
            return 0.0
        if self.price is None:
            return None
        if self.price.local:
            return 0.0
        if self.audio_seconds_uncached:
            return None  # the price table has text rates only; audio input is billed at its own
        out = (self.max_output_tokens or 0) * self.uncached
        return float(self.price.cost(self.prompt_tokens_est, out))


def plan_cells(ws: Workspace, exp: Experiment) -> list[CellPlan]:
    """What running each cell would cost, without calling anything: the same decisions as
    :func:`run_cells` (a reusable cell calls nothing), and the summaries a cell's summarizer
    must write first, each counted once however many cells need it."""
    from dialbgm.calls import ResponseCache
    from dialbgm.config import load_prices

    prices = load_prices(ws)
    states = [cell_state(ws, exp, cell) for cell in exp.cells]
    cache = ResponseCache(ws.cache_dir)
    plans: list[CellPlan] = []
    summary_keys: set[str] = set()
    try:
        for cell, state in zip(exp.cells, states, strict=True):
            if state.reusable is not None:
                plans.append(_reused_plan(cell, state.reusable, prices))
            else:
                plans.extend(_cell_plans(ws, exp, cell, cache, prices, summary_keys))
    finally:
        cache.close()
    return plans


def _reused_plan(cell: Cell, manifest: dict[str, Any], prices: Any) -> CellPlan:
    cfg = manifest.get("config", {})
    kind = str(cfg.get("provider", {}).get("kind", ""))
    model = str(cfg.get("judge", {}).get("model", ""))
    units = int(manifest.get("counts", {}).get("units", 0))
    cacheable = kind != "random"
    calls = units if cacheable else 0
    return CellPlan(
        cell.cell_id, cell.judge, model, kind, calls, calls, cacheable, 0, None, prices.lookup(kind, model), reused=True
    )


def _cell_plans(
    ws: Workspace, exp: Experiment, cell: Cell, cache: Any, prices: Any, summary_keys: set[str]
) -> list[CellPlan]:
    from dialbgm.judging import audio_seconds, text_chars
    from dialbgm.run._runner import prepare

    try:
        prep = prepare(ws, cell.judge, exp.data_path, limit=cell.limit, overrides=cell.overrides, defer_summaries=True)
    except ConfigError as e:
        raise ExperimentError(f"{exp.path}: cell {cell.cell_id}: {e}") from None
    out: list[CellPlan] = []
    try:
        summaries = prep.pending_summaries
        summary_cap = None
        if summaries is not None and summaries.summarizer is not None and summaries.provider is not None:
            sj, sp = summaries.summarizer, summaries.provider
            summary_cap = _cap(sj.params)
            todo = [k for k in summaries.todo if summaries.requests[k].cache_key() not in summary_keys]
            summary_keys.update(summaries.requests[k].cache_key() for k in todo)
            out.append(
                CellPlan(
                    f"{cell.cell_id} (summaries)",
                    sj.name,
                    sj.model,
                    sp.kind,
                    len(summaries.missing),
                    len(summaries.missing) - len(todo),
                    True,
                    sum(text_chars(summaries.requests[k].messages) for k in todo),
                    summary_cap,
                    prices.lookup(sp.kind, sj.model),
                    part="summaries",
                )
            )
        cacheable = bool(prep.backend.cacheable)
        cached = chars = 0
        seconds = 0.0
        calls = len(prep.units) if cacheable else 0
        if cacheable:
            for i, key in enumerate(prep.keys):
                if not prep.is_pending(i) and cache.get_key(key) is not None:
                    cached += 1
                    continue
                messages = prep.request(i).messages
                chars += text_chars(messages)
                seconds += audio_seconds(messages)
                if prep.is_pending(i):
                    # The summary is not written yet: count it at its length cap (an upper bound).
                    chars += 4 * (summary_cap or 0)
        out.append(
            CellPlan(
                cell.cell_id,
                cell.judge,
                prep.judge.model,
                prep.provider.kind,
                calls,
                cached,
                cacheable,
                chars,
                _cap(prep.judge.params),
                prices.lookup(prep.provider.kind, prep.judge.model),
                seconds,
            )
        )
    finally:
        prep.backend.close()
    # The summaries come first: the table reads in the order things would be called.
    return out


def _cap(params: dict[str, Any]) -> int | None:
    cap = params.get("max_tokens", params.get("max_completion_tokens"))
    return cap if isinstance(cap, int) and not isinstance(cap, bool) else None


def budget_problem(plans: list[CellPlan], max_cost: float) -> str | None:
    """Why the uncached calls may exceed ``max_cost`` (USD), or None when they fit."""
    if not (math.isfinite(max_cost) and max_cost >= 0):
        return f"--max-cost must be a finite number >= 0 (USD), got {max_cost!r}"  # NaN would pass any budget
    unknown = [p.cell_id for p in plans if p.uncached and p.cost_est is None]
    if unknown:
        return (
            f"cannot check the budget: no price for cell(s) {', '.join(unknown)} (a model missing from "
            "prices/prices.toml, or audio input, which the table does not price)"
        )
    total = sum(p.cost_est or 0.0 for p in plans)
    if total > max_cost:
        return f"estimated cost of the uncached calls ${total:.4f} exceeds --max-cost ${max_cost:.4f}"
    return None


# ---------------------------------------------------------------- running


CellProgress = Callable[[int, int, Cell], None]


@dataclass
class CellState:
    """What ``compare`` will do with a cell, decided from its folder and :func:`run_identity`."""

    identity: Any
    """The cell's :class:`dialbgm.run._identity.RunIdentity` as it is now."""
    reusable: dict[str, Any] | None
    """The manifest of a finished run that is reused as it is, else None."""
    interrupted: bool
    """A plan and journal of this very config, without the final files: finished like --resume."""


def cell_state(ws: Workspace, exp: Experiment, cell: Cell) -> CellState:
    from dialbgm.run._identity import quick_identity

    try:
        identity = quick_identity(ws, cell.judge, exp.data_path, cell.limit, cell.overrides)
    except ConfigError as e:
        raise ExperimentError(f"{exp.path}: cell {cell.cell_id}: {e}") from None
    out = exp.out_dir(ws) / cell.cell_id
    reusable = _up_to_date(out, identity.results_hash)
    interrupted = (
        reusable is None
        and (out / "plan.json").exists()
        and not (out / "manifest.json").exists()
        and _plan_hash(out) == identity.config_hash  # the cell as it is now, not as it was when interrupted
    )
    return CellState(identity, reusable, interrupted)


def run_cells(ws: Workspace, exp: Experiment, *, progress: CellProgress | None = None) -> list[dict[str, Any]]:
    """Run every cell (from the cache where it can) into the experiment's folder; one row per cell."""
    from dialbgm.run._runner import run_eval
    from dialbgm.storage import write_json, writing

    # Every cell's identity first: a cell whose files are broken fails before any other cell runs.
    states = [cell_state(ws, exp, cell) for cell in exp.cells]
    root = exp.out_dir(ws)
    with writing(root / SPEC_FILE):  # an unwritable results folder is a clear error, not a traceback
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / SPEC_FILE, exp.to_dict())
    rows = []
    for k, (cell, state) in enumerate(zip(exp.cells, states, strict=True)):
        if progress:
            progress(k, len(exp.cells), cell)
        out = root / cell.cell_id
        if state.reusable is not None:
            rows.append(
                {
                    "cell_id": cell.cell_id,
                    "provider_calls": 0,
                    "cache_hits": 0,
                    "computed_locally": 0,
                    "wall_s": 0.0,
                    "reused": True,
                }
            )
            continue
        result = None
        if state.interrupted:
            # An interrupted cell (Ctrl-C, kill) is finished from its own journal, like `eval --resume`;
            # if its configuration changed since, it is started afresh below.
            with contextlib.suppress(ConfigError):
                result = run_eval(ws, cell.judge, exp.data_path, resume=out)
        # force: a cell's folder is the experiment's own; re-running it from the cache refreshes it
        # (after a change of dialbgm or of its scoring code, that re-scores the cached replies).
        result = result or run_eval(
            ws,
            cell.judge,
            exp.data_path,
            out_dir=root / cell.cell_id,
            limit=cell.limit,
            overrides=cell.overrides,
            force=True,
            carried_attempts=_reasked(out, state.identity),
        )
        counts = result.manifest["counts"]
        rows.append(
            {
                "cell_id": cell.cell_id,
                "provider_calls": counts["provider_calls"],
                "cache_hits": counts["cache_hits"],
                "computed_locally": counts.get("computed_locally", 0),
                "wall_s": result.manifest["wall_s"],
            }
        )
    return rows


def _reasked(run_dir: Path, identity: Any) -> dict[str, int]:
    """The units a finished run in ``run_dir`` asked again (``eval --resume --retry-status``), when
    it had this config and these models: unit id → attempt. Running the cell again keeps them."""
    try:
        manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    recorded = manifest.get("identity") or {}
    if recorded.get("config_hash") != identity.config_hash or recorded.get("model") != identity.model:
        return {}
    out: dict[str, int] = {}
    try:
        with (run_dir / "units.jsonl").open(encoding="utf-8") as f:
            for line in f:
                if '"attempt"' not in line:  # most rows: no need to parse them
                    continue
                row = json.loads(line)
                if isinstance(row.get("attempt"), int):
                    out[str(row["unit_id"])] = row["attempt"]
    except (OSError, ValueError):
        return {}
    return out


def _plan_hash(run_dir: Path) -> str | None:
    try:
        plan: dict[str, Any] = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = plan.get("config_hash")
    return value if isinstance(value, str) else None


def _up_to_date(run_dir: Path, results_hash: str) -> dict[str, Any] | None:
    """The manifest of a finished run with this exact identity and no transport failure, else None.

    Such a run would be reproduced identically from the cache (same requests, same models, same
    scoring code), so it is reused instead of re-run; a run with transport errors is re-run so
    they are retried. A run from before identities were recorded is run again (from the cache).
    """
    try:
        manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    complete = all((run_dir / f).exists() for f in ("units.jsonl", "items.jsonl", "metrics.json"))
    by_status = manifest.get("counts", {}).get("by_status", {})
    recorded = (manifest.get("identity") or {}).get("results_hash")
    if complete and recorded == results_hash and not by_status.get("transport_error"):
        return manifest
    return None


def read_spec(exp_dir: Path) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((exp_dir / SPEC_FILE).read_text(encoding="utf-8"))
    return spec
