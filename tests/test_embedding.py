"""The offline embedding baseline: a real MiniLM model on onnxruntime, no network."""

from __future__ import annotations

from pathlib import Path

from dialbgm.calls.backends._embedding import EmbeddingBackend
from dialbgm.config._config import load_judge, load_provider
from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval


def test_embeddings_are_normalised_and_semantic(workspace: Workspace) -> None:
    judge = load_judge(workspace, "embedding")
    backend = EmbeddingBackend(judge, load_provider(workspace, "embedding"))
    v = backend.embed(
        [
            "We are throwing a birthday party with balloons and cake tonight!",
            "Cheerful upbeat party pop with handclaps, celebration mood.",
            "A dark, slow funeral dirge on a church organ.",
        ]
    )
    assert v.shape == (3, 384)
    assert abs(float((v[0] ** 2).sum()) - 1.0) < 1e-5
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    assert len(backend.identity["model_sha256"]) > 20  # from the wheel's RECORD


def test_embedding_judge_runs_offline_and_caches(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    first = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "a", limit=10)
    assert first.metrics["n_items"] == 10 and first.manifest["counts"]["provider_calls"] == 10
    second = run_eval(workspace, "embedding", sample_path, out_dir=tmp_path / "b", limit=10)
    assert second.manifest["counts"]["cache_hits"] == 10
    assert second.metrics == first.metrics
    summary = run_eval(
        workspace, "embedding", sample_path, out_dir=tmp_path / "c", limit=10, overrides={"context": "summary"}
    )
    assert summary.manifest["counts"]["cache_hits"] == 0  # another input text, another key
