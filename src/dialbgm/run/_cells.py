"""Running an experiment's cells: what each would cost (``compare --dry-run``), which finished
cells are reused as they are, and running the others (each one cached run) into the
experiment's folder. What an experiment is — its file, cells and ids — is
:mod:`dialbgm.config._experiment`."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.config import Cell, Experiment, ExperimentError, PriceMode, Workspace
from dialbgm.errors import ConfigError

SPEC_FILE = "experiment.json"


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
    note: str | None = None
    """The judge's model is not here: its identity (in every key) is unknown, nothing counted cached."""

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
        return self.cost_at("online")

    @property
    def cost_batch_est(self) -> float | None:
        """The same calls through the provider's batch API; None when the table has no batch rates."""
        return self.cost_at("batch")

    def cost_at(self, mode: PriceMode) -> float | None:
        if self.uncached == 0:
            return 0.0
        if self.price is None:
            return None
        if self.price.local:
            return 0.0
        if self.audio_seconds_uncached:
            return None  # the price table has text rates only; audio input is billed at its own
        out = (self.max_output_tokens or 0) * self.uncached
        usd = self.price.cost(self.prompt_tokens_est, out, mode=mode)
        return None if usd is None else float(usd)


def plan_cells(ws: Workspace, exp: Experiment) -> list[CellPlan]:
    """What running each cell would cost, without calling anything: the same decisions as
    :func:`run_cells` (a reusable cell calls nothing), and the summaries a cell's summarizer
    must write first, each counted once however many cells need it."""
    from dialbgm.calls import ResponseCache
    from dialbgm.config import load_prices

    prices = load_prices(ws)
    states = [cell_state(ws, exp, cell, planning=True) for cell in exp.cells]
    cache = ResponseCache.for_workspace(ws)
    plans: list[CellPlan] = []
    summary_keys: set[str] = set()
    try:
        for cell, state in zip(exp.cells, states, strict=True):
            if state.reusable is not None:
                plans.append(_reused_plan(cell, state.reusable, prices))
            else:
                plans.extend(_cell_plans(ws, exp.data_path, exp.path, cell, cache, prices, summary_keys))
    finally:
        cache.close()
    return plans


def plan_eval(
    ws: Workspace, judge: str, data: Path, limit: int | None = None, overrides: dict[str, Any] | None = None
) -> list[CellPlan]:
    """``plan_cells`` for one ``dialbgm eval``: its calls, cache hits and cost, online and as a batch."""
    from dialbgm.calls import ResponseCache
    from dialbgm.config import load_prices

    cell = Cell(judge, judge, judge, {}, dict(overrides or {}), limit)
    cache = ResponseCache.for_workspace(ws)
    try:
        return _cell_plans(ws, data, None, cell, cache, load_prices(ws), set())
    finally:
        cache.close()


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
    ws: Workspace, data: Path, origin: Path | None, cell: Cell, cache: Any, prices: Any, summary_keys: set[str]
) -> list[CellPlan]:
    from dialbgm.calls import model_identity
    from dialbgm.judging import audio_seconds, text_chars
    from dialbgm.run._prepare import prepare

    try:
        over = cell.overrides
        prep = prepare(ws, cell.judge, data, limit=cell.limit, overrides=over, defer_summaries=True, planning=True)
    except ConfigError as e:
        if origin is None:
            raise
        raise ExperimentError(f"{origin}: cell {cell.cell_id}: {e}") from None
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
                    f"{cell.cell_id} ({summaries.what})",
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
        unknown = model_identity(prep.provider, prep.judge, ws, planning=True).get("unknown")
        cacheable = bool(prep.backend.cacheable)
        cached = chars = 0
        seconds = 0.0
        calls = len(prep.units) if cacheable else 0
        if cacheable:
            for i, key in enumerate(prep.keys):
                # An unknown model's keys hold no weights hash: nothing cached can be theirs.
                if not unknown and not prep.is_pending(i) and cache.get_key(key) is not None:
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
                note=str(unknown) if unknown else None,
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


def cell_state(ws: Workspace, exp: Experiment, cell: Cell, *, planning: bool = False) -> CellState:
    """``planning`` (a dry run): a judge's absent model files give an unknown identity, not an error."""
    from dialbgm.run._identity import quick_identity

    try:
        identity = quick_identity(ws, cell.judge, exp.data_path, cell.limit, cell.overrides, planning=planning)
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


def run_cells(
    ws: Workspace, exp: Experiment, *, progress: CellProgress | None = None, batch: bool | None = None
) -> list[dict[str, Any]]:
    """Run every cell (from the cache where it can) into the experiment's folder; one row per cell.

    With ``batch`` (or the experiment's ``batch = true``, or a judge's), every cell's batches are
    submitted first and collected afterwards, so that their waits overlap instead of adding up."""
    from dialbgm.calls import BatchesPending
    from dialbgm.run._entry import evaluate, resume_run
    from dialbgm.run._spec import RunOptions, RunSpec
    from dialbgm.storage import write_json, writing

    # Every cell's identity first: a cell whose files are broken fails before any other cell runs.
    states = [cell_state(ws, exp, cell) for cell in exp.cells]
    root = exp.out_dir(ws)
    with writing(root / SPEC_FILE):  # an unwritable results folder is a clear error, not a traceback
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / SPEC_FILE, exp.to_dict())
    batch = True if batch or exp.batch else None  # None: each judge's own setting
    rows: dict[int, dict[str, Any]] = {}
    pending: list[int] = []
    for k, (cell, state) in enumerate(zip(exp.cells, states, strict=True)):
        if progress:
            progress(k, len(exp.cells), cell)
        out = root / cell.cell_id
        if state.reusable is not None:
            rows[k] = {
                "cell_id": cell.cell_id,
                "provider_calls": 0,
                "cache_hits": 0,
                "computed_locally": 0,
                "wall_s": 0.0,
                "reused": True,
            }
            continue
        result = None
        try:
            if state.interrupted:
                # An interrupted cell (Ctrl-C, kill) is finished from its own journal, like `eval --resume`;
                # if its configuration changed since, it is started afresh below.
                with contextlib.suppress(ConfigError):
                    result = resume_run(ws, out, RunOptions(batch=batch, batch_wait=False))
            # force: a cell's folder is the experiment's own; re-running it from the cache refreshes it
            # (after a change of dialbgm or of its scoring code, that re-scores the cached replies).
            result = result or evaluate(
                ws,
                RunSpec(cell.judge, exp.data_path, cell.limit, cell.overrides),
                RunOptions(
                    out_dir=out,
                    force=True,
                    carried_attempts=_reasked(out, state.identity),
                    batch=batch,
                    batch_wait=False,
                ),
            )
        except BatchesPending:
            pending.append(k)  # its batches are out: collected once every cell has submitted
            continue
        rows[k] = _row(cell, result)
    for k in pending:
        cell = exp.cells[k]
        if progress:
            progress(k, len(exp.cells), cell)
        rows[k] = _row(cell, resume_run(ws, root / cell.cell_id, RunOptions(batch=batch)))
    return [rows[k] for k in sorted(rows)]


def _row(cell: Cell, result: Any) -> dict[str, Any]:
    counts = result.manifest["counts"]
    return {
        "cell_id": cell.cell_id,
        "provider_calls": counts["provider_calls"],
        "cache_hits": counts["cache_hits"],
        "computed_locally": counts.get("computed_locally", 0),
        "wall_s": result.manifest["wall_s"],
    }


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
