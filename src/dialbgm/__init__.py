"""dialbgm: judge background music for everyday dialogues with LLMs (the DialBGM benchmark).

The public API is small and stable; everything else is implementation. Names are imported
lazily so that ``import dialbgm`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Candidate",
    "ConfigError",
    "DataError",
    "Dataset",
    "DialbgmError",
    "Experiment",
    "Item",
    "JudgeConfig",
    "Problem",
    "ProviderConfig",
    "ResponseCache",
    "Run",
    "RunResult",
    "Turn",
    "find_workspace",
    "item_metrics",
    "load_dataset",
    "load_experiment",
    "load_judge",
    "load_provider",
    "load_run",
    "run_eval",
]

_WHERE = {
    "Candidate": "dialbgm.data",
    "Dataset": "dialbgm.data",
    "Item": "dialbgm.data",
    "Turn": "dialbgm.data",
    "load_dataset": "dialbgm.data",
    "ConfigError": "dialbgm.errors",
    "DataError": "dialbgm.errors",
    "DialbgmError": "dialbgm.errors",
    "Problem": "dialbgm.errors",
    "JudgeConfig": "dialbgm.config",
    "ProviderConfig": "dialbgm.config",
    "load_judge": "dialbgm.config",
    "load_provider": "dialbgm.config",
    "ResponseCache": "dialbgm.cache",
    "RunResult": "dialbgm.runner",
    "run_eval": "dialbgm.runner",
    "find_workspace": "dialbgm.workspace",
    "item_metrics": "dialbgm.metrics",
    "Run": "dialbgm.frames",
    "Experiment": "dialbgm.frames",
    "load_run": "dialbgm.frames",
    "load_experiment": "dialbgm.frames",
}

if TYPE_CHECKING:
    from dialbgm.cache import ResponseCache
    from dialbgm.config import JudgeConfig, ProviderConfig, load_judge, load_provider
    from dialbgm.data import Candidate, Dataset, Item, Turn, load_dataset
    from dialbgm.errors import ConfigError, DataError, DialbgmError, Problem
    from dialbgm.frames import Experiment, Run, load_experiment, load_run
    from dialbgm.metrics import item_metrics
    from dialbgm.runner import RunResult, run_eval
    from dialbgm.workspace import find_workspace


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'dialbgm' has no attribute {name!r}")
