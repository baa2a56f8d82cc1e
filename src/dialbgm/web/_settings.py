"""What the app is pointed at, and the check that its extra is installed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dialbgm.errors import ConfigError

_EXTRA = "pip install 'dialbgm[web]'"


def need_web() -> None:
    """Fail with the ``pip install`` that adds the web extra when one of its packages is missing."""
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"dialbgm view needs the 'web' extra ({e}); install it with  {_EXTRA}  (in a checkout: make setup)"
        ) from None


@dataclass(frozen=True)
class ViewSettings:
    """The folder the app shows, and where it keeps the indexes it builds of run folders."""

    results_dir: Path
    index_dir: Path | None = None
    """Where the per-run SQLite indexes go (None: the workspace's ``cache-view/``, else a temporary
    folder). Never inside a run folder: a results folder may be read-only."""

    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    """The ``Host`` a request may name (the port aside); ``("*",)``: any. A page on another site
    whose name resolves to 127.0.0.1 (DNS rebinding) names its own host, and is refused."""

    def index_root(self) -> Path:
        if self.index_dir is not None:
            return self.index_dir
        return default_index_dir()


def default_index_dir() -> Path:
    """``<cache>-view`` beside the workspace's response cache (like ``<cache>-audio``); a temporary
    folder when that cannot be written."""
    from dialbgm.config import find_workspace

    try:
        cache = find_workspace().cache_dir
        target = cache.with_name(cache.name + "-view")
        target.mkdir(parents=True, exist_ok=True)
        if os.access(target, os.W_OK):
            return target
    except (OSError, ConfigError):
        pass
    tag = hashlib.sha256(str(Path.home()).encode()).hexdigest()[:8]
    target = Path(tempfile.gettempdir()) / f"dialbgm-view-{os.getuid()}-{tag}"
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    return target
