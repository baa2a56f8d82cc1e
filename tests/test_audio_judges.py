"""Judges that hear the clips: through the real litellm code path to a loopback server that
records each request, for every provider dialect (OpenAI input_audio, Gemini inline audio,
Qwen-Omni's streamed data URIs), plus the cache key, validation and refusals around them.

The clips are real music: the bundled sample's pieces, rendered from MIDI once per session.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, DataError
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from dialbgm_tools.sample_music import write_clips
from tests.support.scripted_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
GOOD = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'


@pytest.fixture(scope="session")
def audio_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/sample-audio.jsonl beside its 16 clips, rendered here from the composed MIDI."""
    folder = tmp_path_factory.mktemp("audio-sample")
    shutil.copy(ROOT / "data" / "sample-audio.jsonl", folder / "sample-audio.jsonl")
    write_clips(folder / "clips")
    return folder / "sample-audio.jsonl"


def copy_sample(audio_data: Path, dest: Path, n_items: int | None = None) -> Path:
    """A private copy of the audio sample (to edit clips or items without touching the shared one)."""
    shutil.copytree(audio_data.parent / "clips", dest / "clips")
    lines = audio_data.read_text().splitlines()[:n_items]
    (dest / "data.jsonl").write_text("\n".join(lines) + "\n")
    return dest / "data.jsonl"


def audio_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = body["messages"][-1]["content"]
    assert isinstance(content, list)
    return [p for p in content if p["type"] == "input_audio"]


def units_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "units.jsonl").read_text().splitlines()]


def test_openai_dialect_sends_wav_input_audio_that_decodes_to_the_prepared_clip(
    workspace: Workspace, audio_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    with ScriptedOpenAIServer() as server:
        res = run_eval(
            workspace,
            "gpt-4o-audio",
            audio_data,
            out_dir=tmp_path / "r",
            limit=2,
            overrides={"api_base": server.base_url},
        )
        bodies = list(server.requests)
    assert len(bodies) == 2 and res.metrics["n_items"] == 2
    prep = prepare(workspace, "gpt-4o-audio", audio_data, limit=1, overrides={"api_base": server.base_url})
    first = prep.units[0]
    # Calls run concurrently: find the first item's request by its dialogue.
    (body,) = [b for b in bodies if first.item.dialogue[0].text in b["messages"][-1]["content"][0]["text"]]
    assert body["model"] == "gpt-4o-audio-preview-2025-06-03"
    assert body["modalities"] == ["text"]
    assert "response_format" not in body  # these models refuse json_schema: the answer is read from text
    content = body["messages"][-1]["content"]
    kinds = [p["type"] for p in content]
    # Label, then its clip, for each of the four candidates, after the conversation.
    assert kinds == ["text", "input_audio", "text", "input_audio", "text", "input_audio", "text", "input_audio"]
    assert content[0]["text"].endswith("Candidate background music clips:\n[A]")
    assert [p["text"] for p in content[2::2]] == ["[B]", "[C]", "[D]"]
    assert prep.clips is not None
    for part, cand in zip(audio_parts(body), first.shown, strict=True):
        assert set(part["input_audio"]) == {"data", "format"} and part["input_audio"]["format"] == "wav"
        raw = base64.b64decode(part["input_audio"]["data"], validate=True)
        clip = prep.clips[(first.item.id, cand.id)]
        assert hashlib.sha256(raw).hexdigest() == clip.sha256  # the key's hash is of these very bytes
        samples, rate = sf.read(io.BytesIO(raw), dtype="float32")
        assert rate == 16000 and samples.ndim == 1 and len(samples) == 160000
        assert float(np.abs(samples).max()) > 0.1  # music, not silence
    # Neither the clip's path nor our internal reference leaks onto the wire.
    wire = json.dumps(body)
    assert "audio_ref" not in wire and "clips/" not in wire and ".flac" not in wire
    # Prepared clips live beside the response cache, whose integrity check stays clean.
    from dialbgm.calls._cache import ResponseCache

    assert any(workspace.audio_dir.glob("blobs/*/*.wav"))
    cache = ResponseCache(workspace.cache_dir)
    try:
        assert cache.verify().problems == []
    finally:
        cache.close()


def test_gemini_dialect_gets_inline_audio_parts_through_litellm(
    workspace: Workspace, audio_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-key")
    with ScriptedOpenAIServer() as server:
        res = run_eval(
            workspace,
            "gemini-2.5-flash-audio",
            audio_data,
            out_dir=tmp_path / "r",
            limit=1,
            overrides={"api_base": server.base_url},
        )
        body, path, headers = server.requests[0], server.paths[0], server.headers[0]
    assert path.endswith("/models/gemini-2.5-flash:generateContent")
    assert headers.get("x-goog-api-key") == "test-gemini-key" or "key=test-gemini-key" in path
    assert "test-gemini-key" not in json.dumps(body)
    assert "system_instruction" in body and "listen to it" in json.dumps(body["system_instruction"])
    parts = body["contents"][-1]["parts"]
    inline = [p["inline_data"] for p in parts if "inline_data" in p]
    assert len(inline) == 4 and all(p["mime_type"] == "audio/flac" for p in inline)
    for p in inline:
        samples, rate = sf.read(io.BytesIO(base64.b64decode(p["data"])), dtype="float32")
        assert rate == 16000 and samples.ndim == 1 and len(samples) == 160000
    assert body["generationConfig"]["response_mime_type"] == "application/json"
    assert res.metrics["n_items"] == 1 and units_of(tmp_path / "r")[0]["status"] == "ok"


def test_qwen_omni_streams_data_uris_and_caches_the_joined_reply(
    workspace: Workspace, audio_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-dashscope")
    with ScriptedOpenAIServer() as server:
        monkeypatch.setenv("DASHSCOPE_API_BASE", server.base_url)
        run_eval(workspace, "qwen-omni-audio", audio_data, out_dir=tmp_path / "a", limit=2)
        calls = len(server.requests)
        body = server.requests[0]
        again = run_eval(workspace, "qwen-omni-audio", audio_data, out_dir=tmp_path / "b", limit=2)
        assert len(server.requests) == calls == 2  # the re-run is served by the cache
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["modalities"] == ["text"]
    for part in audio_parts(body):
        data = part["input_audio"]["data"]
        assert data.startswith("data:;base64,") and part["input_audio"]["format"] == "wav"
        assert base64.b64decode(data.removeprefix("data:;base64,"))[:4] == b"RIFF"
    first, second = units_of(tmp_path / "a"), units_of(tmp_path / "b")
    assert first[0]["raw"] == GOOD and first[0]["usage"]["completion_tokens"] == 20  # joined from chunks
    assert [u["raw"] for u in second] == [u["raw"] for u in first] and all(u["cache_hit"] for u in second)
    assert again.manifest["counts"]["provider_calls"] == 0


def test_caption_and_audio_sends_both(workspace: Workspace, audio_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prep = prepare(workspace, "gpt-4o-audio", audio_data, limit=1, overrides={"input": "caption+audio"})
    content = prep.request(0).messages[-1]["content"]
    captions = [c.caption for c in prep.units[0].shown]
    texts = [p["text"] for p in content if p["type"] == "text"]
    assert all(any(cap in t for t in texts) for cap in captions if cap)
    assert sum(p["type"] == "audio_ref" for p in content) == 4
    system = prep.request(0).messages[0]["content"]
    assert "caption and an audio recording" in system


def test_same_sound_in_another_file_hits_and_an_edited_clip_misses(
    workspace: Workspace, audio_data: Path, tmp_path: Path
) -> None:
    data = copy_sample(audio_data, tmp_path, n_items=1)
    item = json.loads(data.read_text())
    base = prepare(workspace, "gpt-4o-audio", data).keys
    # The same sound under another name: same bytes sent, same key.
    cand = item["candidates"][0]
    renamed = tmp_path / "clips" / ("renamed-" + Path(cand["audio"]).name)
    shutil.copy(tmp_path / cand["audio"], renamed)
    cand["audio"] = f"clips/{renamed.name}"
    data.write_text(json.dumps(item) + "\n")
    assert prepare(workspace, "gpt-4o-audio", data).keys == base
    # The same file, edited (quieter): different bytes, a miss.
    samples, rate = sf.read(renamed, dtype="float32")
    sf.write(renamed, samples * 0.5, rate, format=sf.info(str(renamed)).format)
    edited = prepare(workspace, "gpt-4o-audio", data).keys
    assert edited[0] != base[0]
    # A different window, rate or format of the same clips is a different request too.
    for change in ({"audio_seconds": 5.0}, {"audio_sample_rate": 22050}, {"audio_format": "mp3"}):
        changed = prepare(workspace, "gpt-4o-audio", data, overrides=change).keys
        assert changed[0] != edited[0], change


def test_the_dialect_a_clip_is_sent_in_is_part_of_the_key(workspace: Workspace, audio_data: Path) -> None:
    before = prepare(workspace, "qwen-omni-audio", audio_data, limit=1).keys
    path = workspace.providers_dir / "dashscope.toml"
    path.write_text(path.read_text().replace('audio_dialect = "input_audio_data_uri"', 'audio_dialect = "input_audio"'))
    assert prepare(workspace, "qwen-omni-audio", audio_data, limit=1).keys != before


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("missing", "file not found"),
        ("empty", "empty"),
        ("corrupt", "not a readable audio file"),
        ("silent", "silent"),
    ],
)
def test_a_bad_clip_is_refused_before_any_call_naming_item_candidate_and_path(
    workspace: Workspace,
    audio_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
    reason: str,
) -> None:
    data = copy_sample(audio_data, tmp_path / "d", n_items=3)
    item = json.loads(data.read_text().splitlines()[1])
    clip = data.parent / item["candidates"][2]["audio"]
    if damage == "missing":
        clip.unlink()
    elif damage == "empty":
        clip.write_bytes(b"")
    elif damage == "corrupt":
        clip.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10)
    else:
        info = sf.info(str(clip))
        sf.write(clip, np.zeros((info.frames, info.channels), dtype="float32"), info.samplerate, format=info.format)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    with ScriptedOpenAIServer() as server:
        with pytest.raises(DataError) as err:
            run_eval(workspace, "gpt-4o-audio", data, out_dir=tmp_path / "r", overrides={"api_base": server.base_url})
        assert server.requests == []
    assert not (tmp_path / "r").exists()
    # Every item that uses the damaged clip is named (the pieces are shared between items).
    assert all(str(clip) in p.message for p in err.value.problems)
    (problem,) = [p for p in err.value.problems if p.line == 2]
    assert problem.line == 2 and problem.field == "candidates[2].audio"
    assert item["id"] in problem.message and item["candidates"][2]["id"] in problem.message
    assert str(clip) in problem.message and reason in problem.message.lower()
    # `validate` finds the same problem and exits 2.
    out = CliRunner().invoke(app, ["validate", str(data)])
    assert out.exit_code == 2 and item["candidates"][2]["id"] in out.output and reason in out.output.lower()


def test_audio_input_on_a_judge_whose_provider_takes_none_is_a_clear_error(
    workspace: Workspace, audio_data: Path
) -> None:
    with pytest.raises(ConfigError, match=r"provider 'local' takes no audio"):
        prepare(workspace, "local", audio_data, overrides={"input": "audio"})
    out = CliRunner().invoke(
        app, ["render", "-i", "a001", "--judge", "local", "--data", str(audio_data), "--set", "input=audio"]
    )
    assert out.exit_code == 2 and "takes no audio" in out.output
    with pytest.raises(ConfigError, match="accepts wav, mp3"):
        prepare(workspace, "gpt-4o-audio", audio_data, overrides={"audio_format": "flac"})
    with pytest.raises(ConfigError, match="input"):
        prepare(workspace, "gpt-4o", audio_data, overrides={"input": "sound"})


def test_a_request_over_the_providers_audio_limit_is_refused_before_any_call(
    workspace: Workspace, audio_data: Path
) -> None:
    path = workspace.providers_dir / "openai-audio.toml"
    path.write_text(path.read_text().replace("max_audio_bytes = 20000000", "max_audio_bytes = 1000000"))
    # Four 10-s clips of 16-kHz mono 16-bit wav (320,044 B) are 4 × 426,728 B as base64: over 1 MB.
    with pytest.raises(ConfigError, match=r"1,706,912 bytes of audio.*limit of 1,000,000 bytes"):
        prepare(workspace, "gpt-4o-audio", audio_data, limit=1)
    # Shorter clips fit.
    prep = prepare(workspace, "gpt-4o-audio", audio_data, limit=1, overrides={"audio_seconds": 5.0})
    assert len(prep.keys) == 1


def test_render_describes_each_clip_and_never_prints_base64(workspace: Workspace, audio_data: Path) -> None:
    out = CliRunner().invoke(
        app, ["render", "-i", "a003", "--judge", "gemini-2.5-flash-audio", "--data", str(audio_data)]
    )
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.output.splitlines() if ln.startswith("[audio:")]
    assert len(lines) == 4
    assert all("flac · 10.00 s · 16000 Hz · mono ·" in ln and "sha256" in ln for ln in lines)
    assert not re.search(r"[A-Za-z0-9+/=]{120,}", out.output)  # no wall of base64
    assert len(out.output) < 10_000  # four clips of 320 KB would be 1.7 MB of base64


def test_caption_versus_audio_is_an_experiment_factor(
    workspace: Workspace, audio_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dialbgm.config._experiment import load_experiment
    from dialbgm.run._cells import plan_cells

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    with ScriptedOpenAIServer() as server:
        (workspace.root / "experiments").mkdir()
        path = workspace.root / "experiments" / "modality.toml"
        path.write_text(
            f'[data]\npath = "{audio_data}"\nlimit = 2\n'
            f'[judges.gpt]\njudge = "gpt-4o-audio"\napi_base = "{server.base_url}"\n'
            'input = ["caption", "audio", "caption+audio"]\n'
        )
        shutil.copytree(ROOT / "prices", workspace.root / "prices")
        plans = {p.cell_id: p for p in plan_cells(workspace, load_experiment(workspace, path))}
        assert sorted(plans) == ["gpt__input=audio", "gpt__input=caption", "gpt__input=caption+audio"]
        assert all(p.uncached == 2 for p in plans.values())
        assert server.requests == []
        res = CliRunner().invoke(app, ["compare", str(path)])
        assert res.exit_code == 0, res.output
        bodies = list(server.requests)
    assert len(bodies) == 6
    with_audio = [b for b in bodies if isinstance(b["messages"][-1]["content"], list)]
    as_text = [b for b in bodies if isinstance(b["messages"][-1]["content"], str)]
    assert len(with_audio) == 4 and len(as_text) == 2
    assert all(len(audio_parts(b)) == 4 for b in with_audio)


def test_an_edited_clip_makes_compare_rerun_the_cell_and_resume_refuse(
    workspace: Workspace, audio_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dialbgm.run._identity import quick_identity

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    data = copy_sample(audio_data, tmp_path / "d", n_items=1)
    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url}
        (workspace.root / "experiments").mkdir()
        path = workspace.root / "experiments" / "one.toml"
        path.write_text(
            f'[data]\npath = "{data}"\n[judges.gpt]\njudge = "gpt-4o-audio"\napi_base = "{server.base_url}"\n'
        )
        shutil.copytree(ROOT / "prices", workspace.root / "prices")
        assert CliRunner().invoke(app, ["compare", str(path)]).exit_code == 0
        assert len(server.requests) == 1
        run = run_eval(workspace, "gpt-4o-audio", data, out_dir=tmp_path / "r", overrides=over)
        hash_before = quick_identity(workspace, "gpt-4o-audio", data, None, over).config_hash
        assert hash_before == run.manifest["config_hash"]
        clip = data.parent / json.loads(data.read_text())["candidates"][0]["audio"]
        samples, rate = sf.read(clip, dtype="float32")
        sf.write(clip, samples * 0.5, rate, format=sf.info(str(clip)).format)
        assert quick_identity(workspace, "gpt-4o-audio", data, None, over).config_hash != hash_before
        # compare sees the changed sound: the cell is run again, and its one request is new.
        assert CliRunner().invoke(app, ["compare", str(path)]).exit_code == 0
        assert len(server.requests) == 2
        with pytest.raises(ConfigError, match="audio_sha256"):
            run_eval(workspace, "gpt-4o-audio", data, resume=tmp_path / "r")


def test_without_the_audio_extra_validate_says_what_to_install(
    audio_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "soundfile", None)  # as if `pip install dialbgm` without [audio]
    out = CliRunner().invoke(app, ["validate", str(audio_data)])
    assert out.exit_code == 2 and "pip install 'dialbgm[audio]'" in out.output
    out = CliRunner().invoke(app, ["validate", "--no-audio", str(audio_data)])
    assert out.exit_code == 0 and "48 candidates with audio (clips not opened)" in out.output


def test_a_dry_run_counts_audio_tokens_and_does_not_pretend_to_price_them(
    workspace: Workspace, audio_data: Path
) -> None:
    from dialbgm.config._experiment import load_experiment
    from dialbgm.run._cells import plan_cells

    (workspace.root / "experiments").mkdir()
    path = workspace.root / "experiments" / "m.toml"
    path.write_text(
        f'[data]\npath = "{audio_data}"\nlimit = 3\n'
        '[judges.gem]\njudge = "gemini-2.5-flash-audio"\ninput = ["caption", "audio"]\n'
    )
    shutil.copytree(ROOT / "prices", workspace.root / "prices")
    plans = {p.cell_id: p for p in plan_cells(workspace, load_experiment(workspace, path))}
    text, audio = plans["gem__input=caption"], plans["gem__input=audio"]
    assert text.cost_est is not None and audio.cost_est is None
    assert audio.audio_seconds_uncached == pytest.approx(3 * 4 * 10.0)
    # 40 s of audio per call at 32 tokens/s outweighs the four captions it replaces.
    assert audio.prompt_tokens_est > text.prompt_tokens_est + 3 * 1000


def test_without_the_audio_extra_an_audio_judge_stops_before_any_call(
    workspace: Workspace, audio_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from dialbgm.data._audio import AudioSupportMissing

    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(AudioSupportMissing, match=r"pip install 'dialbgm\[audio\]'") as err:
        prepare(workspace, "gpt-4o-audio", audio_data, limit=1)
    assert err.value.exit_code == 2


def test_a_clip_removed_from_the_store_under_a_running_plan_fails_that_call_visibly(
    workspace: Workspace, audio_data: Path
) -> None:
    from dialbgm.calls._retry import PermanentError

    prep = prepare(workspace, "gpt-4o-audio", audio_data, limit=1, overrides={"api_base": "http://127.0.0.1:9/v1"})
    shutil.rmtree(workspace.audio_dir / "blobs")
    with pytest.raises(PermanentError, match=r"audio not sent: .*stored clip .* is missing"):
        prep.backend.complete(prep.request(0))
