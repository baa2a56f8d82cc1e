"""Expand (dataset × judge) into units before any call.

A unit is one provider call: a listwise unit judges all of an item's candidates at once, a
pointwise unit one candidate. The order the candidates are shown in and the few-shot examples
are drawn from seeds hashed with the item id, so they are the same on every machine and in any
order of execution, and never depend on the dataset's own candidate order (which may be sorted
by rank).

A run's units are a :class:`UnitPlan`: each item's layout (its orders, labels and shots) is
kept, and a unit is made from it when asked for, so a long run holds no object per unit.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from dialbgm.config import JudgeConfig, ProviderConfig, read_task
from dialbgm.data import Candidate, Dataset, Item, load_dataset
from dialbgm.errors import ConfigError, DataError, Problem
from dialbgm.judging._prompts import PromptSet, Shot, labels_for


def seeded_rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Unit:
    unit_id: str
    item: Item
    shown: tuple[Candidate, ...]
    order: tuple[int, ...]
    """Indices into ``item.candidates`` in the order shown (position 0 first)."""
    shots: tuple[Shot, ...]
    sample: int = 0
    order_index: int = 0
    """Which of the item's candidate orders this is (0 = the base order)."""
    labels: tuple[str, ...] = ()
    """The label shown at each position: A, B, C... or a seeded shuffle of them."""

    @property
    def shot_ids(self) -> list[str]:
        return [s.item.id for s in self.shots]


def presentation_order(item: Item, seed: int) -> tuple[int, ...]:
    idx = list(range(len(item.candidates)))
    seeded_rng("order", seed, item.id).shuffle(idx)
    return tuple(idx)


MAX_ALL_ORDERS = 8


def candidate_orders(item: Item, spec: int | str, seed: int) -> list[tuple[int, ...]]:
    """The orders an item is shown in; the first is always the seeded base order.

    ``N``: the first N cyclic rotations of the base order (N = number of candidates puts every
    candidate in every position exactly once); ``"all"``: every permutation; ``"random:N"``: N
    distinct seeded permutations (the base order first).
    """
    base = presentation_order(item, seed)
    n = len(base)
    if isinstance(spec, int):
        if spec > n:
            raise ConfigError(
                f"orders={spec} but item {item.id!r} has {n} candidates: rotations give at most {n} "
                'orders (use "random:N" or "all" for more)'
            )
        return [base[r:] + base[:r] for r in range(spec)]
    if spec == "all":
        if n > MAX_ALL_ORDERS:
            raise ConfigError(f'orders="all" on item {item.id!r} means {math.factorial(n)} calls; use "random:N"')
        return [base, *(p for p in itertools.permutations(base) if p != base)]
    k = int(spec.partition(":")[2])
    if k > math.factorial(n):
        raise ConfigError(f"orders={spec!r} but item {item.id!r} has only {math.factorial(n)} distinct orders")
    rng = seeded_rng("orders", seed, item.id)
    chosen = [base]
    seen = {base}
    while len(chosen) < k:
        p = list(base)
        rng.shuffle(p)
        t = tuple(p)
        if t not in seen:
            seen.add(t)
            chosen.append(t)
    return chosen


def labels_for_order(item: Item, n: int, order_index: int, judge: JudgeConfig) -> tuple[str, ...]:
    labels = labels_for(n)
    if judge.shuffle_labels:
        seeded_rng("labels", judge.order_seed, item.id, order_index).shuffle(labels)
    return tuple(labels)


class FewShotPool:
    """Examples for few-shot prompts; items under evaluation are excluded by id and content."""

    def __init__(self, dataset: Dataset, exclude: Dataset, warnings: tuple[str, ...] = ()) -> None:
        banned_ids = set(exclude.ids)
        banned_text = {_fingerprint(i) for i in exclude.items}
        self.items = [i for i in dataset.items if i.id not in banned_ids and _fingerprint(i) not in banned_text]
        self.path = dataset.path
        self.sha256 = dataset.sha256
        self.warnings = warnings
        """What could not be checked about the pool's task (see check_pool_task)."""

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


def _orders_limit(spec: int | str, n: int) -> str | None:
    """Why ``orders = spec`` cannot be planned for n candidates (the conditions of candidate_orders)."""
    if isinstance(spec, int):
        if spec > n:
            return f"orders = {spec}, but rotations of {n} candidates give at most {n} orders"
    elif spec == "all":
        if n > MAX_ALL_ORDERS:
            return f'orders = "all" means {math.factorial(n)} calls for {n} candidates (at most {MAX_ALL_ORDERS})'
    elif int(spec.partition(":")[2]) > math.factorial(n):
        return f"orders = {spec!r}, but {n} candidates have only {math.factorial(n)} distinct orders"
    return None


def judge_problems(
    judge: JudgeConfig, provider_kind: str, path: Path, items: Iterable[Item], pool: bool
) -> list[Problem]:
    """What this judge needs of each item beyond the data rules, by file, line, field and item.

    Each would otherwise stop the run at planning naming no file or line, or (a caption judge on
    a candidate with no caption) let it go on showing "(no caption)". ``pool``: few-shot
    examples, shown once in a fixed order, whose summaries no summarizer writes.
    """
    return [
        Problem(str(path), item.source_line, fld, f"item {item.id!r}{message}")
        for item in items
        for fld, message in _item_needs(judge, provider_kind, item, pool)
    ]


def _item_needs(judge: JudgeConfig, provider_kind: str, item: Item, pool: bool) -> Iterator[tuple[str, str]]:
    """(field, message after the item's id) for each thing this judge needs that the item lacks."""
    from dialbgm.metrics import KEMENY_MAX_CANDIDATES

    n = len(item.candidates)
    if not pool and judge.mode == "listwise" and (why := _orders_limit(judge.orders, n)):
        yield "candidates", f": {why}"
    if not pool and judge.aggregation == "kemeny" and n > KEMENY_MAX_CANDIDATES:
        yield (
            "candidates",
            f": {n} candidates, but aggregation = kemeny takes at most {KEMENY_MAX_CANDIDATES} candidates "
            "(use mean or borda)",
        )
    if judge.context == "summary" and item.summary is None and (pool or not judge.summarizer):
        fix = "add one" if pool else "add one, or name a judge to write them with --set summarizer=JUDGE"
        yield "summary", f": no summary, but the judge uses context = summary; {fix}"
    # The random baseline reads nothing; every other judge with input = caption reads (or embeds) captions.
    reads_captions = judge.input == "caption" and provider_kind != "random"
    for k, c in enumerate(item.candidates):
        if reads_captions and c.caption is None:
            yield (
                f"candidates[{k}].caption",
                f", candidate {c.id!r}: no caption, but the judge reads captions only (input = caption)",
            )
        if not pool and judge.input != "caption" and c.audio is None:
            yield f"candidates[{k}].audio", f", candidate {c.id!r}: no audio path"


def judge_fit_problems(
    judge: JudgeConfig, provider: ProviderConfig, dataset: Dataset, pool: FewShotPool | None
) -> list[Problem]:
    """Every item of the data and of the few-shot pool this judge cannot take (see judge_problems)."""
    problems = judge_problems(judge, provider.kind, dataset.path, dataset.items, pool=False)
    if pool is not None:
        problems += judge_problems(judge, provider.kind, pool.path, pool.items, pool=True)
    return problems


def pool_task_file(path: Path) -> Path:
    """Where a few-shot pool declares its task: beside it, ``NAME.task.toml`` for ``NAME.jsonl``."""
    return path.with_suffix(".task.toml")


def check_pool_task(template: PromptSet, path: Path) -> tuple[str, ...]:
    """A pool of another task, or of another kind of candidate, is refused; when the template or
    the pool declares nothing the match cannot be checked, and that is returned as a warning."""
    sidecar = pool_task_file(path)
    pool = read_task(sidecar, ConfigError)
    tmpl = template.task
    name = template.folder.name
    if tmpl is not None and pool is not None:
        for key in ("task", "candidate_kind"):
            theirs, ours = getattr(pool, key), getattr(tmpl, key)
            if theirs != ours:
                raise ConfigError(
                    f"few-shot pool {path}: {key} is {theirs!r} ({pool.source}) but template {name!r} has "
                    f"{key} {ours!r} ({tmpl.source}); its examples would teach another task. Name a pool "
                    "of this task with few_shot_pool"
                )
        return ()
    if tmpl is None and pool is None:
        return (
            f"neither template {name!r} (no {template.folder / 'template.toml'}) nor few-shot pool {path} "
            f"(no {sidecar}) declares a task: it cannot be checked that the examples are of the template's task",
        )
    if tmpl is None:
        assert pool is not None
        return (
            f"template {name!r} declares no task (no {template.folder / 'template.toml'}) while few-shot pool "
            f"{path} is for task {pool.task!r} ({pool.candidate_kind}): it cannot be checked that they match",
        )
    return (
        f"few-shot pool {path} declares no task (no {sidecar}) while template {name!r} is for task "
        f"{tmpl.task!r} ({tmpl.candidate_kind}): it cannot be checked that its examples are of that task",
    )


def load_pool(path: Path, exclude: Dataset, template: PromptSet | None = None) -> FewShotPool:
    """The pool at ``path`` minus the items under evaluation; with ``template``, checked against
    its task first (check_pool_task)."""
    warnings = check_pool_task(template, path) if template is not None else ()
    try:
        pool = load_dataset(path)
    except DataError as e:
        raise ConfigError(f"few-shot pool {path} is invalid:\n{e}") from None
    return FewShotPool(pool, exclude, warnings)


@dataclass(frozen=True)
class _Layout:
    """What an item's units share: the few-shot examples, and per order (listwise) or per
    candidate (pointwise) the candidates shown, their indices and their labels."""

    shots: tuple[Shot, ...]
    views: tuple[tuple[tuple[int, ...], tuple[Candidate, ...], tuple[str, ...]], ...]
    samples: int
    pointwise: bool

    @property
    def size(self) -> int:
        return len(self.views) * self.samples

    def units(self, item: Item) -> tuple[Unit, ...]:
        if self.pointwise:
            return tuple(
                Unit(f"{item.id}#s{sample}p{pos}", item, shown, order, self.shots, sample, 0, labels)
                for sample in range(self.samples)
                for pos, (order, shown, labels) in enumerate(self.views)
            )
        return tuple(
            Unit(f"{item.id}#o{oi}s{sample}", item, shown, order, self.shots, sample, oi, labels)
            for oi, (order, shown, labels) in enumerate(self.views)
            for sample in range(self.samples)
        )


def _layout(item: Item, judge: JudgeConfig, pool: FewShotPool | None) -> _Layout:
    shots = pool.draw(judge, item) if pool is not None else ()
    if judge.mode == "pointwise":
        order = presentation_order(item, judge.order_seed)
        views = tuple(((ci,), (item.candidates[ci],), ("A",)) for ci in order)
        return _Layout(shots, views, judge.samples, pointwise=True)
    listed = []
    for oi, order in enumerate(candidate_orders(item, judge.orders, judge.order_seed)):
        shown = tuple(item.candidates[i] for i in order)
        listed.append((order, shown, labels_for_order(item, len(shown), oi, judge)))
    return _Layout(shots, tuple(listed), judge.samples, pointwise=False)


class UnitPlan(Sequence[Unit]):
    """Every call of the run, item × order × sample (× candidate, pointwise), in plan order.

    Holds one layout and one offset per item; unit ``i`` is made when asked for (the last
    item's units are kept, so reading in plan order makes each item's once). Equal to any
    sequence of the same units.
    """

    def __init__(self, dataset: Dataset, judge: JudgeConfig, pool: FewShotPool | None) -> None:
        self._items = tuple(dataset)
        self._layouts = [_layout(item, judge, pool) for item in self._items]
        self._ends = array("q", itertools.accumulate(lay.size for lay in self._layouts))
        self._recent: tuple[int, int, tuple[Unit, ...]] = (-1, 0, ())
        self._by_id: dict[str, int] | None = None

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, i: int) -> Unit: ...
    @overload
    def __getitem__(self, i: slice) -> list[Unit]: ...
    def __getitem__(self, i: int | slice) -> Unit | list[Unit]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("unit index out of range")
        _, start, units = self._recent
        if not start <= i < start + len(units):
            start, units = self._units_of(bisect.bisect_right(self._ends, i))
        return units[i - start]

    def _units_of(self, k: int) -> tuple[int, tuple[Unit, ...]]:
        """The index of item ``k``'s first unit, and its units (kept until another item's are made)."""
        if self._recent[0] != k:
            self._recent = (k, self._ends[k - 1] if k else 0, self._layouts[k].units(self._items[k]))
        return self._recent[1], self._recent[2]

    def index_of(self, unit_id: str) -> int | None:
        """The index of the unit with this id, or None; without a table of every unit's id."""
        item_id, sep, _ = unit_id.rpartition("#")  # an item id may hold "#"; a unit's suffix never does
        if self._by_id is None:
            self._by_id = {item.id: k for k, item in enumerate(self._items)}
        k = self._by_id.get(item_id) if sep else None
        if k is None:
            return None
        start, units = self._units_of(k)
        return next((start + n for n, u in enumerate(units) if u.unit_id == unit_id), None)

    def __iter__(self) -> Iterator[Unit]:
        for item, layout in zip(self._items, self._layouts, strict=True):
            yield from layout.units(item)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence: like a list

    def __repr__(self) -> str:
        return f"UnitPlan({len(self)} units of {len(self._items)} items)"


def build_units(dataset: Dataset, judge: JudgeConfig, pool: FewShotPool | None) -> UnitPlan:
    """Every call of the run: item × order × sample (× candidate, pointwise)."""
    return UnitPlan(dataset, judge, pool)
