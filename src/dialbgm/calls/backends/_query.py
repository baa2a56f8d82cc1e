"""The text a retrieval judge embeds for an item: the dialogue, its summary, or its music description."""

from __future__ import annotations

from dialbgm.data import Item
from dialbgm.errors import ConfigError


def query_text(item: Item, context: str, query: str = "") -> str:
    """``query`` as the judge names it ("": the dialogue, or the summary when ``context`` is
    "summary", as before ``query`` existed, so those requests keep their cache keys)."""
    which = query or ("summary" if context == "summary" else "dialogue")
    if which == "summary":
        if item.summary is None:
            raise ConfigError(f"item {item.id!r} has no summary, but the judge asks for context=summary")
        return item.summary
    if which == "music_caption":
        if item.music_caption is None:
            raise ConfigError(f"item {item.id!r} has no music caption, but the judge asks for query=music_caption")
        return item.music_caption
    return "\n".join(f"{t.speaker}: {t.text}" for t in item.dialogue)
