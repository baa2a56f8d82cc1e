"""What dialbgm writes to disk: whole-or-nothing files, diskcache folders, and secrets kept out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "REDACTED",
    "JsonlWriter",
    "Place",
    "Salvage",
    "Store",
    "StoreError",
    "UnreadableEntry",
    "atomic_file",
    "cannot_write",
    "move_aside",
    "open_store",
    "rebuild",
    "redact",
    "redact_text",
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
    "Salvage": "._diskstore",
    "Store": "._diskstore",
    "StoreError": "._diskstore",
    "UnreadableEntry": "._diskstore",
    "atomic_file": "._files",
    "cannot_write": "._files",
    "move_aside": "._diskstore",
    "open_store": "._diskstore",
    "rebuild": "._diskstore",
    "redact": "._redact",
    "redact_text": "._redact",
    "remove_damaged_copies": "._diskstore",
    "remove_files": "._diskstore",
    "utc_now": "._files",
    "write_json": "._files",
    "write_jsonl": "._files",
    "writing": "._files",
}

if TYPE_CHECKING:
    from dialbgm.storage._diskstore import (
        Place,
        Salvage,
        Store,
        StoreError,
        UnreadableEntry,
        move_aside,
        open_store,
        rebuild,
        remove_damaged_copies,
        remove_files,
    )
    from dialbgm.storage._files import JsonlWriter, atomic_file, cannot_write, utc_now, write_json, write_jsonl, writing
    from dialbgm.storage._redact import REDACTED, redact, redact_text

__getattr__ = exports(__name__, _WHERE)
