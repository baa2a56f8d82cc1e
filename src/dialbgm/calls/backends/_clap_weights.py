"""Where a CLAP judge's weights are, what identifies them, and what the model expects of its audio.

A judge's ``model`` names a folder (absolute, ``~``, or relative to the workspace root) holding
what ``ClapModel.save_pretrained`` and ``ClapProcessor.save_pretrained`` write, or a Hugging Face
model id (``laion/clap-htsat-unfused``), which ``huggingface_hub`` resolves to its local snapshot
folder — downloading it only because the user named it, and not at all under ``HF_HUB_OFFLINE=1``.
From then on everything is read from that folder with ``local_files_only``: nothing else is fetched.

The weights' identity is a hash of every file in the folder (weights, configs, tokenizer,
feature-extractor settings), so a changed file is a changed model in every cache key. Nothing
here imports torch or transformers: planning and a cached re-run need neither.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.errors import ConfigError

EXTRA = "clap"
INSTALL = "pip install torch==2.13.0 'dialbgm[clap]'  (torch pinned: the CPU build; in a checkout: make setup)"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


@dataclass(frozen=True)
class ClapWeights:
    folder: Path
    sha256: str
    """sha256 over every file of the folder (name, size and content)."""
    sampling_rate: int
    """The rate the feature extractor takes (LAION-CLAP: 48 kHz)."""
    max_length_s: float
    """The longest clip the feature extractor takes whole (LAION-CLAP: 10 s)."""


class WeightsAbsent(ConfigError):
    """The weights a judge names are not on this machine: a folder that does not exist, or a model id
    outside the local Hugging Face cache. A run stops on it; a dry run plans around it (``where``)."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def require_clap_extra() -> None:
    """Fail naming the extra, before anything is planned, when torch or transformers is missing."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the CLAP judge needs the {EXTRA!r} extra ({' and '.join(missing)} not installed); "
            f"install it with  {INSTALL}"
        )


def weights_folder(model: str, root: Path, *, local_only: bool = False) -> Path:
    """The folder ``model`` names (a path, or a model id resolved to its snapshot folder; with
    ``local_only``, as under ``HF_HUB_OFFLINE=1``, from the local cache only: a dry run fetches nothing)."""
    if not model.strip():
        raise ConfigError(
            "a CLAP judge needs model = a weights folder or a Hugging Face model id (e.g. laion/clap-htsat-unfused)"
        )
    path = Path(model).expanduser()
    candidates = [path] if path.is_absolute() else [root / path, path.absolute()]
    for folder in candidates:
        if folder.is_dir():
            return folder
    # A model id is "owner/name"; anything else is a path that is not there.
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") != 1 or (os.sep != "/" and os.sep in model)
    if looks_like_path:
        raise WeightsAbsent(
            f"CLAP weights folder {candidates[0]} does not exist (model = {model!r}); save a model there with "
            "ClapModel.save_pretrained and ClapProcessor.save_pretrained, or name a Hugging Face model id",
            str(candidates[0]),
        )
    return _snapshot(model, local_only)


def _snapshot(model_id: str, local_only: bool) -> Path:
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError as e:
        raise WeightsAbsent(
            f"the CLAP judge needs the {EXTRA!r} extra ({e}); install it with  {INSTALL}",
            f"the Hugging Face cache (model {model_id!r}; the {EXTRA!r} extra that reads it is not installed)",
        ) from None
    offline = local_only or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    cached = Path(constants.HF_HUB_CACHE) / ("models--" + model_id.replace("/", "--"))
    try:
        return Path(snapshot_download(model_id, local_files_only=offline))
    except Exception as e:  # hub, network and cache errors all mean: these weights cannot be had
        how = (
            str(e).splitlines()[0]
            if not offline
            else f"it is not in the local Hugging Face cache ({cached}) and HF_HUB_OFFLINE is set"
        )
        raise WeightsAbsent(
            f"CLAP model {model_id!r} cannot be loaded: {how}. Download it where the hub can be reached "
            "(huggingface-cli download ...) or name a local weights folder as the judge's model",
            str(cached),
        ) from None


def load_weights(model: str, root: Path, *, local_only: bool = False) -> ClapWeights:
    """The weights ``model`` names, checked to be a CLAP model, with their identity."""
    folder = weights_folder(model, root, local_only=local_only)
    config = _read_json(folder / "config.json", folder)
    if config.get("model_type") != "clap":
        kind = config.get("model_type")
        raise ConfigError(f"{folder / 'config.json'}: model_type is {kind!r}, not a CLAP model ('clap')")
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise ConfigError(f"CLAP weights folder {folder}: no weights file ({' or '.join(WEIGHT_FILES)})")
    extractor = _feature_extractor_settings(folder)
    return ClapWeights(
        folder=folder,
        sha256=folder_sha256(folder),
        sampling_rate=int(extractor.get("sampling_rate", 48000)),
        max_length_s=float(extractor.get("max_length_s", 10)),
    )


def _feature_extractor_settings(folder: Path) -> dict[str, Any]:
    # Older checkpoints (the LAION ones on the hub) hold preprocessor_config.json; transformers 5
    # writes processor_config.json with the feature extractor's settings inside.
    for name in PROCESSOR_FILES:
        if (folder / name).is_file():
            data = _read_json(folder / name, folder)
            inner = data.get("feature_extractor")
            return inner if isinstance(inner, dict) else data
    names = " or ".join(PROCESSOR_FILES)
    raise ConfigError(f"CLAP weights folder {folder}: no {names} (save the ClapProcessor there too)")


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"CLAP weights folder {folder}: no {path.name}") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot be read as JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def folder_sha256(folder: Path) -> str:
    """The identity of the weights: every visible file of the folder, by name, size and content.

    Hashed once per process while the files' stat identities hold (a real checkpoint is ~600 MB)."""
    listing = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        st = entry.stat()  # follows the hub cache's symlinks to their blobs
        if stat.S_ISREG(st.st_mode):
            listing.append((entry.name, str(entry.resolve()), st.st_size, st.st_mtime_ns, st.st_ino))
    return _hash_files(tuple(listing))


@functools.cache
def _hash_files(listing: tuple[tuple[str, str, int, int, int], ...]) -> str:
    outer = hashlib.sha256()
    for name, path, size, _, _ in listing:
        inner = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{name}\x00{size}\x00{inner.hexdigest()}\n".encode())
    return outer.hexdigest()
