"""CLAP retrieval judge: cosine(text tower(query), audio tower(clip)), as the paper's CLAP rows.

The query (the dialogue, its summary or its music description: ``query``) is embedded by
``ClapModel.get_text_features``; each candidate's clip by ``get_audio_features``, from the clip
exactly as the run prepared it (the judge's window, mono, resampled by dialbgm's decode code to
the feature extractor's rate, wav), so the request's audio references — the sha256 of those
bytes — are what the cache key covers. With ``input = "caption"`` the candidates' captions go
through the text tower instead (the caption-only variant). Score = cosine similarity.

Vectors are kept in an embedding store by content hash and model identity (see _clap_store), so
only what was never embedded by these weights is computed. torch and transformers are imported
on the first computation only: planning, ``render`` and a cached re-run never load the model.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from typing import Any

from dialbgm.calls.backends._clap_store import EmbeddingCounts, EmbeddingStore
from dialbgm.calls.backends._clap_weights import INSTALL, ClapWeights, WeightsAbsent, load_weights, require_clap_extra
from dialbgm.calls.backends._query import query_text
from dialbgm.config import JudgeConfig, ProviderConfig, Workspace, stable_hash
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError
from dialbgm.judging import AUDIO_REF, Request, Response, labels_for

BACKEND_VERSION = 1
"""Bumped when the way vectors are computed changes (it is in every key and store entry)."""
BATCH = 8
TOTALS = EmbeddingCounts()
"""Every CLAP backend's counts in this process (what the tests and the benchmark read)."""


def clap_identity(judge: JudgeConfig, ws: Workspace, *, planning: bool = False) -> dict[str, Any]:
    """What identifies the model behind a CLAP judge, as its backend puts it into every cache key
    (``planning``: see :class:`ClapSettings`)."""
    return ClapSettings(judge, ws, planning=planning).identity


class ClapSettings:
    """The weights a judge names and how it embeds, checked against what the model takes.

    With ``planning`` (a dry run: nothing computed or fetched, a model id looked up in the local
    cache only), weights that are not on this machine are no error: their identity is then
    ``unknown`` (why, in its ``unknown`` entry), which no cache entry or finished cell can match,
    and what the model takes goes unchecked. A run (not ``planning``) stops on them, naming them."""

    def __init__(self, judge: JudgeConfig, ws: Workspace, *, planning: bool = False) -> None:
        self.weights: ClapWeights | None = None
        self.absent: str | None = None
        try:
            self.weights = load_weights(judge.model, ws.root, local_only=planning)
        except WeightsAbsent as e:
            if not planning:
                raise
            self.absent = e.where
        self.hears = judge.input != "caption"
        if judge.input == "caption+audio":
            raise ConfigError(
                f"judge {judge.name!r}: a CLAP judge embeds each candidate's audio or its caption, not both "
                "(input = 'audio' or 'caption')"
            )
        if self.hears and self.weights is not None:
            w = self.weights
            if judge.audio_sample_rate != w.sampling_rate:
                raise ConfigError(
                    f"judge {judge.name!r}: audio_sample_rate = {judge.audio_sample_rate}, but the CLAP model in "
                    f"{w.folder} takes {w.sampling_rate} Hz; set audio_sample_rate = {w.sampling_rate}"
                )
            if not 0 < judge.audio_seconds <= w.max_length_s:
                # Longer input is cut at random offsets by the feature extractor: scores would not repeat.
                raise ConfigError(
                    f"judge {judge.name!r}: audio_seconds = {judge.audio_seconds:g}, but the CLAP model takes clips "
                    f"of at most {w.max_length_s:g} s whole; set audio_seconds above 0 and at most {w.max_length_s:g}"
                )
        self.identity: dict[str, Any] = {
            "clap_weights_sha256": self.weights.sha256 if self.weights is not None else None,
            "clap_backend": BACKEND_VERSION,
        }
        if self.absent is not None:
            self.identity["unknown"] = (
                f"weights not found at {self.absent} (model = {judge.model!r}): identity unknown until they are present"
            )


class ClapBackend:
    kind = "clap"
    batch_api = "none"
    cacheable = True
    score_range = (-1.0, 1.0)
    integer_scores = False
    needs_messages = False
    needs_key = False

    def __init__(self, judge: JudgeConfig, provider: ProviderConfig, ws: Workspace, *, planning: bool = False) -> None:
        """``planning``: a backend that only builds requests (a dry run), for weights that may be absent
        and without the extra; it computes nothing."""
        if not planning:
            require_clap_extra()
        self.context = judge.context
        self.query = judge.query
        settings = ClapSettings(judge, ws, planning=planning)
        self._weights = settings.weights
        self.hears = settings.hears
        self.identity = settings.identity
        self.audio_root = ws.audio_dir
        self.store_dir = ws.cache_dir.with_name(ws.cache_dir.name + "-embeddings")
        self.counts = EmbeddingCounts()
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None
        self._store: EmbeddingStore | None = None

    def build_request(
        self,
        item: Item,
        shown: Sequence[Candidate],
        messages: list[dict[str, Any]] | None,
        schema: dict[str, Any] | None,
        sample: int,
    ) -> Request:
        """What would be embedded: the query for the text tower, then each candidate's clip (its
        audio reference: hash, format, rate, length) for the audio tower, or its caption."""
        parts: list[dict[str, Any]] = [{"role": "query", "content": query_text(item, self.context, self.query)}]
        if self.hears:
            # For a backend that renders no prompt, the plan passes the clips' audio parts here.
            clips = messages or []
            if len(clips) != len(shown) or any(p.get("type") != AUDIO_REF for p in clips):
                raise ConfigError(f"item {item.id!r}: the CLAP judge hears the clips, but they were not prepared")
            parts += [{"role": "audio", "content": [clip]} for clip in clips]
        else:
            parts += [{"role": "caption", "content": c.caption or ""} for c in shown]
        return Request(
            backend="clap",
            model="clap",
            identity=self.identity,
            messages=parts,
            order=tuple(c.id for c in shown),
            sample=sample,
        )

    # ------------------------------------------------------------------ computing

    @property
    def weights(self) -> ClapWeights:
        if self._weights is None:  # a planning backend is never asked to compute
            raise ConfigError("the CLAP weights are not on this machine: a dry run computes nothing")
        return self._weights

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            try:
                import torch
                from transformers import ClapModel, ClapProcessor
                from transformers.utils import logging
            except ImportError as e:
                raise ConfigError(f"the CLAP judge needs the 'clap' extra ({e}); install it with  {INSTALL}") from None
            hf_logging: Any = logging  # untyped functions
            hf_logging.set_verbosity_error()  # its load reports and progress bars are not the run's output
            hf_logging.disable_progress_bar()
            folder = str(self.weights.folder)
            try:
                model: Any = ClapModel.from_pretrained(folder, local_files_only=True)
                model.eval()
                processor = ClapProcessor.from_pretrained(folder, local_files_only=True)
            except Exception as e:  # safetensors, torch and transformers each raise their own kinds
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"the CLAP weights in {folder} cannot be loaded: {reason}") from None
            torch.set_grad_enabled(False)
            self._loaded = (model, processor)
        return self._loaded

    def _embeddings(self) -> EmbeddingStore:
        if self._store is None:
            self._store = EmbeddingStore(self.store_dir, stable_hash(self.identity))
        return self._store

    def text_vectors(self, texts: list[str]) -> Any:
        """Unit vectors of the text tower, one row per text (from the store where it has them)."""
        import hashlib

        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        return self._vectors("text", keys, lambda todo: self._embed_texts([texts[k] for k in todo]))

    def audio_vectors(self, refs: list[dict[str, Any]]) -> Any:
        """Unit vectors of the audio tower, one row per prepared clip (by its bytes' sha256)."""
        keys = [str(r["sha256"]) for r in refs]
        return self._vectors("audio", keys, lambda todo: self._embed_clips([refs[k] for k in todo]))

    def _vectors(self, kind: str, keys: list[str], compute: Any) -> Any:
        import numpy as np

        store = self._embeddings()
        rows: list[Any] = [store.get(kind, k) for k in keys]
        todo = [k for k, row in enumerate(rows) if row is None]
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            for k, vector in zip(batch, compute(batch), strict=True):
                rows[k] = vector
                store.put(kind, keys[k], vector)
        for counts in (self.counts, TOTALS):
            counts.add(kind, len(todo), len(keys) - len(todo))
        return np.stack(rows)

    def _embed_texts(self, texts: list[str]) -> Any:
        model, processor = self._model()
        tok = processor.tokenizer
        limit = min(int(tok.model_max_length), int(model.config.text_config.max_position_embeddings) - 2)
        inputs = tok(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return _unit_rows(model.get_text_features(**inputs))

    def _embed_clips(self, refs: list[dict[str, Any]]) -> Any:
        model, processor = self._model()
        waves = [self._samples(r) for r in refs]
        features = processor.feature_extractor(waves, sampling_rate=self.weights.sampling_rate, return_tensors="pt")
        return _unit_rows(model.get_audio_features(**features))

    def _samples(self, ref: dict[str, Any]) -> Any:
        import numpy as np
        import soundfile as sf

        from dialbgm.data import PreparedClip, read_blob

        clip = PreparedClip.from_dict({**ref, "source": f"clip {str(ref['sha256'])[:12]}"})
        data, rate = sf.read(io.BytesIO(read_blob(self.audio_root, clip)), dtype="float32", always_2d=True)
        if rate != self.weights.sampling_rate:  # the plan checked the judge's rate; a stale store would not be
            raise ConfigError(f"{clip.source}: prepared at {rate} Hz; the model takes {self.weights.sampling_rate}")
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)

    def complete(self, request: Request) -> Response:
        with self._lock:  # one model, one store handle: computations take turns
            query = self.text_vectors([request.messages[0]["content"]])[0]
            rest = request.messages[1:]
            if self.hears:
                vectors = self.audio_vectors([m["content"][0]["audio"] for m in rest])
            else:
                vectors = self.text_vectors([m["content"] for m in rest])
        # Unit vectors: a cosine past +-1 is rounding, and the parser holds scores to score_range.
        sims = [min(1.0, max(-1.0, float(v))) for v in vectors @ query]
        labels = labels_for(len(sims))
        body: dict[str, Any] = (
            {"score": sims[0]} if len(sims) == 1 else {"scores": dict(zip(labels, sims, strict=True))}
        )
        return Response(json.dumps(body), "stop", "clap")

    async def acomplete(self, request: Request) -> Response:
        import asyncio

        # The towers are CPU work: off the event loop, which keeps the run's progress moving.
        return await asyncio.to_thread(self.complete, request)

    def batch_bridge(self) -> Any:
        raise ConfigError("the CLAP judge is computed here: there is no batch API to send it to")

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _unit_rows(output: Any) -> Any:
    """The projected embeddings as unit-length float32 rows (transformers 5 returns them as the
    output's ``pooler_output``, 4.x as a bare tensor)."""
    import numpy as np

    tensor = getattr(output, "pooler_output", output)
    rows = tensor.detach().cpu().numpy().astype(np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.clip(norms, 1e-12, None)
