"""One run and one experiment, end to end: prepare, identity, execute, record, score."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "SPEC_FILE",
    "RunResult",
    "budget_problem",
    "file_sha256",
    "item_sha256",
    "load_experiment",
    "plan_cells",
    "read_spec",
    "render_item",
    "run_cells",
    "run_eval",
]

_WHERE = {
    "RunResult": "._runner",
    "SPEC_FILE": "._experiment",
    "budget_problem": "._experiment",
    "file_sha256": "._identity",
    "item_sha256": "._identity",
    "load_experiment": "._experiment",
    "plan_cells": "._experiment",
    "read_spec": "._experiment",
    "render_item": "._runner",
    "run_cells": "._experiment",
    "run_eval": "._runner",
}

if TYPE_CHECKING:
    from dialbgm.run._experiment import SPEC_FILE, budget_problem, load_experiment, plan_cells, read_spec, run_cells
    from dialbgm.run._identity import file_sha256, item_sha256
    from dialbgm.run._runner import RunResult, render_item, run_eval

__getattr__ = exports(__name__, _WHERE)
