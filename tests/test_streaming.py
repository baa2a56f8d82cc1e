"""A run streams: outcomes spill to disk, result files are written row by row and appear whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialbgm.calls._engine import UnitOutcome
from dialbgm.calls._spool import OutcomeSpool
from dialbgm.config._workspace import Workspace
from dialbgm.judging._request import Response
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from dialbgm.storage._files import JsonlWriter


def _outcome(text: str | None, hit: bool = False) -> UnitOutcome:
    resp = Response(text, "stop", "m", {"prompt_tokens": 3}) if text is not None else None
    return UnitOutcome(resp, hit, 0.5, None if text is not None else "HTTP 500", 2)


def test_spool_returns_each_units_outcome_whatever_the_order_they_arrived_in() -> None:
    with OutcomeSpool(5) as spool:
        for i in (3, 0, 4):
            spool.put(i, _outcome(f"reply {i} ünïcode", hit=i == 0))
        spool.put(1, _outcome(None))
        assert spool.filled == 4 and not spool.has(2) and spool.has(1)
        for i in (0, 3, 4):
            got = spool.get(i)
            assert got.response is not None and got.response.text == f"reply {i} ünïcode"
            assert got.cache_hit is (i == 0) and got.attempts == 2 and got.response.usage == {"prompt_tokens": 3}
        assert spool.get(1).response is None and spool.get(1).error == "HTTP 500"
        with pytest.raises(KeyError):
            spool.get(2)


def test_spool_keeps_the_last_outcome_of_a_unit_and_can_forget_one() -> None:
    with OutcomeSpool(2) as spool:
        spool.put(0, _outcome(None))
        spool.put(0, _outcome("second"))
        assert spool.filled == 1
        got = spool.get(0).response
        assert got is not None and got.text == "second"
        spool.discard(0)
        spool.discard(0)
        assert spool.filled == 0 and not spool.has(0)


def test_jsonl_writer_publishes_the_file_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "units.jsonl"
    path.write_text('{"old": true}\n')
    with pytest.raises(RuntimeError), JsonlWriter(path) as out:
        out.write({"a": 1})
        raise RuntimeError("killed half way")
    assert path.read_text() == '{"old": true}\n'  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["units.jsonl"]  # and no temporary is left
    with JsonlWriter(path) as out:
        out.write({"a": 1})
        out.write({"b": "é"})
    assert [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] == [{"a": 1}, {"b": "é"}]


def test_a_plan_keeps_keys_not_rendered_prompts(workspace: Workspace, sample_path: Path) -> None:
    prep = prepare(workspace, "openai-compatible", sample_path, overrides={"api_base": "http://x", "orders": 2})
    assert len(prep.keys) == len(prep.units) == len(prep.messages_sha256) == 96
    # Rendering again on demand gives the very request whose key was planned.
    assert [prep.request(i).cache_key() for i in (0, 47, 95)] == [prep.keys[i] for i in (0, 47, 95)]
    assert prep.request(5).messages_sha256() == prep.messages_sha256[5]
    assert not any(isinstance(v, list) and v and hasattr(v[0], "messages") for v in vars(prep).values())


def test_units_are_written_in_plan_order_with_every_field(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    # The random judge answers locally (never cached): every outcome passes through the spool.
    over = {"orders": 2}
    first = run_eval(workspace, "random", sample_path, out_dir=tmp_path / "a", overrides=over, limit=10)
    again = run_eval(workspace, "random", sample_path, out_dir=tmp_path / "b", overrides=over, limit=10)
    rows_a = [json.loads(x) for x in (first.out_dir / "units.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (again.out_dir / "units.jsonl").read_text().splitlines()]
    prep = prepare(workspace, "random", sample_path, overrides=over, limit=10)
    assert [r["unit_id"] for r in rows_a] == [u.unit_id for u in prep.units]
    assert [r["cache_key"] for r in rows_a] == prep.keys
    assert [r["scores"] for r in rows_a] == [r["scores"] for r in rows_b]
    items = [json.loads(x) for x in (first.out_dir / "items.jsonl").read_text().splitlines()]
    assert [i["item_id"] for i in items] == [i.id for i in prep.dataset]
    assert all(i["n_units"] == 2 for i in items)
    assert first.metrics["units_by_status"] == {"ok": 20}
    assert first.manifest["counts"]["units"] == 20
