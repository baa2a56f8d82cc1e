"""Expand (dataset × judge) into units before any call.

A unit is one provider call: a listwise unit judges all of an item's candidates at once, a
pointwise unit one candidate. The order the candidates are shown in and the few-shot examples
are drawn from seeds hashed with the item id, so they are the same on every machine and in any
order of execution, and never depend on the dataset's own candidate order (which may be sorted
by rank).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from dialbgm.config import JudgeConfig
from dialbgm.data import Candidate, Dataset, Item, load_dataset
from dialbgm.errors import ConfigError, DataError
from dialbgm.prompts import Shot


def seeded_rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Unit:
    unit_id: str
    item: Item
    shown: tuple[Candidate, ...]
    order: tuple[int, ...]
    """Indices into ``item.candidates`` in the order shown (label A is ``order[0]``)."""
    shots: tuple[Shot, ...]
    sample: int = 0

    @property
    def shot_ids(self) -> list[str]:
        return [s.item.id for s in self.shots]


def presentation_order(item: Item, seed: int) -> tuple[int, ...]:
    idx = list(range(len(item.candidates)))
    seeded_rng("order", seed, item.id).shuffle(idx)
    return tuple(idx)


class FewShotPool:
    """Examples for few-shot prompts; items under evaluation are excluded by id and content."""

    def __init__(self, dataset: Dataset, exclude: Dataset) -> None:
        banned_ids = set(exclude.ids)
        banned_text = {_fingerprint(i) for i in exclude.items}
        self.items = [i for i in dataset.items if i.id not in banned_ids and _fingerprint(i) not in banned_text]
        self.path = dataset.path

    def draw(self, judge: JudgeConfig, item: Item) -> tuple[Shot, ...]:
        k = judge.few_shot
        if k == 0:
            return ()
        if k > len(self.items):
            raise ConfigError(
                f"few_shot={k} but the pool {self.path} has only {len(self.items)} usable example(s) "
                "(items under evaluation are never used as examples)"
            )
        rng = seeded_rng("shots", judge.few_shot_seed, item.id)
        picked = rng.sample(self.items, k)
        shots = []
        for ex in picked:
            order = presentation_order(ex, judge.few_shot_seed)
            shown = tuple(ex.candidates[i] for i in order)
            if judge.mode == "pointwise":
                shown = (shown[rng.randrange(len(shown))],)
            shots.append(Shot(ex, shown))
        return tuple(shots)


def _fingerprint(item: Item) -> str:
    text = "\n".join(f"{t.speaker}:{t.text}" for t in item.dialogue)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_pool(path: Path, exclude: Dataset) -> FewShotPool:
    try:
        pool = load_dataset(path)
    except DataError as e:
        raise ConfigError(f"few-shot pool {path} is invalid:\n{e}") from None
    return FewShotPool(pool, exclude)


def build_units(dataset: Dataset, judge: JudgeConfig, pool: FewShotPool | None) -> list[Unit]:
    units: list[Unit] = []
    for item in dataset:
        order = presentation_order(item, judge.order_seed)
        shown = tuple(item.candidates[i] for i in order)
        shots = pool.draw(judge, item) if pool is not None else ()
        if judge.mode == "listwise":
            units.append(Unit(f"{item.id}#0", item, shown, order, shots))
        else:
            for pos, cand_index in enumerate(order):
                units.append(Unit(f"{item.id}#{pos}", item, (item.candidates[cand_index],), (cand_index,), shots))
    return units
