"""One evaluation run: plan → render → request → cache → call → parse → rank → metrics → files.

Everything that can fail on the user's input fails before the first call: data validation,
judge and provider files, missing summaries, missing API keys (checked only when some request
is not cached, so a cached re-run needs no key).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dialbgm.backends import Backend, make_backend
from dialbgm.cache import ResponseCache
from dialbgm.config import JudgeConfig, ProviderConfig, load_judge, load_provider, require_key, stable_hash
from dialbgm.data import Dataset, Item, load_dataset
from dialbgm.errors import ConfigError
from dialbgm.parse import PARSER_VERSION, Parsed, listwise_schema, parse_reply, pointwise_schema
from dialbgm.plan import FewShotPool, Unit, build_units, load_pool
from dialbgm.prompts import PromptSet, labels_for
from dialbgm.redact import redact
from dialbgm.request import Request, Response
from dialbgm.results import (
    git_state,
    package_versions,
    prepare_out_dir,
    utc_now,
    write_json,
    write_jsonl,
)
from dialbgm.retry import PermanentError, RetryableError, call_with_retries
from dialbgm.scoring import run_metrics, score_items
from dialbgm.workspace import Workspace


@dataclass
class Prepared:
    """A planned run: every request rendered and keyed, nothing called yet."""

    judge: JudgeConfig
    provider: ProviderConfig
    dataset: Dataset
    units: list[Unit]
    requests: list[Request]
    backend: Backend
    prompts: PromptSet | None
    pool: FewShotPool | None


@dataclass
class UnitOutcome:
    response: Response | None
    cache_hit: bool
    latency_s: float | None
    error: str | None = None
    attempts: int = 0


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    units: list[dict[str, Any]] = field(default_factory=list)


ProgressFn = Callable[[int, int], None]


def prepare(
    ws: Workspace,
    judge_name: str,
    data_path: Path,
    *,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> Prepared:
    judge = load_judge(ws, judge_name, overrides)
    provider = load_provider(ws, judge.provider)
    dataset = load_dataset(data_path).limited(limit)
    backend = make_backend(judge, provider, ws)
    prompts = PromptSet(ws.prompts_dir / judge.template) if backend.needs_messages else None
    pool = None
    if judge.few_shot > 0:
        if not backend.needs_messages:
            raise ConfigError(f"judge {judge.name!r}: few_shot applies to LLM judges only")
        pool = load_pool(ws.resolve(judge.few_shot_pool), dataset)
    if judge.context == "summary":
        missing = [i.id for i in dataset if i.summary is None]
        if missing:
            raise ConfigError(
                f"context=summary, but {len(missing)} item(s) have no summary "
                f"(first: {', '.join(missing[:5])}); add a 'summary' field to them"
            )
    if judge.aggregation == "kemeny":
        from dialbgm.aggregate import KEMENY_MAX_CANDIDATES

        big = [i.id for i in dataset if len(i.candidates) > KEMENY_MAX_CANDIDATES]
        if big:
            raise ConfigError(
                f"aggregation=kemeny supports at most {KEMENY_MAX_CANDIDATES} candidates per item; "
                f"{len(big)} item(s) have more (first: {big[0]}); use mean or borda"
            )
    units = build_units(dataset, judge, pool)
    schemas: dict[int, dict[str, Any]] = {}
    requests = [_request_for(unit, judge, backend, prompts, schemas) for unit in units]
    return Prepared(judge, provider, dataset, units, requests, backend, prompts, pool)


def _request_for(
    unit: Unit, judge: JudgeConfig, backend: Backend, prompts: PromptSet | None, schemas: dict[int, dict[str, Any]]
) -> Request:
    messages = None
    schema = None
    if prompts is not None:
        messages = prompts.messages(judge, unit.item, unit.shown, unit.shots, unit.labels or None)
        n = len(unit.shown)
        if n not in schemas:
            lo, hi = judge.scale_min, judge.scale_max
            schemas[n] = (
                listwise_schema(labels_for(n), judge.cot, lo, hi)
                if judge.mode == "listwise"
                else pointwise_schema(judge.cot, lo, hi)
            )
        schema = schemas[n]
    return backend.build_request(unit.item, unit.shown, messages, schema, unit.sample)


def lookup(prep: Prepared, cache: ResponseCache | None) -> tuple[list[UnitOutcome | None], list[int]]:
    """Serve what the cache holds; return the outcomes so far and the indices still to call."""
    outcomes: list[UnitOutcome | None] = [None] * len(prep.requests)
    misses: list[int] = []
    for i, req in enumerate(prep.requests):
        hit = cache.get(req) if cache is not None and prep.backend.cacheable else None
        if hit is not None:
            outcomes[i] = UnitOutcome(hit, True, None)
        else:
            misses.append(i)
    return outcomes, misses


def check_can_call(prep: Prepared, misses: list[int]) -> None:
    """Fail before any call when a call is needed and its key is missing."""
    if misses and getattr(prep.backend, "needs_key", False):
        require_key(prep.judge, prep.provider)


def call_misses(
    prep: Prepared,
    cache: ResponseCache | None,
    outcomes: list[UnitOutcome | None],
    misses: list[int],
    *,
    progress: ProgressFn | None = None,
) -> list[UnitOutcome]:
    """Call the backend for every miss (with retries); store only successful replies."""
    n = len(prep.requests)
    done = n - len(misses)
    store = cache is not None and prep.backend.cacheable
    if progress:
        progress(done, n)

    def work(i: int) -> UnitOutcome:
        req = prep.requests[i]
        attempts = 0

        def attempt() -> Response:
            nonlocal attempts
            attempts += 1
            return prep.backend.complete(req)

        t0 = time.perf_counter()
        try:
            resp = call_with_retries(
                attempt,
                max_attempts=prep.provider.max_attempts,
                max_seconds=prep.provider.max_retry_seconds,
            )
        except (RetryableError, PermanentError) as e:
            return UnitOutcome(None, False, time.perf_counter() - t0, str(e), attempts)
        latency = time.perf_counter() - t0
        if store and cache is not None:
            cache.put(req, resp)
        return UnitOutcome(resp, False, latency, None, attempts)

    try:
        if misses:
            workers = max(1, min(prep.provider.concurrency, len(misses)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for i, outcome in zip(misses, pool.map(work, misses), strict=True):
                    outcomes[i] = outcome
                    done += 1
                    if progress:
                        progress(done, n)
    finally:
        prep.backend.close()
    return [o for o in outcomes if o is not None]


def _unit_row(prep: Prepared, unit: Unit, req: Request, outcome: UnitOutcome, parsed: Parsed) -> dict[str, Any]:
    # Backends that render no prompt (random, embedding) answer by position: A = first shown.
    labels = unit.labels if unit.labels and prep.backend.needs_messages else tuple(labels_for(len(unit.shown)))
    by_candidate = None
    if parsed.scores is not None:
        by_candidate = {c.id: parsed.scores[lab] for lab, c in zip(labels, unit.shown, strict=True)}
    resp = outcome.response
    return {
        "unit_id": unit.unit_id,
        "item_id": unit.item.id,
        "judge": prep.judge.name,
        "variant": variant_of(prep.judge),
        "shown": [{"label": lab, "candidate": c.id} for lab, c in zip(labels, unit.shown, strict=True)],
        "shots": unit.shot_ids,
        "order_index": unit.order_index,
        "sample": unit.sample,
        "messages_sha256": req.messages_sha256(),
        "cache_key": req.cache_key(),
        "status": parsed.status,
        "error": parsed.error,
        "scores": by_candidate,
        "reasoning": parsed.reasoning,
        "raw": resp.text if resp else None,
        "finish_reason": resp.finish_reason if resp else None,
        "usage": resp.usage if resp else {},
        "latency_s": outcome.latency_s,
        "attempts": outcome.attempts,
        "cache_hit": outcome.cache_hit,
        "parser_version": PARSER_VERSION,
    }


def variant_of(judge: JudgeConfig) -> dict[str, Any]:
    return {
        "template": judge.template,
        "mode": judge.mode,
        "context": judge.context,
        "cot": judge.cot,
        "few_shot": judge.few_shot,
        "few_shot_seed": judge.few_shot_seed,
        "order_seed": judge.order_seed,
        "orders": judge.orders,
        "shuffle_labels": judge.shuffle_labels,
        "samples": judge.samples,
        "aggregation": judge.aggregation,
        "score_by": judge.score_by,
    }


def parse_outcomes(prep: Prepared, outcomes: list[UnitOutcome]) -> list[dict[str, Any]]:
    lo, hi = prep.backend.score_range
    rows = []
    for unit, req, outcome in zip(prep.units, prep.requests, outcomes, strict=True):
        if outcome.response is None:
            parsed = Parsed("transport_error", error=outcome.error)
        else:
            labels = labels_for(len(unit.shown)) if prep.judge.mode == "listwise" else None
            parsed = parse_reply(outcome.response, labels, lo, hi)
            if prep.judge.score_by == "logprobs" and parsed.status == "ok" and parsed.scores is not None:
                parsed, extra = _with_expectations(parsed, outcome.response, labels, lo, hi)
                row = _unit_row(prep, unit, req, outcome, parsed)
                by_label = {sh["label"]: sh["candidate"] for sh in row["shown"]}
                extra["sampled_scores"] = {by_label[k]: v for k, v in extra["sampled_scores"].items()}
                row.update(extra)
                rows.append(row)
                continue
        rows.append(_unit_row(prep, unit, req, outcome, parsed))
    return rows


def _with_expectations(
    parsed: Parsed, response: Response, labels: list[str] | None, lo: float, hi: float
) -> tuple[Parsed, dict[str, Any]]:
    """Replace sampled scores by logprob expectations; keep the sampled ones beside them."""
    from dialbgm.logprobs import expected_scores

    assert parsed.scores is not None
    if not response.logprobs:
        return parsed, {"sampled_scores": parsed.scores, "logprob_fallbacks": sorted(parsed.scores)}
    exp = expected_scores(response.text, response.logprobs, parsed.scores, labels, lo, hi)
    return replace(parsed, scores=exp.scores), {"sampled_scores": parsed.scores, "logprob_fallbacks": exp.fallbacks}


def run_eval(
    ws: Workspace,
    judge_name: str,
    data_path: Path,
    *,
    out_dir: Path | None = None,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
) -> RunResult:
    started = utc_now()
    t0 = time.perf_counter()
    prep = prepare(ws, judge_name, data_path, limit=limit, overrides=overrides)
    config = {
        "judge": prep.judge.to_dict(),
        "provider": _provider_record(prep.provider),
        "data": {"path": str(data_path), "sha256": prep.dataset.sha256, "limit": limit},
        "overrides": overrides or {},
        "parser_version": PARSER_VERSION,
    }
    config_hash = stable_hash(config)
    if out_dir is None:
        stamp = started.replace(":", "").replace("-", "")[:15]
        out_dir = ws.results_dir / f"{stamp}-{prep.judge.name}-{config_hash[:8]}"
    cache = ResponseCache(ws.cache_dir) if use_cache else None
    try:
        partial, misses = lookup(prep, cache)
        check_can_call(prep, misses)
        prepare_out_dir(out_dir, force)
        outcomes = call_misses(prep, cache, partial, misses, progress=progress)
    finally:
        if cache is not None:
            cache.close()
    unit_rows = parse_outcomes(prep, outcomes)
    items = score_items(prep.dataset, unit_rows, prep.judge)
    metrics = run_metrics(items, prep.dataset, prep.judge, unit_rows)
    status_counts = Counter(r["status"] for r in unit_rows)
    hits = sum(1 for o in outcomes if o.cache_hit)
    calls = sum(1 for o in outcomes if not o.cache_hit)
    tokens: Counter[str] = Counter()
    for r in unit_rows:
        tokens.update({k: v for k, v in r["usage"].items() if isinstance(v, int)})
    manifest = {
        "run_id": out_dir.name,
        "config": redact(config),
        "config_hash": config_hash,
        "dataset": {
            "path": str(data_path),
            "sha256": prep.dataset.sha256,
            "format": prep.dataset.fmt,
            "n_items": len(prep.dataset),
        },
        "template": {"name": prep.judge.template, "sha256": prep.prompts.sha256 if prep.prompts else None},
        "few_shot_pool": {"path": str(prep.pool.path), "n_usable": len(prep.pool.items)} if prep.pool else None,
        "versions": package_versions(),
        "git": git_state(ws.root),
        "started": started,
        "finished": utc_now(),
        "wall_s": round(time.perf_counter() - t0, 3),
        "counts": {
            "units": len(unit_rows),
            "by_status": dict(sorted(status_counts.items())),
            "cache_hits": hits,
            "provider_calls": calls if prep.backend.cacheable else 0,
            "computed_locally": 0 if prep.backend.cacheable else calls,
            "items_ok": metrics["n_items"],
            "items_failed": metrics["n_failed"],
        },
        "tokens": dict(tokens),
    }
    write_jsonl(out_dir / "units.jsonl", unit_rows)
    write_jsonl(out_dir / "items.jsonl", items)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "manifest.json", manifest)
    return RunResult(out_dir, metrics, manifest, unit_rows)


def _provider_record(p: ProviderConfig) -> dict[str, Any]:
    """The provider's settings for the manifest: names of key variables, never their values."""
    return {
        "name": p.name,
        "kind": p.kind,
        "route": p.route,
        "api_base": p.effective_api_base(),
        "api_key_env": p.api_key_env,
        "capabilities": {
            "structured_output": p.capabilities.structured_output,
            "streaming_only": p.capabilities.streaming_only,
            "temperature": p.capabilities.temperature,
        },
    }


def render_item(
    ws: Workspace, judge_name: str, data_path: Path, item_id: str, overrides: dict[str, Any] | None = None
) -> tuple[Prepared, list[int]]:
    """The units of one item, planned exactly as a run would, without calling anything."""
    prep = prepare(ws, judge_name, data_path, overrides=overrides)
    idx = [i for i, u in enumerate(prep.units) if u.item.id == item_id]
    if not idx:
        raise ConfigError(f"no item {item_id!r} in {data_path}")
    return prep, idx


def item_by_id(dataset: Dataset, item_id: str) -> Item:
    return dataset.get(item_id)
