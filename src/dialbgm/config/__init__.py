"""What defines a judge: judge, provider and experiment files, criteria, prices, and the
workspace they are found in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "CAPABILITIES_RECORDED_WHEN_SET",
    "CARRIED_OUT",
    "CRITERIA_FILE",
    "JUDGE",
    "RATE_KINDS",
    "RETRIEVAL_KINDS",
    "TASK_FILE",
    "TEMPLATE_FILES",
    "Cell",
    "Charge",
    "Experiment",
    "ExperimentError",
    "JudgeConfig",
    "Price",
    "PriceMode",
    "PriceTable",
    "ProviderConfig",
    "RateKind",
    "TaskInfo",
    "Workspace",
    "add_unit_tokens",
    "builtin_root",
    "cell_id",
    "check_recordable",
    "few_shot_pool_path",
    "find_workspace",
    "format_level",
    "init_workspace",
    "known_templates",
    "load_experiment",
    "load_judge",
    "load_prices",
    "load_provider",
    "parse_experiment",
    "parse_overrides",
    "price_tokens",
    "read_task",
    "read_template_criteria",
    "require_key",
    "resolve_experiment_path",
    "stable_hash",
    "stated",
]

_WHERE = {
    "CAPABILITIES_RECORDED_WHEN_SET": "._models",
    "CARRIED_OUT": "._models",
    "CRITERIA_FILE": "._criteria",
    "JUDGE": "._starter",
    "RATE_KINDS": "._prices",
    "RETRIEVAL_KINDS": "._query",
    "TASK_FILE": "._criteria",
    "TEMPLATE_FILES": "._criteria",
    "Cell": "._experiment",
    "Charge": "._prices",
    "Experiment": "._experiment",
    "ExperimentError": "._experiment",
    "JudgeConfig": "._models",
    "Price": "._prices",
    "PriceMode": "._prices",
    "PriceTable": "._prices",
    "ProviderConfig": "._models",
    "RateKind": "._prices",
    "TaskInfo": "._criteria",
    "Workspace": "._workspace",
    "add_unit_tokens": "._prices",
    "builtin_root": "._workspace",
    "cell_id": "._experiment",
    "check_recordable": "._config",
    "few_shot_pool_path": "._checks",
    "find_workspace": "._workspace",
    "format_level": "._experiment",
    "init_workspace": "._starter",
    "known_templates": "._criteria",
    "load_experiment": "._experiment",
    "load_judge": "._config",
    "load_prices": "._prices",
    "load_provider": "._config",
    "parse_experiment": "._experiment",
    "parse_overrides": "._config",
    "price_tokens": "._prices",
    "read_task": "._criteria",
    "read_template_criteria": "._criteria",
    "require_key": "._checks",
    "resolve_experiment_path": "._experiment",
    "stable_hash": "._models",
    "stated": "._criteria",
}

if TYPE_CHECKING:
    from dialbgm.config._checks import few_shot_pool_path, require_key
    from dialbgm.config._config import check_recordable, load_judge, load_provider, parse_overrides
    from dialbgm.config._criteria import (
        CRITERIA_FILE,
        TASK_FILE,
        TEMPLATE_FILES,
        TaskInfo,
        known_templates,
        read_task,
        read_template_criteria,
        stated,
    )
    from dialbgm.config._experiment import (
        Cell,
        Experiment,
        ExperimentError,
        cell_id,
        format_level,
        load_experiment,
        parse_experiment,
        resolve_experiment_path,
    )
    from dialbgm.config._models import (
        CAPABILITIES_RECORDED_WHEN_SET,
        CARRIED_OUT,
        JudgeConfig,
        ProviderConfig,
        stable_hash,
    )
    from dialbgm.config._prices import (
        RATE_KINDS,
        Charge,
        Price,
        PriceMode,
        PriceTable,
        RateKind,
        add_unit_tokens,
        load_prices,
        price_tokens,
    )
    from dialbgm.config._query import RETRIEVAL_KINDS
    from dialbgm.config._starter import JUDGE, init_workspace
    from dialbgm.config._workspace import Workspace, builtin_root, find_workspace

__getattr__ = exports(__name__, _WHERE)
