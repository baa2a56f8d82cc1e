"""The item model: a dialogue, its candidates and their human ranks, and a loaded data file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dialbgm.metrics import AnnotatedItem


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str


@dataclass(frozen=True)
class Candidate:
    id: str
    caption: str | None
    audio: str | None
    rank: int


@dataclass(frozen=True)
class Annotation:
    """One annotator's ranks of an item's candidates (competition ranks, aligned with
    ``Item.candidates``)."""

    annotator: str
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class Item:
    id: str
    dialogue: tuple[Turn, ...]
    candidates: tuple[Candidate, ...]
    summary: str | None = None
    source_line: int | None = None
    group: str | None = None
    """Items of one group (a conversation, a source dialogue, an annotator batch) are resampled
    and sign-flipped together by the statistics."""
    annotations: tuple[Annotation, ...] = ()
    consensus: str | None = None
    """The rule that made the candidates' ranks from ``annotations`` (None: the data gave ``rank``)."""

    @property
    def human_ranks(self) -> list[int]:
        return [c.rank for c in self.candidates]

    def annotated(self) -> AnnotatedItem:
        """The item's annotations as the agreement statistics take them; the consensus rule is
        the item's, or ``mean`` where the data gives ``rank`` (the annotations then serve the
        agreement figures and the human ceiling only)."""
        from dialbgm.metrics import DEFAULT_CONSENSUS, AnnotatedItem

        return AnnotatedItem(
            self.id,
            tuple(a.annotator for a in self.annotations),
            tuple(a.ranks for a in self.annotations),
            self.consensus or DEFAULT_CONSENSUS,
            self.group,
        )


@dataclass(frozen=True)
class Dataset:
    path: Path
    items: tuple[Item, ...]
    sha256: str
    fmt: str
    ids: frozenset[str] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def get(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def limited(self, limit: int | None) -> Dataset:
        if limit is None or limit >= len(self.items):
            return self
        kept = self.items[:limit]
        return Dataset(self.path, kept, self.sha256, self.fmt, frozenset(i.id for i in kept))
