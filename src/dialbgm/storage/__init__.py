"""What dialbgm writes to disk: whole-or-nothing files, diskcache folders, and secrets kept out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "REDACTED",
    "JsonlWriter",
    "Place",
    "RedisStore",
    "Salvage",
    "Store",
    "StoreError",
    "Unreachable",
    "UnreadableEntry",
    "atomic_file",
    "cannot_write",
    "is_shared_url",
    "move_aside",
    "open_store",
    "rebuild",
    "redact",
    "redact_text",
    "redacted_url",
    "remove_damaged_copies",
    "remove_files",
    "utc_now",
    "write_json",
    "write_jsonl",
    "writing",
]

_WHERE = {
    "JsonlWriter": "._files",
    "Place": "._diskstore",
    "REDACTED": "._redact",
    "RedisStore": "._redisstore",
    "Salvage": "._salvage",
    "Store": "._diskstore",
    "StoreError": "._diskstore",
    "Unreachable": "._redisstore",
    "UnreadableEntry": "._diskstore",
    "atomic_file": "._files",
    "cannot_write": "._files",
    "is_shared_url": "._redisstore",
    "move_aside": "._salvage",
    "open_store": "._diskstore",
    "rebuild": "._salvage",
    "redact": "._redact",
    "redact_text": "._redact",
    "redacted_url": "._redisstore",
    "remove_damaged_copies": "._salvage",
    "remove_files": "._salvage",
    "utc_now": "._files",
    "write_json": "._files",
    "write_jsonl": "._files",
    "writing": "._files",
}

if TYPE_CHECKING:
    from dialbgm.storage._diskstore import Place, Store, StoreError, UnreadableEntry, open_store
    from dialbgm.storage._files import JsonlWriter, atomic_file, cannot_write, utc_now, write_json, write_jsonl, writing
    from dialbgm.storage._redact import REDACTED, redact, redact_text
    from dialbgm.storage._redisstore import RedisStore, Unreachable, is_shared_url, redacted_url
    from dialbgm.storage._salvage import Salvage, move_aside, rebuild, remove_damaged_copies, remove_files

__getattr__ = exports(__name__, _WHERE)
