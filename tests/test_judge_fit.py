"""What a judge needs of each item, beyond the data rules, checked before any call (eval, render,
compare) and by ``validate --judge``; each problem names file, line, field and item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.run._prepare import prepare
from tests.test_data_edges import item, write_jsonl


def _write(tmp_path: Path, rows: list[Any], name: str = "d.jsonl") -> Path:
    return write_jsonl(tmp_path / name, rows)


def test_kemeny_limit_names_file_line_and_item(workspace: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path, [item(1), item(2, n=9)])
    with pytest.raises(ConfigError) as e:
        prepare(workspace, "random", path, overrides={"aggregation": "kemeny"})
    assert f"{path}:2: candidates: item 'd2'" in str(e.value) and "kemeny" in str(e.value)
    res = CliRunner().invoke(app, ["validate", str(path), "--judge", "random", "--set", 'aggregation="kemeny"'])
    assert res.exit_code == 2 and f"{path}:2: candidates: item 'd2'" in res.output, res.output
    assert CliRunner().invoke(app, ["validate", str(path), "--judge", "random"]).exit_code == 0


@pytest.mark.parametrize(("orders", "n_ok", "n_bad"), [(5, 5, 4), ("all", 4, 9), ("random:7", 4, 3)])
def test_order_limits_name_file_line_and_item(
    workspace: Workspace, tmp_path: Path, orders: str | int, n_ok: int, n_bad: int
) -> None:
    path = _write(tmp_path, [item(1, n=n_ok), item(2, n=n_bad)])
    with pytest.raises(ConfigError) as e:
        prepare(workspace, "random", path, overrides={"orders": orders})
    assert f"{path}:2: candidates: item 'd2'" in str(e.value), str(e.value)


def test_missing_summaries_are_named_by_file_and_line(workspace: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path, [item(1), item(2, summary=None), item(3, summary="  ")])
    with pytest.raises(ConfigError) as e:
        prepare(workspace, "random", path, overrides={"context": "summary"})
    msg = str(e.value)
    assert f"{path}:2: summary: item 'd2'" in msg and f"{path}:3: summary: item 'd3'" in msg, msg
    assert "--set summarizer=JUDGE" in msg


def test_few_shot_pool_items_without_summary_are_named_by_pool_file_and_line(
    workspace: Workspace, tmp_path: Path
) -> None:
    data = _write(tmp_path, [item(1), item(2)])
    pool = _write(
        tmp_path, [item(f"p{k}", dialogue=[{"speaker": "A", "text": f"pool {k}"}]) for k in range(3)], "pool.jsonl"
    )
    rows = [json.loads(x) for x in pool.read_text().splitlines()]
    rows[1]["summary"] = None
    write_jsonl(pool, rows)
    over = {"context": "summary", "few_shot": 3, "few_shot_pool": str(pool)}
    with pytest.raises(ConfigError) as e:
        prepare(workspace, "openai-compatible", data, overrides=over)
    assert f"{pool}:2: summary: item 'dp1'" in str(e.value), str(e.value)
    sets = ["--set", 'context="summary"', "--set", "few_shot=3", "--set", f'few_shot_pool="{pool}"']
    res = CliRunner().invoke(app, ["validate", str(data), "--judge", "openai-compatible", *sets])
    assert res.exit_code == 2 and f"{pool}:2: summary: item 'dp1'" in res.output, res.output


def test_a_caption_judge_refuses_a_candidate_with_no_caption(workspace: Workspace, tmp_path: Path) -> None:
    """The judge would otherwise read '(no caption)' for that candidate (and embed '')."""
    row = item(1)
    row["candidates"][2] = {"id": "c1-2", "audio": "clips/x.wav", "rank": 4}
    path = _write(tmp_path, [item(0), row])
    for judge in ("local", "embedding"):
        with pytest.raises(ConfigError) as e:
            prepare(workspace, judge, path)
        assert f"{path}:2: candidates[2].caption: item 'd1', candidate 'c1-2'" in str(e.value), str(e.value)
    res = CliRunner().invoke(app, ["validate", str(path), "--no-audio", "--judge", "local"])
    assert res.exit_code == 2 and f"{path}:2: candidates[2].caption" in res.output, res.output


def test_an_audio_judge_is_told_which_candidate_has_no_clip_by_validate(workspace: Workspace, tmp_path: Path) -> None:
    path = _write(tmp_path, [item(1)])
    res = CliRunner().invoke(app, ["validate", str(path), "--judge", "gpt-4o-audio"])
    assert res.exit_code == 2, res.output
    assert f"{path}:1: candidates[0].audio: item 'd1', candidate 'c1-0': no audio path" in res.output


def test_a_request_over_the_providers_audio_limit_names_file_line_and_item(
    workspace: Workspace, tmp_path: Path
) -> None:
    import numpy as np
    import soundfile as sf

    t = np.arange(16000) / 16000
    row = item(1)
    for k, c in enumerate(row["candidates"]):
        sf.write(tmp_path / f"c{k}.wav", 0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t), 16000)
        c["audio"] = f"c{k}.wav"
    data = _write(tmp_path, [item(0, candidates=row["candidates"], dialogue=[{"speaker": "A", "text": "x"}]), row])
    path = workspace.providers_dir / "openai-audio.toml"
    path.write_text(path.read_text().replace("max_audio_bytes = 20000000", "max_audio_bytes = 1000"))
    with pytest.raises(ConfigError, match=rf"^{data}:1: item 'd0' \(unit d0#o0s0\): the request would carry"):
        prepare(workspace, "gpt-4o-audio", data)
