"""Dialogue summaries as a real step: the item's own, or one written by a summarizer judge.

``context = "summary"`` uses an item's ``summary`` when the data has one; otherwise, when the
judge names a ``summarizer`` (another judge file, e.g. ``gpt-4o`` as in the paper), the summary
is generated through that judge's provider, cached like every other call (so it is written once
and reused by every cell and re-run), and recorded in the run's ``summaries.jsonl``. Templates
live in ``prompts/summarize/``; dialogue text enters them only as variables.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import jinja2

from dialbgm.config import JudgeConfig, load_judge, load_provider, require_key
from dialbgm.data import Dataset, Item
from dialbgm.errors import ConfigError, ProviderError, TemplateError
from dialbgm.prompts import sandboxed_env
from dialbgm.workspace import Workspace

TEMPLATE_DIR = "summarize"
FILES = ("system.j2", "user.j2")


class SummaryTemplate:
    def __init__(self, folder: Path) -> None:
        missing = [f for f in FILES if not (folder / f).exists()]
        if missing:
            raise TemplateError(f"summary template {folder}: missing {', '.join(missing)}")
        self.folder = folder
        self.env = sandboxed_env(folder)
        h = hashlib.sha256()
        for f in FILES:
            h.update(f.encode() + (folder / f).read_bytes())
        self.sha256 = h.hexdigest()

    def messages(self, item: Item) -> list[dict[str, Any]]:
        variables = {"dialogue": [{"speaker": t.speaker, "text": t.text} for t in item.dialogue]}
        try:
            return [
                {"role": "system", "content": self.env.get_template("system.j2").render(**variables).strip()},
                {"role": "user", "content": self.env.get_template("user.j2").render(**variables).strip()},
            ]
        except jinja2.TemplateError as e:
            raise TemplateError(f"{self.folder}: {e}") from None


def summarizer_identity(ws: Workspace, judge: JudgeConfig) -> str | None:
    """What the generated summaries depend on (the summarizer's config and template), for config hashes."""
    if judge.context != "summary" or not judge.summarizer:
        return None
    sj = load_judge(ws, judge.summarizer)
    tmpl = SummaryTemplate(ws.template_dir(TEMPLATE_DIR))
    return hashlib.sha256(f"{sj.config_hash()}:{tmpl.sha256}".encode()).hexdigest()


def clean_summary(text: str) -> str:
    s = text.strip()
    if s.lower().startswith("summary:"):
        s = s[len("summary:") :].strip()
    return s.strip('"').strip()


def fill_summaries(
    ws: Workspace, dataset: Dataset, judge: JudgeConfig, *, allow_calls: bool
) -> tuple[Dataset, list[dict[str, Any]]]:
    """The dataset with every item's summary present, and one record per item saying where it came from."""
    missing = [i for i in dataset if i.summary is None]
    records: list[dict[str, Any]] = [
        {"item_id": i.id, "summary": i.summary, "source": "data"} for i in dataset if i.summary is not None
    ]
    if not missing:
        return dataset, records
    if not judge.summarizer:
        raise ConfigError(
            f"context=summary, but {len(missing)} item(s) have no summary (first: "
            f"{', '.join(i.id for i in missing[:5])}); add a 'summary' field to them, or name a judge to "
            "write them with --set summarizer=JUDGE"
        )
    from dialbgm.backends import make_backend
    from dialbgm.cache import ResponseCache
    from dialbgm.engine import Progress, UnitOutcome, run_calls

    sj = load_judge(ws, judge.summarizer)
    sp = load_provider(ws, sj.provider)
    if sp.kind not in ("litellm", "llama_cpp_server"):
        raise ConfigError(f"summarizer {sj.name!r} must be an LLM judge (its provider is {sp.kind!r})")
    backend = make_backend(sj, sp, ws)
    tmpl = SummaryTemplate(ws.template_dir(TEMPLATE_DIR))
    requests = [backend.build_request(item, (), tmpl.messages(item), None, 0) for item in missing]
    cache = ResponseCache(ws.cache_dir)
    try:
        texts: dict[int, str] = {}
        hits: set[int] = set()
        for k, req in enumerate(requests):
            resp = cache.get(req)
            # An empty reply is cached like any success, but is no summary: ask again.
            if resp is not None and clean_summary(resp.text):
                texts[k] = resp.text
                hits.add(k)
        todo = [k for k in range(len(requests)) if k not in texts]
        if todo and not allow_calls:
            raise ConfigError(
                f"{len(todo)} summary(ies) by {sj.name!r} are not generated yet (first: {missing[todo[0]].id}); "
                "`dialbgm eval` writes them"
            )
        if todo:
            require_key(sj, sp)
            done: dict[int, UnitOutcome] = {}
            run_calls(
                backend,
                sp,
                ((k, f"summary:{missing[k].id}", requests[k]) for k in todo),
                len(todo),
                cache=cache,
                journal=None,
                progress=Progress(total=len(todo)),
                on_outcome=done.__setitem__,
            )
            errors = {k: o.error for k, o in done.items() if o.response is None}
            for k, o in done.items():
                if o.response is not None:
                    texts[k] = o.response.text
        else:
            errors = {}
    finally:
        backend.close()
        cache.close()
    empty = [k for k, t in texts.items() if not clean_summary(t)]
    if errors or empty:
        bad = sorted({missing[k].id for k in [*errors, *empty]})
        first = next(iter(errors.values()), "empty summary")
        raise ProviderError(
            f"summaries by {sj.name!r} failed for {len(bad)} item(s) ({', '.join(bad[:5])}): {first}. "
            "Those that succeeded are cached; run again to retry the rest."
        )
    filled = {missing[k].id: clean_summary(t) for k, t in texts.items()}
    for k, item in enumerate(missing):
        records.append(
            {
                "item_id": item.id,
                "summary": filled[item.id],
                "source": "generated",
                "summarizer": sj.name,
                "cache_key": requests[k].cache_key(),
                "cache_hit": k in hits,
            }
        )
    items = tuple(replace(i, summary=filled[i.id]) if i.id in filled else i for i in dataset.items)
    order = {i.id: n for n, i in enumerate(dataset.items)}
    records.sort(key=lambda r: order[r["item_id"]])
    return Dataset(dataset.path, items, dataset.sha256, dataset.fmt, dataset.ids), records
