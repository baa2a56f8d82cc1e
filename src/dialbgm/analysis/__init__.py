"""Finished runs and experiments as tables and comparisons, without any call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "CellData",
    "Experiment",
    "Run",
    "analyse",
    "analyse_cells",
    "campaign_agreement",
    "data_warning",
    "diff_runs",
    "export",
    "human_block",
    "load_any",
    "load_experiment",
    "load_folder",
    "load_run",
    "only_keys",
    "pair_taus",
    "pairable",
    "sign_vectors",
    "top_choice",
    "write_comparison",
]

_WHERE = {
    "CellData": "._cells",
    "Experiment": "._frames",
    "Run": "._frames",
    "analyse": "._compare",
    "analyse_cells": "._compare",
    "campaign_agreement": "._human",
    "data_warning": "._compare",
    "diff_runs": "._diff",
    "export": "._export",
    "human_block": "._human",
    "load_any": "._frames",
    "load_experiment": "._frames",
    "load_folder": "._cells",
    "load_run": "._frames",
    "only_keys": "._cells",
    "pair_taus": "._agreement",
    "pairable": "._cells",
    "sign_vectors": "._agreement",
    "top_choice": "._diff",
    "write_comparison": "._compare",
}

if TYPE_CHECKING:
    from dialbgm.analysis._agreement import pair_taus, sign_vectors
    from dialbgm.analysis._cells import CellData, load_folder, only_keys, pairable
    from dialbgm.analysis._compare import analyse, analyse_cells, data_warning, write_comparison
    from dialbgm.analysis._diff import diff_runs, top_choice
    from dialbgm.analysis._export import export
    from dialbgm.analysis._frames import Experiment, Run, load_any, load_experiment, load_run
    from dialbgm.analysis._human import campaign_agreement, human_block

__getattr__ = exports(__name__, _WHERE)
