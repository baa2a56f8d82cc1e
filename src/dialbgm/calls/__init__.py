"""Sending requests: the response cache, the concurrent engine with retries and rate limits,
the call journal, and the backends behind one Protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "BATCHES",
    "JOURNAL",
    "RECOVERY",
    "Backend",
    "BatchesPending",
    "CacheError",
    "JournalWriter",
    "OutcomeSpool",
    "Progress",
    "ProgressFn",
    "RepeatedFailure",
    "ResponseCache",
    "Transfer",
    "UnitOutcome",
    "base_url_from_environment",
    "batches_active",
    "describe_batches",
    "export_entries",
    "import_entries",
    "iter_journal",
    "make_backend",
    "model_identity",
    "read_batches",
    "read_plan",
    "renders_prompts",
    "run_batches",
    "run_calls",
    "write_plan",
]

_WHERE = {
    "AUDIO_TOKENS_PER_SECOND": "._engine",
    "BATCHES": "._batch",
    "JOURNAL": "._journal",
    "RECOVERY": "._cache",
    "Backend": ".backends._base",
    "BatchesPending": "._batch",
    "CacheError": "._cache",
    "JournalWriter": "._journal",
    "OutcomeSpool": "._spool",
    "Progress": "._outcome",
    "ProgressFn": "._outcome",
    "RepeatedFailure": "._outcome",
    "ResponseCache": "._cache",
    "Transfer": "._transfer",
    "UnitOutcome": "._outcome",
    "base_url_from_environment": ".backends._litellm",
    "batches_active": "._batch",
    "describe_batches": "._batch",
    "export_entries": "._transfer",
    "import_entries": "._transfer",
    "iter_journal": "._journal",
    "make_backend": ".backends._factory",
    "model_identity": ".backends._factory",
    "read_batches": "._batch",
    "read_plan": "._journal",
    "renders_prompts": ".backends._factory",
    "run_batches": "._batch",
    "run_calls": "._engine",
    "write_plan": "._journal",
}

if TYPE_CHECKING:
    from dialbgm.calls._batch import (
        BATCHES,
        BatchesPending,
        batches_active,
        describe_batches,
        read_batches,
        run_batches,
    )
    from dialbgm.calls._cache import RECOVERY, CacheError, ResponseCache
    from dialbgm.calls._engine import AUDIO_TOKENS_PER_SECOND, run_calls
    from dialbgm.calls._journal import JOURNAL, JournalWriter, iter_journal, read_plan, write_plan
    from dialbgm.calls._outcome import Progress, ProgressFn, RepeatedFailure, UnitOutcome
    from dialbgm.calls._spool import OutcomeSpool
    from dialbgm.calls._transfer import Transfer, export_entries, import_entries
    from dialbgm.calls.backends._base import Backend
    from dialbgm.calls.backends._factory import make_backend, model_identity, renders_prompts
    from dialbgm.calls.backends._litellm import base_url_from_environment

__getattr__ = exports(__name__, _WHERE)
