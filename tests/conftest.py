from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dialbgm.config._workspace import Workspace
from tests.support.browser import browser, page  # noqa: F401  (fixtures: headless chromium for the viewer's tests)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A private copy of the repository's judges, providers and prompts, with its own cache."""
    for name in ("judges", "providers", "prompts", "data"):
        # Rendered clips stay out: audio tests render their own (and 1,000 tests need not copy them).
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("clips"))
    monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
    monkeypatch.delenv("DIALBGM_CACHE_DIR", raising=False)
    for var in (
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "DASHSCOPE_API_KEY",
        "OPENAI_COMPATIBLE_BASE_URL",
        "OPENAI_COMPATIBLE_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    return Workspace(tmp_path)


@pytest.fixture
def sample_path() -> Path:
    return ROOT / "data" / "sample.jsonl"


def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared corpora not present at {SHARED_DATA} (a user's clone has none)")
    return SHARED_DATA


os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
