"""Hosted text embedders through litellm's embedding API (``litellm.aembedding``): OpenAI's
``text-embedding-3-*``, Gemini's ``gemini-embedding-001``, or any embedding model a litellm
route reaches. Score = cosine(dialogue or summary, caption), as for the offline embedders.

One call per unit embeds the query and the captions together; the request (route/model, base
URL, parameters such as ``dimensions``, the exact input texts) is the cache key, so a re-run or
another cell with the same texts calls nothing. The reply cached is the scores computed from
the vectors, with the usage the provider reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dialbgm.calls._retry import PermanentError
from dialbgm.calls.backends._lean import judge_call
from dialbgm.calls.backends._litellm import base_url_from_environment, import_litellm
from dialbgm.calls.backends._litellm_errors import classify, secrets_sent
from dialbgm.calls.backends._query import query_text
from dialbgm.config import JudgeConfig, ProviderConfig, Workspace
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError
from dialbgm.judging import Request, Response, labels_for


class EmbeddingAPIBackend:
    kind = "embedding_api"
    batch_api = "none"
    cacheable = True
    score_range = (-1.0, 1.0)
    integer_scores = False
    needs_messages = False
    needs_key = True

    def __init__(self, judge: JudgeConfig, provider: ProviderConfig, ws: Workspace) -> None:
        if not judge.model:
            raise ConfigError(
                f"judge {judge.name!r}: provider {provider.name!r} is a hosted embedder; set model "
                '(e.g. model = "text-embedding-3-small")'
            )
        self.judge = judge
        self.provider = provider
        self.context = judge.context
        self.query = judge.query
        self.model = f"{provider.route}/{judge.model}" if provider.route else judge.model
        self.api_base = (
            judge.api_base or provider.effective_api_base() or base_url_from_environment(provider, self.model)
        )
        revision = judge.model_revision or provider.model_revision
        self.identity: dict[str, Any] = {"model_revision": revision} if revision else {}
        # Sent as given (dimensions, encoding_format, task_type, ...); sampling settings mean nothing here.
        self.params = {k: v for k, v in judge.params.items() if k not in ("temperature", "seed", "max_tokens")}

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
            backend="embedding_api",
            model=self.model,
            identity=self.identity,
            messages=texts,
            params=dict(self.params),
            api_base=self.api_base,
            order=tuple(c.id for c in shown),
            sample=sample,
        )

    def _kwargs(self, request: Request) -> dict[str, Any]:
        key = self.provider.api_key()
        if key is None and self.provider.route == "openai":
            key = "no-key"  # a self-hosted server needs none, but the OpenAI client refuses to send without one
        kwargs: dict[str, Any] = {
            "model": request.model,
            # An empty caption would be refused by the API; a space embeds as "nothing to say".
            "input": [m["content"] or " " for m in request.messages],
            "timeout": self.provider.timeout,
            "num_retries": 0,
            "max_retries": 0,
            **request.params,
        }
        if request.api_base:
            kwargs["api_base"] = request.api_base
        if key:
            kwargs["api_key"] = key
        return kwargs

    def _response(self, reply: Any, n: int) -> Response:
        import numpy as np

        data = sorted(reply.data, key=lambda d: d["index"] if isinstance(d, dict) else d.index)
        vectors = [d["embedding"] if isinstance(d, dict) else d.embedding for d in data]
        if len(vectors) != n or any(not isinstance(v, list) or not v for v in vectors):
            raise PermanentError(f"the embedding API returned {len(vectors)} vectors for {n} texts")
        m = np.asarray(vectors, dtype=np.float64)
        if m.ndim != 2:
            raise PermanentError("the embedding API returned vectors of different lengths")
        m /= np.clip(np.linalg.norm(m, axis=1, keepdims=True), 1e-12, None)
        sims = [round(float(v), 6) for v in m[1:] @ m[0]]
        labels = labels_for(len(sims))
        body: dict[str, Any] = (
            {"score": sims[0]} if len(sims) == 1 else {"scores": dict(zip(labels, sims, strict=True))}
        )
        usage = getattr(reply, "usage", None)
        tokens = {}
        if usage is not None:
            prompt = getattr(usage, "prompt_tokens", None)
            if isinstance(prompt, int):
                tokens = {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt}
        return Response(json.dumps(body), "stop", getattr(reply, "model", None) or request_model(self.model), tokens)

    def complete(self, request: Request) -> Response:
        litellm = import_litellm()
        kwargs = self._kwargs(request)
        try:
            with judge_call():
                reply = litellm.embedding(**kwargs)
        except Exception as e:
            raise classify(e, secrets_sent(kwargs)) from e
        return self._response(reply, len(request.messages))

    async def acomplete(self, request: Request) -> Response:
        import asyncio

        from dialbgm.calls.backends import _litellm

        litellm = _litellm._ready if _litellm._ready is not None else await asyncio.to_thread(import_litellm)
        kwargs = self._kwargs(request)
        try:
            with judge_call():
                reply = await litellm.aembedding(**kwargs)
        except Exception as e:
            raise classify(e, secrets_sent(kwargs)) from e
        return self._response(reply, len(request.messages))

    def batch_bridge(self) -> Any:
        # OpenAI's batch endpoint takes /v1/embeddings lines, but the batch layer builds chat lines.
        raise ConfigError("hosted embedders are called online: their batch endpoints are not supported")

    def close(self) -> None:
        return None


def request_model(model: str) -> str:
    return model.partition("/")[2] or model
