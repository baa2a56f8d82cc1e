"""Cache keys cover every field of the effective request; entries survive across processes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dialbgm.calls._cache import ResponseCache
from dialbgm.config._workspace import Workspace
from dialbgm.judging._request import Request, Response
from dialbgm.run._prepare import prepare

BASE = Request(
    backend="litellm",
    model="openai/gpt-4o",
    identity={"gguf_sha256": "abc"},
    messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
    params={"temperature": 0.0, "max_tokens": 10, "response_format": {"type": "json_object"}},
    api_base="http://127.0.0.1:1/v1",
    order=("c1", "c2"),
    sample=0,
)

MUTATIONS: dict[str, Any] = {
    "backend": "embedding",
    "model": "openai/gpt-4o-mini",
    "identity": {"gguf_sha256": "abd"},
    "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi!"}],
    "params": {"temperature": 0.0, "max_tokens": 11, "response_format": {"type": "json_object"}},
    "api_base": "http://127.0.0.1:2/v1",
    "order": ("c2", "c1"),
    "sample": 1,
    "attempt": 1,
}
# Key parts left out at their default, so that keys from before they existed stay valid.
OMITTED_AT_DEFAULT = {"attempt"}


def test_mutations_cover_every_key_part() -> None:
    parts = set(BASE.key_parts()) - {"schema"}
    assert parts | OMITTED_AT_DEFAULT == set(MUTATIONS), "a new request field needs a mutation here"


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_changing_any_field_changes_the_key(field: str) -> None:
    assert replace(BASE, **{field: MUTATIONS[field]}).cache_key() != BASE.cache_key()


def test_nested_and_order_sensitive_changes_change_the_key() -> None:
    swapped_roles = replace(BASE, messages=list(reversed(BASE.messages)))
    assert swapped_roles.cache_key() != BASE.cache_key()
    extra_param = replace(BASE, params={**BASE.params, "seed": 1})
    assert extra_param.cache_key() != BASE.cache_key()
    # dict key order in params is not a difference
    reordered = replace(BASE, params=dict(reversed(list(BASE.params.items()))))
    assert reordered.cache_key() == BASE.cache_key()


def test_the_schema_version_is_in_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from dialbgm.judging import _request as req

    before = replace(BASE).cache_key()
    monkeypatch.setattr(req, "CACHE_SCHEMA_VERSION", req.CACHE_SCHEMA_VERSION + 1)
    assert replace(BASE).cache_key() != before  # a fresh request: keys are computed once per request


def test_judge_settings_reach_the_key_and_timeouts_do_not(workspace: Workspace, sample_path: Path) -> None:
    def keys(**over: Any) -> list[str]:
        prep = prepare(workspace, "local", sample_path, limit=3, overrides=over)
        return [r.cache_key() for r in list(prep.iter_requests())]

    base = keys()
    for over in (
        {"cot": True},
        {"few_shot": 1},
        {"order_seed": 1},
        {"weights.relevance": 0.6},
        {"params.temperature": 0.5},
        {"params.max_tokens": 300},
        {"model": "other"},
        {"scale_max": 5},
        {"mode": "pointwise"},
        {"context": "summary"},
    ):
        changed = keys(**over)
        assert not set(changed) & set(base), over
    provider = workspace.providers_dir / "local.toml"
    provider.write_text(
        provider.read_text().replace("timeout = 120", "timeout = 5").replace("max_attempts = 3", "max_attempts = 9")
    )
    assert keys() == base
    tmpl = workspace.prompts_dir / "weighted_criteria" / "system.j2"
    tmpl.write_text(tmpl.read_text() + "\nBe fair.")
    assert not set(keys()) & set(base)


def test_only_json_is_stored_and_a_second_process_hits(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    assert cache.get(BASE) is None
    cache.put(BASE, Response('{"scores": {}}', "stop", "m", {"prompt_tokens": 3}))
    cache.close()
    code = (
        "import sys, json\n"
        "from dialbgm.calls._cache import ResponseCache\n"
        "from tests.test_cache import BASE\n"
        "c = ResponseCache(__import__('pathlib').Path(sys.argv[1]))\n"
        "r = c.get(BASE)\n"
        "print(json.dumps(r.to_dict()))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c")], capture_output=True, text=True, cwd=root, check=True
    ).stdout
    assert '"text": "{\\"scores\\": {}}"' in out and '"prompt_tokens": 3' in out
    cache = ResponseCache(tmp_path / "c")
    assert cache.stats().entries == 1
    assert cache.clear() == 1 and cache.get(BASE) is None


def test_verify_reports_a_stray_file_in_the_cache_folder(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c")
    try:
        assert cache.verify().problems == []
        (tmp_path / "c" / "stray.bin").write_bytes(b"x")
        problems = cache.verify().problems
        assert len(problems) == 1 and problems[0].startswith("storage:") and "stray.bin" in problems[0]
    finally:
        cache.close()
