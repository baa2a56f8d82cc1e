"""Where dialbgm finds judges, providers, prompts, experiments, prices and sample data, and where
a run writes.

Two layers, looked up name by name (a judge, a provider, a template folder, an experiment, the
price table, a data file such as ``data/sample.jsonl``):

1. **The workspace**, when there is one: ``$DIALBGM_HOME`` (an error if that folder is not a
   workspace), else the current folder or the nearest parent of it that is one, else the
   checkout this package was installed from in editable mode (so the repository works from
   anywhere, as it always has).
2. **The built-ins** shipped inside the package: ``dialbgm/builtin/`` in a wheel, copied there at
   build time from the repository's top-level ``judges/ providers/ prompts/ experiments/
   prices/ data/`` (see ``setup.py``); in an editable install, those folders of the checkout.

A name the workspace has wins; every other name comes from the built-ins. A workspace is a
folder holding a ``dialbgm.toml`` (written by ``dialbgm init``; the workspace may then hold only
a ``judges/`` folder, say), or holding all of ``judges/``, ``providers/`` and ``prompts/`` (the
repository's own layout, and workspaces made before ``init`` existed). The marker's content is
not read.

A relative path written inside a file resolves against the root of the layer that file came
from: a built-in judge's ``few_shot_pool`` or a built-in experiment's ``data.path`` against the
built-ins; a workspace file's against the workspace, and, when the workspace has no such file,
against the built-ins (so a judge copied by ``init`` still finds the shipped few-shot pool).

Runtime folders: ``results/`` in the workspace, or in the current folder when there is no
workspace; the response cache in ``$DIALBGM_CACHE_DIR``, else ``cache/`` in the workspace, else
``$XDG_CACHE_HOME/dialbgm/cache`` (``~/.cache/dialbgm/cache``); prepared clips beside the cache
in ``<cache>-audio``.

Only names and bytes ever enter a hash: where a file was found (workspace, built-in, the
install path) is never part of a cache key or a template's identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dialbgm.errors import ConfigError, TemplateError

MARKER = "dialbgm.toml"
_LAYOUT = ("judges", "providers", "prompts")
_PACKAGE = Path(__file__).resolve().parents[1]
"""The ``dialbgm`` package folder (this module is in its ``config/``)."""


def is_workspace(p: Path) -> bool:
    return (p / MARKER).is_file() or all((p / m).is_dir() for m in _LAYOUT)


def builtin_root() -> Path | None:
    """The shipped defaults: inside an installed wheel, or the checkout of an editable install."""
    shipped = _PACKAGE / "builtin"
    if shipped.is_dir():
        return shipped
    checkout = _PACKAGE.parents[1]
    if (checkout / "pyproject.toml").is_file() and all((checkout / m).is_dir() for m in _LAYOUT):
        return checkout
    return None


def user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dialbgm"


@dataclass(frozen=True)
class Workspace:
    root: Path
    """The workspace folder; with ``found = False``, the current folder (where results/ go)."""
    builtin: Path | None = field(default_factory=builtin_root)
    found: bool = True
    """False when no workspace was found: built-ins only, the cache in the user's cache folder."""

    # ------------------------------------------------------------ the workspace's own folders

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
        if env := os.environ.get("DIALBGM_CACHE_DIR"):
            return Path(env)
        return self.root / "cache" if self.found else user_cache_root() / "cache"

    @property
    def cache_url(self) -> str | None:
        """The shared cache server (``redis://...``): ``DIALBGM_CACHE_URL``, else ``[cache] url`` in
        the workspace's dialbgm.toml; None for the folder cache. ``DIALBGM_CACHE_URL=`` (empty)
        turns a workspace's shared cache off for one command."""
        if "DIALBGM_CACHE_URL" in os.environ:
            return os.environ["DIALBGM_CACHE_URL"].strip() or None
        marker = self.root / MARKER
        if not (self.found and marker.is_file()):
            return None
        import tomllib

        try:
            data = tomllib.loads(marker.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            raise ConfigError(f"{marker}: cannot be read as TOML ({e})") from None
        url = data.get("cache", {}).get("url") if isinstance(data.get("cache"), dict) else None
        if url is not None and not isinstance(url, str):
            raise ConfigError(f'{marker}: cache.url: must be a string such as "redis://host:6379/0"')
        if url:
            from urllib.parse import urlsplit

            if urlsplit(url).scheme not in ("redis", "rediss", "unix", "valkey", "valkeys"):
                raise ConfigError(f"{marker}: cache.url: {url!r} is not a redis://, rediss:// or unix:// URL")
        return url or None

    @property
    def audio_dir(self) -> Path:
        """Prepared audio clips: beside the response cache, not inside its diskcache folder
        (whose integrity check would call every clip an unknown file)."""
        cache = self.cache_dir
        return cache.with_name(cache.name + "-audio")

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    # ------------------------------------------------------------ layered look-ups

    @property
    def layers(self) -> tuple[Path, ...]:
        """Roots searched for a name, first match wins: the workspace, then the built-ins."""
        roots = [self.root] if self.found else []
        if self.builtin is not None and self.builtin not in roots:
            roots.append(self.builtin)
        return tuple(roots)

    def is_builtin(self, path: Path) -> bool:
        """Whether a file found by a look-up comes from the built-ins (in an editable install the
        checkout is both the workspace and the built-ins: its files count as built-in)."""
        return self.builtin is not None and path.is_relative_to(self.builtin)

    def where(self, rel: str) -> list[Path]:
        """Every place ``rel`` is looked for, in order (for error messages)."""
        return [root / rel for root in self.layers]

    def find(self, rel: str) -> Path | None:
        """The first layer's ``rel`` that exists (a file or a folder)."""
        return next((p for p in self.where(rel) if p.exists()), None)

    def named_files(self, folder: str, suffix: str = ".toml") -> dict[str, Path]:
        """``{name: file}`` of every ``folder/NAME<suffix>`` of every layer, the workspace's winning."""
        out: dict[str, Path] = {}
        for root in self.layers:
            d = root / folder
            if d.is_dir():
                for p in sorted(d.glob(f"*{suffix}")):
                    out.setdefault(p.name[: -len(suffix)], p)
        return dict(sorted(out.items()))

    def judge_files(self) -> dict[str, Path]:
        return self.named_files("judges")

    def provider_files(self) -> dict[str, Path]:
        return self.named_files("providers")

    def shadowed(self, path: Path) -> bool:
        """Whether a workspace file hides a built-in one of the same name."""
        if self.is_builtin(path) or self.builtin is None:
            return False
        return (self.builtin / path.relative_to(self.root)).exists()

    def template_dir(self, name: str) -> Path:
        """The folder of template ``name`` (``prompts/NAME/``), the workspace's first."""
        for folder in self.where(f"prompts/{name}"):
            if folder.is_dir():
                return folder
        folders = [root / "prompts" for root in self.layers if (root / "prompts").is_dir()]
        known = sorted({p.name for d in folders for p in d.iterdir() if p.is_dir()})
        looked = ", ".join(str(p) for p in self.where("prompts"))
        raise TemplateError(f"no template {name!r} in {looked}; known: {', '.join(known) or 'none'}")

    def resolve(self, path: str | Path, origin: Path | None = None) -> Path:
        """A path written in a config file: absolute, or relative to the root of the layer the
        file ``origin`` came from (see the module's docstring). With no origin (a path given on
        the command line or by an experiment file outside any layer), the workspace's rule."""
        p = Path(path)
        if p.is_absolute():
            return p
        if origin is not None and self.is_builtin(origin) and self.builtin is not None:
            return self.builtin / p
        first = self.root / p
        if first.exists() or self.builtin is None:
            return first
        fallback = self.builtin / p
        return fallback if fallback.exists() else first

    def resolve_for_judge(self, judge_name: str, path: str | Path) -> Path:
        """A path from judge ``judge_name``'s file (its few-shot pool), resolved by its layer."""
        return self.resolve(path, self.judge_files().get(judge_name))

    @property
    def sample_data(self) -> Path:
        """The default data file: the workspace's ``data/sample.jsonl``, else the built-in one."""
        return self.find("data/sample.jsonl") or self.root / "data" / "sample.jsonl"

    def describe(self) -> str:
        """One line saying what is in use, for listings."""
        if not self.found:
            return "no workspace: built-ins only (`dialbgm init DIR` makes one)"
        if self.builtin == self.root:
            return f"workspace {self.root} (the checkout: its files are the built-ins)"
        return f"workspace {self.root} (adds to and overrides the built-ins)"


def find_workspace(start: Path | None = None) -> Workspace:
    env = os.environ.get("DIALBGM_HOME")
    if env:
        root = Path(env).expanduser().resolve()
        if not is_workspace(root):
            raise ConfigError(
                f"DIALBGM_HOME={env} is not a dialbgm workspace: it has no {MARKER} and no judges/, "
                f"providers/ and prompts/ folders (make one with  dialbgm init {env})"
            )
        return Workspace(root)
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if is_workspace(p):
            return Workspace(p)
    checkout = _PACKAGE.parents[1]
    if is_workspace(checkout) and (checkout / "pyproject.toml").is_file():
        return Workspace(checkout)
    return Workspace(here, found=False)
