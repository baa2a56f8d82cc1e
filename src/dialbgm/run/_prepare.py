"""Planning a run: judge, provider and data become a :class:`Prepared` — every unit and its cache
key — before anything is called.

Everything that can fail on the user's input fails here, before the first call: data validation,
judge and provider files, missing summaries, missing API keys (checked only when some request
is not cached, so a cached re-run needs no key).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.calls import Backend, make_backend, renders_prompts
from dialbgm.config import (
    JudgeConfig,
    ProviderConfig,
    Workspace,
    few_shot_pool_path,
    load_judge,
    load_provider,
    require_key,
)
from dialbgm.data import Dataset, load_dataset
from dialbgm.errors import ConfigError, JudgeDataError
from dialbgm.judging import (
    DigestTable,
    FewShotPool,
    PromptSet,
    Request,
    Unit,
    UnitPlan,
    audio_dialect,
    audio_ref,
    audio_spec,
    build_units,
    check_request_size,
    judge_fit_problems,
    labels_for,
    listwise_schema,
    load_pool,
    pointwise_schema,
    prepare_clips,
    wants_audio,
)
from dialbgm.run._identity import RunIdentity, item_sha256, run_identity

if TYPE_CHECKING:
    from dialbgm.data import PreparedClip
    from dialbgm.run._summaries import SummaryPlan


@dataclass
class Prepared:
    """A planned run: every unit and its cache key, nothing called yet.

    Requests are rendered when asked for (``request``) and not kept: a long run's rendered
    prompts would otherwise dominate its memory. Rendering is deterministic, so the request a
    worker sends is the one whose key was computed here.
    """

    judge: JudgeConfig
    provider: ProviderConfig
    dataset: Dataset
    units: UnitPlan
    backend: Backend
    prompts: PromptSet | None
    pool: FewShotPool | None
    summaries: list[dict[str, Any]] = field(default_factory=list)
    summaries_file: str = "summaries.jsonl"
    """Where ``summaries`` are recorded (``captions.jsonl`` for a retrieval judge's music captions)."""
    keys: DigestTable = field(default_factory=DigestTable)
    """The cache key of each unit's request, in plan order (on disk: see DigestTable)."""
    messages_sha256: DigestTable = field(default_factory=DigestTable)
    clips: dict[tuple[str, str], PreparedClip] | None = None
    """(item id, candidate id) → the clip as sent, when the judge hears the candidates."""
    warnings: list[str] = field(default_factory=list)
    """What was accepted but could not be checked (e.g. a few-shot pool with no declared task)."""
    _schemas: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    pending_summaries: SummaryPlan | None = None
    """Summaries still to be written (planned with ``defer_summaries``): the units of those items
    carry a placeholder until :func:`prepare` is called again with them written."""
    item_sha256: dict[str, str] = field(default_factory=dict)
    """Each item's content hash, as the data file gives it (before any generated summary)."""
    attempts: dict[int, int] = field(default_factory=dict)
    """Units asked again (``--retry-status``): unit index → the attempt its reply answers."""
    history: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    """Units asked again: the earlier replies, first asking first."""

    def request(self, i: int) -> Request:
        unit = self.units[i]
        refs = None
        if self.clips is not None:
            dialect = audio_dialect(self.judge, self.provider)
            refs = {c.id: audio_ref(self.clips[(unit.item.id, c.id)], dialect) for c in unit.shown}
        r = _request_for(unit, self.judge, self.backend, self.prompts, self._schemas, refs)
        attempt = self.attempts.get(i, 0)
        return replace(r, attempt=attempt) if attempt else r

    def is_pending(self, i: int) -> bool:
        """Whether unit ``i`` waits for a summary (its request holds a placeholder, never sent)."""
        return self.pending_summaries is not None and self.units[i].item.id in self.pending_summaries.pending_ids

    def set_attempt(self, i: int, attempt: int, superseded: dict[str, Any] | None) -> None:
        """Make unit ``i`` answer ``attempt``; ``superseded``, the history entry of the reply it
        had so far (see :func:`dialbgm.run._record.history_entry`), is kept in its history."""
        if superseded is not None:
            self.history.setdefault(i, []).append(superseded)
        self.attempts[i] = attempt
        self.keys[i] = self.request(i).cache_key()

    def iter_requests(self) -> Iterator[Request]:
        return (self.request(i) for i in range(len(self.units)))


def prepare(
    ws: Workspace,
    judge_name: str,
    data_path: Path,
    *,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
    provider_overrides: dict[str, Any] | None = None,
    allow_summary_calls: bool = False,
    defer_summaries: bool = False,
    use_cache: bool = True,
    summaries_from: SummaryPlan | None = None,
    planning: bool = False,
) -> Prepared:
    """Plan a run. Summaries a summarizer must write are read from the cache (unless not
    ``use_cache``), and generated (calls) only when ``allow_summary_calls``; with
    ``defer_summaries`` the plan is made with placeholders for them instead and the summaries
    left in ``pending_summaries``, so that the caller can check everything before paying for
    them, write them, and plan again with ``summaries_from``. Planning alone never calls the judge.
    ``planning``: for a dry run only, whose backend builds requests and computes nothing (a CLAP
    judge's absent weights are then no error: see :func:`dialbgm.calls.model_identity`)."""
    judge = load_judge(ws, judge_name, overrides)
    provider = load_provider(ws, judge.provider)
    if provider_overrides:
        provider = _override_provider(provider, provider_overrides)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        # items[:0] would be an empty run and items[:-1] all but the last item.
        raise ConfigError(f"--limit must be a whole number >= 1, got {limit!r}")
    dataset = load_dataset(data_path).limited(limit)
    item_hashes = {i.id: item_sha256(i) for i in dataset}
    from dialbgm.run._captions import CAPTIONS_FILE, check_query, needs_texts, plan_texts

    check_query(judge, provider)
    backend = make_backend(judge, provider, ws, planning=planning)
    prompts = PromptSet(ws.template_dir(judge.template)) if renders_prompts(provider) else None
    pool = None
    if judge.few_shot > 0:
        if not backend.needs_messages:
            raise ConfigError(f"judge {judge.name!r}: few_shot applies to LLM judges only")
        pool = load_pool(few_shot_pool_path(ws, judge), dataset, prompts)
    if problems := judge_fit_problems(judge, provider, dataset, pool):
        raise JudgeDataError(judge.name, problems)
    summaries: list[dict[str, Any]] = []
    pending = None
    if needs_texts(judge):
        splan = summaries_from or plan_texts(ws, dataset, judge, use_cache=use_cache)
        if splan.todo and allow_summary_calls and not defer_summaries:
            splan.generate(ws)
        if splan.todo and defer_summaries:
            pending = splan
            dataset = splan.with_placeholders(dataset)
        else:
            dataset, summaries = splan.apply(dataset)
    clips = None
    if wants_audio(judge):
        if not backend.needs_messages and provider.kind != "clap":
            raise ConfigError(f"judge {judge.name!r}: input = {judge.input!r} applies to LLM judges only")
        from dialbgm.data import ClipStore

        spec = audio_spec(judge, provider)
        with ClipStore(ws.audio_dir) as store:
            clips = prepare_clips(dataset, spec, store)
    units = build_units(dataset, judge, pool)
    prep = Prepared(
        judge,
        provider,
        dataset,
        units,
        backend,
        prompts,
        pool,
        summaries,
        clips=clips,
        pending_summaries=pending,
        summaries_file=CAPTIONS_FILE if judge.query == "music_caption" else "summaries.jsonl",
        item_sha256=item_hashes,
        keys=DigestTable(directory=ws.root),
        messages_sha256=DigestTable(directory=ws.root),
    )
    prep.warnings.extend(pool.warnings if pool else ())
    for unit, r in zip(units, prep.iter_requests(), strict=True):
        if clips is not None:
            where = f"{dataset.path}:{unit.item.source_line}: item {unit.item.id!r} (unit {unit.unit_id})"
            check_request_size(r.messages, provider, where)
        prep.keys.append(r.cache_key())
        prep.messages_sha256.append(r.messages_sha256())
    return prep


def _request_for(
    unit: Unit,
    judge: JudgeConfig,
    backend: Backend,
    prompts: PromptSet | None,
    schemas: dict[int, dict[str, Any]],
    clips: dict[str, dict[str, Any]] | None = None,
) -> Request:
    messages = None
    schema = None
    if prompts is None and clips is not None:
        # A backend that renders no prompt but hears the clips (CLAP) gets their audio parts.
        messages = [clips[c.id] for c in unit.shown]
    if prompts is not None:
        messages = prompts.messages(judge, unit.item, unit.shown, unit.shots, unit.labels or None, clips)
        n = len(unit.shown)
        if n not in schemas:
            lo, hi = judge.scale_min, judge.scale_max
            schemas[n] = (
                listwise_schema(labels_for(n), judge.cot, lo, hi)
                if judge.mode == "listwise"
                else pointwise_schema(judge.cot, lo, hi)
            )
        schema = schemas[n]
    return backend.build_request(unit.item, unit.shown, messages, schema, unit.sample)


def check_can_call(prep: Prepared, misses: list[int]) -> None:
    """Fail before any call when a call is needed and its key is missing (the summarizer's too)."""
    if misses and prep.backend.needs_key:
        require_key(prep.judge, prep.provider)
    if prep.pending_summaries is not None:
        prep.pending_summaries.check_can_call()


def _override_provider(provider: ProviderConfig, over: dict[str, Any]) -> ProviderConfig:
    """--concurrency / --rpm / --tpm for this run."""
    changes: dict[str, Any] = {}
    for key, value in over.items():
        if value is None:
            continue
        if key == "concurrency" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"--concurrency must be a whole number >= 1, got {value!r}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in ("rpm", "tpm") and not (number and math.isfinite(value) and value > 0):
            raise ConfigError(f"--{key} must be a number > 0 (and finite), got {value!r}")
        if key not in ("concurrency", "rpm", "tpm"):
            raise ConfigError(f"unknown provider override {key!r}")
        changes[key] = float(value) if key in ("rpm", "tpm") else value
    return replace(provider, **changes)


def prepared_identity(
    ws: Workspace, prep: Prepared, data_path: Path, limit: int | None, overrides: dict[str, Any] | None
) -> RunIdentity:
    """:func:`dialbgm.run._identity.run_identity` of a planned run: the same function as
    :func:`~dialbgm.run._identity.quick_identity`, given the data's hash, the clips and the
    template folder's hash the plan has already read instead of reading them again."""
    return run_identity(
        ws,
        prep.judge,
        prep.provider,
        data_path,
        limit,
        overrides,
        data_sha256=prep.dataset.sha256,
        clips=prep.clips,
        template_sha256=prep.prompts.sha256 if prep.prompts is not None else None,
    )


def render_item(
    ws: Workspace, judge_name: str, data_path: Path, item_id: str, overrides: dict[str, Any] | None = None
) -> tuple[Prepared, list[int]]:
    """The units of one item, planned exactly as a run would, without calling anything."""
    prep = prepare(ws, judge_name, data_path, overrides=overrides)
    idx = [i for i, u in enumerate(prep.units) if u.item.id == item_id]
    if not idx:
        raise ConfigError(f"no item {item_id!r} in {data_path}")
    return prep, idx
