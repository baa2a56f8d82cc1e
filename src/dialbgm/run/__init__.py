"""One run and one experiment, end to end: spec, prepare, identity, execute, record, score."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "RETRY_STATUSES",
    "SPEC_FILE",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "budget_problem",
    "evaluate",
    "file_sha256",
    "item_sha256",
    "plan_cells",
    "plan_eval",
    "read_spec",
    "render_item",
    "resume_run",
    "run_cells",
    "run_eval",
]

_WHERE = {
    "RETRY_STATUSES": "._spec",
    "RunOptions": "._spec",
    "RunResult": "._record",
    "RunSpec": "._spec",
    "SPEC_FILE": "._cells",
    "budget_problem": "._cells",
    "evaluate": "._entry",
    "file_sha256": "._identity",
    "item_sha256": "._identity",
    "plan_cells": "._cells",
    "plan_eval": "._cells",
    "read_spec": "._cells",
    "render_item": "._prepare",
    "resume_run": "._entry",
    "run_cells": "._cells",
    "run_eval": "._entry",
}

if TYPE_CHECKING:
    from dialbgm.run._cells import SPEC_FILE, budget_problem, plan_cells, plan_eval, read_spec, run_cells
    from dialbgm.run._entry import evaluate, resume_run, run_eval
    from dialbgm.run._identity import file_sha256, item_sha256
    from dialbgm.run._prepare import render_item
    from dialbgm.run._record import RunResult
    from dialbgm.run._spec import RETRY_STATUSES, RunOptions, RunSpec

__getattr__ = exports(__name__, _WHERE)
