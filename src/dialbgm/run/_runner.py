"""The run's names where they were importable before the runner was split by job.

New code imports from the module of each job: :mod:`._spec` (RunSpec, RunOptions),
:mod:`._prepare` (planning), :mod:`._lookup` (cache, journal, re-asks), :mod:`._execute` (calls),
:mod:`._record` (unit rows and files), :mod:`._entry` (evaluate, resume_run, run_eval). A test
that replaces a function must replace it in the module that looks it up, not here.
"""

from __future__ import annotations

from dialbgm.run._entry import config_changes, evaluate, resume_run, run_eval
from dialbgm.run._lookup import carry_attempts, gather, lookup, reask, replay_journal
from dialbgm.run._prepare import Prepared, check_can_call, prepare, prepared_identity, render_item
from dialbgm.run._record import RunResult, unit_row, variant_of
from dialbgm.run._spec import FAILED_REPLY_STATUSES, RETRY_STATUSES, RunOptions, RunSpec

__all__ = [
    "FAILED_REPLY_STATUSES",
    "RETRY_STATUSES",
    "Prepared",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "carry_attempts",
    "check_can_call",
    "config_changes",
    "evaluate",
    "gather",
    "lookup",
    "prepare",
    "prepared_identity",
    "reask",
    "render_item",
    "replay_journal",
    "resume_run",
    "run_eval",
    "unit_row",
    "variant_of",
]
