"""Calling what the cache and the journal did not answer, through :mod:`dialbgm.calls`."""

from __future__ import annotations

from pathlib import Path

from dialbgm.calls import JOURNAL, JournalWriter, OutcomeSpool, Progress, ProgressFn, ResponseCache
from dialbgm.errors import RunStoppedError
from dialbgm.run._prepare import Prepared


def call_misses(
    prep: Prepared,
    misses: list[int],
    cache: ResponseCache | None,
    spool: OutcomeSpool,
    out_dir: Path,
    resumed: int,
    progress: ProgressFn | None,
) -> int:
    """Call the units ``misses``: each outcome is journaled in ``out_dir`` (so ``--resume`` can
    finish the run), cached, and handed to ``spool``. Returns the calls made."""
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
        if misses:  # a fully cached run never loads the engine (nor asyncio)
            from dialbgm.calls import run_calls

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
        journal.close()
    except BaseException:
        journal.abandon()
        raise
    return called


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
