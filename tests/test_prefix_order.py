"""Providers cache the longest prompt prefix that calls share (OpenAI and Gemini automatically,
Anthropic at cache markers). A template must therefore put what is the same for every item (the
system prompt with its criteria, scale and answer format) before anything that varies. For every
shipped template and judge setting, two items that differ in every field are rendered: their
messages must agree up to the end of the system prompt at least, and after the first text that
varies no more than a short header may be the same again (a large invariant block placed after
the item would be re-sent uncached on every call)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config import Workspace
from dialbgm.run import render_item

ROOT = Path(__file__).resolve().parents[1]
# The longest template text allowed after the first varying text: a header such as
# "Candidate background music clips:" (33 characters), never a block of instructions.
MAX_INVARIANT_AFTER_ITEM = 64


def _items(tmp_path: Path) -> Path:
    """Two items unlike each other in every field, so their renders agree only where the template does."""
    a = {
        "id": "p1",
        "dialogue": [{"speaker": "Ana", "text": "Shall we take the early train?"}, {"speaker": "Ben", "text": "Yes."}],
        "summary": "Two friends plan a trip.",
        "candidates": [{"id": f"a{k}", "caption": f"warm piano {k}", "rank": k + 1} for k in range(4)],
    }
    b = {
        "id": "p2",
        "dialogue": [{"speaker": "Zoe", "text": "Quiet, the baby sleeps."}, {"speaker": "Yan", "text": "Sorry!"}],
        "summary": "Neighbours whisper at night.",
        "candidates": [{"id": f"b{k}", "caption": f"soft strings {k}", "rank": 4 - k} for k in range(4)],
    }
    path = tmp_path / "two.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in (a, b)) + "\n")
    return path


def _text(messages: list[dict[str, Any]]) -> str:
    """The messages as the provider sees their order: role, then text (an audio part as a marker)."""
    out = []
    for m in messages:
        out.append(f"<{m['role']}>")
        content = m["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        out.extend(p.get("text", "<audio>") if p.get("type") == "text" else "<audio>" for p in parts)
    return "\n".join(out)


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


SETTINGS = [
    dict(zip(("mode", "cot", "context", "few_shot"), combo, strict=True))
    for combo in itertools.product(("listwise", "pointwise"), (False, True), ("full", "summary"), (0, 2))
]
TEXT_JUDGES = ["gpt-4o", "gemini-2.5-pro", "qwen-omni", "openai-compatible"]


@pytest.mark.parametrize("judge", TEXT_JUDGES)
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_invariant_part_comes_first(workspace: Workspace, tmp_path: Path, judge: str, settings: dict[str, Any]) -> None:
    data = _items(tmp_path)
    renders = []
    for item in ("p1", "p2"):
        prep, idx = render_item(workspace, judge, data, item, overrides=settings)
        renders.append(prep.request(idx[0]).messages)
    (a, b) = renders
    assert a[0]["role"] == "system" and a[0] == b[0], "the system prompt must not depend on the item"
    ta, tb = _text(a), _text(b)
    shared = _common_prefix(ta, tb)
    system_end = len(_text(a[:1]))
    assert shared >= system_end
    # Nothing long and invariant after the first varying text.
    tail = _common_prefix(ta[shared:][::-1], tb[shared:][::-1])
    assert tail <= MAX_INVARIANT_AFTER_ITEM, f"{tail} invariant characters after the item: {ta[-tail:]!r}"


def test_summarizer_template_puts_its_instructions_first(workspace: Workspace, tmp_path: Path) -> None:
    from jinja2 import Environment

    folder = ROOT / "prompts" / "summarize"
    assert "{{" not in (folder / "system.j2").read_text()  # nothing of the item in the system prompt
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    user = env.from_string((folder / "user.j2").read_text())
    one = user.render(dialogue=[{"speaker": "Ana", "text": "Hello there"}])
    two = user.render(dialogue=[{"speaker": "Zoe", "text": "Quiet now"}])
    shared = _common_prefix(one, two)
    assert _common_prefix(one[shared:][::-1], two[shared:][::-1]) <= MAX_INVARIANT_AFTER_ITEM
