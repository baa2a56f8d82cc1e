"""An annotation campaign: its file (TOML), the items each annotator is served and in what order.

A campaign file (``campaigns/NAME.toml`` in the workspace, or any ``.toml`` path)::

    data = "data/new-set.jsonl"   # optional when `dialbgm annotate DATA` names it
    guideline = "..."             # optional: default, the three criteria of weighted_criteria
    captions = true               # show the candidates' captions
    ties = false                  # may an annotator give two clips the same rank
    seed = 0                      # the items' and candidates' orders
    annotators = ["ann-1", "ann-2"]
    min_listen_seconds = 10       # audio items: each clip played this long before submitting
    consensus = "mean"            # how `annotate export` combines annotators (mean | kemeny)

    [gold]                        # optional quality control
    data = "gold.jsonl"           # items whose candidates carry ranks: rank 1 is the known best
    rate = 0.2                    # gold items inserted per item to annotate
    failure_threshold = 0.5       # an annotator failing more than this share of golds is flagged

Every problem is reported with the file, line and field (exit 2).
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.config import Workspace, read_template_criteria
from dialbgm.data import Dataset, Item, load_dataset
from dialbgm.errors import DataError, Problem
from dialbgm.metrics import CONSENSUS_RULES

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_KEYS = {
    "data",
    "guideline",
    "captions",
    "ties",
    "seed",
    "annotators",
    "min_listen_seconds",
    "consensus",
    "gold",
}
_GOLD_KEYS = {"data", "rate", "failure_threshold"}


class CampaignError(DataError):
    """A campaign file (or the data it names) is malformed: every problem, by file, line, field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "in the campaign")


@dataclass(frozen=True)
class Gold:
    dataset: Dataset
    rate: float
    failure_threshold: float

    def best(self, item_id: str) -> frozenset[str]:
        """The clips ranked first in the gold file (several when they tie)."""
        return frozenset(c.id for c in self.dataset.get(item_id).candidates if c.rank == 1)


@dataclass(frozen=True)
class Slot:
    """One page of an annotator's sequence: an item of the data, or a gold item."""

    position: int
    item: Item
    gold: bool

    @property
    def kind(self) -> str:
        return "gold" if self.gold else "item"


@dataclass(frozen=True)
class Campaign:
    name: str
    path: Path
    data_path: Path | None
    guideline: str
    captions: bool
    ties: bool
    seed: int
    annotators: tuple[str, ...]
    min_listen_seconds: float
    consensus: str
    gold: Gold | None

    def sequence(self, annotator: str, data: Dataset) -> list[Slot]:
        """The pages ``annotator`` is served, in their seeded order (the same on every call and
        in every process: string seeds go through sha512 in :mod:`random`, not ``hash``)."""
        rng = random.Random(f"{self.seed}\x00{annotator}")
        items = list(data.items)
        rng.shuffle(items)
        slots: list[tuple[Item, bool]] = [(i, False) for i in items]
        if self.gold is not None:
            pool = list(self.gold.dataset.items)
            # Half up, not round()'s half-to-even: 0.5 gold items per 1 item inserts one.
            n = min(len(pool), int(self.gold.rate * len(items) + 0.5))
            for g in rng.sample(pool, n):
                slots.insert(rng.randint(0, len(slots)), (g, True))
        return [Slot(n, item, gold) for n, (item, gold) in enumerate(slots)]

    def candidate_order(self, annotator: str, item: Item, gold: bool) -> list[int]:
        """Indices into ``item.candidates`` in the order ``annotator`` sees them."""
        order = list(range(len(item.candidates)))
        random.Random(f"{self.seed}\x00{annotator}\x00{'gold' if gold else 'item'}\x00{item.id}").shuffle(order)
        return order


def campaign_file(name: str, workspace: Workspace) -> Path:
    """``NAME`` → ``campaigns/NAME.toml`` of the workspace (or the built-ins); a path is taken as is."""
    if name.endswith(".toml") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise CampaignError([Problem(name, None, "<file>", "no such campaign file")])
        return path
    if not NAME_RE.match(name):
        raise CampaignError([Problem(name, None, "<name>", "a campaign name is letters, digits, _ . and -")])
    found = workspace.find(f"campaigns/{name}.toml")
    if found is None:
        looked = ", ".join(str(p) for p in workspace.where(f"campaigns/{name}.toml"))
        raise CampaignError([Problem(name, None, "<file>", f"no campaign file; looked for {looked}")])
    return found


def campaign_name(path: Path) -> str:
    return path.stem


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """The line where ``key`` is set in ``[table]`` (None: the top level); tomllib keeps no positions."""
    current: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and not line.startswith("[["):
            current = line.strip("[] ").strip()
            continue
        if current == table and re.match(rf'"?{re.escape(key)}"?\s*=', line):
            return n
    return None


def load_campaign(path: Path, workspace: Workspace, data_arg: Path | None = None) -> Campaign:
    """Read and check a campaign file; ``data_arg`` is the DATA given on the command line."""
    where = str(path)
    try:
        text = path.read_text("utf-8")
        raw = tomllib.loads(text)
    except UnicodeDecodeError:
        raise CampaignError([Problem(where, None, "<file>", "not valid UTF-8")]) from None
    except OSError as e:
        raise CampaignError([Problem(where, None, "<file>", f"cannot be read ({e.strerror or e})")]) from None
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        raise CampaignError([Problem(where, int(m.group(1)) if m else None, "<toml>", str(e))]) from None
    problems: list[Problem] = []

    def bad(table: str | None, key: str, message: str) -> None:
        field = key if table is None else f"{table}.{key}"
        problems.append(Problem(where, _line_of(text, table, key), field, message))

    for key in sorted(set(raw) - _KEYS):
        bad(None, key, f"unknown setting; a campaign has {', '.join(sorted(_KEYS))}")

    def get(table: dict[str, Any], tname: str | None, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) and kind is not bool:
            bad(tname, key, f"must be {_kind_name(kind)}, got {value!r}")
            return default
        if not isinstance(value, kind):
            bad(tname, key, f"must be {_kind_name(kind)}, got {value!r}")
            return default
        return value

    captions = get(raw, None, "captions", bool, True)
    ties = get(raw, None, "ties", bool, False)
    seed = get(raw, None, "seed", int, 0)
    min_listen = float(get(raw, None, "min_listen_seconds", (int, float), 0))
    if not math.isfinite(min_listen) or min_listen < 0:  # nan would switch the check off, inf block every item
        bad(None, "min_listen_seconds", f"must be a finite number >= 0, got {min_listen}")
    consensus = get(raw, None, "consensus", str, "mean")
    if consensus not in CONSENSUS_RULES:
        bad(None, "consensus", f"must be one of {', '.join(CONSENSUS_RULES)}, got {consensus!r}")
    guideline = get(raw, None, "guideline", str, None)
    if guideline is not None and not guideline.strip():
        bad(None, "guideline", "must not be blank (leave it out for the default criteria)")
    annotators = get(raw, None, "annotators", list, [])
    if "annotators" not in raw:
        bad(None, "annotators", "required: the list of annotator names")
    names: list[str] = []
    for n, a in enumerate(annotators):
        if not isinstance(a, str) or not NAME_RE.match(a):
            bad(None, "annotators", f"[{n}]: a name is letters, digits, _ . and - (at most 64), got {a!r}")
        elif a in names:
            bad(None, "annotators", f"[{n}]: {a!r} is listed twice")
        else:
            names.append(a)
    if "annotators" in raw and isinstance(annotators, list) and not annotators:
        bad(None, "annotators", "must name at least one annotator")

    data_path = None
    if (given := get(raw, None, "data", str, None)) is not None:
        data_path = workspace.resolve(given, path)
        if not data_path.is_file():
            bad(None, "data", f"no such file: {data_path}")
        elif data_arg is not None and data_arg.resolve() != data_path.resolve():
            bad(None, "data", f"names {data_path}, but the command line gives {data_arg}: give one of them")
    elif data_arg is not None:
        data_path = data_arg

    gold = None
    if "gold" in raw:
        gold = _gold(raw["gold"], path, workspace, bad, problems)
    if problems:
        raise CampaignError(problems)
    return Campaign(
        name=campaign_name(path),
        path=path,
        data_path=data_path,
        guideline=guideline.strip() if guideline else default_guideline(workspace),
        captions=captions,
        ties=ties,
        seed=seed,
        annotators=tuple(names),
        min_listen_seconds=min_listen,
        consensus=consensus,
        gold=gold,
    )


def _gold(table: Any, path: Path, workspace: Workspace, bad: Any, problems: list[Problem]) -> Gold | None:
    if not isinstance(table, dict):
        bad(None, "gold", "must be a table ([gold]) with data, rate and failure_threshold")
        return None
    for key in sorted(set(table) - _GOLD_KEYS):
        bad("gold", key, f"unknown setting; [gold] has {', '.join(sorted(_GOLD_KEYS))}")
    ok = True
    rate = table.get("rate", 0.2)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        bad("gold", "rate", f"must be a number in (0, 1] (gold items per item to annotate), got {rate!r}")
        ok = False
    threshold = table.get("failure_threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 1:
        bad("gold", "failure_threshold", f"must be a number in [0, 1), got {threshold!r}")
        ok = False
    given = table.get("data")
    if not isinstance(given, str):
        bad("gold", "data", f"required: the data file of the gold items, got {given!r}")
        return None
    gold_path = workspace.resolve(given, path)
    try:
        ds = load_dataset(gold_path)
    except DataError as e:
        problems.extend(e.problems)
        return None
    for item in ds.items:
        if item.consensus is not None or not any(c.rank == 1 for c in item.candidates):
            problems.append(Problem(str(gold_path), item.source_line, "candidates[*].rank", "a gold item needs ranks"))
            ok = False
    return Gold(ds, float(rate), float(threshold)) if ok else None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def default_guideline(workspace: Workspace) -> str:
    """The three criteria of the default template, as an instruction to a person."""
    lines = [
        "Rank the clips by how well each would serve as background music for this conversation "
        "(1 = the best). Judge by these criteria, most important first:"
    ]
    for c in read_template_criteria(workspace.template_dir("weighted_criteria")).values():
        lines.append(f"- {c.title or c.name}: {c.description}")
    return "\n".join(lines)
