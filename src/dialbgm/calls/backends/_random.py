"""A seeded chance baseline: uniform scores, a fresh draw per item, order and sample."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dialbgm.config import JudgeConfig
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError
from dialbgm.judging import Request, Response, labels_for, seeded_rng


class RandomBackend:
    kind = "random"
    cacheable = False
    score_range = (0.0, 1.0)
    integer_scores = False
    batch_api = "none"
    needs_messages = False
    needs_key = False

    def __init__(self, judge: JudgeConfig) -> None:
        self.seed = judge.seed

    def build_request(
        self,
        item: Item,
        shown: Sequence[Candidate],
        messages: list[dict[str, Any]] | None,
        schema: dict[str, Any] | None,
        sample: int,
    ) -> Request:
        return Request(
            backend="random",
            model="uniform",
            identity={"seed": self.seed, "item": item.id},
            messages=[],
            order=tuple(c.id for c in shown),
            sample=sample,
        )

    def complete(self, request: Request) -> Response:
        rng = seeded_rng("random", self.seed, request.identity["item"], request.order, request.sample)
        labels = labels_for(len(request.order))
        if len(labels) == 1:
            return Response(json.dumps({"score": rng.random()}), "stop", "uniform")
        return Response(json.dumps({"scores": {lab: rng.random() for lab in labels}}), "stop", "uniform")

    async def acomplete(self, request: Request) -> Response:
        # A few microseconds of arithmetic: a thread hop would cost more than the answer.
        return self.complete(request)

    def batch_bridge(self) -> Any:
        raise ConfigError("the random judge is computed here: there is no batch API to send it to")

    def close(self) -> None:
        return None
