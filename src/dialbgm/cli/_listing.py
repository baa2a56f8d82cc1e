"""What ``dialbgm judges`` prints: one record per judge, as text that fits the terminal or as JSON.

The text never cuts a value: a wide terminal gets one aligned row per judge; a narrow one (80
columns, or a pipe) gets a short block per judge whose lines wrap only between values.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dialbgm.config import Workspace

_MIN_DESCRIPTION = 24
"""Narrowest description column worth a table; below it, the block layout is used."""
_INDENT = "    "


@dataclass(frozen=True)
class JudgeRecord:
    name: str
    source: str
    """``built-in`` or ``workspace``."""
    file: str
    overrides_builtin: bool
    """A workspace judge that hides a built-in one of the same name."""
    provider: str | None = None
    kind: str | None = None
    model: str | None = None
    mode: str | None = None
    input: str | None = None
    key_env: str | None = None
    """The *name* of the variable holding the provider's key (never its value)."""
    key_required: bool | None = None
    key_set: bool | None = None
    description: str = ""
    error: str | None = None
    """Why the judge (or its provider) does not load; the other fields are then empty."""

    def key_text(self) -> str:
        if self.error is not None:
            return "-"
        if not self.key_env:
            return "none"
        if self.key_required:
            return f"{self.key_env} ({'set' if self.key_set else 'missing'})"
        return f"{self.key_env} (optional, {'set' if self.key_set else 'unset'})"

    def source_text(self, ws: Workspace) -> str:
        if self.source == "built-in":
            return "built-in"
        path = Path(self.file)
        shown = str(path.relative_to(ws.root)) if path.is_relative_to(ws.root) else self.file
        return f"{shown}, overrides the built-in" if self.overrides_builtin else shown


def judge_records(ws: Workspace) -> list[JudgeRecord]:
    """Every judge of the workspace and the built-ins; a broken file is listed, not fatal."""
    from dialbgm.config import load_judge, load_provider
    from dialbgm.errors import DialbgmError

    records = []
    for name, path in ws.judge_files().items():
        base = JudgeRecord(
            name=name,
            source="built-in" if ws.is_builtin(path) else "workspace",
            file=str(path),
            overrides_builtin=ws.shadowed(path),
        )
        try:
            j = load_judge(ws, name)
            p = load_provider(ws, j.provider)
        except DialbgmError as e:  # one broken file must not hide the other judges
            records.append(replace(base, error=str(e)))
            continue
        records.append(
            replace(
                base,
                provider=p.name,
                kind=p.kind,
                model=j.model or p.kind,
                mode=j.mode,
                input=j.input,
                key_env=p.api_key_env,
                key_required=p.api_key_required if p.api_key_env else None,
                key_set=bool(p.api_key()) if p.api_key_env else None,
                description=j.description,
            )
        )
    return records


def as_json(records: list[JudgeRecord]) -> str:
    return json.dumps([asdict(r) for r in records], indent=2, ensure_ascii=False)


def as_text(records: list[JudgeRecord], ws: Workspace, width: int) -> str:
    width = max(width, 40)
    lines = textwrap.wrap(ws.describe(), width, break_long_words=False, break_on_hyphens=False)
    table = _table(records, ws, width)
    return "\n".join([*lines, "", *(table if table is not None else _blocks(records, ws, width))])


_COLUMNS = ("judge", "provider", "model", "mode", "input", "key", "source")


def _cells(r: JudgeRecord, ws: Workspace) -> tuple[str, ...]:
    if r.error is not None:
        return (r.name, "-", "-", "-", "-", "-", r.source_text(ws))
    return (r.name, r.provider or "-", r.model or "-", r.mode or "-", r.input or "-", r.key_text(), r.source_text(ws))


def _table(records: list[JudgeRecord], ws: Workspace, width: int) -> list[str] | None:
    """One aligned row per judge, the description wrapped in the last column; None if it does not fit."""
    rows = [_cells(r, ws) for r in records]
    widths = [max(len(c) for c in col) for col in zip(_COLUMNS, *rows, strict=True)]
    fixed = sum(widths) + 2 * len(widths)
    room = width - fixed
    if room < _MIN_DESCRIPTION:
        return None
    out = ["  ".join(h.ljust(w) for h, w in zip(_COLUMNS, widths, strict=True)) + "  description"]
    for r, cells in zip(records, rows, strict=True):
        text = f"invalid: {r.error}" if r.error is not None else r.description
        wrapped = textwrap.wrap(text, room, break_long_words=False, break_on_hyphens=False) or [""]
        lead = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  "
        out.append((lead + wrapped[0]).rstrip())
        out.extend(" " * len(lead) + more for more in wrapped[1:])
    return out


def _blocks(records: list[JudgeRecord], ws: Workspace, width: int) -> list[str]:
    """Per judge: its name and source, then its settings and description, indented."""
    out: list[str] = []
    for r in records:
        out.extend(_joined([r.name, f"({r.source_text(ws)})"], width, "", sep="  "))
        if r.error is not None:
            out.extend(_wrap(f"invalid: {r.error}", width))
            continue
        parts = [
            f"provider {r.provider}",
            f"model {r.model}",
            f"{r.mode}",
            f"input {r.input}",
            f"key {r.key_text()}" if r.key_env else "no key needed",
        ]
        out.extend(_joined(parts, width, _INDENT))
        if r.description:
            out.extend(_wrap(r.description, width))
    return out


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(
        text, width, initial_indent=_INDENT, subsequent_indent=_INDENT, break_long_words=False, break_on_hyphens=False
    )


def _joined(parts: list[str], width: int, indent: str, sep: str = " · ") -> list[str]:
    """``parts`` joined by ``sep`` on as few lines as fit; a part is never split (one longer
    than the width gets a line of its own)."""
    lines: list[str] = []
    line = ""
    for part in parts:
        candidate = f"{line}{sep}{part}" if line else indent + part
        if line and len(candidate) > width:
            lines.append(line)
            line = indent + part
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines
