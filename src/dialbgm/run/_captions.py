"""Query rewriting for retrieval judges: a captioner judge writes what music would fit each dialogue.

As in the paper's construction of retrieval queries, a retrieval judge (embedding, clap) with
``query = "music_caption"`` embeds a music-oriented description of the dialogue instead of the
dialogue itself. The description is written by the judge its ``captioner`` names (any LLM judge,
through its provider: litellm, or the local llama.cpp server), from the template folder
``captioner_template`` (``prompts/music_caption/``: ``system.j2``, ``user.j2``; the dialogue
enters only as a variable). It is the summaries' step with another field: planned without a
call, cached like every call (so it is written once for every cell and re-run), generated only
after every check that can fail, and recorded with its source in the run's ``captions.jsonl``.
"""

from __future__ import annotations

from typing import Any

from dialbgm.config import RETRIEVAL_KINDS, JudgeConfig, ProviderConfig, Workspace, load_judge, load_provider
from dialbgm.data import Dataset
from dialbgm.errors import ConfigError
from dialbgm.run._summaries import SummaryPlan, SummaryTemplate, plan_summaries

CAPTIONS_FILE = "captions.jsonl"
LLM_KINDS = ("litellm", "llama_cpp_server")


def needs_texts(judge: JudgeConfig) -> bool:
    """Whether a run of ``judge`` needs summaries or music captions before it can be planned."""
    return judge.context == "summary" or judge.query == "music_caption"


def check_query(judge: JudgeConfig, provider: ProviderConfig) -> None:
    """``query`` is a retrieval judge's setting: an LLM judge reads the dialogue through its template."""
    if judge.query and provider.kind not in RETRIEVAL_KINDS:
        raise ConfigError(
            f"judge {judge.name!r}: query = {judge.query!r} applies to retrieval judges (provider kind "
            f"{' or '.join(RETRIEVAL_KINDS)}), not to provider {provider.name!r} ({provider.kind}); "
            "an LLM judge uses context = 'full' or 'summary'"
        )


def plan_texts(ws: Workspace, dataset: Dataset, judge: JudgeConfig, *, use_cache: bool = True) -> SummaryPlan:
    """The summaries or music captions a run of ``judge`` needs (see :func:`needs_texts`)."""
    if judge.query == "music_caption":
        return plan_captions(ws, dataset, judge, use_cache=use_cache)
    return plan_summaries(ws, dataset, judge, use_cache=use_cache)


def load_captioner(ws: Workspace, judge: JudgeConfig) -> tuple[JudgeConfig, ProviderConfig, SummaryTemplate] | None:
    """The captioner judge, its provider and its template, when ``judge`` embeds music captions."""
    if judge.query != "music_caption":
        return None
    if not judge.captioner:
        raise ConfigError(
            f"judge {judge.name!r}: query = 'music_caption' needs a judge to write the captions; "
            "name one with --set captioner=JUDGE (e.g. gpt-4o, or local offline)"
        )
    cj = load_judge(ws, judge.captioner)
    cp = load_provider(ws, cj.provider)
    if cp.kind not in LLM_KINDS:
        raise ConfigError(f"captioner {cj.name!r} must be an LLM judge (its provider is {cp.kind!r})")
    template = SummaryTemplate(ws.template_dir(judge.captioner_template), "music caption", "captioner_template")
    return cj, cp, template


def plan_captions(ws: Workspace, dataset: Dataset, judge: JudgeConfig, *, use_cache: bool = True) -> SummaryPlan:
    """Every item's music caption: the cached ones, and the requests of those still to be written."""
    from dialbgm.calls import make_backend

    loaded = load_captioner(ws, judge)
    assert loaded is not None
    cj, cp, template = loaded
    items = list(dataset)
    backend = make_backend(cj, cp, ws)
    try:
        requests = [backend.build_request(item, (), template.messages(item), None, 0) for item in items]
        needs_key = backend.needs_key
    finally:
        backend.close()
    plan = SummaryPlan(
        [],
        items,
        cj,
        cp,
        requests,
        needs_key=needs_key,
        use_cache=use_cache,
        item_field="music_caption",
        role="captioner",
        label="music:",
    )
    return plan.look_up(ws)


def captioner_identity(ws: Workspace, judge: JudgeConfig) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(config, model identity) of the judge that writes the music captions, when there is one:
    its whole effective config — judge, provider and every file of its template."""
    from dialbgm.calls import model_identity
    from dialbgm.run._identity import judge_record, provider_record

    loaded = load_captioner(ws, judge)
    if loaded is None:
        return None
    cj, cp, template = loaded
    config = {"judge": judge_record(cj), "provider": provider_record(cp, cj), "template_sha256": template.sha256}
    return config, model_identity(cp, cj, ws)
