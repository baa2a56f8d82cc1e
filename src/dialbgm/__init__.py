"""dialbgm: judge background music for everyday dialogues with LLMs (the DialBGM benchmark).

The public API is small and stable; everything else is implementation. Names are imported
lazily so that ``import dialbgm`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

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
    "RunOptions",
    "RunResult",
    "RunSpec",
    "Turn",
    "evaluate",
    "find_workspace",
    "item_metrics",
    "load_dataset",
    "load_experiment",
    "load_judge",
    "load_provider",
    "load_run",
    "resume_run",
    "run_eval",
]

_WHERE = {
    "Candidate": ".data",
    "Dataset": ".data",
    "Item": ".data",
    "Turn": ".data",
    "load_dataset": ".data",
    "ConfigError": ".errors",
    "DataError": ".errors",
    "DialbgmError": ".errors",
    "Problem": ".errors",
    "JudgeConfig": ".config",
    "ProviderConfig": ".config",
    "load_judge": ".config",
    "load_provider": ".config",
    "find_workspace": ".config",
    "ResponseCache": ".calls",
    "RunOptions": ".run",
    "RunResult": ".run",
    "RunSpec": ".run",
    "evaluate": ".run",
    "resume_run": ".run",
    "run_eval": ".run",
    "item_metrics": ".metrics",
    "Run": ".analysis",
    "Experiment": ".analysis",
    "load_run": ".analysis",
    "load_experiment": ".analysis",
}

if TYPE_CHECKING:
    from dialbgm.analysis import Experiment, Run, load_experiment, load_run
    from dialbgm.calls import ResponseCache
    from dialbgm.config import JudgeConfig, ProviderConfig, find_workspace, load_judge, load_provider
    from dialbgm.data import Candidate, Dataset, Item, Turn, load_dataset
    from dialbgm.errors import ConfigError, DataError, DialbgmError, Problem
    from dialbgm.metrics import item_metrics
    from dialbgm.run import RunOptions, RunResult, RunSpec, evaluate, resume_run, run_eval

__getattr__ = exports(__name__, _WHERE)
