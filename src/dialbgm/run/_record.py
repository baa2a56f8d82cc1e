"""What a run writes: one row per unit (its reply parsed), then the items, metrics and manifest."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dialbgm.calls import OutcomeSpool, UnitOutcome
from dialbgm.config import JudgeConfig, Workspace
from dialbgm.errors import ResultsError
from dialbgm.judging import PARSER_VERSION, Parsed, Response, labels_for, parse_reply
from dialbgm.metrics import one_blas_thread
from dialbgm.run._folders import git_state, package_versions
from dialbgm.run._identity import RunIdentity
from dialbgm.run._prepare import Prepared
from dialbgm.run._scoring import UnitTally, item_summary, run_metrics, score_item
from dialbgm.storage import JsonlWriter, redact, utc_now, write_json, write_jsonl


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    top_error: str | None = None
    """The most frequent error among the failed items (for the CLI's message), if any failed."""


def _unit_row(prep: Prepared, i: int, outcome: UnitOutcome, parsed: Parsed) -> dict[str, Any]:
    unit = prep.units[i]
    # Backends that render no prompt (random, embedding) answer by position: A = first shown.
    labels = unit.labels if unit.labels and prep.backend.needs_messages else tuple(labels_for(len(unit.shown)))
    by_candidate = None
    if parsed.scores is not None:
        by_candidate = {c.id: parsed.scores[lab] for lab, c in zip(labels, unit.shown, strict=True)}
    resp = outcome.response
    return {
        "unit_id": unit.unit_id,
        "item_id": unit.item.id,
        "judge": prep.judge.name,
        "variant": variant_of(prep.judge),
        "shown": [{"label": lab, "candidate": c.id} for lab, c in zip(labels, unit.shown, strict=True)],
        "shots": unit.shot_ids,
        "order_index": unit.order_index,
        "sample": unit.sample,
        "messages_sha256": prep.messages_sha256[i],
        "cache_key": prep.keys[i],
        "status": parsed.status,
        "error": parsed.error,
        "scores": by_candidate,
        "reasoning": parsed.reasoning,
        "raw": resp.text if resp else None,
        "finish_reason": resp.finish_reason if resp else None,
        "response_model": resp.model if resp else None,
        "usage": resp.usage if resp else {},
        "latency_s": outcome.latency_s,
        "attempts": outcome.attempts,
        "cache_hit": outcome.cache_hit,
        "parser_version": PARSER_VERSION,
        # Only on a unit asked again: a first asking's row is as it always was.
        **({"attempt": prep.attempts[i], "attempts_history": prep.history.get(i, [])} if i in prep.attempts else {}),
    }


def variant_of(judge: JudgeConfig) -> dict[str, Any]:
    return {
        "template": judge.template,
        "mode": judge.mode,
        "context": judge.context,
        "cot": judge.cot,
        "few_shot": judge.few_shot,
        "few_shot_seed": judge.few_shot_seed,
        "order_seed": judge.order_seed,
        "orders": judge.orders,
        "shuffle_labels": judge.shuffle_labels,
        "samples": judge.samples,
        "aggregation": judge.aggregation,
        "score_by": judge.score_by,
    }


def unit_row(prep: Prepared, i: int, outcome: UnitOutcome) -> dict[str, Any]:
    """The row of ``units.jsonl`` for unit ``i``: its reply parsed (or its failure recorded)."""
    lo, hi = prep.backend.score_range
    unit = prep.units[i]
    labels = labels_for(len(unit.shown)) if prep.judge.mode == "listwise" else None
    if outcome.response is None:
        parsed = Parsed("transport_error", error=outcome.error)
    else:
        parsed = parse_reply(outcome.response, labels, lo, hi)
    extra: dict[str, Any] = {}
    if prep.judge.score_by == "logprobs" and outcome.response is not None and parsed.scores is not None:
        parsed, extra = _with_expectations(parsed, outcome.response, labels, lo, hi)
    row = _unit_row(prep, i, outcome, parsed)
    if extra:
        by_label = {sh["label"]: sh["candidate"] for sh in row["shown"]}
        extra["sampled_scores"] = {by_label[k]: v for k, v in extra["sampled_scores"].items()}
        row.update(extra)
    return row


def _with_expectations(
    parsed: Parsed, response: Response, labels: list[str] | None, lo: float, hi: float
) -> tuple[Parsed, dict[str, Any]]:
    """Replace sampled scores by logprob expectations; keep the sampled ones beside them."""
    from dialbgm.judging import expected_scores

    assert parsed.scores is not None
    if not response.logprobs:
        reasons = dict.fromkeys(sorted(parsed.scores), "the reply carries no log-probabilities")
        return parsed, {
            "sampled_scores": parsed.scores,
            "logprob_fallbacks": sorted(parsed.scores),
            "logprob_fallback_reasons": reasons,
        }
    exp = expected_scores(response.text, response.logprobs, parsed.scores, labels, lo, hi)
    return replace(parsed, scores=exp.scores), {
        "sampled_scores": parsed.scores,
        "logprob_fallbacks": exp.fallbacks,
        "logprob_fallback_reasons": exp.reasons,
    }


def clip_rows(clips: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    return [{"item_id": item, "candidate": cand, **clip.to_dict()} for (item, cand), clip in clips.items()]


def history_entry(prep: Prepared, i: int, outcome: UnitOutcome) -> dict[str, Any]:
    """What a unit asked again keeps of the reply it had (``attempts_history`` in its row)."""
    row = unit_row(prep, i, outcome)
    entry = {"attempt": prep.attempts.get(i, 0)}
    for k in ("cache_key", "status", "error", "raw", "finish_reason", "usage", "latency_s", "attempts", "cache_hit"):
        entry[k] = row[k]
    return entry


def finish(
    ws: Workspace,
    prep: Prepared,
    identity: RunIdentity,
    spool: OutcomeSpool,
    out_dir: Path,
    data_path: Path,
    started: str,
    t0: float,
    extra_counts: dict[str, int],
) -> RunResult:
    """Write units.jsonl and items.jsonl in plan order, one item at a time, then the metrics."""
    config, config_hash = identity.config, identity.config_hash
    tally = UnitTally(listwise=prep.judge.mode == "listwise")
    items: list[dict[str, Any]] = []
    hits = 0
    with JsonlWriter(out_dir / "units.jsonl") as units_out, JsonlWriter(out_dir / "items.jsonl") as items_out:
        i = 0
        for item in prep.dataset:
            rows = []
            # Units are planned item by item, so an item's units are consecutive.
            while i < len(prep.units) and prep.units[i].item.id == item.id:
                outcome = spool.get(i)
                hits += outcome.cache_hit
                row = unit_row(prep, i, outcome)
                units_out.write(row)
                tally.add(row)
                rows.append(row)
                i += 1
            item_row = {**score_item(item, rows, prep.judge), "item_sha256": prep.item_sha256[item.id]}
            items_out.write(item_row)
            items.append(item_summary(item_row))  # not its scores and judgements: memory stays flat
        if i != len(prep.units):
            raise ResultsError(f"internal error: units out of plan order at {prep.units[i].unit_id}")
    with one_blas_thread():
        metrics = run_metrics(items, prep.dataset, prep.judge, tally)
    calls = extra_counts["called_now"]
    manifest = {
        "run_id": out_dir.name,
        "config": redact(config),
        "config_hash": config_hash,
        "identity": identity.record(),
        "dataset": {
            "path": str(data_path),
            "sha256": prep.dataset.sha256,
            "format": prep.dataset.fmt,
            "n_items": len(prep.dataset),
        },
        "template": {"name": prep.judge.template, "sha256": prep.prompts.sha256 if prep.prompts else None},
        "few_shot_pool": {"path": str(prep.pool.path), "n_usable": len(prep.pool.items)} if prep.pool else None,
        "versions": package_versions(),
        "git": git_state(ws.root),
        "started": started,
        "finished": utc_now(),
        "wall_s": round(time.perf_counter() - t0, 3),
        "counts": {
            "units": len(prep.units),
            "by_status": dict(sorted(tally.by_status.items())),
            "cache_hits": hits,
            "provider_calls": calls if prep.backend.cacheable else 0,
            "computed_locally": 0 if prep.backend.cacheable else calls,
            "resumed_from_journal": extra_counts["resumed_units"],
            "items_ok": metrics["n_items"],
            "items_failed": metrics["n_failed"],
        },
        "tokens": dict(tally.tokens),
    }
    if prep.warnings:
        manifest["warnings"] = prep.warnings
    if prep.summaries:
        write_jsonl(out_dir / "summaries.jsonl", prep.summaries)
    if prep.clips:
        # Which prepared clip each candidate was sent as (its bytes stay in the clip store, by
        # sha256): what `dialbgm view` plays, so a person hears what the judge heard.
        manifest["clips"] = {"file": "clips.jsonl", "store": str(ws.audio_dir)}
        write_jsonl(out_dir / "clips.jsonl", clip_rows(prep.clips))
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "manifest.json", manifest)
    errors = Counter(r["error"] for r in items if r["status"] != "ok" and r.get("error"))
    return RunResult(out_dir, metrics, manifest, errors.most_common(1)[0][0] if errors else None)
