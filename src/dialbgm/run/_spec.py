"""What a run is (:class:`RunSpec`, hashed into its identity) apart from how it is carried out
(:class:`RunOptions`, never hashed): two runs with the same spec give the same results, whatever
their options."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.errors import ConfigError

if TYPE_CHECKING:
    from dialbgm.calls import ProgressFn

FAILED_REPLY_STATUSES = ("parse_error", "truncated", "refused")
"""Replies that arrived but gave no score: cached like any reply, so only a re-ask changes them."""
RETRY_STATUSES = ("transport_error", *FAILED_REPLY_STATUSES)


@dataclass(frozen=True)
class RunSpec:
    """What defines a run's results: the judge, the data, the overrides and the limit. These are
    what the run's ``config_hash`` is made from (with the files they name), and what ``--resume``
    reads back from ``plan.json``."""

    judge: str
    """A judge name (a file in ``judges/``)."""
    data: Path
    limit: int | None = None
    """Only the first ``limit`` items."""
    overrides: Mapping[str, Any] | None = None
    """``--set`` values, applied over the judge file."""

    def override_dict(self) -> dict[str, Any] | None:
        return None if self.overrides is None else dict(self.overrides)


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out; none of it is part of the run's identity."""

    out_dir: Path | None = None
    """The run's folder; default: a new one under ``results/``."""
    force: bool = False
    """Replace the files of a run already in ``out_dir``."""
    use_cache: bool = True
    progress: ProgressFn | None = None
    provider_overrides: Mapping[str, Any] = field(default_factory=dict)
    """``concurrency``, ``rpm``, ``tpm`` for this run (a None value leaves the provider's)."""
    retry_failed: bool = False
    """With :func:`resume_run`: call again the units that ended ``transport_error``."""
    retry_statuses: Collection[str] = ()
    """With :func:`resume_run`: the statuses to ask again, among :data:`RETRY_STATUSES` (or ``all``)."""
    carried_attempts: Mapping[str, int] | None = None
    """Unit id → the attempt an earlier run of this very config reached (``compare`` keeps a
    cell's re-asks when it runs the cell again)."""
    batch: bool | None = None
    """Send the uncached calls through the provider's batch API (None: the judge's ``batch``)."""
    batch_deadline_s: float | None = None
    """Cancel a batch still pending or running this long after submission (None: the judge's)."""
    batch_wait: bool = True
    """False: submit the batches, record them and stop (``compare`` submits every cell first)."""

    def retry_set(self) -> set[str]:
        """The statuses to ask again; ``all`` stands for every failure status."""
        out = {"transport_error"} if self.retry_failed else set()
        for s in self.retry_statuses:
            if s == "all":
                out.update(RETRY_STATUSES)
            elif s in RETRY_STATUSES:
                out.add(s)
            else:
                raise ConfigError(f"--retry-status: unknown status {s!r} (known: {', '.join(RETRY_STATUSES)}, all)")
        return out
