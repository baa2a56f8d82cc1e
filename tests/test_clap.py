"""The CLAP judge on a tiny, randomly initialised ClapModel that the test builds and saves itself.

The weights go through exactly the code path a user's take (a folder named by the judge's
``model``, loaded by transformers with ``from_pretrained``); scores are checked against the
towers' outputs computed here, with transformers directly, from the clips the run prepared.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from dialbgm_tools.sample_music import write_clips
from tests.support.tiny_clap import PROJECTION_DIM, save_tiny_clap

ROOT = Path(__file__).resolve().parents[1]
JUDGE = "clap-htsat-unfused"


def _need_clap() -> None:
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        why = f"{' and '.join(missing)} not installed (the clap extra: pip install torch==2.13.0 'dialbgm[clap]')"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the CLAP tests: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_clap()
    return save_tiny_clap(tmp_path_factory.mktemp("tiny-clap") / "weights", seed=0)


@pytest.fixture(scope="session")
def audio_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clap-audio")
    shutil.copy(ROOT / "data" / "sample-audio.jsonl", folder / "sample-audio.jsonl")
    write_clips(folder / "clips")
    return folder / "sample-audio.jsonl"


@pytest.fixture
def ws(workspace: Workspace, tiny_clap: Path) -> Workspace:
    """The workspace with the tiny weights at ``weights/`` (the shipped judge's model, overridden)."""
    shutil.copytree(tiny_clap, workspace.root / "weights")
    return workspace


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    from dialbgm.calls.backends import _clap

    _clap.TOTALS.reset()


OVER: dict[str, Any] = {"model": "weights"}


def counts() -> Any:
    from dialbgm.calls.backends import _clap

    return _clap.TOTALS


def reference(folder: Path) -> tuple[Any, Any]:
    """The model and processor, loaded here with transformers directly (not through dialbgm)."""
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(str(folder), local_files_only=True)
    model.eval()
    return model, ClapProcessor.from_pretrained(str(folder), local_files_only=True)


def unit(t: Any) -> Any:
    v = getattr(t, "pooler_output", t).detach().numpy().astype(np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def text_tower(model: Any, processor: Any, texts: list[str]) -> Any:
    import torch

    with torch.no_grad():
        return unit(
            model.get_text_features(**processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt"))
        )


def audio_tower(model: Any, processor: Any, waves: list[Any]) -> Any:
    import torch

    features = processor.feature_extractor(waves, sampling_rate=48000, return_tensors="pt")
    with torch.no_grad():
        return unit(model.get_audio_features(**features))


def units_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]


def test_scores_are_cosines_of_the_towers_outputs_on_the_prepared_clips(
    ws: Workspace, audio_sample: Path, tmp_path: Path
) -> None:
    import soundfile as sf

    from dialbgm.data import PreparedClip, read_blob

    res = run_eval(ws, JUDGE, audio_sample, out_dir=tmp_path / "r", limit=3, overrides=OVER)
    assert res.metrics["n_items"] == 3 and res.metrics["units_by_status"] == {"ok": 3}
    prep = prepare(ws, JUDGE, audio_sample, limit=3, overrides=OVER)
    model, processor = reference(ws.root / "weights")
    for i, row in enumerate(units_of(tmp_path / "r")):
        request = prep.request(i)
        assert request.cache_key() == row["cache_key"]
        query, *clips = request.messages
        assert query["role"] == "query" and query["content"].startswith(prep.units[i].item.dialogue[0].speaker + ": ")
        waves = []
        for part in clips:
            ref = part["content"][0]["audio"]
            # The judge's window of the clip, mono, at the feature extractor's rate, as wav.
            assert (ref["format"], ref["sample_rate"], ref["channels"], ref["duration_s"]) == ("wav", 48000, 1, 10.0)
            blob = read_blob(ws.audio_dir, PreparedClip.from_dict({**ref, "source": "test"}))
            samples, rate = sf.read(io.BytesIO(blob), dtype="float32")
            assert rate == 48000 and samples.shape == (480000,)
            waves.append(samples)
        text = text_tower(model, processor, [query["content"]])
        audio = audio_tower(model, processor, waves)
        expected = audio @ text[0]
        shown = [s["candidate"] for s in row["shown"]]
        got = np.array([row["scores"][c] for c in shown])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert len(set(np.round(got, 4))) > 1  # random weights still tell the clips apart


def test_embeddings_have_the_model_s_shape_unit_length_and_repeat(ws: Workspace, audio_sample: Path) -> None:
    from dialbgm.calls.backends._clap import ClapBackend

    prep = prepare(ws, JUDGE, audio_sample, limit=1, overrides=OVER)
    refs = [m["content"][0]["audio"] for m in prep.request(0).messages[1:]]
    texts = ["A: hello there", "B: the café is quiet this morning"]
    backend = prep.backend
    assert isinstance(backend, ClapBackend)
    try:
        t1, a1 = backend.text_vectors(texts), backend.audio_vectors(refs)
    finally:
        backend.close()
    assert t1.shape == (2, PROJECTION_DIM) and a1.shape == (4, PROJECTION_DIM)
    np.testing.assert_allclose(np.linalg.norm(a1, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(t1[0], t1[1])
    # A fresh store and a fresh model load give the same vectors.
    shutil.rmtree(backend.store_dir)
    again = prepare(ws, JUDGE, audio_sample, limit=1, overrides=OVER).backend
    assert isinstance(again, ClapBackend)
    try:
        np.testing.assert_array_equal(again.text_vectors(texts), t1)
        np.testing.assert_array_equal(again.audio_vectors(refs), a1)
        assert again.counts.audio_computed == 4 and again.counts.text_computed == 2
    finally:
        again.close()


def test_a_rerun_and_a_second_cell_compute_no_audio_embedding(
    ws: Workspace, audio_sample: Path, tmp_path: Path
) -> None:
    first = run_eval(ws, JUDGE, audio_sample, out_dir=tmp_path / "a", limit=4, overrides=OVER)
    prep = prepare(ws, JUDGE, audio_sample, limit=4, overrides=OVER)
    prep.backend.close()
    assert prep.clips is not None
    distinct = {clip.sha256 for clip in prep.clips.values()}
    assert counts().audio_computed == len(distinct) > 4  # each distinct clip once, however often it is a candidate
    counts().reset()
    again = run_eval(ws, JUDGE, audio_sample, out_dir=tmp_path / "b", limit=4, overrides=OVER)
    assert again.metrics == first.metrics and counts().audio_computed == counts().text_computed == 0
    assert all(u["cache_hit"] for u in units_of(tmp_path / "b"))
    # Another cell (the summary as the query): new requests, new text vectors, every clip from the store.
    other = run_eval(ws, JUDGE, audio_sample, out_dir=tmp_path / "c", limit=4, overrides={**OVER, "query": "summary"})
    assert other.metrics["n_items"] == 4
    assert counts().audio_computed == 0 and counts().audio_stored == 16 and counts().text_computed == 4


def test_changed_weights_change_the_key_and_moved_weights_do_not(ws: Workspace, audio_sample: Path) -> None:
    def key(model: str) -> tuple[str, dict[str, Any]]:
        prep = prepare(ws, JUDGE, audio_sample, limit=1, overrides={"model": model})
        prep.backend.close()
        return prep.keys[0], prep.request(0).identity

    k0, identity = key("weights")
    assert len(identity["clap_weights_sha256"]) == 64
    shutil.copytree(ws.root / "weights", ws.root / "moved")
    assert key(str(ws.root / "moved"))[0] == k0  # the key is of the weights, not of where they are
    save_tiny_clap(ws.root / "other", seed=1)
    assert key("other")[0] != k0
    # One changed byte of any file of the folder (here the feature extractor's settings) is another model.
    cfg = ws.root / "moved" / "processor_config.json"
    cfg.write_text(cfg.read_text().replace('"padding_value": 0.0', '"padding_value": 0.0 '))
    assert key("moved")[0] != k0


def test_the_identity_of_a_planned_run_is_the_quick_one(ws: Workspace, audio_sample: Path) -> None:
    from dialbgm.run._identity import quick_identity
    from dialbgm.run._prepare import prepared_identity

    for over in (OVER, {**OVER, "input": "caption"}):
        prep = prepare(ws, JUDGE, audio_sample, limit=2, overrides=over)
        prep.backend.close()
        full = prepared_identity(ws, prep, audio_sample, 2, over)
        assert quick_identity(ws, JUDGE, audio_sample, 2, over) == full
        assert full.model["judge"]["clap_weights_sha256"] == prep.request(0).identity["clap_weights_sha256"]


def test_the_caption_variant_embeds_captions_with_the_text_tower(
    ws: Workspace, audio_sample: Path, tmp_path: Path
) -> None:

    over = {**OVER, "input": "caption"}
    run_eval(ws, JUDGE, audio_sample, out_dir=tmp_path / "r", limit=2, overrides=over)
    prep = prepare(ws, JUDGE, audio_sample, limit=2, overrides=over)
    texts = {m["content"] for i in range(2) for m in prep.request(i).messages}
    assert counts().audio_computed == 0 and counts().text_computed == len(texts) > 4
    model, processor = reference(ws.root / "weights")
    for i, row in enumerate(units_of(tmp_path / "r")):
        query, *captions = prep.request(i).messages
        assert [m["role"] for m in captions] == ["caption"] * 4
        assert [m["content"] for m in captions] == [c.caption for c in prep.units[i].shown]
        q = text_tower(model, processor, [query["content"]])
        c = text_tower(model, processor, [m["content"] for m in captions])
        got = np.array([row["scores"][s["candidate"]] for s in row["shown"]])
        np.testing.assert_allclose(got, c @ q[0], atol=1e-5)


def test_render_shows_what_would_be_embedded(ws: Workspace, audio_sample: Path) -> None:
    result = CliRunner().invoke(
        app, ["render", "--judge", JUDGE, "--data", str(audio_sample), "--item", "a001", "--set", "model=weights"]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "--- query\nA: Morning! Could I get a medium oat latte, please?" in out
    assert out.count("--- audio\n[audio: wav · 10.00 s · 48000 Hz · mono") == 4


def test_errors_name_the_missing_folder_or_the_setting_to_change(ws: Workspace, audio_sample: Path) -> None:
    runner = CliRunner()

    def run(*sets: str) -> Any:
        args = ["render", "--judge", JUDGE, "--data", str(audio_sample), "--item", "a001"]
        return runner.invoke(app, [*args, *(x for s in sets for x in ("--set", s))])

    missing = run("model=./no-such-weights")
    assert missing.exit_code == 2 and "CLAP weights folder" in missing.output and "no-such-weights" in missing.output
    assert "Traceback" not in missing.output
    for setting, words in [
        ("audio_sample_rate=16000", "takes 48000 Hz; set audio_sample_rate = 48000"),
        ("audio_seconds=30", "at most 10 s whole"),
        ("input='caption+audio'", "not both"),
    ]:
        r = run("model=weights", setting)
        assert r.exit_code == 2 and words in r.output, r.output
    not_clap = ws.root / "not-clap"
    not_clap.mkdir()
    (not_clap / "config.json").write_text('{"model_type": "bert"}')
    assert "not a CLAP model" in run(f"model={not_clap}").output


def test_a_model_id_outside_the_local_cache_is_refused_offline(
    ws: Workspace, audio_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(ConfigError, match=r"laion/clap-htsat-unfused.*HF_HUB_OFFLINE"):
        prepare(ws, JUDGE, audio_sample, limit=1)


def test_a_missing_extra_is_named_with_its_install_command(
    ws: Workspace, audio_sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Python where torch cannot be imported (None in sys.modules is how Python blocks a module).
    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(
        app, ["render", "--judge", JUDGE, "--data", str(audio_sample), "--item", "a001", "--set", "model=weights"]
    )
    assert result.exit_code == 2
    assert "the 'clap' extra (torch not installed)" in result.output
    assert "pip install torch==2.13.0 'dialbgm[clap]'" in result.output


def test_weights_that_cannot_be_loaded_stop_the_run_with_exit_2(
    ws: Workspace, audio_sample: Path, tmp_path: Path
) -> None:
    broken = ws.root / "broken"
    shutil.copytree(ws.root / "weights", broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[:1000])  # a download cut short
    args = ["eval", "--judge", JUDGE, "--data", str(audio_sample), "--limit", "1", "--set", "model=broken"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert f"the CLAP weights in {broken} cannot be loaded" in result.output and "Traceback" not in result.output
