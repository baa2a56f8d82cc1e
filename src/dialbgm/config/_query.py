"""What a retrieval judge embeds as its query: the dialogue, its summary, or a music description.

``query`` is checked when the judge is loaded, so an unknown value fails naming the file, the
line and the key (or ``--set``) before anything is planned. ``query = "summary"`` is the same
as ``context = "summary"`` (the summaries come the same way: the data's, else a summarizer's),
so it sets that context; any other query contradicts a summary context and is refused.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from dialbgm.config._models import JudgeConfig
from dialbgm.errors import ConfigError

QUERIES = ("dialogue", "summary", "music_caption")
RETRIEVAL_KINDS = ("embedding", "embedding_api", "clap")
"""Provider kinds whose judges embed a query (and so take ``query``)."""


def with_query(judge: JudgeConfig, path: Path, overrides: dict[str, Any]) -> JudgeConfig:
    """The judge with its query checked, and ``context`` made to agree with it."""
    q = judge.query
    if not q:
        return judge
    where = "--set" if "query" in overrides else _key_location(path, "query")
    if q not in QUERIES:
        raise ConfigError(f"{where}: query: must be one of {', '.join(QUERIES)}, got {q!r}")
    if q == "summary":
        return replace(judge, context="summary")
    if judge.context == "summary":
        raise ConfigError(
            f"{where}: query: {q!r} contradicts context = 'summary' (the query is what is embedded); "
            "use query = 'summary', or context = 'full'"
        )
    return judge


def _key_location(path: Path, key: str) -> str:
    """``path:line`` of a top-level ``key = ...`` in a TOML file (``path`` when it is not found)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return str(path)
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for n, line in enumerate(lines, start=1):
        if line.lstrip().startswith("["):
            break  # past the top-level keys: a [table]'s key of that name is another setting
        if pattern.match(line):
            return f"{path}:{n}"
    return str(path)
