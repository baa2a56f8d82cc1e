"""The ``dialbgm`` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "app",
    "main",
]

_WHERE = {
    "app": "._app",
    "main": "._app",
}

if TYPE_CHECKING:
    from dialbgm.cli._app import app, main

__getattr__ = exports(__name__, _WHERE)
