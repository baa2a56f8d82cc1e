"""What each page shows, as template contexts built from a run's index (never from the whole run)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlencode

from dialbgm.errors import DialbgmError
from dialbgm.metrics import METRICS
from dialbgm.web._index import RunIndex, data_path_of, open_index
from dialbgm.web._queries import SHOWS, SORTS, ItemQuery, flips, list_items
from dialbgm.web._settings import ViewSettings


class NotFound(Exception):
    """The page names no run, item or file this app may show."""


def run_url(key: str) -> str:
    return "/run/" + quote(key, safe="/-_.~")


def item_url(key: str, item_id: str) -> str:
    return f"{run_url(key)}/-/item?{urlencode({'id': item_id})}"


def audio_url(key: str, item_id: str, candidate: str) -> str:
    return f"{run_url(key)}/-/audio?{urlencode({'item': item_id, 'cand': candidate})}"


def find_run(settings: ViewSettings, key: str) -> Path:
    """The run folder named by ``key`` (relative to the results folder, ``/``-separated): one that
    is really inside the results folder, symlinks followed, and holds a manifest."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or "\\" in key or any(p in ("..", ".") or p.startswith(".") for p in parts):
        raise NotFound(key)
    root = settings.results_dir.resolve()
    try:
        folder = (root / Path(*parts)).resolve(strict=True)
    except (OSError, RuntimeError):
        raise NotFound(key) from None
    if not folder.is_relative_to(root) or not (folder / "manifest.json").is_file():
        raise NotFound(key)
    return folder


def index_of(settings: ViewSettings, key: str) -> RunIndex:
    index = open_index(find_run(settings, key), settings.index_root())
    assert index is not None  # waited for
    return index


def _read_json(path: Path) -> dict[str, Any]:
    from dialbgm.errors import ResultsError

    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ResultsError(f"{path}: cannot be read ({e})") from None
    if not isinstance(obj, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    return obj


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    from dialbgm.report import LABELS

    ci, chance = metrics.get("ci95") or {}, metrics.get("chance") or {}
    rows = []
    for m in METRICS:
        lo_hi = ci.get(m)
        rows.append(
            {
                "label": LABELS[m],
                "mean": metrics.get(m),
                # One item has no spread to resample (as the terminal table says).
                "ci": None if lo_hi is None or metrics.get("n_items") == 1 else lo_hi,
                "ci_note": "n/a (1 item)" if metrics.get("n_items") == 1 else "–",
                "chance": chance.get(m),
            }
        )
    return rows


def _human_rows(human: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The human ceiling beside the judge, per metric, on the scored items that have a ceiling
    (metrics.json's ``human_ceiling``, as ``eval`` prints it); None for data without annotations."""
    from dialbgm.report import LABELS

    if not human:
        return None
    ci = human.get("ci95") or {}
    return [
        {
            "label": LABELS[m],
            "judge": (human.get("judge_means") or {}).get(m),
            "ceiling": (human.get("means") or {}).get(m),
            "ci": ci.get(m) if human.get("n_items") != 1 else None,
            "fraction": (human.get("fraction_of_ceiling") or {}).get(m),
        }
        for m in METRICS
    ]


def _bias_bars(test: dict[str, Any] | None) -> dict[str, Any] | None:
    if not test or not test.get("keys"):
        return None
    k = len(test["keys"])
    return {
        "bars": list(zip(test["keys"], test["rates"], strict=True)),
        "chance": 1.0 / k,
        "p_value": test.get("p_value"),
        "n": test.get("n"),
    }


def run_context(settings: ViewSettings, key: str, params: dict[str, str], others: list[Any]) -> dict[str, Any]:
    """The run page. Its head (metrics, attrition, bias) comes from the run's small files; the item
    list from the index, which a first visit builds in the background (the page says so, and
    reloads itself until it is there)."""
    from dialbgm.analysis import read_run_folder
    from dialbgm.storage import redact
    from dialbgm.web._experiment_pages import experiment_link

    folder = find_run(settings, key)
    index = open_index(folder, settings.index_root(), wait=False)
    if index is None:
        manifest = redact(_read_json(folder / "manifest.json"))
        metrics, data_note, page = _read_json(folder / "metrics.json"), None, None
    else:
        meta = index.meta()
        manifest, metrics, data_note = meta["manifest"], meta["metrics"], meta.get("data_note")
    query = ItemQuery.from_params(params)
    flipped, flip_note = None, None
    if index is not None:
        if query.show == "flipped":
            flipped, flip_note = _flips(settings, index, manifest, query.other)
        page = list_items(index, query, flipped)
    bias = metrics.get("bias") or {}
    config = manifest.get("config") or {}
    return {
        "title": f"{(config.get('judge') or {}).get('name', '')} · {key}",
        "folder_state": read_run_folder(folder),
        "in_experiment": experiment_link(settings, key),
        "key": key,
        "run_url": run_url(key),
        "manifest": manifest,
        "metrics": metrics,
        "metric_rows": _metric_rows(metrics),
        "human": metrics.get("human_ceiling"),
        "human_rows": _human_rows(metrics.get("human_ceiling")),
        "first": metrics.get("first_judgement"),
        "bias": bias,
        "by_position": _bias_bars(bias.get("top1_by_position")),
        "by_label": _bias_bars(bias.get("top1_by_label")),
        "config_text": json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True),
        "data_note": data_note,
        "query": query,
        "page": page,
        "item_urls": {r["item_id"]: item_url(key, r["item_id"]) for r in page.rows} if page else {},
        "shows": SHOWS,
        "sorts": SORTS,
        "others": [o for o in others if o.key != key and not o.problem],
        "flip_note": flip_note,
    }


def _flips(
    settings: ViewSettings, index: RunIndex, manifest: dict[str, Any], other_key: str
) -> tuple[set[str] | None, str | None]:
    if not other_key:
        return None, "choose the run to compare with"
    try:
        other = index_of(settings, other_key)
    except (NotFound, DialbgmError):
        return None, f"no run {other_key!r} to compare with"
    theirs = other.meta()["manifest"]
    sha_a = (manifest.get("dataset") or {}).get("sha256")
    sha_b = (theirs.get("dataset") or {}).get("sha256")
    if sha_a != sha_b:
        # As `dialbgm diff` refuses: an id need not be the same item in two data files.
        return None, f"{other_key} read another data file (sha256 {str(sha_b)[:12]}, this run {str(sha_a)[:12]})"
    return flips(index, other), None


def _judge_ranks(scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks of the aggregated scores (1 = best; equal scores share a rank), for display."""
    ordered = sorted(scores.values(), reverse=True)
    return {c: 1 + ordered.index(s) for c, s in scores.items()}


def item_context(settings: ViewSettings, key: str, item_id: str) -> dict[str, Any]:
    from dialbgm.web._audio import playable
    from dialbgm.web._experiment_pages import across_link

    index = index_of(settings, key)
    row = index.item_row(item_id)
    if row is None:
        raise NotFound(item_id)
    meta = index.meta()
    manifest = meta["manifest"]
    record = index.item_record(row)
    units = index.units(item_id)
    content = json.loads(row["content"]) if row["content"] else None
    scores = record.get("scores") or {}
    human = record.get("human_ranks") or {}
    annotations = (content or {}).get("annotations") or []
    judge_rank = _judge_ranks(scores) if scores else {}
    data_path = data_path_of(manifest)
    data_folder = data_path.parent if data_path is not None else None
    candidates = []
    for c in (
        content["candidates"] if content else [{"id": cid, "caption": None, "rank": r} for cid, r in human.items()]
    ):
        found = playable(index, data_folder, item_id, c["id"]) if content else None
        candidates.append(
            {
                **c,
                "human_rank": human.get(c["id"], c.get("rank")),
                "score": scores.get(c["id"]),
                "judge_rank": judge_rank.get(c["id"]),
                "audio_url": audio_url(key, item_id, c["id"]) if found else None,
                "audio_kind": None if not found else "as sent to the judge" if found.prepared else "source file",
                "annotator_ranks": [a["ranks"].get(c["id"]) for a in annotations],
            }
        )
    judge = (manifest.get("config") or {}).get("judge") or {}
    before, after = index.neighbours(row["pos"])
    return {
        "prev_url": item_url(key, before) if before else None,
        "next_url": item_url(key, after) if after else None,
        "title": f"{item_id} · {key}",
        "key": key,
        "run_url": run_url(key),
        "item_id": item_id,
        "row": dict(row),
        "record": record,
        "content": content,
        "context": judge.get("context"),
        "judge": judge,
        "data_note": meta.get("data_note"),
        "candidates": candidates,
        "by_human": sorted(candidates, key=lambda c: (c["human_rank"] is None, c["human_rank"] or 0, c["id"])),
        "by_judge": sorted(candidates, key=lambda c: (c["judge_rank"] is None, c["judge_rank"] or 0, c["id"])),
        "units": [_unit_view(u) for u in units],
        "item_metrics": [(m, (record.get("metrics") or {}).get(m)) for m in METRICS],
        "annotators": [a["annotator"] for a in annotations],
        "consensus": (content or {}).get("consensus"),
        "ceiling": _item_ceiling(record),
        "across_url": across_link(settings, key, item_id),
    }


def _item_ceiling(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The item's ceiling (items.jsonl's ``human_ceiling``) beside the judge's metric on the
    item; None when the item has no ceiling (fewer than two annotators, or data without them)."""
    ceiling = record.get("human_ceiling")
    if not ceiling:
        return None
    mine = record.get("metrics") or {}
    return [{"metric": m, "judge": mine.get(m), "ceiling": ceiling.get(m)} for m in METRICS]


def _unit_view(u: dict[str, Any]) -> dict[str, Any]:
    from dialbgm.storage import redact_text

    shown = u.get("shown") or []
    scores = u.get("scores") or {}
    usage = u.get("usage") or {}
    return {
        **u,
        "rows": [
            {"position": k + 1, "label": s["label"], "candidate": s["candidate"], "score": scores.get(s["candidate"])}
            for k, s in enumerate(shown)
        ],
        "tokens": {k: v for k, v in usage.items() if isinstance(v, int | float)},
        # An error may quote a URL or header with a credential (older runs wrote them as given).
        "error": redact_text(str(u["error"])) if u.get("error") else None,
    }
