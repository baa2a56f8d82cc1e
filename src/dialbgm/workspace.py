"""Where the judges, providers, prompts and runtime folders live.

A workspace is a folder with ``judges/``, ``providers/`` and ``prompts/``. It is found, in
order, from ``$DIALBGM_HOME``, the current folder or any parent of it, and finally the checkout
this package was installed from (an editable install), so that ``dialbgm`` works from anywhere
inside the repository and from a researcher's own workspace alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dialbgm.errors import ConfigError

_MARKERS = ("judges", "providers", "prompts")


def _is_workspace(p: Path) -> bool:
    return all((p / m).is_dir() for m in _MARKERS)


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def judges_dir(self) -> Path:
        return self.root / "judges"

    @property
    def providers_dir(self) -> Path:
        return self.root / "providers"

    @property
    def prompts_dir(self) -> Path:
        return self.root / "prompts"

    @property
    def cache_dir(self) -> Path:
        return Path(os.environ.get("DIALBGM_CACHE_DIR") or self.root / "cache")

    @property
    def audio_dir(self) -> Path:
        """Prepared audio clips: beside the response cache, not inside its diskcache folder
        (whose integrity check would call every clip an unknown file)."""
        cache = self.cache_dir
        return cache.with_name(cache.name + "-audio")

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def sample_data(self) -> Path:
        return self.root / "data" / "sample.jsonl"

    def resolve(self, path: str | Path) -> Path:
        """A path from a config file: absolute, or relative to the workspace root."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p


def find_workspace(start: Path | None = None) -> Workspace:
    env = os.environ.get("DIALBGM_HOME")
    if env:
        root = Path(env).expanduser().resolve()
        if not _is_workspace(root):
            raise ConfigError(f"DIALBGM_HOME={env} has no judges/, providers/ and prompts/ folders")
        return Workspace(root)
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if _is_workspace(p):
            return Workspace(p)
    checkout = Path(__file__).resolve().parents[2]
    if _is_workspace(checkout):
        return Workspace(checkout)
    raise ConfigError(
        "no dialbgm workspace found: run inside a folder with judges/, providers/ and prompts/ or set DIALBGM_HOME"
    )
