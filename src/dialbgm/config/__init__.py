"""What defines a judge: judge, provider and experiment files, criteria, prices, and the
workspace they are found in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "CRITERIA_FILE",
    "JUDGE",
    "TASK_FILE",
    "TEMPLATE_FILES",
    "JudgeConfig",
    "PriceTable",
    "ProviderConfig",
    "TaskInfo",
    "Workspace",
    "builtin_root",
    "check_recordable",
    "few_shot_pool_path",
    "find_workspace",
    "init_workspace",
    "known_templates",
    "load_judge",
    "load_prices",
    "load_provider",
    "parse_overrides",
    "read_task",
    "read_template_criteria",
    "require_key",
    "stable_hash",
    "stated",
]

_WHERE = {
    "CRITERIA_FILE": "._criteria",
    "JUDGE": "._starter",
    "JudgeConfig": "._models",
    "PriceTable": "._prices",
    "ProviderConfig": "._models",
    "TASK_FILE": "._criteria",
    "TEMPLATE_FILES": "._criteria",
    "TaskInfo": "._criteria",
    "Workspace": "._workspace",
    "builtin_root": "._workspace",
    "check_recordable": "._config",
    "few_shot_pool_path": "._checks",
    "find_workspace": "._workspace",
    "init_workspace": "._starter",
    "known_templates": "._criteria",
    "load_judge": "._config",
    "load_prices": "._prices",
    "load_provider": "._config",
    "parse_overrides": "._config",
    "read_task": "._criteria",
    "read_template_criteria": "._criteria",
    "require_key": "._checks",
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
    from dialbgm.config._models import JudgeConfig, ProviderConfig, stable_hash
    from dialbgm.config._prices import PriceTable, load_prices
    from dialbgm.config._starter import JUDGE, init_workspace
    from dialbgm.config._workspace import Workspace, builtin_root, find_workspace

__getattr__ = exports(__name__, _WHERE)
