"""Loading and validating DialBGM-format data: every problem named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import DataError


def item(i: int, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": f"d{i}",
        "dialogue": [{"speaker": "A", "text": "Hi there."}, {"speaker": "B", "text": "Hello!"}],
        "summary": "A greeting.",
        "candidates": [{"id": f"c{i}-{k}", "caption": f"caption {k}", "rank": r} for k, r in enumerate([2, 1, 4, 3])],
    }
    base.update(over)
    return base


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(DataError) as e:
        load_dataset(path)
    return [str(p) for p in e.value.problems]


def test_bundled_sample_is_valid_and_large_enough(sample_path: Path) -> None:
    ds = load_dataset(sample_path)
    assert len(ds) >= 40
    assert all(len(i.candidates) == 4 for i in ds)
    assert all(sorted(i.human_ranks) == [1, 2, 3, 4] for i in ds)
    # The rank-1 clip must not sit in one position, or a position-biased judge looks good.
    positions = [i.human_ranks.index(1) for i in ds]
    assert len(set(positions)) == 4


def test_design_shape_loads_exactly(tmp_path: Path) -> None:
    row = item(1)
    row["candidates"][0]["audio"] = "clips/clip-17.wav"  # type: ignore[index]
    ds = load_dataset(write_jsonl(tmp_path / "d.jsonl", [row, item(2, summary=None)]))
    first = ds.items[0]
    assert first.id == "d1" and first.summary == "A greeting."
    assert first.dialogue[1].text == "Hello!"
    assert [c.rank for c in first.candidates] == [2, 1, 4, 3]
    assert first.candidates[0].audio == "clips/clip-17.wav"
    assert ds.items[1].summary is None
    assert len(ds.sha256) == 64


def test_every_problem_is_reported_with_line_and_field(tmp_path: Path) -> None:
    rows: list[object] = [
        item(1),
        "{not json",
        item(3, dialogue=[]),
        item(4, candidates=[{"id": "x", "caption": "c", "rank": 1}]),
        item(5, candidates=[{"id": "a", "caption": "c", "rank": 1}, {"id": "b", "caption": "c", "rank": 1}]),
        item(6, candidates=[{"id": "a", "caption": "c", "rank": 1}, {"id": "a", "caption": "c", "rank": 2}]),
        item(7, candidates=[{"id": "a", "caption": "c", "rank": "first"}, {"id": "b", "caption": "c", "rank": 2}]),
        item(8, dialogue=[{"speaker": "A", "text": ""}]),
        item(1),
        [1, 2],
        item(11, candidates=[{"id": "a", "rank": 1}, {"id": "b", "caption": "c", "rank": 2}]),
        {"dialogue": [{"speaker": "A", "text": "x"}], "candidates": []},
    ]
    found = problems_of(write_jsonl(tmp_path / "bad.jsonl", rows))
    p = str(tmp_path / "bad.jsonl")
    expected = [
        f"{p}:2: <json>:",
        f"{p}:3: dialogue:",
        f"{p}:4: candidates:",
        f"{p}:5: candidates[*].rank: all 2 candidates share rank 1",  # ties are allowed, all-tied is not
        f"{p}:6: candidates[1].id: duplicate candidate id 'a'",
        f"{p}:7: candidates[0].rank:",
        f"{p}:8: dialogue[0].text:",
        f"{p}:9: id: duplicate item id 'd1' (first at line 1)",
        f"{p}:10: <item>:",
        f"{p}:11: candidates[0].caption: each candidate needs a caption or an audio path",
        f"{p}:12: id:",
        f"{p}:12: candidates:",
    ]
    for prefix in expected:
        assert any(f.startswith(prefix) for f in found), (prefix, found)
    assert not any(f.startswith(f"{p}:1:") for f in found)


def test_bool_rank_and_non_utf8_are_rejected(tmp_path: Path) -> None:
    bad = item(1, candidates=[{"id": "a", "caption": "c", "rank": True}, {"id": "b", "caption": "c", "rank": 2}])
    assert any("candidates[0].rank" in p for p in problems_of(write_jsonl(tmp_path / "b.jsonl", [bad])))
    raw = tmp_path / "latin1.jsonl"
    raw.write_bytes(json.dumps(item(1)).encode() + b"\n" + '{"id": "caf\xe9"}'.encode("latin-1") + b"\n")
    assert problems_of(raw) == [f"{raw}:2: <encoding>: not valid UTF-8"]


def test_missing_empty_and_unknown_files(tmp_path: Path) -> None:
    assert "no such file" in problems_of(tmp_path / "nope.jsonl")[0]
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert "no items" in problems_of(tmp_path / "empty.jsonl")[0]
    (tmp_path / "x.txt").write_text("hi")
    assert "unknown format" in problems_of(tmp_path / "x.txt")[0]


def long_rows(items: list[dict[str, object]]) -> list[dict[str, object]]:
    rows = []
    for it in items:
        for c in it["candidates"]:  # type: ignore[attr-defined]
            rows.append(
                {
                    "id": it["id"],
                    "dialogue": json.dumps(it["dialogue"]),
                    "summary": it.get("summary"),
                    "candidate_id": c["id"],
                    "caption": c.get("caption"),
                    "rank": c["rank"],
                }
            )
    return rows


def test_long_csv_and_parquet_load_like_jsonl(tmp_path: Path) -> None:
    items = [item(1), item(2)]
    ref = load_dataset(write_jsonl(tmp_path / "d.jsonl", items))
    frame = pd.DataFrame(long_rows(items))
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        ds = load_dataset(tmp_path / name)
        assert [i.id for i in ds] == [i.id for i in ref]
        assert [i.candidates for i in ds] == [i.candidates for i in ref]
        assert [i.dialogue for i in ds] == [i.dialogue for i in ref]
        assert [i.summary for i in ds] == [i.summary for i in ref]


def test_long_csv_plain_text_dialogue_and_problems(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text(
        "id,dialogue,candidate_id,caption,rank\n"
        'd1,"A: hi\nB: hello",c1,soft piano,1\n'
        'd1,"A: hi\nB: hello",c2,loud metal,2\n'
        'd2,"A: hi",c3,x,1\n'
        'd2,"A: bye",c4,y,3\n'
    )
    found = problems_of(csv)
    assert any(f.startswith(f"{csv}:7: dialogue: differs from the first row of item 'd2'") for f in found), found
    assert any("ranks must be competition ranks of 2 candidates" in f for f in found), found
    (tmp_path / "h.csv").write_text("id,caption\nd1,x\n")
    assert "missing column(s): dialogue, candidate_id, rank" in problems_of(tmp_path / "h.csv")[0]
    ok = tmp_path / "ok.csv"
    ok.write_text(csv.read_text().replace('d2,"A: bye",c4,y,3', 'd2,"A: hi",c4,y,2'))
    ds = load_dataset(ok)
    assert ds.items[0].dialogue[1].speaker == "B" and ds.items[0].dialogue[1].text == "hello"


def test_validate_cli_exit_codes(tmp_path: Path, sample_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["validate", str(sample_path)])
    assert good.exit_code == 0 and "ok" in good.output
    bad = write_jsonl(tmp_path / "bad.jsonl", [item(1), item(2, candidates=[])])
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}:2: candidates:" in res.output


def test_a_nul_character_in_any_text_field_is_refused_with_its_field(tmp_path: Path) -> None:
    # NUL marks where a clip's audio goes in a rendered prompt; data must not be able to forge one.
    item = {
        "id": "x1",
        "dialogue": [{"speaker": "A", "text": "hi\u0000audio:A\u0000"}],
        "candidates": [{"id": "c1", "caption": "ok", "rank": 1}, {"id": "c2", "caption": "b\u0000", "rank": 2}],
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(item) + "\n")
    with pytest.raises(DataError) as err:
        load_dataset(path)
    fields = sorted(p.field for p in err.value.problems if "NUL" in p.message)
    assert fields == ["candidates[1].caption", "dialogue[0].text"]
    assert all(p.line == 1 for p in err.value.problems)
