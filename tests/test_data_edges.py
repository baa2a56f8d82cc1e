"""Data files at their edges: line separators inside strings, byte-order marks, native Parquet
nesting, one rule for ids and ranks in every format, at most 26 candidates, and every way a file
can fail to decode or read named by file, line and field (never a traceback)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.data._dataset import load_dataset
from dialbgm.errors import DataError

TURNS = [{"speaker": "A", "text": "Hi there."}, {"speaker": "B", "text": "Hello!"}]


def item(i: int | str, n: int = 4, **over: Any) -> dict[str, Any]:
    ranks = [2, 1, 4, 3] if n == 4 else list(range(n, 0, -1))
    base: dict[str, Any] = {
        "id": f"d{i}",
        "dialogue": TURNS,
        "summary": "A greeting.",
        "candidates": [{"id": f"c{i}-{k}", "caption": f"caption {k}", "rank": r} for k, r in enumerate(ranks)],
    }
    base.update(over)
    return base


def write_jsonl(path: Path, rows: list[Any], *, ascii_only: bool = True) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=ascii_only) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def long_rows(items: list[dict[str, Any]], *, nested: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "id": it["id"],
            "dialogue": it["dialogue"] if nested else json.dumps(it["dialogue"]),
            "summary": it.get("summary"),
            "candidate_id": c["id"],
            "caption": c.get("caption"),
            "rank": c["rank"],
        }
        for it in items
        for c in it["candidates"]
    ]


def problems_of(path: Path) -> list[str]:
    with pytest.raises(DataError) as e:
        load_dataset(path)
    return [str(p) for p in e.value.problems]


# ---------------------------------------------------------------- item 5: line separators


SEPARATORS = "\u2028 \u2029 \x85"


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    """Python's json.dumps(ensure_ascii=False) writes U+2028, U+2029 and U+0085 raw: still one line."""
    odd = item(1, dialogue=[{"speaker": "A", "text": f"one{SEPARATORS}two"}, TURNS[1]])
    odd["candidates"][0]["caption"] = "soft\u2028piano"
    path = write_jsonl(tmp_path / "d.jsonl", [odd, item(2), "{broken", item(4)], ascii_only=False)
    assert "\u2028" in path.read_text(encoding="utf-8")
    found = problems_of(path)
    # The one bad line is named by its real line number, and nothing else is reported.
    assert found == [f"{path}:3: <json>: not valid JSON (Expecting property name enclosed in double quotes, column 2)"]
    path.write_text(path.read_text(encoding="utf-8").replace("{broken\n", ""), encoding="utf-8")
    ds = load_dataset(path)
    assert [i.id for i in ds] == ["d1", "d2", "d4"]
    assert [i.source_line for i in ds] == [1, 2, 3]
    assert ds.items[0].dialogue[0].text == f"one{SEPARATORS}two"
    assert ds.items[0].candidates[0].caption == "soft\u2028piano"


def test_csv_keeps_unicode_line_separators_inside_cells(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "id,dialogue,candidate_id,caption,rank\n"
        'd1,"A: one\u2028two\nB: three\x85four",c1,soft\u2028piano,1\n'
        'd1,"A: one\u2028two\nB: three\x85four",c2,"loud\u2029metal",2\n'
        "d2,A: hi,c3,x,1\n"
        "d2,A: hi,c4,y,3\n",
        encoding="utf-8",
    )
    found = problems_of(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:6: candidates[*].rank: ranks must be competition ranks"), found
    path.write_text(path.read_text(encoding="utf-8").replace("c4,y,3", "c4,y,2"), encoding="utf-8")
    ds = load_dataset(path)
    first = ds.items[0]
    assert [(t.speaker, t.text) for t in first.dialogue] == [("A", "one\u2028two"), ("B", "three\x85four")]
    assert [c.caption for c in first.candidates] == ["soft\u2028piano", "loud\u2029metal"]
    assert [i.source_line for i in ds] == [2, 6]


# ---------------------------------------------------------------- item 6: native Parquet nesting


def test_parquet_with_a_native_list_of_struct_dialogue_loads_like_jsonl(tmp_path: Path) -> None:
    items = [item(1), item(2, summary=None)]
    ref = load_dataset(write_jsonl(tmp_path / "d.jsonl", items))
    pd.DataFrame(long_rows(items, nested=True)).to_parquet(tmp_path / "pandas.parquet")
    pq.write_table(pa.Table.from_pylist(long_rows(items, nested=True)), tmp_path / "arrow.parquet")
    for name in ("pandas.parquet", "arrow.parquet"):
        assert pq.read_schema(tmp_path / name).field("dialogue").type == pa.list_(
            pa.struct([("speaker", pa.string()), ("text", pa.string())])
        )
        ds = load_dataset(tmp_path / name)
        assert [(i.id, i.dialogue, i.candidates, i.summary) for i in ds] == [
            (i.id, i.dialogue, i.candidates, i.summary) for i in ref
        ]


def test_parquet_nested_dialogue_problems_name_row_and_field(tmp_path: Path) -> None:
    rows = long_rows([item(1), item(2, dialogue=[{"speaker": "A", "text": ""}])], nested=True)
    rows[5]["dialogue"] = [{"speaker": "A", "text": "something else"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    found = problems_of(tmp_path / "d.parquet")
    p = tmp_path / "d.parquet"
    assert f"{p}:6: dialogue: differs from the first row of item 'd2' (line 5)" in found, found
    assert f"{p}:5: dialogue[0].text: required: a non-empty string" in found, found


def test_parquet_in_the_one_item_per_row_shape_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([item(1), item(2)]), tmp_path / "wide.parquet")
    found = problems_of(tmp_path / "wide.parquet")
    assert len(found) == 1 and "one row per candidate" in found[0], found


# ---------------------------------------------------------------- item 7: BOM, one rule for ids and ranks


def test_a_byte_order_mark_is_accepted_in_jsonl_as_in_csv(tmp_path: Path) -> None:
    plain = write_jsonl(tmp_path / "plain.jsonl", [item(1), item(2)])
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    a, b = load_dataset(plain), load_dataset(bom)
    assert a.items == b.items
    assert b.sha256 != a.sha256  # the hash is of the file's bytes, as before
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + pd.DataFrame(long_rows([item(1), item(2)])).to_csv(index=False).encode())
    assert [i.candidates for i in load_dataset(csv_path)] == [i.candidates for i in a]


def _two_more(v: Any) -> list[Any]:
    """Two more candidate ids of the same type as ``v`` (a Parquet column has one type)."""
    if isinstance(v, bool):
        return [not v, v]
    if isinstance(v, int | float):
        return [v + 1, v + 2]
    return [f"{v}-2", f"{v}-3"]


def _one_item_file(tmp_path: Path, fmt: str, item_id: Any, cand_id: Any, rank: Any) -> Path:
    """An item whose first candidate has the given id and rank (its other ranks are 2 and 3)."""
    rows = [
        {"id": item_id, "dialogue": json.dumps(TURNS), "candidate_id": cid, "caption": f"caption {k}", "rank": r}
        for k, (cid, r) in enumerate(zip([cand_id, *_two_more(cand_id)], [rank, 2, 3], strict=True))
    ]
    if fmt == "jsonl":
        cands = [{"id": r["candidate_id"], "caption": r["caption"], "rank": r["rank"]} for r in rows]
        path = tmp_path / "d.jsonl"
        path.write_text(json.dumps({"id": item_id, "dialogue": TURNS, "candidates": cands}) + "\n")
    else:
        path = tmp_path / "d.parquet"
        # One column of the value's own type beside the others: what pandas or pyarrow would write.
        table = pa.table({k: pa.array([r[k] for r in rows], from_pandas=True) for k in rows[0] if k != "rank"})
        rank_type = pa.float64() if isinstance(rank, float) else None
        table = table.append_column("rank", pa.array([r["rank"] for r in rows], type=rank_type, from_pandas=False))
        pq.write_table(table, path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize(
    ("item_id", "cand_id", "rank", "expected"),
    [
        ("d1", "a", 1, ("d1", "a", 1)),
        (7, 3, 1, ("7", "3", 1)),  # integer ids: their decimal string
        ("d1", "a", 1.0, ("d1", "a", 1)),  # an integral float rank, as pandas writes a column with gaps
        ("d1", "a", 1.5, "candidates[0].rank"),
        ("d1", "a", math.nan, "candidates[0].rank"),
        (1.5, "a", 1, "id"),
        ("d1", 2.0, 1, "candidates[0].id"),
        (True, "a", 1, "id"),
        ("d1", False, 1, "candidates[0].id"),
    ],
)
def test_one_rule_for_id_and_rank_types_in_jsonl_and_parquet(
    tmp_path: Path, fmt: str, item_id: Any, cand_id: Any, rank: Any, expected: Any
) -> None:
    path = _one_item_file(tmp_path, fmt, item_id, cand_id, rank)
    if isinstance(expected, tuple):
        it = load_dataset(path).items[0]
        assert (it.id, it.candidates[0].id, it.candidates[0].rank) == expected
        assert type(it.candidates[0].rank) is int
    else:
        with pytest.raises(DataError) as e:
            load_dataset(path)
        assert {p.field for p in e.value.problems} >= {expected}, e.value.problems


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("1", 1), (" 1 ", 1), ("1.0", 1), ("1.5", None), ("nan", None), ("True", None), ("²", None), ("1_0", None)],
)
def test_csv_rank_text_follows_the_same_rule(tmp_path: Path, cell: str, expected: int | None) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        f"id,dialogue,candidate_id,caption,rank\nd1,A: hi,a,x,{cell}\nd1,A: hi,b,y,2\nd1,A: hi,c,z,3\n",
        encoding="utf-8",
    )
    jsonl = _one_item_file(tmp_path, "jsonl", "d1", "a", cell)  # the same text as a JSON string
    for p in (path, jsonl):
        if expected is None:
            with pytest.raises(DataError) as e:
                load_dataset(p)
            assert [x.field for x in e.value.problems] == ["candidates[0].rank"], e.value.problems
        else:
            assert load_dataset(p).items[0].candidates[0].rank == expected


def test_a_json_array_file_gets_one_problem_not_one_per_line(tmp_path: Path) -> None:
    arr = tmp_path / "d.json"
    arr.write_text(json.dumps([item(1), item(2)], indent=2))
    found = problems_of(arr)
    assert len(found) == 1 and "JSON Lines" in found[0], found
    one_line = tmp_path / "one.json"
    one_line.write_text(json.dumps([item(1), item(2)]))
    found = problems_of(one_line)
    assert len(found) == 1 and "JSON Lines" in found[0], found
    pretty = tmp_path / "pretty.jsonl"
    pretty.write_text(json.dumps(item(1), indent=2))
    found = problems_of(pretty)
    assert len(found) == 1 and "JSON Lines" in found[0], found


# ---------------------------------------------------------------- item 8: a data rule every list judge needs


def test_validate_refuses_more_candidates_than_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [item(1), item(2, n=27)])
    res = CliRunner().invoke(app, ["validate", str(path), "--no-audio"])
    assert res.exit_code == 2, res.output
    assert f"{path}:2: candidates: at most 26 candidates per item" in res.output


# ---------------------------------------------------------------- sweep: decoding and reading


def test_numbers_and_nesting_json_cannot_represent_are_problems_not_tracebacks(tmp_path: Path) -> None:
    huge = json.dumps(item(1)).replace('"rank": 2', '"rank": ' + "9" * 5000)
    deep = '{"id": "d3", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write_jsonl(tmp_path / "d.jsonl", [huge, item(2), deep])
    found = problems_of(path)
    assert [f.split(": ")[0:2] for f in found] == [[f"{path}:1", "<json>"], [f"{path}:3", "<json>"]], found
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('id,dialogue,candidate_id,caption,rank\nd1,"[' + "[" * 100_000 + '",a,x,1\nd1,A: hi,b,y,2\n')
    assert any(f.startswith(f"{csv_path}:2: dialogue:") for f in problems_of(csv_path))


def test_a_nested_value_just_below_the_json_limit_is_checked_without_recursion(tmp_path: Path) -> None:
    depth = 600
    row = item(1)
    row["extra"] = json.loads("[" * depth + '"x\\u0000"' + "]" * depth)
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    found = problems_of(path)
    assert len(found) == 1 and "NUL" in found[0], found[0][:200]


def test_a_csv_cell_longer_than_the_csv_modules_default_limit_loads(tmp_path: Path) -> None:
    long_text = "word " * 40_000  # 200,000 characters: csv's default field limit is 131,072
    row = item(1, dialogue=[{"speaker": "A", "text": long_text.strip()}])
    path = tmp_path / "d.csv"
    pd.DataFrame(long_rows([row])).to_csv(path, index=False)
    assert load_dataset(path).items[0].dialogue[0].text == long_text.strip()


def test_csv_header_problems_are_named(tmp_path: Path) -> None:
    base = pd.DataFrame(long_rows([item(1)]))
    dup = tmp_path / "dup.csv"
    dup.write_text(base.to_csv(index=False).replace("caption", "rank", 1))
    assert any("<header>" in f and "'rank'" in f and "more than once" in f for f in problems_of(dup))
    typo = tmp_path / "typo.csv"
    typo.write_text(base.rename(columns={"summary": "Summary", "caption": "captions"}).to_csv(index=False))
    found = problems_of(typo)
    assert any("'Summary'" in f and "'summary'" in f for f in found), found
    assert any("'captions'" in f and "'caption'" in f for f in found), found
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert problems_of(empty) == [f"{empty}: <file>: empty file: no header row, no items"]
    extra = tmp_path / "extra.csv"
    base.assign(notes="a column dialbgm does not read").to_csv(extra, index=False)
    assert len(load_dataset(extra)) == 1  # other columns are ignored, as before


def test_jsonl_keys_that_look_like_a_field_are_problems_not_silently_ignored(tmp_path: Path) -> None:
    row = item(1)
    row["Summary"] = row.pop("summary")
    row["candidates"][1]["Caption"] = row["candidates"][1].pop("caption")
    row["candidates"][1]["audio"] = "x.wav"
    path = write_jsonl(tmp_path / "d.jsonl", [row, item(2, notes="ignored")])
    found = problems_of(path)
    assert sorted(f.split(": ")[1] for f in found) == ["Summary", "candidates[1].Caption"], found


def test_utf16_and_unreadable_files_are_problems(tmp_path: Path) -> None:
    u16 = tmp_path / "d.jsonl"
    u16.write_bytes(json.dumps(item(1)).encode("utf-16"))
    assert problems_of(u16) == [f"{u16}:1: <encoding>: UTF-16, not UTF-8 (it starts with a UTF-16 byte-order mark)"]
    sock_path = tmp_path / "s.jsonl"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        found = problems_of(sock_path)
    assert len(found) == 1 and found[0].startswith(f"{sock_path}: <file>: cannot be read"), found


def test_long_cells_are_shortened_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,dialogue,candidate_id,caption,rank\nd1,A: hi,a,x," + "7" * 10_000 + "\nd1,A: hi,b,y,2\n")
    found = problems_of(path)
    assert len(found) == 1 and len(found[0]) < 300, found[0][:400]


def test_a_key_given_twice_in_a_json_object_is_a_problem(tmp_path: Path) -> None:
    """json keeps the last value of a repeated key and drops the others without a word."""
    line = json.dumps(item(1)).replace('"summary": "A greeting."', '"summary": "A greeting.", "summary": "Other."')
    line = line.replace('"caption": "caption 1"', '"caption": "caption 1", "caption": "caption 2"', 1)
    path = write_jsonl(tmp_path / "d.jsonl", [line, item(2)])
    found = problems_of(path)
    assert [f.split(": ")[:2] for f in found] == [[f"{path}:1", "summary"], [f"{path}:1", "candidates[1].caption"]]


def test_an_unclosed_quote_in_csv_is_named_not_read_into_one_cell(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "id,dialogue,candidate_id,caption,rank\n"
        'd1,A: hi,c1,soft piano,1\nd1,A: hi,c2,"loud,2\nd2,A: yo,c3,x,1\nd2,A: yo,c4,y,2\n'
    )
    # The rows before it are still checked (here: item d1 is left with one candidate).
    assert problems_of(path)[0] == (
        f"{path}:3: <row>: a quoted cell opened on this row is never closed: it runs to the end of the file"
    )
