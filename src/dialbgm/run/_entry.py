"""The entry points of one run: :func:`evaluate` a :class:`RunSpec`, :func:`resume_run` an
interrupted run from its folder, and :func:`run_eval`, the keyword form both had before.

A run goes: plan (:mod:`._prepare`) → what need not be called (:mod:`._lookup`) → calls
(:mod:`._execute`) → files (:mod:`._record`). The run's folder is locked from before its first
write (resuming: from the start) to the end, so a second process writing the same folder stops
with a clear error instead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.calls import OutcomeSpool, ProgressFn, RepeatedFailure, ResponseCache, read_plan, write_plan
from dialbgm.config import Workspace, check_recordable, stable_hash
from dialbgm.errors import ConfigError, ResultsError, RunStoppedError
from dialbgm.run._execute import call_misses, stopped
from dialbgm.run._folders import RunLock, check_out_dir, drop_replaced, new_run_dir, prepare_out_dir, restore_replaced
from dialbgm.run._identity import quick_identity
from dialbgm.run._lookup import gather
from dialbgm.run._prepare import Prepared, check_can_call, prepare, prepared_identity
from dialbgm.run._record import RunResult, finish
from dialbgm.run._spec import RunOptions, RunSpec
from dialbgm.storage import REDACTED, cannot_write, redact, utc_now

if TYPE_CHECKING:
    from dialbgm.run._summaries import SummaryPlan


def evaluate(ws: Workspace, spec: RunSpec, options: RunOptions | None = None) -> RunResult:
    """Evaluate one judge on one data file: the run that ``spec`` defines, carried out as
    ``options`` say (``options.retry_*`` belong to :func:`resume_run`)."""
    options = options or RunOptions()
    if options.retry_set():
        raise ConfigError(
            "--retry-failed / --retry-status re-attempt the failed calls of a run: use it with --resume RUN"
        )
    # Recorded absolute, so that --resume finds the data from any folder.
    spec = replace(spec, data=Path(os.path.abspath(spec.data)))
    if options.out_dir is not None:
        check_out_dir(options.out_dir, options.force)  # an occupied --out fails before any summary is paid for
    with _locks() as held:
        return _carry_out(ws, spec, options, held, None)


def resume_run(
    ws: Workspace, run_dir: Path, options: RunOptions | None = None, *, overrides: Mapping[str, Any] | None = None
) -> RunResult:
    """Finish an interrupted run in ``run_dir``: the spec is the one its ``plan.json`` recorded,
    and only the units neither the cache nor its journal answered are called.

    ``overrides`` are needed only when the run's ``--set`` values held secrets (never recorded);
    ``options.provider_overrides`` apply over the recorded ones; ``options.out_dir`` and
    ``options.force`` are not used (the run stays in its folder). ``options.retry_failed`` calls
    again the units that ended ``transport_error``; ``options.retry_statuses`` asks again, as a
    new attempt, the replies that arrived but failed (see :func:`dialbgm.run._lookup.reask`).
    """
    options = options or RunOptions()
    options.retry_set()  # an unknown status fails before anything is read
    if not (run_dir / "plan.json").exists():
        raise ResultsError(f"--resume {run_dir}: no plan.json there (not a dialbgm run folder)")
    with _locks() as held:
        # Held to the end: a run that another process is still writing is not resumed under it.
        held.append(RunLock(run_dir).acquire())
        stored = read_plan(run_dir)
        args = stored["args"]
        if overrides is None and REDACTED in json.dumps(args["overrides"]):
            raise ConfigError(
                f"--resume {run_dir}: this run's --set values held secrets, which are never recorded; "
                "pass the same --set options again together with --resume"
            )
        spec = RunSpec(
            args["judge"], Path(args["data"]), args["limit"], args["overrides"] if overrides is None else overrides
        )
        provider_overrides = dict(args.get("provider_overrides") or {})
        provider_overrides.update({k: v for k, v in options.provider_overrides.items() if v is not None})
        options = replace(options, out_dir=run_dir, force=False, provider_overrides=provider_overrides)
        # Refuse a changed configuration before anything is called (summaries included).
        quick = quick_identity(ws, spec.judge, spec.data, spec.limit, spec.override_dict())
        _refuse_if_changed(run_dir, stored, quick.config)
        return _carry_out(ws, spec, options, held, _Resumed(run_dir, stored))


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
    """The keyword form of :func:`evaluate` (and, with ``resume``, of :func:`resume_run`, which
    then ignores ``judge_name``, ``data_path``, ``limit``, ``out_dir`` and ``force``)."""
    options = RunOptions(
        out_dir=out_dir,
        force=force,
        use_cache=use_cache,
        progress=progress,
        provider_overrides=provider_overrides or {},
        retry_failed=retry_failed,
        retry_statuses=retry_statuses,
        carried_attempts=carried_attempts,
    )
    if resume is not None:
        return resume_run(ws, resume, options, overrides=overrides)
    return evaluate(ws, RunSpec(judge_name, data_path, limit, overrides), options)


@dataclass(frozen=True)
class _Resumed:
    run_dir: Path
    plan: dict[str, Any]


@contextmanager
def _locks() -> Iterator[list[RunLock]]:
    held: list[RunLock] = []
    try:
        yield held
    finally:
        for lock in held:
            lock.release()


def _carry_out(
    ws: Workspace, spec: RunSpec, options: RunOptions, held: list[RunLock], resumed: _Resumed | None
) -> RunResult:
    statuses = options.retry_set()
    started = utc_now()
    t0 = time.perf_counter()
    overrides = spec.override_dict()
    provider_overrides = dict(options.provider_overrides)

    def plan(summaries_from: SummaryPlan | None = None) -> Prepared:
        # Summaries a summarizer must write are left pending: they are paid for below, only after
        # every check that can fail (the --out folder, the keys) has passed.
        return prepare(
            ws,
            spec.judge,
            spec.data,
            limit=spec.limit,
            overrides=overrides,
            provider_overrides=provider_overrides,
            defer_summaries=True,
            use_cache=options.use_cache,
            summaries_from=summaries_from,
        )

    prep = plan()
    identity = prepared_identity(ws, prep, spec.data, spec.limit, overrides)
    config, config_hash = identity.config, identity.config_hash
    if resumed is not None:
        _refuse_if_changed(resumed.run_dir, resumed.plan, config)
    # The plan is written before the first call and before an earlier run is moved aside: a value
    # JSON cannot hold (NaN, infinity) from any source is refused here, by name.
    check_recordable(config, "the run's config")
    out_dir = options.out_dir
    default_out = out_dir is None
    if out_dir is None:
        stamp = started.replace(":", "").replace("-", "")[:15]
        out_dir = ws.results_dir / f"{stamp}-{prep.judge.name}-{config_hash[:8]}"  # made unique below

    cache = ResponseCache.for_workspace(ws) if options.use_cache else None
    journal_dir = resumed.run_dir if resumed is not None else None
    # On the workspace's disk: /tmp may be memory (tmpfs), which would defeat the spool.
    spool = OutcomeSpool(len(prep.units), directory=ws.root)
    aside: Path | None = None  # an earlier run that --force moved out of the way
    created: Path | None = None  # the default folder, once this run has made it
    planned = resumed is not None  # from here on, a failure leaves a run that --resume can finish
    try:
        misses, n_resumed = gather(prep, cache, spool, journal_dir, statuses, options.carried_attempts)
        check_can_call(prep, misses)
        if resumed is None:
            # Everything has been checked: only now is an existing folder touched.
            if default_out:
                out_dir = created = new_run_dir(out_dir.parent, out_dir.name)
            lock, aside = prepare_out_dir(out_dir, options.force)
            held.append(lock)
        if prep.pending_summaries is not None:
            # The first summary call happens here, after every check above; then the run is planned
            # again with the summaries in place of their placeholders.
            prep.backend.close()
            prep.pending_summaries.generate(ws)
            prep = plan(prep.pending_summaries)
            spool.close()
            spool = OutcomeSpool(len(prep.units), directory=ws.root)
            misses, n_resumed = gather(prep, cache, spool, journal_dir, statuses, options.carried_attempts)
            check_can_call(prep, misses)
        if resumed is None:
            write_plan(
                out_dir,
                {
                    "args": {
                        "judge": spec.judge,
                        "data": str(spec.data),
                        "limit": spec.limit,
                        "overrides": redact(overrides or {}),
                        "provider_overrides": provider_overrides,
                    },
                    "config": redact(config),
                    "config_hash": config_hash,
                },
                ((u.unit_id, k) for u, k in zip(prep.units, prep.keys, strict=True)),
            )
            planned = True
        batch_counts: dict[str, int] = {}
        called = call_misses(prep, misses, cache, spool, out_dir, n_resumed, options.progress, options, batch_counts)
        if spool.filled != len(prep.units):  # every unit ends with an outcome, or the run must not report
            raise ResultsError(f"internal error: {len(prep.units) - spool.filled} unit(s) have no outcome")
        counts = {"resumed_units": n_resumed, "called_now": called, **batch_counts}
        if cache is not None and (cache.url or cache.not_stored_total):
            counts["cache_not_stored"] = cache.not_stored_total
            counts["cache_shared"] = 1 if cache.url else 0
        result = finish(ws, prep, identity, spool, out_dir, spec.data, started, t0, counts)
        drop_replaced(out_dir)  # committed: a run that --force replaced can go now
        return result
    except RepeatedFailure as e:
        raise stopped(out_dir, f"the run stopped: {e}") from None
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
        if cache is not None:
            cache.close()
        spool.close()


def _write_failure(out_dir: Path, e: OSError) -> RunStoppedError:
    where = f" ({e.filename})" if e.filename else ""
    return stopped(out_dir, f"the run stopped: writing its files failed{where}: {e.strerror or e}")


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
