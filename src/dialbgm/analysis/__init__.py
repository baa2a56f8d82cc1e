"""Finished runs and experiments as tables and comparisons, without any call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "GENERATIONS",
    "RESULTS_FORMAT",
    "CatalogEntry",
    "CellData",
    "CellItem",
    "Experiment",
    "ItemAcross",
    "Run",
    "RunFolder",
    "analyse",
    "analyse_cells",
    "campaign_agreement",
    "catalog",
    "data_warning",
    "diff_runs",
    "experiment_entry",
    "export",
    "human_block",
    "item_across_cells",
    "load_any",
    "load_experiment",
    "load_folder",
    "load_run",
    "only_keys",
    "pair_taus",
    "pairable",
    "read_run_folder",
    "run_entry",
    "sign_vectors",
    "top_choice",
    "write_comparison",
]

_WHERE = {
    "GENERATIONS": "._readable",
    "RESULTS_FORMAT": "._readable",
    "CatalogEntry": "._catalog",
    "CellData": "._cells",
    "CellItem": "._across",
    "Experiment": "._frames",
    "ItemAcross": "._across",
    "Run": "._frames",
    "RunFolder": "._readable",
    "analyse": "._compare",
    "analyse_cells": "._compare",
    "campaign_agreement": "._human",
    "catalog": "._catalog",
    "data_warning": "._compare",
    "diff_runs": "._diff",
    "experiment_entry": "._catalog",
    "export": "._export",
    "human_block": "._human",
    "item_across_cells": "._across",
    "load_any": "._frames",
    "load_experiment": "._frames",
    "load_folder": "._cells",
    "load_run": "._frames",
    "only_keys": "._cells",
    "pair_taus": "._agreement",
    "pairable": "._cells",
    "read_run_folder": "._readable",
    "run_entry": "._catalog",
    "sign_vectors": "._agreement",
    "top_choice": "._diff",
    "write_comparison": "._compare",
}

if TYPE_CHECKING:
    from dialbgm.analysis._across import CellItem, ItemAcross, item_across_cells
    from dialbgm.analysis._agreement import pair_taus, sign_vectors
    from dialbgm.analysis._catalog import CatalogEntry, catalog, experiment_entry, run_entry
    from dialbgm.analysis._cells import CellData, load_folder, only_keys, pairable
    from dialbgm.analysis._compare import analyse, analyse_cells, data_warning, write_comparison
    from dialbgm.analysis._diff import diff_runs, top_choice
    from dialbgm.analysis._export import export
    from dialbgm.analysis._frames import Experiment, Run, load_any, load_experiment, load_run
    from dialbgm.analysis._human import campaign_agreement, human_block
    from dialbgm.analysis._readable import GENERATIONS, RESULTS_FORMAT, RunFolder, read_run_folder

__getattr__ = exports(__name__, _WHERE)
