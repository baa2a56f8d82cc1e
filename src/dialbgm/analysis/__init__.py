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
    "data_warning",
    "diff_runs",
    "export",
    "load_any",
    "load_experiment",
    "load_folder",
    "load_run",
    "only_keys",
    "pair_taus",
    "pairable",
    "sign_vectors",
    "write_comparison",
]

_WHERE = {
    "CellData": "._compare",
    "Experiment": "._frames",
    "Run": "._frames",
    "analyse": "._compare",
    "analyse_cells": "._compare",
    "data_warning": "._compare",
    "diff_runs": "._compare",
    "export": "._export",
    "load_any": "._frames",
    "load_experiment": "._frames",
    "load_folder": "._compare",
    "load_run": "._frames",
    "only_keys": "._compare",
    "pair_taus": "._compare",
    "pairable": "._compare",
    "sign_vectors": "._compare",
    "write_comparison": "._compare",
}

if TYPE_CHECKING:
    from dialbgm.analysis._compare import (
        CellData,
        analyse,
        analyse_cells,
        data_warning,
        diff_runs,
        load_folder,
        only_keys,
        pair_taus,
        pairable,
        sign_vectors,
        write_comparison,
    )
    from dialbgm.analysis._export import export
    from dialbgm.analysis._frames import Experiment, Run, load_any, load_experiment, load_run

__getattr__ = exports(__name__, _WHERE)
