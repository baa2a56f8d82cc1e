"""Lazy public faces: a package's names are imported from its private modules on first use.

Every stage package re-exports a curated ``__all__`` from private modules. Importing them all
eagerly would make ``import dialbgm.calls`` pull in litellm's neighbours and numpy, and
``dialbgm --help`` or a cached re-run would pay for modules they never touch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``where`` maps each public name to the private module
    (relative to ``package``) that defines it. A name is looked up once, then cached on the package."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
