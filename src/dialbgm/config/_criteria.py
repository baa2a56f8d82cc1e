"""Criteria as data: what a judge scores candidates by, with their names, texts and weights.

A template's ``criteria.toml`` holds its default set, one table per criterion::

    [relevance]
    title = "Contextual relevance"      # optional: default "Relevance" (from the name)
    description = "the music fits ..."  # required
    weight = 0.5                        # optional here, but every criterion needs one in the end

A judge file may define its own set with ``[criteria.NAME]`` tables. The merge rule:

1. The judge's ``[criteria.*]`` tables, when it has any, *replace* the template's set (in the
   judge file's order); otherwise the set is the template's (in criteria.toml's order).
2. A title or description that a judge's entry omits is taken from the template's criterion of
   the same name; a name the template lacks must give a ``description``.
3. A weight comes from, highest first: ``--set weights.NAME``, the judge's ``[weights]`` table,
   the judge's ``[criteria.NAME] weight``, the template's ``weight``. One judge file giving a
   weight both in ``[weights]`` and in ``[criteria.NAME]`` is refused as ambiguous.
4. ``[weights]`` and ``--set weights.NAME`` may only name criteria of the set.
5. Weights are finite and >= 0, with a finite, positive sum; the prompt states each one divided
   by the sum, as a whole percentage (Python's ``round``: 1, 1, 1 shows 33% each).

Replacing rather than extending keeps a judge's prompt to exactly what its file lists: a
criterion cannot creep in from a template edit the judge never mentions.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.errors import ConfigError, TemplateError

CRITERIA_FILE = "criteria.toml"
TASK_FILE = "template.toml"
TEMPLATE_FILES = ("system.j2", "user_listwise.j2", "user_pointwise.j2")
"""The files every judge template folder holds (docs/templates.md is the contract)."""
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_ENTRY_KEYS = ("title", "description", "weight")
_TASK_KEYS = ("task", "candidate_kind", "description")


@dataclass(frozen=True)
class Criterion:
    name: str
    title: str | None
    description: str | None
    weight: float | None
    """As written (not normalized); None where this definition gives none."""


@dataclass(frozen=True)
class TaskInfo:
    """What a template or a few-shot pool says it is for: a task name and the candidates' kind."""

    task: str
    candidate_kind: str
    source: Path


def default_title(name: str) -> str:
    text = name.replace("_", " ").replace("-", " ")
    return text[:1].upper() + text[1:]


def _read(path: Path, error: type[ConfigError]) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not valid UTF-8") from None


def check_weight(value: object, where: str) -> float:
    """A weight as written: a finite number >= 0 (``where`` names the file or option and key)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: must be a finite number >= 0, got {value!r}")
    return float(value)


def _entry(raw: object, where: str, name: str, error: type[ConfigError]) -> Criterion:
    """One criterion's table; ``where`` is 'FILE: PREFIX' (PREFIX ends with the criterion's name)."""
    if not _NAME.match(name):
        raise error(f"{where}: criterion names are letters, digits, _ and - (starting with a letter), got {name!r}")
    if not isinstance(raw, dict):
        raise error(f"{where}: must be a table with description (and optionally title, weight)")
    unknown = sorted(set(raw) - set(_ENTRY_KEYS))
    if unknown:
        raise error(f"{where}.{unknown[0]}: unknown key; a criterion has {', '.join(_ENTRY_KEYS)}")
    texts: dict[str, str | None] = {}
    for key in ("title", "description"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise error(f"{where}.{key}: must be a non-empty string, got {value!r}")
        texts[key] = value
    weight = None
    if "weight" in raw:
        try:
            weight = check_weight(raw["weight"], f"{where}.weight")
        except ConfigError as e:
            raise error(str(e)) from None
    return Criterion(name, texts["title"], texts["description"], weight)


def read_template_criteria(folder: Path) -> dict[str, Criterion]:
    """The template's default criteria (criteria.toml is optional: none without it)."""
    path = folder / CRITERIA_FILE
    if not path.is_file():
        return {}
    out: dict[str, Criterion] = {}
    for name, raw in _read(path, TemplateError).items():
        c = _entry(raw, f"{path}: {name}", name, TemplateError)
        if c.description is None:
            raise TemplateError(f"{path}: {name}.description: required")
        out[name] = c
    return out


def read_task(path: Path, error: type[ConfigError]) -> TaskInfo | None:
    """A task declaration (a template's template.toml, a pool's sidecar); None when absent."""
    if not path.is_file():
        return None
    raw = _read(path, error)
    unknown = sorted(set(raw) - set(_TASK_KEYS))
    if unknown:
        raise error(f"{path}: {unknown[0]}: unknown key; known: {', '.join(_TASK_KEYS)}")
    values: dict[str, str] = {}
    for key in ("task", "candidate_kind"):
        value = raw.get(key)
        if not (isinstance(value, str) and value.strip()):
            raise error(f"{path}: {key}: required, a non-empty string (got {value!r})")
        values[key] = value
    if "description" in raw and not isinstance(raw["description"], str):
        raise error(f"{path}: description: must be a string")
    return TaskInfo(values["task"], values["candidate_kind"], path)


def resolve(
    template: Mapping[str, Criterion],
    template_file: Path,
    judge_criteria: object,
    judge_weights: object,
    judge_file: Path,
    overridden: set[str],
) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """The judge's effective weights (criteria order) and its own criteria texts, by the rule above.

    ``overridden`` holds the names whose ``[weights]`` value came from ``--set`` (they win, and
    an error about them names the option rather than the file).
    """
    if not isinstance(judge_criteria, dict):
        raise ConfigError(f"{judge_file}: criteria: must be a table of [criteria.NAME] tables")
    if not isinstance(judge_weights, dict):
        raise ConfigError(f"{judge_file}: weights: must be a table")
    own = {
        name: _entry(raw, f"{judge_file}: criteria.{name}", name, ConfigError) for name, raw in judge_criteria.items()
    }
    defs = own or dict(template)
    source = f"the [criteria] tables of {judge_file}" if own else str(template_file)
    for name, c in own.items():
        if c.description is None and name not in template:
            raise ConfigError(
                f"{judge_file}: criteria.{name}.description: required (the template defines no criterion {name!r})"
            )
    weights: dict[str, float] = {}
    for name, value in judge_weights.items():
        where = f"--set weights.{name}" if name in overridden else f"{judge_file}: weights.{name}"
        if name not in defs:
            known = ", ".join(defs) or "(none)"
            raise ConfigError(f"{where}: no criterion {name!r}; the criteria are {known} (from {source})")
        if name not in overridden and name in own and own[name].weight is not None:
            raise ConfigError(f"{where}: the weight of {name!r} is also given in criteria.{name}.weight; give it once")
        weights[name] = check_weight(value, where)
    effective: dict[str, float] = {}
    for name, c in defs.items():
        w = weights.get(name, c.weight)
        if w is None and name in own:
            w = template[name].weight if name in template else None
        if w is None:
            raise ConfigError(
                f"{judge_file}: weights.{name}: criterion {name!r} has no weight; give one in [weights] "
                f"or criteria.{name}.weight"
            )
        effective[name] = w
    total = sum(effective.values())
    if effective and (not math.isfinite(total) or total <= 0):
        raise ConfigError(f"{judge_file}: weights: must not all be zero, and must have a finite sum")
    texts = {
        name: {k: v for k, v in (("title", c.title), ("description", c.description)) if v is not None}
        for name, c in own.items()
    }
    return effective, texts


def stated(
    template: Mapping[str, Criterion],
    own: Mapping[str, Mapping[str, str]],
    weights: Mapping[str, float],
    where: str,
) -> list[dict[str, Any]]:
    """The criteria a template receives: name, title, description, weight (share of 1), weight_pct."""
    names = list(own) or list(template)
    if set(names) != set(weights):
        raise TemplateError(
            f"{where}: the judge's weights ({', '.join(weights) or 'none'}) do not match its criteria "
            f"({', '.join(names) or 'none'})"
        )
    total = sum(weights.values())
    out = []
    for name in names:
        base = template.get(name)
        entry = own.get(name, {})
        title = entry.get("title") or (base.title if base else None) or default_title(name)
        description = entry.get("description") or (base.description if base else None) or ""
        out.append(
            {
                "name": name,
                "title": title,
                "description": description,
                "weight": weights[name] / total,
                "weight_pct": round(100 * weights[name] / total),
            }
        )
    return out


def known_templates(prompts_dir: Path) -> list[str]:
    """The folders of ``prompts/`` that hold a judge template."""
    if not prompts_dir.is_dir():
        return []
    return sorted(p.name for p in prompts_dir.iterdir() if all((p / f).is_file() for f in TEMPLATE_FILES))
