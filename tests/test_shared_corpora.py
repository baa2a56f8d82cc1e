"""The pipeline on real corpora: DailyDialog dialogues with MusicCaps captions.

These pairs have no human ranking: the ranks below are assigned at random (seeded) only so the
data is DialBGM-shaped. Nothing here measures judge accuracy; it exercises the loaders, prompts,
cache and metrics on real text at scale (long dialogues, long captions, odd characters).
Skipped, with the reason, where ../shared/data is absent (a user's clone).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.conftest import shared_data


def build_items(n: int, seed: int = 0) -> list[dict[str, object]]:
    root = shared_data()
    lines = (root / "dailydialog" / "dialogues_test.txt").read_text(encoding="utf-8").splitlines()[:n]
    with (root / "musiccaps" / "musiccaps-public.csv").open(encoding="utf-8") as f:
        captions = [row["caption"] for row in csv.DictReader(f)]
    rng = random.Random(seed)
    items = []
    for i, line in enumerate(lines):
        turns = [t.strip() for t in line.split("__eou__") if t.strip()]
        ranks = [1, 2, 3, 4]
        rng.shuffle(ranks)
        items.append(
            {
                "id": f"dd{i:04d}",
                "dialogue": [{"speaker": "AB"[k % 2], "text": t} for k, t in enumerate(turns)],
                "candidates": [
                    {"id": f"mc{i}-{k}", "caption": rng.choice(captions), "rank": r} for k, r in enumerate(ranks)
                ],
            }
        )
    return items


def write(path: Path, items: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


def test_real_corpora_load_and_run_offline_baselines(workspace: Workspace, tmp_path: Path) -> None:
    items = build_items(150)
    data = write(tmp_path / "dd.jsonl", items)
    ds = load_dataset(data)
    assert len(ds) == 150
    longest = max(ds, key=lambda it: len(it.dialogue))
    assert len(longest.dialogue) >= 15  # real long dialogues are in there
    for judge in ("random", "embedding"):
        res = run_eval(workspace, judge, data, out_dir=tmp_path / judge)
        assert res.metrics["n_items"] == 150 and res.metrics["n_failed"] == 0
        # Random ranks, so every judge must sit near chance; a far-off value means a bug.
        assert 0.12 < res.metrics["hit_at_1"] < 0.38, (judge, res.metrics["hit_at_1"])
        assert abs(res.metrics["kendall_tau_b"]) < 0.15


def test_real_text_survives_rendering_and_long_form(workspace: Workspace, tmp_path: Path) -> None:
    items = build_items(60, seed=1)
    data = write(tmp_path / "dd.jsonl", items)
    prep = prepare(workspace, "local", data, overrides={"cot": True})
    for unit, req in zip(prep.units, prep.iter_requests(), strict=True):
        user = req.messages[-1]["content"]
        for turn in unit.item.dialogue:
            assert f"{turn.speaker}: {turn.text}" in user
        for c in unit.shown:
            assert c.caption is not None and c.caption in user
    rows = [
        {
            "id": it["id"],
            "dialogue": json.dumps(it["dialogue"], ensure_ascii=False),
            "candidate_id": c["id"],
            "caption": c["caption"],
            "rank": c["rank"],
        }
        for it in items
        for c in it["candidates"]
    ]  # type: ignore[attr-defined]
    pd.DataFrame(rows).to_csv(tmp_path / "dd.csv", index=False)
    from_csv = load_dataset(tmp_path / "dd.csv")
    assert [i.dialogue for i in from_csv] == [i.dialogue for i in load_dataset(data)]
    assert [i.candidates for i in from_csv] == [i.candidates for i in load_dataset(data)]


def test_shared_data_is_skipped_cleanly_when_absent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tests.conftest as conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "absent")
    with pytest.raises(pytest.skip.Exception, match="shared corpora not present"):
        conftest.shared_data()
