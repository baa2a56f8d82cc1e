"""One evaluation run: plan → render → request → cache → call → parse → rank → metrics → files.

Everything that can fail on the user's input fails before the first call: data validation,
judge and provider files, missing summaries, missing API keys (checked only when some request
is not cached, so a cached re-run needs no key).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.audio_input import audio_ref, audio_spec, check_request_size, clips_digest, prepare_clips, wants_audio
from dialbgm.backends import Backend, make_backend
from dialbgm.cache import ResponseCache
from dialbgm.config import JudgeConfig, ProviderConfig, load_judge, load_provider, require_key, stable_hash
from dialbgm.data import Dataset, load_dataset
from dialbgm.engine import Progress, ProgressFn, RepeatedFailure, UnitOutcome, run_calls
from dialbgm.errors import ConfigError, ResultsError, RunStoppedError
from dialbgm.journal import JOURNAL, JournalWriter, iter_journal, read_plan, write_plan
from dialbgm.parse import PARSER_VERSION, Parsed, listwise_schema, parse_reply, pointwise_schema
from dialbgm.plan import FewShotPool, Unit, build_units, load_pool
from dialbgm.prompts import PromptSet, labels_for
from dialbgm.redact import REDACTED, redact
from dialbgm.request import Request, Response
from dialbgm.results import (
    JsonlWriter,
    RunLock,
    cannot_write,
    check_out_dir,
    drop_replaced,
    git_state,
    new_run_dir,
    package_versions,
    prepare_out_dir,
    restore_replaced,
    utc_now,
    write_json,
    write_jsonl,
)
from dialbgm.scoring import UnitTally, run_metrics, score_item
from dialbgm.spool import OutcomeSpool
from dialbgm.summaries import summarizer_identity
from dialbgm.workspace import Workspace

if TYPE_CHECKING:
    from dialbgm.audio import PreparedClip


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
    units: list[Unit]
    backend: Backend
    prompts: PromptSet | None
    pool: FewShotPool | None
    summaries: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    """The cache key of each unit's request, in plan order."""
    messages_sha256: list[str] = field(default_factory=list)
    clips: dict[tuple[str, str], PreparedClip] | None = None
    """(item id, candidate id) → the clip as sent, when the judge hears the candidates."""
    _schemas: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def request(self, i: int) -> Request:
        unit = self.units[i]
        refs = None
        if self.clips is not None:
            dialect = self.provider.capabilities.audio_dialect
            refs = {c.id: audio_ref(self.clips[(unit.item.id, c.id)], dialect) for c in unit.shown}
        return _request_for(unit, self.judge, self.backend, self.prompts, self._schemas, refs)

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
) -> Prepared:
    """Plan a run. Summaries a summarizer must write are read from the cache, and generated
    (calls) only when ``allow_summary_calls``; planning alone never calls the judge."""
    judge = load_judge(ws, judge_name, overrides)
    provider = load_provider(ws, judge.provider)
    if provider_overrides:
        provider = _override_provider(provider, provider_overrides)
    dataset = load_dataset(data_path).limited(limit)
    backend = make_backend(judge, provider, ws)
    prompts = PromptSet(ws.prompts_dir / judge.template) if backend.needs_messages else None
    pool = None
    if judge.few_shot > 0:
        if not backend.needs_messages:
            raise ConfigError(f"judge {judge.name!r}: few_shot applies to LLM judges only")
        pool = load_pool(ws.resolve(judge.few_shot_pool), dataset)
    summaries: list[dict[str, Any]] = []
    if judge.context == "summary":
        from dialbgm.summaries import fill_summaries

        dataset, summaries = fill_summaries(ws, dataset, judge, allow_calls=allow_summary_calls)
    if judge.aggregation == "kemeny":
        from dialbgm.aggregate import KEMENY_MAX_CANDIDATES

        big = [i.id for i in dataset if len(i.candidates) > KEMENY_MAX_CANDIDATES]
        if big:
            raise ConfigError(
                f"aggregation=kemeny supports at most {KEMENY_MAX_CANDIDATES} candidates per item; "
                f"{len(big)} item(s) have more (first: {big[0]}); use mean or borda"
            )
    clips = None
    if wants_audio(judge):
        if not backend.needs_messages:
            raise ConfigError(f"judge {judge.name!r}: input = {judge.input!r} applies to LLM judges only")
        from dialbgm.audio import ClipStore

        spec = audio_spec(judge, provider)
        with ClipStore(ws.audio_dir) as store:
            clips = prepare_clips(dataset, spec, store)
    units = build_units(dataset, judge, pool)
    prep = Prepared(judge, provider, dataset, units, backend, prompts, pool, summaries, clips=clips)
    for unit, r in zip(units, prep.iter_requests(), strict=True):
        if clips is not None:
            check_request_size(r.messages, provider, f"item {unit.item.id!r} (unit {unit.unit_id})")
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
        hit = cache.get_key(key) if use and cache is not None else None
        if hit is not None:
            spool.put(i, UnitOutcome(hit, True, None))
        else:
            misses.append(i)
    return misses


def replay_journal(prep: Prepared, run_dir: Path, spool: OutcomeSpool, misses: list[int], retry_failed: bool) -> int:
    """Fill the cache misses that an interrupted run's journal answered; returns how many.

    A record counts only if its unit still has the same cache key; the last record of a unit
    wins; with ``retry_failed`` a unit whose last record failed is left to be called again.
    """
    todo = set(misses)
    index = {prep.units[i].unit_id: i for i in misses}
    for rec in iter_journal(run_dir):
        i = index.get(rec["unit_id"])
        if i is None or rec.get("cache_key") != prep.keys[i]:
            continue
        if retry_failed and rec.get("response") is None:
            spool.discard(i)
        else:
            spool.put(i, UnitOutcome.from_record(rec))
    return sum(1 for i in todo if spool.has(i))


def check_can_call(prep: Prepared, misses: list[int]) -> None:
    """Fail before any call when a call is needed and its key is missing."""
    if misses and getattr(prep.backend, "needs_key", False):
        require_key(prep.judge, prep.provider)


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
    from dialbgm.logprobs import expected_scores

    assert parsed.scores is not None
    if not response.logprobs:
        return parsed, {"sampled_scores": parsed.scores, "logprob_fallbacks": sorted(parsed.scores)}
    exp = expected_scores(response.text, response.logprobs, parsed.scores, labels, lo, hi)
    return replace(parsed, scores=exp.scores), {"sampled_scores": parsed.scores, "logprob_fallbacks": exp.fallbacks}


def _override_provider(provider: ProviderConfig, over: dict[str, Any]) -> ProviderConfig:
    """--concurrency / --rpm / --tpm for this run."""
    changes: dict[str, Any] = {}
    for key, value in over.items():
        if value is None:
            continue
        if key == "concurrency" and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"--concurrency must be a whole number >= 1, got {value!r}")
        if key in ("rpm", "tpm") and (not isinstance(value, int | float) or value <= 0):
            raise ConfigError(f"--{key} must be a number > 0, got {value!r}")
        if key not in ("concurrency", "rpm", "tpm"):
            raise ConfigError(f"unknown provider override {key!r}")
        changes[key] = float(value) if key in ("rpm", "tpm") else value
    return replace(provider, **changes)


def run_config(
    prep: Prepared, data_path: Path, limit: int | None, overrides: dict[str, Any] | None, ws: Workspace
) -> dict[str, Any]:
    """What defines a run's results: a resumed run must have exactly this again."""
    return _config_dict(
        prep.judge,
        prep.provider,
        data_path,
        prep.dataset.sha256,
        limit,
        prep.prompts.sha256 if prep.prompts else None,
        prep.pool.sha256 if prep.pool else None,
        overrides,
        summarizer_identity(ws, prep.judge),
        clips_digest(prep.clips) if prep.clips is not None else None,
    )


def _config_dict(
    judge: JudgeConfig,
    provider: ProviderConfig,
    data_path: Path,
    data_sha256: str,
    limit: int | None,
    template_sha256: str | None,
    pool_sha256: str | None,
    overrides: dict[str, Any] | None,
    summarizer: str | None,
    audio_sha256: str | None = None,
) -> dict[str, Any]:
    judge_record = {k: v for k, v in judge.to_dict().items() if k != "description"}  # cosmetic only
    config = {
        "judge": judge_record,
        "provider": _provider_record(provider),
        "data": {"path": str(data_path), "sha256": data_sha256, "limit": limit},
        "template_sha256": template_sha256,
        "few_shot_pool_sha256": pool_sha256,
        "summarizer_sha256": summarizer,
        "overrides": overrides or {},
        "parser_version": PARSER_VERSION,
    }
    if audio_sha256 is not None:
        # The data file names the clips; this hash is of what is sent, so an edited clip changes the run.
        config["audio_sha256"] = audio_sha256
    return config


def quick_config_hash(
    ws: Workspace, judge_name: str, data_path: Path, limit: int | None, overrides: dict[str, Any] | None
) -> str:
    """The config hash a run would have, without rendering anything (or loading the data,
    except for a judge that hears the clips).

    Lets ``compare`` recognise a cell whose finished folder is already up to date, and
    ``--resume`` refuse a changed configuration before anything (a summary included) is called.
    """
    return stable_hash(quick_config(ws, judge_name, data_path, limit, overrides))


def quick_config(
    ws: Workspace, judge_name: str, data_path: Path, limit: int | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    import hashlib

    judge = load_judge(ws, judge_name, overrides)
    provider = load_provider(ws, judge.provider)
    data_sha = hashlib.sha256(data_path.read_bytes()).hexdigest()
    prompts = PromptSet(ws.prompts_dir / judge.template) if provider.kind in ("litellm", "llama_cpp_server") else None
    pool_sha = None
    if judge.few_shot > 0:
        pool_sha = hashlib.sha256(ws.resolve(judge.few_shot_pool).read_bytes()).hexdigest()
    config = _config_dict(
        judge,
        provider,
        data_path,
        data_sha,
        limit,
        prompts.sha256 if prompts else None,
        pool_sha,
        overrides,
        summarizer_identity(ws, judge),
        _audio_digest(ws, judge, provider, data_path, limit) if wants_audio(judge) else None,
    )
    return config


def _audio_digest(
    ws: Workspace, judge: JudgeConfig, provider: ProviderConfig, data_path: Path, limit: int | None
) -> str:
    """For a judge that hears the clips, the quick config must see them too: a stat per clip
    when they are already prepared (the first time, preparing them is what the run does first)."""
    from dialbgm.audio import ClipStore

    spec = audio_spec(judge, provider)
    with ClipStore(ws.audio_dir) as store:
        return clips_digest(prepare_clips(load_dataset(data_path).limited(limit), spec, store))


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
) -> RunResult:
    """Evaluate one judge on one data file; or, with ``resume``, finish an interrupted run.

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
        )
    finally:
        for lock in held:
            lock.release()


def _check_recordable(config: dict[str, Any]) -> None:
    """The plan must be written before the first call (and before an earlier run is moved
    aside): a value JSON cannot hold (NaN, infinity) is refused here, by name."""
    import math

    bad = [k for k, v in _flatten(config).items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{', '.join(bad)}: must be a finite number (NaN and infinity cannot be recorded)")


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
) -> RunResult:
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
    elif retry_failed:
        raise ConfigError("--retry-failed re-attempts the failed calls of a run: use it with --resume RUN")
    if resume is None:
        # Recorded absolute, so that --resume finds the data from any folder.
        data_path = Path(os.path.abspath(data_path))
        if out_dir is not None:
            check_out_dir(out_dir, force)  # an occupied --out fails before any summary is paid for
    prep = prepare(
        ws,
        judge_name,
        data_path,
        limit=limit,
        overrides=overrides,
        provider_overrides=provider_overrides,
        allow_summary_calls=True,
    )
    config = run_config(prep, data_path, limit, overrides, ws)
    config_hash = stable_hash(config)
    if resume is not None and stored_plan is not None:
        _refuse_if_changed(resume, stored_plan, config)
    _check_recordable(config)
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
        misses = lookup(prep, cache, spool)
        resumed = replay_journal(prep, out_dir, spool, misses, retry_failed) if resume is not None else 0
        misses = [i for i in misses if not spool.has(i)]
        check_can_call(prep, misses)
        if resume is None:
            # Everything has been checked: only now is an existing folder touched.
            if default_out:
                out_dir = created = new_run_dir(out_dir.parent, out_dir.name)
            lock, aside = prepare_out_dir(out_dir, force)
            held.append(lock)
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
            config,
            config_hash,
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
    config: dict[str, Any],
    config_hash: str,
    spool: OutcomeSpool,
    out_dir: Path,
    data_path: Path,
    started: str,
    t0: float,
    extra_counts: dict[str, int],
) -> RunResult:
    """Write units.jsonl and items.jsonl in plan order, one item at a time, then the metrics."""
    tally = UnitTally()
    items: list[dict[str, Any]] = []
    hits = 0
    with JsonlWriter(out_dir / "units.jsonl") as units_out:
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
            items.append(score_item(item, rows, prep.judge))
        if i != len(prep.units):
            raise ResultsError(f"internal error: units out of plan order at {prep.units[i].unit_id}")
    metrics = run_metrics(items, prep.dataset, prep.judge, tally)
    calls = extra_counts["called_now"]
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
    if prep.summaries:
        write_jsonl(out_dir / "summaries.jsonl", prep.summaries)
    write_jsonl(out_dir / "items.jsonl", items)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "manifest.json", manifest)
    errors = Counter(r["error"] for r in items if r["status"] != "ok" and r.get("error"))
    return RunResult(out_dir, metrics, manifest, errors.most_common(1)[0][0] if errors else None)


# Settings that change how fast or how patiently a provider is called, never what it answers:
# left out of the config hash, so changing them neither blocks --resume nor re-runs a cell.
_THROUGHPUT = {
    "concurrency",
    "rpm",
    "tpm",
    "timeout",
    "max_attempts",
    "max_retry_seconds",
    "startup_timeout",
    "api_key_env",
    "api_key_required",
    "api_base_env",
}


def _provider_record(p: ProviderConfig) -> dict[str, Any]:
    """Every provider setting that can change an answer (the effective base URL included);
    the name of the key's variable is recorded in the manifest, never its value."""
    from dataclasses import asdict

    record = {k: v for k, v in asdict(p).items() if k not in _THROUGHPUT}
    record["api_base"] = p.effective_api_base()
    return record


def render_item(
    ws: Workspace, judge_name: str, data_path: Path, item_id: str, overrides: dict[str, Any] | None = None
) -> tuple[Prepared, list[int]]:
    """The units of one item, planned exactly as a run would, without calling anything."""
    prep = prepare(ws, judge_name, data_path, overrides=overrides)
    idx = [i for i, u in enumerate(prep.units) if u.item.id == item_id]
    if not idx:
        raise ConfigError(f"no item {item_id!r} in {data_path}")
    return prep, idx
