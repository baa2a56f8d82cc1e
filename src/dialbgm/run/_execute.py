"""Calling what the cache and the journal did not answer, through :mod:`dialbgm.calls`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dialbgm.calls import JOURNAL, JournalWriter, OutcomeSpool, Progress, ProgressFn, ResponseCache, batches_active
from dialbgm.errors import RunStoppedError
from dialbgm.judging import Request
from dialbgm.run._prepare import Prepared
from dialbgm.run._spec import RunOptions


def call_misses(
    prep: Prepared,
    misses: list[int],
    cache: ResponseCache | None,
    spool: OutcomeSpool,
    out_dir: Path,
    resumed: int,
    progress: ProgressFn | None,
    options: RunOptions | None = None,
    counts: dict[str, int] | None = None,
) -> int:
    """Call the units ``misses``: each outcome is journaled in ``out_dir`` (so ``--resume`` can
    finish the run), cached, and handed to ``spool``. Returns the calls made (batch lines included;
    ``counts["batch_calls"]`` gets those).

    In batch mode (``options.batch``, else the judge's ``batch``), and whenever the run has batches
    still out, the calls go through :func:`dialbgm.calls.run_batches` first, and what no batch
    answered is called online."""
    journal = JournalWriter(out_dir)
    try:
        state = Progress(
            total=len(prep.units),
            done=len(prep.units) - len(misses),
            cached=spool.filled - resumed,
            resumed=resumed,
        )
        if progress:
            progress(state)
        called = 0
        online: Iterator[tuple[int, str, Request]] = ((i, prep.units[i].unit_id, prep.request(i)) for i in misses)
        n_online = len(misses)
        if misses and _batching(prep, options, out_dir):
            from dialbgm.calls import BatchesPending, run_batches

            options = options or RunOptions()
            wanted = options.batch if options.batch is not None else prep.judge.batch
            batched = run_batches(
                prep.backend,
                prep.provider,
                [(i, prep.units[i].unit_id, prep.request(i)) for i in misses],
                run_dir=out_dir,
                cache=cache,
                journal=journal,
                progress=state,
                on_outcome=spool.put,
                on_progress=progress,
                deadline_s=options.batch_deadline_s or prep.judge.batch_deadline_s,
                wait=options.batch_wait,
                submit_new=wanted and prep.backend.batch_api != "none",
            )
            if batched.pending:
                journal.close()
                raise BatchesPending(out_dir)
            called = batched.answered
            if counts is not None:
                counts["batch_calls"] = batched.answered
            online, n_online = iter(batched.online), len(batched.online)
        if n_online:  # a fully cached run never loads the engine (nor asyncio)
            from dialbgm.calls import run_calls

            called += run_calls(
                prep.backend,
                prep.provider,
                online,
                n_online,
                cache=cache,
                journal=journal,
                progress=state,
                on_outcome=spool.put,
                on_progress=progress,
            )
        journal.close()
    except BaseException:
        journal.abandon()
        raise
    return called


def _batching(prep: Prepared, options: RunOptions | None, out_dir: Path) -> bool:
    wanted = options.batch if options is not None and options.batch is not None else prep.judge.batch
    if wanted and prep.backend.batch_api == "none":
        prep.warnings.append(
            f"judge {prep.judge.name!r}: provider {prep.provider.name!r} has no batch API "
            "(capabilities.batch_api), so its calls were made online"
        )
    return (wanted and prep.backend.batch_api != "none") or batches_active(out_dir)


def stopped(out_dir: Path, why: str) -> RunStoppedError:
    """A run that cannot go on: one message, which says what the journal still holds."""
    if (out_dir / JOURNAL).exists():
        then = (
            f"every call finished before this is recorded in {out_dir / JOURNAL}, which is intact; "
            f"fix the cause, then finish the run with:  dialbgm eval --resume {out_dir}"
        )
    else:
        then = f"{out_dir / JOURNAL} is gone, so nothing of this run can be resumed; start it again"
    return RunStoppedError(f"{why}\n{then}")
