"""A campaign's results: progress and quality control per annotator, and the data file of its
rankings (per-annotator ranks in the data format's ``annotations``, the consensus rule stated in
each item's ``consensus``), which ``eval``, ``compare`` and ``agreement`` read like any data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.config import Workspace
from dialbgm.data import Dataset, Item, load_dataset
from dialbgm.errors import InputError
from dialbgm.storage import write_jsonl
from dialbgm.web._annostore import AnnotationStore, Submission
from dialbgm.web._campaign import NAME_RE as _NAME_RE
from dialbgm.web._campaign import Campaign, campaign_file, load_campaign


@dataclass(frozen=True)
class AnnotatorStatus:
    name: str
    done: int
    total: int
    gold_done: int
    gold_failed: int
    seconds: float
    """Total time on the submitted pages."""
    flagged: bool


@dataclass(frozen=True)
class CampaignState:
    campaign: Campaign
    data: Dataset
    store: AnnotationStore


def open_campaign(name: str, workspace: Workspace, db: str | None = None, data: Path | None = None) -> CampaignState:
    """The campaign file, its data (the file's ``data``, DATA, or the one its database recorded)
    and its store."""
    path = campaign_file(name, workspace)
    campaign = load_campaign(path, workspace, data)
    store = AnnotationStore.open(db, workspace.root, campaign.name)
    data_path = campaign.data_path or store.campaign_data(campaign.name)
    if data_path is None:
        raise InputError(
            f"campaign {campaign.name!r} names no data file and has never been served: "
            f"give DATA (`dialbgm annotate DATA --campaign {campaign.name}`) or set `data` in {path}"
        )
    dataset = load_dataset(data_path, unranked=True)
    store.ensure_campaign(campaign.name, data_path, dataset.sha256)
    return CampaignState(campaign, dataset, store)


def gold_failed(campaign: Campaign, sub: Submission) -> bool:
    """A gold item is failed when none of the clips the annotator put first is its known best."""
    assert campaign.gold is not None
    firsts = {c for c, r in sub.ranks.items() if r == 1}
    return not firsts & campaign.gold.best(sub.item)


def annotation_status(state: CampaignState) -> list[AnnotatorStatus]:
    c = state.campaign
    subs = state.store.submissions(c.name)
    out = []
    for name in c.annotators:
        mine = [s for s in subs if s.annotator == name]
        golds = [s for s in mine if s.kind == "gold"]
        failed = sum(gold_failed(c, s) for s in golds) if c.gold else 0
        flagged = bool(c.gold and golds and failed / len(golds) > c.gold.failure_threshold)
        total = len(c.sequence(name, state.data))
        out.append(AnnotatorStatus(name, len(mine), total, len(golds), failed, sum(s.seconds for s in mine), flagged))
    return out


def _relative_audio(audio: str | None, source: Path, out: Path) -> str | None:
    """A clip path as the exported file must write it: relative paths are relative to the data
    file's folder, and the export may live in another folder."""
    if audio is None:
        return None
    p = Path(audio)
    if not p.is_absolute():
        p = source.parent / p
    return os.path.relpath(p.resolve(), out.parent.resolve())


def export_rows(state: CampaignState, out: Path, consensus: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """The exported items (those at least one annotator ranked; gold items are not exported) and
    how many items were left out for having no ranking yet."""
    rule = consensus or state.campaign.consensus
    by_item: dict[str, list[Submission]] = {}
    for s in state.store.submissions(state.campaign.name):
        if s.kind == "item" and s.annotator in state.campaign.annotators:
            by_item.setdefault(s.item, []).append(s)
    rows = []
    for item in state.data.items:
        subs = by_item.get(item.id)
        if subs:
            rows.append(_row(item, subs, rule, state.data.path, out))
    return rows, len(state.data.items) - len(rows)


def _row(item: Item, subs: list[Submission], rule: str, source: Path, out: Path) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": item.id,
        "dialogue": [{"speaker": t.speaker, "text": t.text} for t in item.dialogue],
    }
    if item.summary is not None:
        row["summary"] = item.summary
    if item.group is not None:
        row["group"] = item.group
    cands = []
    for c in item.candidates:
        cand: dict[str, Any] = {"id": c.id}
        if c.caption is not None:
            cand["caption"] = c.caption
        if (audio := _relative_audio(c.audio, source, out)) is not None:
            cand["audio"] = audio
        cands.append(cand)
    row["candidates"] = cands
    order = [c.id for c in item.candidates]
    row["annotations"] = [
        {"annotator": s.annotator, "ranks": {cid: s.ranks[cid] for cid in order}}
        for s in sorted(subs, key=lambda s: s.annotator)
    ]
    row["consensus"] = rule
    return row


def default_export(workspace: Workspace, name: str) -> Path:
    return workspace.root / "annotations" / f"{name}.jsonl"


def export_campaign(state: CampaignState, out: Path, consensus: str | None = None) -> tuple[int, int]:
    """Write the campaign's data file (whole or not at all); returns (items written, left out)."""
    if out.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        raise InputError(f"{out}: the export is JSON lines (annotations have no long form): name it .jsonl")
    rows, left_out = export_rows(state, out, consensus)
    if not rows:
        raise InputError(f"campaign {state.campaign.name!r} has no submitted ranking yet: nothing to export")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    return len(rows), left_out


def campaign_dataset(
    workspace: Workspace, name: str, db: str | None = None, consensus: str | None = None
) -> Dataset | None:
    """Campaign ``name``'s rankings as a loaded data set (``dialbgm agreement NAME`` calls this):
    the export, written to ``annotations/NAME.jsonl`` of the workspace, then loaded and validated
    as any data file. None when there is no campaign file of that name (a malformed one, or one
    with nothing submitted yet, is an error)."""
    is_path = name.endswith(".toml") or "/" in name
    if not is_path and (not _NAME_RE.match(name) or workspace.find(f"campaigns/{name}.toml") is None):
        return None
    if is_path and not Path(name).is_file():
        return None
    state = open_campaign(name, workspace, db)
    out = default_export(workspace, state.campaign.name)
    export_campaign(state, out, consensus)
    return load_dataset(out)
