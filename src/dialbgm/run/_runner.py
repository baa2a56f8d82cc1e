"""One evaluation run: plan → render → request → cache → call → parse → rank → metrics → files.

Everything that can fail on the user's input fails before the first call: data validation,
judge and provider files, missing summaries, missing API keys (checked only when some request
is not cached, so a cached re-run needs no key).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.calls import (
    JOURNAL,
    Backend,
    JournalWriter,
    OutcomeSpool,
    Progress,
    ProgressFn,
    RepeatedFailure,
    ResponseCache,
    UnitOutcome,
    iter_journal,
    make_backend,
    read_plan,
    renders_prompts,
    run_calls,
    write_plan,
)
from dialbgm.config import (
    JudgeConfig,
    ProviderConfig,
    Workspace,
    check_recordable,
    few_shot_pool_path,
    load_judge,
    load_provider,
    require_key,
    stable_hash,
)
from dialbgm.data import Dataset, load_dataset
from dialbgm.errors import ConfigError, JudgeDataError, ResultsError, RunStoppedError
from dialbgm.judging import (
    PARSER_VERSION,
    DigestTable,
    FewShotPool,
    Parsed,
    PromptSet,
    Request,
    Response,
    Unit,
    UnitPlan,
    audio_ref,
    audio_spec,
    build_units,
    check_request_size,
    judge_fit_problems,
    labels_for,
    listwise_schema,
    load_pool,
    parse_reply,
    pointwise_schema,
    prepare_clips,
    wants_audio,
)
from dialbgm.run._folders import (
    RunLock,
    check_out_dir,
    drop_replaced,
    git_state,
    new_run_dir,
    package_versions,
    prepare_out_dir,
    restore_replaced,
)
from dialbgm.run._identity import RunIdentity, item_sha256, quick_identity, run_identity
from dialbgm.run._scoring import UnitTally, item_summary, run_metrics, score_item
from dialbgm.storage import REDACTED, JsonlWriter, cannot_write, redact, utc_now, write_json, write_jsonl

if TYPE_CHECKING:
    from dialbgm.data import PreparedClip
    from dialbgm.run._summaries import SummaryPlan

FAILED_REPLY_STATUSES = ("parse_error", "truncated", "refused")
"""Replies that arrived but gave no score: cached like any reply, so only a re-ask changes them."""
RETRY_STATUSES = ("transport_error", *FAILED_REPLY_STATUSES)


@dataclass
class Prepared:
    """A planned run: every unit and its cache key, nothing called yet.

    Requests are rendered when asked for (``request``) and not kept: a long run's rendered
    prompts would otherwise dominate its memory. Rendering is deterministic, so the request a
    worker sends is the one whose key was computed here.
    """

    judge: JudgeConfig
    provider: ProviderConfig
    dataset: Dataset
    units: UnitPlan
    backend: Backend
    prompts: PromptSet | None
    pool: FewShotPool | None
    summaries: list[dict[str, Any]] = field(default_factory=list)
    keys: DigestTable = field(default_factory=DigestTable)
    """The cache key of each unit's request, in plan order (on disk: see DigestTable)."""
    messages_sha256: DigestTable = field(default_factory=DigestTable)
    clips: dict[tuple[str, str], PreparedClip] | None = None
    """(item id, candidate id) → the clip as sent, when the judge hears the candidates."""
    warnings: list[str] = field(default_factory=list)
    """What was accepted but could not be checked (e.g. a few-shot pool with no declared task)."""
    _schemas: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    pending_summaries: SummaryPlan | None = None
    """Summaries still to be written (planned with ``defer_summaries``): the units of those items
    carry a placeholder until :func:`prepare` is called again with them written."""
    item_sha256: dict[str, str] = field(default_factory=dict)
    """Each item's content hash, as the data file gives it (before any generated summary)."""
    attempts: dict[int, int] = field(default_factory=dict)
    """Units asked again (``--retry-status``): unit index → the attempt its reply answers."""
    history: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    """Units asked again: the earlier replies, first asking first."""

    def request(self, i: int) -> Request:
        unit = self.units[i]
        refs = None
        if self.clips is not None:
            dialect = self.provider.capabilities.audio_dialect
            refs = {c.id: audio_ref(self.clips[(unit.item.id, c.id)], dialect) for c in unit.shown}
        r = _request_for(unit, self.judge, self.backend, self.prompts, self._schemas, refs)
        attempt = self.attempts.get(i, 0)
        return replace(r, attempt=attempt) if attempt else r

    def is_pending(self, i: int) -> bool:
        """Whether unit ``i`` waits for a summary (its request holds a placeholder, never sent)."""
        return self.pending_summaries is not None and self.units[i].item.id in self.pending_summaries.pending_ids

    def set_attempt(self, i: int, attempt: int, superseded: UnitOutcome | None) -> None:
        """Make unit ``i`` answer ``attempt``; the reply it had so far is kept in its history."""
        if superseded is not None:
            self.history.setdefault(i, []).append(_history_entry(self, i, superseded))
        self.attempts[i] = attempt
        self.keys[i] = self.request(i).cache_key()

    def iter_requests(self) -> Iterator[Request]:
        return (self.request(i) for i in range(len(self.units)))


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    top_error: str | None = None
    """The most frequent error among the failed items (for the CLI's message), if any failed."""


def prepare(
    ws: Workspace,
    judge_name: str,
    data_path: Path,
    *,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
    provider_overrides: dict[str, Any] | None = None,
    allow_summary_calls: bool = False,
    defer_summaries: bool = False,
    use_cache: bool = True,
    summaries_from: SummaryPlan | None = None,
) -> Prepared:
    """Plan a run. Summaries a summarizer must write are read from the cache (unless not
    ``use_cache``), and generated (calls) only when ``allow_summary_calls``; with
    ``defer_summaries`` the plan is made with placeholders for them instead and the summaries
    left in ``pending_summaries``, so that the caller can check everything before paying for
    them, write them, and plan again with ``summaries_from``. Planning alone never calls the judge."""
    judge = load_judge(ws, judge_name, overrides)
    provider = load_provider(ws, judge.provider)
    if provider_overrides:
        provider = _override_provider(provider, provider_overrides)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        # items[:0] would be an empty run and items[:-1] all but the last item.
        raise ConfigError(f"--limit must be a whole number >= 1, got {limit!r}")
    dataset = load_dataset(data_path).limited(limit)
    item_hashes = {i.id: item_sha256(i) for i in dataset}
    backend = make_backend(judge, provider, ws)
    prompts = PromptSet(ws.template_dir(judge.template)) if renders_prompts(provider) else None
    pool = None
    if judge.few_shot > 0:
        if not backend.needs_messages:
            raise ConfigError(f"judge {judge.name!r}: few_shot applies to LLM judges only")
        pool = load_pool(few_shot_pool_path(ws, judge), dataset, prompts)
    if problems := judge_fit_problems(judge, provider, dataset, pool):
        raise JudgeDataError(judge.name, problems)
    summaries: list[dict[str, Any]] = []
    pending = None
    if judge.context == "summary":
        from dialbgm.run._summaries import plan_summaries

        splan = summaries_from or plan_summaries(ws, dataset, judge, use_cache=use_cache)
        if splan.todo and allow_summary_calls and not defer_summaries:
            splan.generate(ws)
        if splan.todo and defer_summaries:
            pending = splan
            dataset = splan.with_placeholders(dataset)
        else:
            dataset, summaries = splan.apply(dataset)
    clips = None
    if wants_audio(judge):
        if not backend.needs_messages:
            raise ConfigError(f"judge {judge.name!r}: input = {judge.input!r} applies to LLM judges only")
        from dialbgm.data import ClipStore

        spec = audio_spec(judge, provider)
        with ClipStore(ws.audio_dir) as store:
            clips = prepare_clips(dataset, spec, store)
    units = build_units(dataset, judge, pool)
    prep = Prepared(
        judge,
        provider,
        dataset,
        units,
        backend,
        prompts,
        pool,
        summaries,
        clips=clips,
        pending_summaries=pending,
        item_sha256=item_hashes,
        keys=DigestTable(directory=ws.root),
        messages_sha256=DigestTable(directory=ws.root),
    )
    prep.warnings.extend(pool.warnings if pool else ())
    for unit, r in zip(units, prep.iter_requests(), strict=True):
        if clips is not None:
            where = f"{dataset.path}:{unit.item.source_line}: item {unit.item.id!r} (unit {unit.unit_id})"
            check_request_size(r.messages, provider, where)
        prep.keys.append(r.cache_key())
        prep.messages_sha256.append(r.messages_sha256())
    return prep


def _request_for(
    unit: Unit,
    judge: JudgeConfig,
    backend: Backend,
    prompts: PromptSet | None,
    schemas: dict[int, dict[str, Any]],
    clips: dict[str, dict[str, Any]] | None = None,
) -> Request:
    messages = None
    schema = None
    if prompts is not None:
        messages = prompts.messages(judge, unit.item, unit.shown, unit.shots, unit.labels or None, clips)
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


def lookup(prep: Prepared, cache: ResponseCache | None, spool: OutcomeSpool) -> list[int]:
    """Put what the cache holds into ``spool``; return the indices of the units still to call."""
    misses: list[int] = []
    use = cache is not None and prep.backend.cacheable
    for i, key in enumerate(prep.keys):
        hit = cache.get_key(key) if use and cache is not None and not prep.is_pending(i) else None
        if hit is not None:
            spool.put(i, UnitOutcome(hit, True, None))
        else:
            misses.append(i)
    return misses


def replay_journal(prep: Prepared, run_dir: Path, spool: OutcomeSpool, misses: list[int], retry_failed: bool) -> int:
    """Fill the cache misses that an interrupted run's journal answered; returns how many units
    the journal answered.

    A record counts only if its unit still has the same cache key; the last record of a unit
    wins; with ``retry_failed`` a unit whose last record failed is left to be called again. A
    record of a re-ask (``attempt`` > 0) makes its unit answer that attempt, whatever the cache
    holds for the first asking, which goes into the unit's history.
    """
    return len(_replay(prep, run_dir, spool, set(misses), retry_failed))


def _replay(prep: Prepared, run_dir: Path, spool: OutcomeSpool, todo: set[int], retry_failed: bool) -> set[int]:
    answered: set[int] = set()
    for rec in iter_journal(run_dir):
        i = prep.units.index_of(rec["unit_id"])
        if i is None or prep.is_pending(i):
            continue
        attempt = int(rec.get("attempt") or 0)
        current = prep.attempts.get(i, 0)
        if attempt < current or (attempt == 0 and i not in todo):
            continue
        if attempt > current:
            if rec.get("cache_key") != replace(prep.request(i), attempt=attempt).cache_key():
                continue
            prep.set_attempt(i, attempt, spool.get(i) if spool.has(i) else None)
        elif rec.get("cache_key") != prep.keys[i]:
            continue
        if retry_failed and rec.get("response") is None:
            spool.discard(i)
            answered.discard(i)
        else:
            spool.put(i, UnitOutcome.from_record(rec))
            answered.add(i)
    return answered


def reask(prep: Prepared, cache: ResponseCache | None, spool: OutcomeSpool, statuses: set[str]) -> list[int]:
    """Give every unit whose reply ended in one of ``statuses`` (``parse_error``, ``truncated``,
    ``refused``) a new attempt: a request whose cache key differs from the first asking's, so the
    cached bad reply is not served again. The reply it replaces stays in the unit's history (and
    in the cache and journal). Returns the units re-asked; those whose new attempt is already
    cached (asked in another run) are filled from the cache, the others are left to be called."""
    wanted = statuses & set(FAILED_REPLY_STATUSES)
    if not wanted:
        return []
    asked: list[int] = []
    use = cache is not None and prep.backend.cacheable
    for i in range(len(prep.units)):
        if not spool.has(i):
            continue
        outcome = spool.get(i)
        if outcome.response is None or unit_row(prep, i, outcome)["status"] not in wanted:
            continue
        prep.set_attempt(i, prep.attempts.get(i, 0) + 1, outcome)
        spool.discard(i)
        asked.append(i)
        hit = cache.get_key(prep.keys[i]) if use and cache is not None else None
        if hit is not None:
            spool.put(i, UnitOutcome(hit, True, None))
    return asked


def carry_attempts(
    prep: Prepared, cache: ResponseCache | None, spool: OutcomeSpool, attempts: Mapping[str, int]
) -> None:
    """Start the units that an earlier run of this very config asked again (unit id → attempt)
    at that attempt, with the earlier replies the cache still holds as their history: running a
    cell again must not bring back the failed replies its re-asks replaced."""
    use = cache is not None and prep.backend.cacheable
    for unit_id, attempt in attempts.items():
        i = prep.units.index_of(unit_id)
        if i is None or attempt <= prep.attempts.get(i, 0) or prep.is_pending(i):
            continue
        while prep.attempts.get(i, 0) < attempt:
            prep.set_attempt(i, prep.attempts.get(i, 0) + 1, spool.get(i) if spool.has(i) else None)
            spool.discard(i)
            hit = cache.get_key(prep.keys[i]) if use and cache is not None else None
            if hit is not None:
                spool.put(i, UnitOutcome(hit, True, None))


def _history_entry(prep: Prepared, i: int, outcome: UnitOutcome) -> dict[str, Any]:
    row = unit_row(prep, i, outcome)
    entry = {"attempt": prep.attempts.get(i, 0)}
    for k in ("cache_key", "status", "error", "raw", "finish_reason", "usage", "latency_s", "attempts", "cache_hit"):
        entry[k] = row[k]
    return entry


def check_can_call(prep: Prepared, misses: list[int]) -> None:
    """Fail before any call when a call is needed and its key is missing (the summarizer's too)."""
    if misses and getattr(prep.backend, "needs_key", False):
        require_key(prep.judge, prep.provider)
    if prep.pending_summaries is not None:
        prep.pending_summaries.check_can_call()


def _unit_row(prep: Prepared, i: int, outcome: UnitOutcome, parsed: Parsed) -> dict[str, Any]:
    unit = prep.units[i]
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
        "messages_sha256": prep.messages_sha256[i],
        "cache_key": prep.keys[i],
        "status": parsed.status,
        "error": parsed.error,
        "scores": by_candidate,
        "reasoning": parsed.reasoning,
        "raw": resp.text if resp else None,
        "finish_reason": resp.finish_reason if resp else None,
        "response_model": resp.model if resp else None,
        "usage": resp.usage if resp else {},
        "latency_s": outcome.latency_s,
        "attempts": outcome.attempts,
        "cache_hit": outcome.cache_hit,
        "parser_version": PARSER_VERSION,
        # Only on a unit asked again: a first asking's row is as it always was.
        **({"attempt": prep.attempts[i], "attempts_history": prep.history.get(i, [])} if i in prep.attempts else {}),
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


def unit_row(prep: Prepared, i: int, outcome: UnitOutcome) -> dict[str, Any]:
    """The row of ``units.jsonl`` for unit ``i``: its reply parsed (or its failure recorded)."""
    lo, hi = prep.backend.score_range
    unit = prep.units[i]
    labels = labels_for(len(unit.shown)) if prep.judge.mode == "listwise" else None
    if outcome.response is None:
        parsed = Parsed("transport_error", error=outcome.error)
    else:
        parsed = parse_reply(outcome.response, labels, lo, hi)
    extra: dict[str, Any] = {}
    if prep.judge.score_by == "logprobs" and outcome.response is not None and parsed.scores is not None:
        parsed, extra = _with_expectations(parsed, outcome.response, labels, lo, hi)
    row = _unit_row(prep, i, outcome, parsed)
    if extra:
        by_label = {sh["label"]: sh["candidate"] for sh in row["shown"]}
        extra["sampled_scores"] = {by_label[k]: v for k, v in extra["sampled_scores"].items()}
        row.update(extra)
    return row


def _with_expectations(
    parsed: Parsed, response: Response, labels: list[str] | None, lo: float, hi: float
) -> tuple[Parsed, dict[str, Any]]:
    """Replace sampled scores by logprob expectations; keep the sampled ones beside them."""
    from dialbgm.judging import expected_scores

    assert parsed.scores is not None
    if not response.logprobs:
        reasons = dict.fromkeys(sorted(parsed.scores), "the reply carries no log-probabilities")
        return parsed, {
            "sampled_scores": parsed.scores,
            "logprob_fallbacks": sorted(parsed.scores),
            "logprob_fallback_reasons": reasons,
        }
    exp = expected_scores(response.text, response.logprobs, parsed.scores, labels, lo, hi)
    return replace(parsed, scores=exp.scores), {
        "sampled_scores": parsed.scores,
        "logprob_fallbacks": exp.fallbacks,
        "logprob_fallback_reasons": exp.reasons,
    }


def _override_provider(provider: ProviderConfig, over: dict[str, Any]) -> ProviderConfig:
    """--concurrency / --rpm / --tpm for this run."""
    changes: dict[str, Any] = {}
    for key, value in over.items():
        if value is None:
            continue
        if key == "concurrency" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"--concurrency must be a whole number >= 1, got {value!r}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in ("rpm", "tpm") and not (number and math.isfinite(value) and value > 0):
            raise ConfigError(f"--{key} must be a number > 0 (and finite), got {value!r}")
        if key not in ("concurrency", "rpm", "tpm"):
            raise ConfigError(f"unknown provider override {key!r}")
        changes[key] = float(value) if key in ("rpm", "tpm") else value
    return replace(provider, **changes)


def run_config(
    prep: Prepared, data_path: Path, limit: int | None, overrides: dict[str, Any] | None, ws: Workspace
) -> dict[str, Any]:
    """What defines a run's requests: a resumed run must have exactly this again."""
    return prepared_identity(ws, prep, data_path, limit, overrides).config


def prepared_identity(
    ws: Workspace, prep: Prepared, data_path: Path, limit: int | None, overrides: dict[str, Any] | None
) -> RunIdentity:
    """:func:`dialbgm.run._identity.run_identity` of a planned run (its data and clips already read)."""
    return run_identity(
        ws, prep.judge, prep.provider, data_path, limit, overrides, data_sha256=prep.dataset.sha256, clips=prep.clips
    )


def quick_config_hash(
    ws: Workspace, judge_name: str, data_path: Path, limit: int | None, overrides: dict[str, Any] | None
) -> str:
    """The config hash a run would have, without rendering anything (or loading the data,
    except for a judge that hears the clips).

    Lets ``--resume`` refuse a changed configuration before anything (a summary included) is called.
    """
    return quick_identity(ws, judge_name, data_path, limit, overrides).config_hash


def quick_config(
    ws: Workspace, judge_name: str, data_path: Path, limit: int | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    return quick_identity(ws, judge_name, data_path, limit, overrides).config


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _refuse_if_changed(resume: Path, stored_plan: dict[str, Any], config: dict[str, Any]) -> None:
    if stable_hash(config) != stored_plan["config_hash"]:
        changed = "\n  ".join(config_changes(stored_plan["config"], redact(config))[:20])
        raise ConfigError(
            f"--resume {resume}: the configuration changed since the run started, so its results would mix "
            f"two setups; start a new run instead. Changed:\n  {changed or '(secret values)'}"
        )


def _retry_set(retry_failed: bool, retry_statuses: Collection[str]) -> set[str]:
    """The statuses to ask again; ``all`` stands for every failure status."""
    out = {"transport_error"} if retry_failed else set()
    for s in retry_statuses:
        if s == "all":
            out.update(RETRY_STATUSES)
        elif s in RETRY_STATUSES:
            out.add(s)
        else:
            raise ConfigError(f"--retry-status: unknown status {s!r} (known: {', '.join(RETRY_STATUSES)}, all)")
    return out


def _gather(
    prep: Prepared,
    cache: ResponseCache | None,
    spool: OutcomeSpool,
    journal_dir: Path | None,
    statuses: set[str],
    carried: Mapping[str, int] | None = None,
) -> tuple[list[int], int]:
    """Fill ``spool`` from the cache and (resuming) the run's journal, give the failed replies in
    ``statuses`` a new attempt; return the units still to call and how many the journal answered."""
    misses = lookup(prep, cache, spool)
    if carried:
        carry_attempts(prep, cache, spool, carried)
        misses = [i for i in range(len(prep.units)) if not spool.has(i)]
    answered: set[int] = set()
    if journal_dir is not None:
        answered = _replay(prep, journal_dir, spool, set(misses), "transport_error" in statuses)
    answered.difference_update(reask(prep, cache, spool, statuses))
    return [i for i in range(len(prep.units)) if not spool.has(i)], len(answered)


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
    provider_overrides: dict[str, Any] | None = None,
    resume: Path | None = None,
    retry_failed: bool = False,
    retry_statuses: Collection[str] = (),
    carried_attempts: Mapping[str, int] | None = None,
) -> RunResult:
    """Evaluate one judge on one data file; or, with ``resume``, finish an interrupted run.

    ``retry_failed`` (with ``resume``) calls again the units that ended ``transport_error``;
    ``retry_statuses`` names the statuses to ask again, among :data:`RETRY_STATUSES`: a reply that
    arrived but failed (``parse_error``, ``truncated``, ``refused``) is asked again as a new
    attempt (see :func:`reask`). ``carried_attempts`` starts units at the attempts an earlier run
    of the same config reached (see :func:`carry_attempts`).

    The run's folder is locked from before its first write (for ``resume``: from the start) to
    the end, so a second process writing the same folder stops with a clear error instead.
    """
    held: list[RunLock] = []
    try:
        return _run_eval(
            ws,
            judge_name,
            data_path,
            held,
            out_dir=out_dir,
            limit=limit,
            overrides=overrides,
            force=force,
            use_cache=use_cache,
            progress=progress,
            provider_overrides=provider_overrides,
            resume=resume,
            retry_failed=retry_failed,
            retry_statuses=retry_statuses,
            carried_attempts=carried_attempts,
        )
    finally:
        for lock in held:
            lock.release()


def _stopped(out_dir: Path, why: str) -> RunStoppedError:
    """A run that cannot go on: one message, which says what the journal still holds."""
    if (out_dir / JOURNAL).exists():
        then = (
            f"every call finished before this is recorded in {out_dir / JOURNAL}, which is intact; "
            f"fix the cause, then finish the run with:  dialbgm eval --resume {out_dir}"
        )
    else:
        then = f"{out_dir / JOURNAL} is gone, so nothing of this run can be resumed; start it again"
    return RunStoppedError(f"{why}\n{then}")


def _write_failure(out_dir: Path, e: OSError) -> RunStoppedError:
    where = f" ({e.filename})" if e.filename else ""
    return _stopped(out_dir, f"the run stopped: writing its files failed{where}: {e.strerror or e}")


def _run_eval(
    ws: Workspace,
    judge_name: str,
    data_path: Path,
    held: list[RunLock],
    *,
    out_dir: Path | None = None,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    use_cache: bool = True,
    progress: ProgressFn | None = None,
    provider_overrides: dict[str, Any] | None = None,
    resume: Path | None = None,
    retry_failed: bool = False,
    retry_statuses: Collection[str] = (),
    carried_attempts: Mapping[str, int] | None = None,
) -> RunResult:
    statuses = _retry_set(retry_failed, retry_statuses)
    started = utc_now()
    t0 = time.perf_counter()
    stored_plan: dict[str, Any] | None = None
    if resume is not None:
        if not (resume / "plan.json").exists():
            raise ResultsError(f"--resume {resume}: no plan.json there (not a dialbgm run folder)")
        # Held to the end: a run that another process is still writing is not resumed under it.
        held.append(RunLock(resume).acquire())
        stored_plan = read_plan(resume)
        args = stored_plan["args"]
        judge_name, data_path, limit = args["judge"], Path(args["data"]), args["limit"]
        if overrides is None and REDACTED in json.dumps(args["overrides"]):
            raise ConfigError(
                f"--resume {resume}: this run's --set values held secrets, which are never recorded; "
                "pass the same --set options again together with --resume"
            )
        overrides = args["overrides"] if overrides is None else overrides
        stored_po = dict(args.get("provider_overrides") or {})
        stored_po.update({k: v for k, v in (provider_overrides or {}).items() if v is not None})
        provider_overrides = stored_po
        out_dir = resume
        # Refuse a changed configuration before anything is called (summaries included).
        _refuse_if_changed(resume, stored_plan, quick_config(ws, judge_name, data_path, limit, overrides))
    elif statuses:
        raise ConfigError(
            "--retry-failed / --retry-status re-attempt the failed calls of a run: use it with --resume RUN"
        )
    if resume is None:
        # Recorded absolute, so that --resume finds the data from any folder.
        data_path = Path(os.path.abspath(data_path))
        if out_dir is not None:
            check_out_dir(out_dir, force)  # an occupied --out fails before any summary is paid for

    def plan(summaries_from: SummaryPlan | None = None) -> Prepared:
        # Summaries a summarizer must write are left pending: they are paid for below, only after
        # every check that can fail (the --out folder, the keys) has passed.
        return prepare(
            ws,
            judge_name,
            data_path,
            limit=limit,
            overrides=overrides,
            provider_overrides=provider_overrides,
            defer_summaries=True,
            use_cache=use_cache,
            summaries_from=summaries_from,
        )

    prep = plan()
    identity = prepared_identity(ws, prep, data_path, limit, overrides)
    config, config_hash = identity.config, identity.config_hash
    if resume is not None and stored_plan is not None:
        _refuse_if_changed(resume, stored_plan, config)
    # The plan is written before the first call and before an earlier run is moved aside: a value
    # JSON cannot hold (NaN, infinity) from any source is refused here, by name.
    check_recordable(config, "the run's config")
    default_out = out_dir is None
    if out_dir is None:
        stamp = started.replace(":", "").replace("-", "")[:15]
        out_dir = ws.results_dir / f"{stamp}-{prep.judge.name}-{config_hash[:8]}"  # made unique below

    cache = ResponseCache(ws.cache_dir) if use_cache else None
    journal: JournalWriter | None = None
    # On the workspace's disk: /tmp may be memory (tmpfs), which would defeat the spool.
    spool = OutcomeSpool(len(prep.units), directory=ws.root)
    aside: Path | None = None  # an earlier run that --force moved out of the way
    created: Path | None = None  # the default folder, once this run has made it
    planned = resume is not None  # from here on, a failure leaves a run that --resume can finish
    try:
        misses, resumed = _gather(
            prep, cache, spool, out_dir if resume is not None else None, statuses, carried_attempts
        )
        check_can_call(prep, misses)
        if resume is None:
            # Everything has been checked: only now is an existing folder touched.
            if default_out:
                out_dir = created = new_run_dir(out_dir.parent, out_dir.name)
            lock, aside = prepare_out_dir(out_dir, force)
            held.append(lock)
        if prep.pending_summaries is not None:
            # The first summary call happens here, after every check above; then the run is planned
            # again with the summaries in place of their placeholders.
            prep.backend.close()
            prep.pending_summaries.generate(ws)
            prep = plan(prep.pending_summaries)
            spool.close()
            spool = OutcomeSpool(len(prep.units), directory=ws.root)
            misses, resumed = _gather(
                prep, cache, spool, out_dir if resume is not None else None, statuses, carried_attempts
            )
            check_can_call(prep, misses)
        if resume is None:
            write_plan(
                out_dir,
                {
                    "args": {
                        "judge": judge_name,
                        "data": str(data_path),
                        "limit": limit,
                        "overrides": redact(overrides or {}),
                        "provider_overrides": provider_overrides or {},
                    },
                    "config": redact(config),
                    "config_hash": config_hash,
                },
                ((u.unit_id, k) for u, k in zip(prep.units, prep.keys, strict=True)),
            )
            planned = True
        journal = JournalWriter(out_dir)
        state = Progress(
            total=len(prep.units),
            done=len(prep.units) - len(misses),
            cached=spool.filled - resumed,
            resumed=resumed,
        )
        if progress:
            progress(state)
        called = run_calls(
            prep.backend,
            prep.provider,
            ((i, prep.units[i].unit_id, prep.request(i)) for i in misses),
            len(misses),
            cache=cache,
            journal=journal,
            progress=state,
            on_outcome=spool.put,
            on_progress=progress,
        )
        if journal is not None:
            journal.close()
            journal = None
        if spool.filled != len(prep.units):  # every unit ends with an outcome, or the run must not report
            raise ResultsError(f"internal error: {len(prep.units) - spool.filled} unit(s) have no outcome")
        result = _finish(
            ws,
            prep,
            identity,
            spool,
            out_dir,
            data_path,
            started,
            t0,
            {"resumed_units": resumed, "called_now": called},
        )
        drop_replaced(out_dir)  # committed: a run that --force replaced can go now
        return result
    except RepeatedFailure as e:
        raise _stopped(out_dir, f"the run stopped: {e}") from None
    except BaseException as e:
        if not planned:  # the new run wrote nothing: the earlier one is put back, an empty new folder removed
            restore_replaced(out_dir, aside)
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            if isinstance(e, OSError):
                raise cannot_write(Path(e.filename) if e.filename else out_dir, e) from e
        elif isinstance(e, OSError):  # the disk filled up, or the folder went away or read-only, mid-run
            raise _write_failure(out_dir, e) from e
        raise
    finally:
        prep.backend.close()
        if journal is not None:
            journal.abandon()
        if cache is not None:
            cache.close()
        spool.close()


def _finish(
    ws: Workspace,
    prep: Prepared,
    identity: RunIdentity,
    spool: OutcomeSpool,
    out_dir: Path,
    data_path: Path,
    started: str,
    t0: float,
    extra_counts: dict[str, int],
) -> RunResult:
    """Write units.jsonl and items.jsonl in plan order, one item at a time, then the metrics."""
    config, config_hash = identity.config, identity.config_hash
    tally = UnitTally()
    items: list[dict[str, Any]] = []
    hits = 0
    with JsonlWriter(out_dir / "units.jsonl") as units_out, JsonlWriter(out_dir / "items.jsonl") as items_out:
        i = 0
        for item in prep.dataset:
            rows = []
            # Units are planned item by item, so an item's units are consecutive.
            while i < len(prep.units) and prep.units[i].item.id == item.id:
                outcome = spool.get(i)
                hits += outcome.cache_hit
                row = unit_row(prep, i, outcome)
                units_out.write(row)
                tally.add(row)
                rows.append(row)
                i += 1
            item_row = {**score_item(item, rows, prep.judge), "item_sha256": prep.item_sha256[item.id]}
            items_out.write(item_row)
            items.append(item_summary(item_row))  # not its scores and judgements: memory stays flat
        if i != len(prep.units):
            raise ResultsError(f"internal error: units out of plan order at {prep.units[i].unit_id}")
    metrics = run_metrics(items, prep.dataset, prep.judge, tally)
    calls = extra_counts["called_now"]
    manifest = {
        "run_id": out_dir.name,
        "config": redact(config),
        "config_hash": config_hash,
        "identity": identity.record(),
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
            "units": len(prep.units),
            "by_status": dict(sorted(tally.by_status.items())),
            "cache_hits": hits,
            "provider_calls": calls if prep.backend.cacheable else 0,
            "computed_locally": 0 if prep.backend.cacheable else calls,
            "resumed_from_journal": extra_counts["resumed_units"],
            "items_ok": metrics["n_items"],
            "items_failed": metrics["n_failed"],
        },
        "tokens": dict(tally.tokens),
    }
    if prep.warnings:
        manifest["warnings"] = prep.warnings
    if prep.summaries:
        write_jsonl(out_dir / "summaries.jsonl", prep.summaries)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "manifest.json", manifest)
    errors = Counter(r["error"] for r in items if r["status"] != "ok" and r.get("error"))
    return RunResult(out_dir, metrics, manifest, errors.most_common(1)[0][0] if errors else None)


def render_item(
    ws: Workspace, judge_name: str, data_path: Path, item_id: str, overrides: dict[str, Any] | None = None
) -> tuple[Prepared, list[int]]:
    """The units of one item, planned exactly as a run would, without calling anything."""
    prep = prepare(ws, judge_name, data_path, overrides=overrides)
    idx = [i for i, u in enumerate(prep.units) if u.item.id == item_id]
    if not idx:
        raise ConfigError(f"no item {item_id!r} in {data_path}")
    return prep, idx
