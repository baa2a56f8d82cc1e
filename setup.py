"""One packaging step: the repository's top-level defaults travel inside the wheel.

``judges/ providers/ prompts/ experiments/ prices/ data/`` stay at the top of the repository (the
layout the README documents, and what an editable install reads as its built-ins). Building a
wheel copies them into ``dialbgm/builtin/``, which an installed dialbgm reads as its built-ins
(``dialbgm.config._workspace``), so no file is kept twice in git. Generated clips (``data/clips/``) are
left out. The sdist carries the folders through ``MANIFEST.in``. Everything else is in
``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FOLDERS = ("judges", "providers", "prompts", "experiments", "prices", "data")
GENERATED = ("data/clips",)  # rendered at set-up (python -m dialbgm_tools.sample_music), never shipped
TARGET = Path("dialbgm") / "builtin"


def builtin_files() -> list[Path]:
    """The files to ship, relative to the repository root."""
    files: list[Path] = []
    for folder in FOLDERS:
        if not (ROOT / folder).is_dir():
            raise SystemExit(f"setup.py: {ROOT / folder} is missing: the built-in defaults cannot be packaged")
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT)
            if not path.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if any(rel.is_relative_to(g) for g in GENERATED):
                continue
            files.append(rel)
    return files


class BuildPyWithBuiltins(build_py):
    """build_py, plus a copy of the top-level defaults into ``dialbgm/builtin/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's own folders
        # A build folder left by an earlier in-tree build must not ship a file deleted since.
        shutil.rmtree(Path(self.build_lib) / TARGET, ignore_errors=True)
        for rel in builtin_files():
            dest = Path(self.build_lib) / TARGET / rel
            self.mkpath(str(dest.parent))
            self.copy_file(str(ROOT / rel), str(dest), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs: list[str] = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(Path(self.build_lib) / TARGET / rel) for rel in builtin_files()]


setup(cmdclass={"build_py": BuildPyWithBuiltins})
