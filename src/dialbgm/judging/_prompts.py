"""Render a judge's messages from Jinja templates.

Templates are code and dialogue text is data: the environment is sandboxed with
StrictUndefined, and dialogue turns and captions only ever enter as variables, so a dialogue
containing ``{{ 7*7 }}`` is sent literally. Candidates are shown under neutral labels (A, B, ...)
in a seeded order, never under their dataset ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from dialbgm.config import (
    CRITERIA_FILE,
    TASK_FILE,
    TEMPLATE_FILES,
    JudgeConfig,
    TaskInfo,
    known_templates,
    read_task,
    read_template_criteria,
    stated,
)
from dialbgm.data import Candidate, Item
from dialbgm.errors import ConfigError, TemplateError

Message = dict[str, Any]
LABELS = string.ascii_uppercase
# Where a template puts a candidate's audio ({{ c.audio }}): replaced by an audio part after
# rendering. NUL cannot come from data (JSON text with NUL is refused below), so a dialogue
# cannot forge one.
_AUDIO_MARK = re.compile("\x00audio:([A-Z])\x00")


def labels_for(n: int) -> list[str]:
    if n > len(LABELS):
        raise ConfigError(f"at most {len(LABELS)} candidates per item are supported, got {n}")
    return list(LABELS[:n])


def sandboxed_env(folder: Path) -> SandboxedEnvironment:
    """Templates are code, dialogue text is data: sandboxed, and a missing variable is an error.

    Each template is read once (no ``auto_reload``): a request is rendered when its key is made
    and again when it is sent, and a file edited in between must not make the two differ (nor
    cost a stat of every template file for every render)."""
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(p) for p in search_path(folder)]),
        auto_reload=False,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def search_path(folder: Path) -> list[Path]:
    """The folders a template in ``folder`` can read from (``{% include %}``, ``{% import %}``,
    ``{% extends %}``): the loader is built from this list, and the identity hashes every file in
    it, so the two cannot drift apart."""
    return [folder]


def readable_files(folder: Path) -> list[tuple[str, Path]]:
    """Every file a render from ``folder`` can read, as (name relative to its search-path folder,
    path), sorted. Jinja's loader refuses ``..``, but follows symbolic links, so links are
    followed here too (a linked folder is walked once)."""
    out: list[tuple[str, Path]] = []
    for k, root in enumerate(search_path(folder)):
        prefix = "" if k == 0 else f"{k}:"
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a link back up the tree: walked already
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            for name in filenames:
                path = Path(dirpath) / name
                if path.is_file():
                    out.append((prefix + path.relative_to(root).as_posix(), path))
    return sorted(out)


def template_tree_sha256(folder: Path, primary: Sequence[str]) -> str:
    """One hash of every file a render from ``folder`` can read.

    The ``primary`` files come first, hashed exactly as before this covered the whole tree (name,
    then bytes), so a folder holding only them keeps its old hash and the configs that name it
    keep their config hash; any other file (an included partial, a macro library, a base
    template, in any subfolder) is added after a marker, length-prefixed.
    """
    h = hashlib.sha256()
    for name in primary:
        h.update(name.encode())
        h.update(_read(folder / name))
    extra = [(name, path) for name, path in readable_files(folder) if name not in primary]
    if extra:
        h.update(b"\x00extra-files\x00")
        for name, path in extra:
            data = _read(path)
            encoded = name.encode()
            h.update(len(encoded).to_bytes(8, "big") + encoded + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise TemplateError(f"{path}: cannot read ({e.strerror}); every file of a template folder is hashed") from None


@dataclass(frozen=True)
class Shot:
    """One few-shot example: a pool item, the candidates shown and the answer to imitate."""

    item: Item
    candidates: tuple[Candidate, ...]


def template_error(path: Path, e: jinja2.TemplateError) -> TemplateError:
    """A Jinja error as ``file:line: message`` (the line when Jinja knows it)."""
    line = getattr(e, "lineno", None)
    message = getattr(e, "message", None) or str(e)
    return TemplateError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def compile_templates(env: SandboxedEnvironment, folder: Path, names: Sequence[str]) -> None:
    """Load every template once, so a syntax error or an unreadable file fails when the folder is
    opened (before any call), naming the file and line."""
    for name in names:
        try:
            env.get_template(name)
        except jinja2.TemplateError as e:
            raise template_error(folder / name, e) from None
        except UnicodeDecodeError as e:
            raise TemplateError(f"{folder / name}: not UTF-8 text (byte {e.start})") from None


class PromptSet:
    """One template folder under ``prompts/``: system, user_listwise, user_pointwise (required);
    criteria.toml (its default criteria) and template.toml (its task), optional.
    docs/templates.md is the contract."""

    FILES = TEMPLATE_FILES
    OPTIONAL = (CRITERIA_FILE, TASK_FILE)

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            # Only the template folders of prompts/ are listed, never another folder's contents.
            known = ", ".join(known_templates(folder.parent))
            raise TemplateError(f"no template {folder.name!r} in prompts/; known: {known}")
        missing = [f for f in self.FILES if not (folder / f).is_file()]
        if missing:
            raise TemplateError(f"template {folder}: missing {', '.join(missing)}")
        self.folder = folder
        self._system_memo: dict[str, str] = {}
        self.env = sandboxed_env(folder)
        self.template_criteria = read_template_criteria(folder)
        self.task: TaskInfo | None = read_task(folder / TASK_FILE, TemplateError)
        # What a pointwise few-shot answer calls the candidate: DialBGM's clips, else neutral.
        self.noun = "clip" if self.task is None or self.task.candidate_kind == "music" else "candidate"
        compile_templates(self.env, folder, self.FILES[:3])

    @cached_property
    def sha256(self) -> str:
        """Every file a render can read (see :func:`template_tree_sha256`), not only the named ones.

        Optional files count among the named ones only when present, so a folder without them
        hashes as it did."""
        named = (*self.FILES, *(f for f in self.OPTIONAL if (self.folder / f).is_file()))
        return template_tree_sha256(self.folder, named)

    def _render(self, name: str, variables: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(**variables).strip()
        except jinja2.TemplateError as e:
            raise template_error(self.folder / name, e) from None

    def criteria(self, judge: JudgeConfig) -> list[dict[str, Any]]:
        """The judge's criteria as the templates receive them (dialbgm.config._criteria's merge rule)."""
        return stated(self.template_criteria, judge.criteria, judge.weights, f"judge {judge.name!r}")

    def messages(
        self,
        judge: JudgeConfig,
        item: Item,
        shown: Sequence[Candidate],
        shots: Sequence[Shot] = (),
        shown_labels: Sequence[str] | None = None,
        clips: Mapping[str, dict[str, Any]] | None = None,
    ) -> list[Message]:
        """The exact chat messages of one call: system, few-shot pairs, then the item.

        ``shown_labels`` gives the label at each position (default A, B, C... in order); the
        system prompt always lists the labels alphabetically, so it never hints at positions.
        ``clips`` maps each shown candidate's id to its audio part when the judge hears them; the
        item's user message is then a list of text and audio parts.
        """
        labels = labels_for(len(shown))
        base = {
            "criteria": self.criteria(judge),
            "scale_min": judge.scale_min,
            "scale_max": judge.scale_max,
            "mode": judge.mode,
            "cot": judge.cot,
            "context": judge.context,
            "labels": labels,
            "n_candidates": len(shown),
            "input": judge.input,
            "task": self.task.task if self.task else "",
            "candidate_kind": self.task.candidate_kind if self.task else "",
        }
        # The system prompt depends on the settings only, not on the item: render it once.
        memo_key = repr(sorted(base.items()))
        system = self._system_memo.get(memo_key)
        if system is None:
            system = self._system_memo[memo_key] = self._render("system.j2", base)
        out: list[Message] = [{"role": "system", "content": system}]
        for shot in shots:
            out.append({"role": "user", "content": self._user(judge, shot.item, shot.candidates, base, None)})
            out.append(
                {
                    "role": "assistant",
                    "content": example_answer(judge, shot.candidates, len(shot.item.candidates), self.noun),
                }
            )
        out.append({"role": "user", "content": self._user(judge, item, shown, base, shown_labels, clips)})
        return out

    def _user(
        self,
        judge: JudgeConfig,
        item: Item,
        shown: Sequence[Candidate],
        base: dict[str, Any],
        shown_labels: Sequence[str] | None,
        clips: Mapping[str, dict[str, Any]] | None = None,
    ) -> str | list[dict[str, Any]]:
        if judge.context == "summary" and item.summary is None:
            raise ConfigError(f"item {item.id!r} has no summary, but the judge asks for context=summary")
        hear = clips is not None and judge.input != "caption"
        read = judge.input != "audio" or clips is None
        labels = list(shown_labels or labels_for(len(shown)))
        variables = {
            **base,
            "dialogue": [{"speaker": t.speaker, "text": t.text} for t in item.dialogue],
            "summary": item.summary or "",
            "candidates": [
                {
                    "label": label,
                    "caption": (c.caption or "(no caption)") if read else None,
                    "audio": f"\x00audio:{label}\x00" if hear else "",
                }
                for label, c in zip(labels, shown, strict=True)
            ],
        }
        name = "user_listwise.j2" if judge.mode == "listwise" else "user_pointwise.j2"
        text = self._render(name, variables)
        if not hear:
            return text
        assert clips is not None
        by_label = {label: clips[c.id] for label, c in zip(labels, shown, strict=True)}
        return self._with_audio(name, text, by_label)

    def _with_audio(self, name: str, text: str, by_label: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Split the rendered text at each audio mark into text and audio parts."""
        parts: list[dict[str, Any]] = []
        placed: list[str] = []
        pos = 0
        for m in _AUDIO_MARK.finditer(text):
            if segment := text[pos : m.start()].strip("\n"):
                parts.append({"type": "text", "text": segment})
            parts.append(by_label[m.group(1)])
            placed.append(m.group(1))
            pos = m.end()
        if tail := text[pos:].strip("\n"):
            parts.append({"type": "text", "text": tail})
        if sorted(placed) != sorted(by_label):
            raise TemplateError(
                f"{self.folder / name}: must place each candidate's audio ({{{{ c.audio }}}}) exactly once; "
                f"placed {placed or 'none'} for candidates {sorted(by_label)}"
            )
        return parts


def example_answer(judge: JudgeConfig, shown: Sequence[Candidate], n_all: int, noun: str = "clip") -> str:
    """The answer a few-shot example teaches: human ranks mapped linearly onto the scale."""
    n_all = max(n_all, 2)
    span = judge.scale_max - judge.scale_min

    def score(rank: int) -> int:
        return round(judge.scale_max - (rank - 1) * span / (n_all - 1))

    answer: dict[str, Any] = {}
    if judge.mode == "listwise":
        labels = labels_for(len(shown))
        if judge.cot:
            order = sorted(zip(labels, shown, strict=True), key=lambda lc: lc[1].rank)
            answer["reasoning"] = "From most to least suitable: " + ", ".join(lab for lab, _ in order) + "."
        answer["scores"] = {lab: score(c.rank) for lab, c in zip(labels, shown, strict=True)}
    else:
        if judge.cot:
            answer["reasoning"] = f"Human annotators ranked this {noun} {shown[0].rank} of {n_all}."
        answer["score"] = score(shown[0].rank)
    return json.dumps(answer, ensure_ascii=False)
