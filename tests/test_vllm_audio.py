"""Open audio-language and omni models on a self-hosted vLLM server: the two chat dialects vLLM
reads (``input_audio`` with base64 and a format, ``audio_url`` with a data URI), sent through the
real litellm code path to a loopback server that records the exact JSON, and the provider's
limits (formats, clips per request, seconds per clip, bytes) refused before any call.

The expected request bodies are built here from the prepared clips' files on disk, not by the
code under test, so a part in the wrong shape, a wrong MIME type or other bytes would all fail.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._config import load_judge, load_provider
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from dialbgm_tools.sample_music import write_clips
from tests.support.scripted_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
VLLM_AUDIO_JUDGES = ("vllm-qwen2-audio", "vllm-qwen2.5-omni", "vllm-phi-4-multimodal")
MODELS = {
    "vllm-qwen2-audio": "Qwen/Qwen2-Audio-7B-Instruct",
    "vllm-qwen2.5-omni": "Qwen/Qwen2.5-Omni-7B",
    "vllm-phi-4-multimodal": "speech",
}


@pytest.fixture(scope="module")
def audio_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vllm-audio")
    shutil.copy(ROOT / "data" / "sample-audio.jsonl", folder / "sample-audio.jsonl")
    write_clips(folder / "clips")
    return folder / "sample-audio.jsonl"


@pytest.fixture(autouse=True)
def _no_vllm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VLLM_BASE_URL", "VLLM_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)


def blob(ws: Workspace, sha256: str) -> bytes:
    """A prepared clip's bytes, read from the store's file (not through dialbgm's reader)."""
    (path,) = ws.audio_dir.glob(f"blobs/{sha256[:2]}/{sha256}.*")
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256
    return data


def expected_part(dialect: str, ref: dict[str, Any], ws: Workspace) -> dict[str, Any]:
    b64 = base64.b64encode(blob(ws, ref["sha256"])).decode("ascii")
    if dialect == "audio_url":
        mime = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}[ref["format"]]
        return {"type": "audio_url", "audio_url": {"url": f"data:{mime};base64,{b64}"}}
    return {"type": "input_audio", "input_audio": {"data": b64, "format": ref["format"]}}


def expected_messages(messages: list[dict[str, Any]], dialect: str, ws: Workspace) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [expected_part(dialect, p["audio"], ws) if p["type"] == "audio_ref" else p for p in content]
        out.append({**m, "content": content})
    return out


def body_for(bodies: list[dict[str, Any]], first_line: str) -> dict[str, Any]:
    """Calls run concurrently: the request of one item, found by its first dialogue line."""
    (body,) = [b for b in bodies if first_line in json.dumps(b["messages"][-1]["content"][0])]
    return body


@pytest.mark.parametrize(
    ("judge", "dialect", "fmt"),
    [
        ("vllm-qwen2-audio", "input_audio", "wav"),
        ("vllm-qwen2-audio", "audio_url", "wav"),
        ("vllm-qwen2.5-omni", "audio_url", "wav"),
        ("vllm-phi-4-multimodal", "input_audio", "wav"),
        ("vllm-qwen2-audio", "audio_url", "flac"),
        ("vllm-qwen2-audio", "input_audio", "mp3"),
    ],
)
def test_each_dialect_sends_the_exact_json_vllm_reads(
    workspace: Workspace, audio_data: Path, tmp_path: Path, judge: str, dialect: str, fmt: str
) -> None:
    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url, "audio_dialect": dialect, "audio_format": fmt}
        res = run_eval(workspace, judge, audio_data, out_dir=tmp_path / "r", limit=2, overrides=over)
        bodies = list(server.requests)
        paths = list(server.paths)
        headers = list(server.headers)
    assert res.metrics["n_items"] == 2 and len(bodies) == 2
    assert paths == ["/v1/chat/completions"] * 2
    assert all(h["authorization"] == "Bearer no-key" for h in headers)  # no key set: none of ours is sent
    prep = prepare(workspace, judge, audio_data, limit=1, overrides=over)
    request = prep.request(0)
    body = body_for(bodies, prep.units[0].item.dialogue[0].text)
    schema = request.params["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["name"] == "judgement"
    assert body == {
        "model": MODELS[judge],
        "messages": expected_messages(request.messages, dialect, workspace),
        "temperature": 0.0,
        "max_tokens": 1024,
        "seed": 0,
        "response_format": schema,
    }
    parts = [p for p in body["messages"][-1]["content"] if p["type"] != "text"]
    assert [p["type"] for p in parts] == [dialect] * 4
    assert prep.clips is not None
    for part, cand in zip(parts, prep.units[0].shown, strict=True):
        if dialect == "audio_url":
            head, _, data = part["audio_url"]["url"].partition(",")
            assert head == {"wav": "data:audio/wav;base64", "flac": "data:audio/flac;base64"}.get(fmt, head)
        else:
            data = part["input_audio"]["data"]
            assert part["input_audio"]["format"] == fmt
        raw = base64.b64decode(data, validate=True)
        assert hashlib.sha256(raw).hexdigest() == prep.clips[(prep.units[0].item.id, cand.id)].sha256
        if fmt in ("wav", "flac"):
            samples, rate = sf.read(io.BytesIO(raw), dtype="float32")
            assert rate == 16000 and samples.ndim == 1 and len(samples) == 160000
    wire = json.dumps(bodies)
    assert "audio_ref" not in wire and "clips/" not in wire


def test_the_dialect_is_part_of_the_key_and_of_the_recorded_config(workspace: Workspace, audio_data: Path) -> None:
    a = prepare(workspace, "vllm-qwen2-audio", audio_data, limit=2)
    b = prepare(workspace, "vllm-qwen2-audio", audio_data, limit=2, overrides={"audio_dialect": "audio_url"})
    assert a.keys[0] != b.keys[0] and a.keys[1] != b.keys[1]
    assert a.request(0).messages[-1]["content"][1]["dialect"] == "input_audio"
    assert b.request(0).messages[-1]["content"][1]["dialect"] == "audio_url"
    assert load_judge(workspace, "vllm-qwen2-audio").to_dict()["audio_dialect"] == "input_audio"
    # Unset, the setting is not recorded: judges from before it existed keep their config hash.
    assert "audio_dialect" not in load_judge(workspace, "gpt-4o-audio").to_dict()


def test_a_dialect_the_provider_does_not_accept_is_refused_before_any_call(
    workspace: Workspace, audio_data: Path
) -> None:
    with pytest.raises(
        ConfigError, match=r"audio_dialect = 'audio_url', but provider 'openai-audio' accepts input_audio"
    ):
        prepare(workspace, "gpt-4o-audio", audio_data, limit=1, overrides={"audio_dialect": "audio_url"})
    with pytest.raises(
        ConfigError, match=r"audio_dialect: must be one of input_audio, input_audio_data_uri, audio_url"
    ):
        load_judge(workspace, "vllm-qwen2-audio", {"audio_dialect": "audio_base64"})
    path = workspace.providers_dir / "vllm.toml"
    path.write_text(
        path.read_text().replace('audio_dialects = ["input_audio", "audio_url"]', 'audio_dialects = ["url"]')
    )
    with pytest.raises(ConfigError, match=r"vllm.toml: capabilities.audio_dialects: 'url' is not a dialect"):
        load_provider(workspace, "vllm")


def test_the_providers_limits_are_refused_before_any_call(
    workspace: Workspace, audio_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedOpenAIServer() as server:
        monkeypatch.setenv("VLLM_BASE_URL", server.base_url)
        # A format the provider does not list.
        path = workspace.providers_dir / "vllm.toml"
        path.write_text(path.read_text().replace('["wav", "flac", "mp3", "ogg"]', '["wav", "flac"]'))
        with pytest.raises(ConfigError, match=r"audio_format = 'mp3', but provider 'vllm' accepts wav, flac"):
            run_eval(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides={"audio_format": "mp3"})
        # Longer clips than the model takes whole: the window, and the whole clip.
        with pytest.raises(
            ConfigError, match=r"sends 40 s of each clip, but provider 'vllm' takes clips of at most 30 s"
        ):
            run_eval(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides={"audio_seconds": 40.0})
        with pytest.raises(ConfigError, match=r"the whole clip \(audio_seconds = 0\)"):
            prepare(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides={"audio_seconds": 0.0})
        # More clips per request than the server was started to take (--limit-mm-per-prompt).
        path.write_text(path.read_text().replace("max_audio_clips = 4", "max_audio_clips = 2"))
        with pytest.raises(
            ConfigError, match=r"sample-audio.jsonl:1: item 'a001' .*4 clips, over the 2 of provider 'vllm'"
        ):
            run_eval(workspace, "vllm-qwen2-audio", audio_data, limit=1)
        # One clip per call fits.
        res = run_eval(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides={"mode": "pointwise"})
        assert res.manifest["counts"]["provider_calls"] == 4
        # Bytes, counted as sent (base64): four 10-s 16-kHz wav clips are 1,706,912 bytes.
        path.write_text(path.read_text().replace("max_audio_bytes = 20000000", "max_audio_bytes = 1000000"))
        with pytest.raises(ConfigError, match=r"426,728 bytes of audio|1,706,912 bytes of audio"):
            prepare(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides={"audio_seconds": 10.0})
        assert len(server.requests) == 4  # only the pointwise run called


def test_the_shipped_provider_states_its_formats_dialects_and_limits(workspace: Workspace) -> None:
    caps = load_provider(workspace, "vllm").capabilities
    assert caps.audio_formats == ("wav", "flac", "mp3", "ogg")
    assert (caps.audio_dialect, caps.audio_dialects) == ("input_audio", ("input_audio", "audio_url"))
    assert (caps.max_audio_clips, caps.max_clip_seconds, caps.max_audio_bytes) == (4, 30.0, 20_000_000)
    # Every shipped vLLM audio judge states its serve command, with the clip limit the provider assumes.
    for name in VLLM_AUDIO_JUDGES:
        text = (ROOT / "judges" / f"{name}.toml").read_text()
        judge = load_judge(workspace, name)
        assert judge.description.count("vllm serve ") == 1, name
        assert "--limit-mm-per-prompt '{\"audio\": 4}'" in judge.description, name
        assert "vllm serve" in text.split("description")[0], name  # and in the file's comment
    assert "vllm serve Qwen/Qwen2.5-7B-Instruct" in load_judge(workspace, "vllm-qwen2.5-7b").description


def test_another_model_is_a_changed_model_name(workspace: Workspace, audio_data: Path) -> None:
    """Any audio model vLLM serves: the same judge with another model name, a new key."""
    with ScriptedOpenAIServer() as server:
        over = {"api_base": server.base_url, "model": "fixie-ai/ultravox-v0_5-llama-3_2-1b"}
        run_eval(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides=over)
        (body,) = server.requests
    assert body["model"] == "fixie-ai/ultravox-v0_5-llama-3_2-1b"
    assert (
        prepare(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides=over).keys[0]
        != (
            prepare(workspace, "vllm-qwen2-audio", audio_data, limit=1, overrides={"api_base": server.base_url}).keys[0]
        )
    )


def test_the_text_only_open_model_judge_reads_captions(workspace: Workspace, sample_path: Path) -> None:
    with ScriptedOpenAIServer() as server:
        res = run_eval(workspace, "vllm-qwen2.5-7b", sample_path, limit=2, overrides={"api_base": server.base_url})
        body = server.requests[0]
    assert res.metrics["n_items"] == 2
    assert body["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert isinstance(body["messages"][-1]["content"], str)  # captions: plain text, no audio parts
    assert body["response_format"]["type"] == "json_schema"


def test_every_shipped_judge_loads_and_renders(workspace: Workspace, audio_data: Path, sample_path: Path) -> None:
    """`dialbgm render` for every judge file shipped, on the sample it fits (audio judges on the audio sample)."""
    runner = CliRunner()
    names = sorted(p.stem for p in (ROOT / "judges").glob("*.toml"))
    assert set(VLLM_AUDIO_JUDGES) <= set(names)
    for name in names:
        hears = load_judge(workspace, name).input != "caption"
        data, item = (audio_data, "a001") if hears else (sample_path, "s001")
        out = runner.invoke(app, ["render", "--judge", name, "--data", str(data), "--item", item])
        if name.startswith("clap-"):  # its weights (named by model id) are never on a test machine
            assert out.exit_code == 2 and "cannot be loaded" in out.output and "Traceback" not in out.output, name
            continue
        assert out.exit_code == 0, (name, out.output)
        if hears:
            assert out.output.count("[audio: wav · 10.00 s · 16000 Hz · mono") == 4 or "flac" in out.output, name
