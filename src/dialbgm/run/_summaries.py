"""Dialogue summaries as a real step: the item's own, or one written by a summarizer judge.

``context = "summary"`` uses an item's ``summary`` when the data has one; otherwise, when the
judge names a ``summarizer`` (another judge file, e.g. ``gpt-4o`` as in the paper), the summary
is generated through that judge's provider, cached like every other call (so it is written once
and reused by every cell and re-run), and recorded in the run's ``summaries.jsonl``. Templates
live in ``prompts/summarize/`` (or the folder the judge's ``summarizer_template`` names);
dialogue text enters them only as variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2

from dialbgm.config import JudgeConfig, ProviderConfig, Workspace, load_judge, load_provider, require_key
from dialbgm.data import Dataset, Item
from dialbgm.errors import ConfigError, ProviderError, TemplateError
from dialbgm.judging import Request, compile_templates, sandboxed_env, template_error, template_tree_sha256

FILES = ("system.j2", "user.j2")


class SummaryTemplate:
    def __init__(self, folder: Path, what: str = "summary", setting: str = "summarizer_template") -> None:
        if not folder.is_dir():
            raise TemplateError(f"no {what} template {folder.name!r} in {folder.parent} ({setting})")
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise TemplateError(f"{what} template {folder}: missing {', '.join(missing)}")
        self.folder = folder
        self.env = sandboxed_env(folder)
        compile_templates(self.env, folder, FILES)
        # Every file a render can read (an included partial too), not only the two named.
        self.sha256 = template_tree_sha256(folder, FILES)

    def messages(self, item: Item) -> list[dict[str, Any]]:
        variables = {"dialogue": [{"speaker": t.speaker, "text": t.text} for t in item.dialogue]}
        return [
            {"role": "system", "content": self._render("system.j2", variables)},
            {"role": "user", "content": self._render("user.j2", variables)},
        ]

    def _render(self, name: str, variables: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(**variables).strip()
        except jinja2.TemplateError as e:
            raise template_error(self.folder / name, e) from None


def load_summarizer(ws: Workspace, judge: JudgeConfig) -> tuple[JudgeConfig, ProviderConfig, SummaryTemplate] | None:
    """The summarizer judge, its provider and the summary template, when ``judge`` names one."""
    if judge.context != "summary" or not judge.summarizer:
        return None
    sj = load_judge(ws, judge.summarizer)
    sp = load_provider(ws, sj.provider)
    return sj, sp, SummaryTemplate(ws.template_dir(judge.summarizer_template))


def clean_summary(text: str, label: str = "summary:") -> str:
    s = text.strip()
    if s.lower().startswith(label):
        s = s[len(label) :].strip()
    return s.strip('"').strip()


# Stands for a summary that is planned but not written yet. A data file cannot hold NUL (it is
# refused), so no real summary equals it; the units that carry it are never looked up or sent.
PENDING = "\x00summary not written yet\x00"


@dataclass
class SummaryPlan:
    """Every summary a run needs: from the data, from the cache, or still to be written (``todo``).

    Planning renders the summary requests and looks them up; it never calls. :meth:`generate`
    makes the calls, so a run can do every check that can fail first.
    """

    records: list[dict[str, Any]]
    """One per item that has its own summary (source "data")."""
    missing: list[Item]
    """The items without one, in data order."""
    summarizer: JudgeConfig | None = None
    provider: ProviderConfig | None = None
    requests: list[Request] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    hits: set[int] = field(default_factory=set)
    needs_key: bool = False
    use_cache: bool = True
    item_field: str = "summary"
    """The item field the texts fill: ``summary``, or ``music_caption`` (see _captions)."""
    role: str = "summarizer"
    """Who writes them, as messages and records name it: ``summarizer`` or ``captioner``."""
    label: str = "summary:"
    """A leading label a model may write before the text (stripped, in any case)."""

    @property
    def what(self) -> str:
        return "summaries" if self.item_field == "summary" else "music captions"

    def clean(self, text: str) -> str:
        return clean_summary(text, self.label)

    @property
    def todo(self) -> list[int]:
        """Indices into ``missing`` of the summaries still to be written (calls)."""
        return [k for k in range(len(self.missing)) if k not in self.texts]

    @property
    def pending_ids(self) -> frozenset[str]:
        return frozenset(self.missing[k].id for k in self.todo)

    def check_can_call(self) -> None:
        if self.todo and self.needs_key and self.summarizer is not None and self.provider is not None:
            require_key(self.summarizer, self.provider)

    def generate(self, ws: Workspace) -> None:
        """Write the summaries still missing (the only calls a summary costs); raise if any fails."""
        todo = self.todo
        if not todo:
            return
        assert self.summarizer is not None and self.provider is not None
        from dialbgm.calls import Progress, ResponseCache, UnitOutcome, make_backend, run_calls

        self.check_can_call()
        backend = make_backend(self.summarizer, self.provider, ws)
        cache = ResponseCache.for_workspace(ws) if self.use_cache else None
        try:
            done: dict[int, UnitOutcome] = {}
            run_calls(
                backend,
                self.provider,
                ((k, f"{self.item_field}:{self.missing[k].id}", self.requests[k]) for k in todo),
                len(todo),
                cache=cache,
                journal=None,
                progress=Progress(total=len(todo)),
                on_outcome=done.__setitem__,
            )
        finally:
            backend.close()
            if cache is not None:
                cache.close()
        errors = {k: o.error for k, o in done.items() if o.response is None}
        replies = {k: o.response.text for k, o in done.items() if o.response is not None}
        empty = [k for k, t in replies.items() if not self.clean(t)]
        if errors or empty:
            bad = sorted({self.missing[k].id for k in [*errors, *empty]})
            first = next(iter(errors.values()), f"empty {self.item_field}")
            raise ProviderError(
                f"{self.what} by {self.summarizer.name!r} failed for {len(bad)} item(s) ({', '.join(bad[:5])}): "
                f"{first}. Those that succeeded are cached; run again to retry the rest."
            )
        self.texts.update(replies)

    def with_placeholders(self, dataset: Dataset) -> Dataset:
        """The dataset with the summaries known so far, and :data:`PENDING` where one is still to be written."""
        known = {self.missing[k].id: self.clean(t) for k, t in self.texts.items()}
        return _replace_summaries(dataset, {**known, **{i: PENDING for i in self.pending_ids}}, self.item_field)

    def apply(self, dataset: Dataset) -> tuple[Dataset, list[dict[str, Any]]]:
        """The dataset with every summary in place, and one record per item saying where it came from."""
        if self.todo:
            raise ConfigError(
                f"{len(self.todo)} {self.what} by {self.summarizer.name if self.summarizer else '?'!r} are not "
                f"generated yet (first: {self.missing[self.todo[0]].id}); `dialbgm eval` writes them"
            )
        records = list(self.records)
        filled = {self.missing[k].id: self.clean(t) for k, t in self.texts.items()}
        for k, item in enumerate(self.missing):
            assert self.summarizer is not None
            records.append(
                {
                    "item_id": item.id,
                    self.item_field: filled[item.id],
                    "source": "generated",
                    self.role: self.summarizer.name,
                    "cache_key": self.requests[k].cache_key(),
                    "cache_hit": k in self.hits,
                }
            )
        order = {i.id: n for n, i in enumerate(dataset.items)}
        records.sort(key=lambda r: order[r["item_id"]])
        return _replace_summaries(dataset, filled, self.item_field), records

    def look_up(self, ws: Workspace) -> SummaryPlan:
        """Take the texts already in the cache (planning calls nothing)."""
        if not self.use_cache:
            return self
        from dialbgm.calls import ResponseCache

        cache = ResponseCache.for_workspace(ws)
        try:
            for k, req in enumerate(self.requests):
                resp = cache.get(req)
                # An empty reply is cached like any success, but is no text: ask again.
                if resp is not None and self.clean(resp.text):
                    self.texts[k] = resp.text
                    self.hits.add(k)
        finally:
            cache.close()
        return self


def _replace_summaries(dataset: Dataset, texts: dict[str, str], field: str = "summary") -> Dataset:
    def filled(i: Item) -> Item:
        return replace(i, summary=texts[i.id]) if field == "summary" else replace(i, music_caption=texts[i.id])

    items = tuple(filled(i) if i.id in texts else i for i in dataset.items)
    return Dataset(dataset.path, items, dataset.sha256, dataset.fmt, dataset.ids)


def plan_summaries(ws: Workspace, dataset: Dataset, judge: JudgeConfig, *, use_cache: bool = True) -> SummaryPlan:
    """What the summaries of ``dataset`` need, without calling: each item's own, the cached ones,
    and the requests of those still to be written."""
    missing = [i for i in dataset if i.summary is None]
    records: list[dict[str, Any]] = [
        {"item_id": i.id, "summary": i.summary, "source": "data"} for i in dataset if i.summary is not None
    ]
    if not missing:
        return SummaryPlan(records, [])
    if not judge.summarizer:
        raise ConfigError(
            f"context=summary, but {len(missing)} item(s) have no summary (first: "
            f"{', '.join(i.id for i in missing[:5])}); add a 'summary' field to them, or name a judge to "
            "write them with --set summarizer=JUDGE"
        )
    from dialbgm.calls import make_backend

    loaded = load_summarizer(ws, judge)
    assert loaded is not None
    sj, sp, tmpl = loaded
    if sp.kind not in ("litellm", "llama_cpp_server"):
        raise ConfigError(f"summarizer {sj.name!r} must be an LLM judge (its provider is {sp.kind!r})")
    backend = make_backend(sj, sp, ws)
    try:
        requests = [backend.build_request(item, (), tmpl.messages(item), None, 0) for item in missing]
        needs_key = backend.needs_key
    finally:
        backend.close()
    plan = SummaryPlan(records, missing, sj, sp, requests, needs_key=needs_key, use_cache=use_cache)
    return plan.look_up(ws)
