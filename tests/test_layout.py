"""The package's shape as rules: stages import one way, through each other's public faces.

Read from the source (``ast``), so a forgotten import inside a function or under
``TYPE_CHECKING`` counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    "errors": 0,
    "_lazy": 0,
    "storage": 1,
    "metrics": 1,
    "data": 2,
    "config": 3,
    "judging": 4,
    "calls": 5,
    "run": 6,
    "analysis": 7,
    "report": 8,
    "web": 9,
    "cli": 10,
}
"""Lowest first. A stage imports only from stages with a lower number, and from the foundation."""

STAGES = [s for s in LAYERS if not s.startswith("_") and s != "errors"]
FACES = ["dialbgm", *(f"dialbgm.{s}" for s in STAGES), "dialbgm.calls.backends"]
MAX_LINES = 400


@dataclass(frozen=True)
class Use:
    path: Path
    line: int
    module: str
    names: tuple[str, ...]


def _stage(module: str) -> str | None:
    """``dialbgm.calls.backends._litellm`` → ``calls``; the package itself and ``__main__`` → None."""
    parts = module.split(".")
    if parts[0] != "dialbgm" or len(parts) < 2 or parts[1] == "__main__":
        return None
    return parts[1]


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[Use]:
    uses = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            uses.append(Use(path, node.lineno, node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            uses.extend(Use(path, node.lineno, a.name, ()) for a in node.names)
    return uses


def violations(root: Path) -> list[str]:
    """Every import that breaks the layering rules, as ``file:line: why``."""
    found = []
    for path in sorted((root / "dialbgm").rglob("*.py")):
        module = _module_name(path, root)
        own = _stage(module)
        for use in imports(path):
            where = f"{path.relative_to(root)}:{use.line}"
            top = use.module.split(".")[0]
            if top == "dialbgm_tools":
                found.append(f"{where}: the runtime package imports set-up tooling ({use.module})")
                continue
            if top != "dialbgm":
                continue
            target = _stage(use.module)
            face_machinery = path.name == "__init__.py" and use.module == "dialbgm._lazy"
            if own == "metrics" and target != "metrics" and not face_machinery:
                found.append(f"{where}: metrics/ is pure and imports nothing from dialbgm ({use.module})")
                continue
            if own is None or target is None or target == own:
                continue  # the package's own face, ``python -m dialbgm``, or inside one stage
            if LAYERS.get(target, 99) >= LAYERS.get(own, -1) and LAYERS.get(target) != 0:
                found.append(f"{where}: {own} (layer {LAYERS[own]}) imports the higher {target} ({use.module})")
            elif use.module.count(".") > 1 and LAYERS.get(target) != 0:
                found.append(f"{where}: {own} imports {use.module}, internals of {target}: use its face")
    return found


def test_stages_import_downwards_and_only_through_faces() -> None:
    assert violations(SRC) == []


def test_the_checker_catches_each_kind_of_violation(tmp_path: Path) -> None:
    """A rule that cannot fail proves nothing: build a tree that breaks each rule once."""
    pkg = tmp_path / "dialbgm"
    for stage, text in {
        "metrics/_x.py": "from dialbgm.errors import DialbgmError\n",
        "data/_y.py": "def f():\n    from dialbgm.run import run_eval\n",
        "run/_z.py": "from dialbgm.calls._cache import ResponseCache\nfrom dialbgm.calls import run_calls\n",
        "config/_w.py": "import dialbgm_tools.sample_music\n",
    }.items():
        (pkg / stage).parent.mkdir(parents=True, exist_ok=True)
        (pkg / stage).write_text(text)
    found = violations(tmp_path)
    assert len(found) == 4, found
    assert "metrics/ is pure" in found[3] or any("metrics/ is pure" in f for f in found)
    assert any("data (layer 2) imports the higher run" in f for f in found)
    assert any("internals of calls" in f and "_z.py:1" in f for f in found)
    assert not any("_z.py:2" in f for f in found), "an import through the face is allowed"
    assert any("set-up tooling" in f for f in found)


def test_stage_modules_are_private() -> None:
    """Only faces (``__init__``), ``__main__`` and subpackages carry public names."""
    public = [
        str(p.relative_to(SRC))
        for s in STAGES
        for p in (SRC / "dialbgm" / s).rglob("*.py")
        if not p.name.startswith("_")
    ]
    assert public == []


def test_no_module_is_over_the_size_limit() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in (SRC / "dialbgm").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def _isort_style(name: str) -> tuple[int, str]:
    """The order ruff keeps ``__all__`` in (RUF022): CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _face_imports(path: Path) -> set[str]:
    """The names a face imports under ``if TYPE_CHECKING:`` (what mypy sees)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for sub in node.body:
                if isinstance(sub, ast.ImportFrom):
                    names.update(a.asname or a.name for a in sub.names)
    return names


@pytest.mark.parametrize("face", FACES)
def test_each_face_is_sorted_complete_and_resolves(face: str) -> None:
    module = importlib.import_module(face)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_style), f"{face}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    where = module._WHERE
    assert set(where) == set(exported), f"{face}: _WHERE and __all__ disagree"
    path = Path(module.__file__ or "")
    assert _face_imports(path) == set(exported), f"{face}: the TYPE_CHECKING imports and __all__ disagree"
    for name in exported:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = module.not_a_name


def test_every_name_another_stage_uses_is_on_the_face() -> None:
    """The faces are complete: each name imported across stages is exported by its face."""
    missing = []
    for path in sorted((SRC / "dialbgm").rglob("*.py")):
        for use in imports(path):
            stage = _stage(use.module)
            if stage in STAGES and use.module == f"dialbgm.{stage}":
                face = importlib.import_module(use.module)
                missing.extend(f"{path.name}:{use.line}: {n}" for n in use.names if n not in face.__all__)
    assert missing == []


def test_importing_a_face_imports_none_of_its_modules() -> None:
    """Faces are lazy: ``dialbgm --help`` and a cached re-run pay only for what they use."""
    code = (
        "import sys, dialbgm, dialbgm.calls, dialbgm.run, dialbgm.analysis, dialbgm.metrics\n"
        "print(sorted(m for m in sys.modules if m.startswith('dialbgm.') and '._' in m))\n"
        "print('numpy' in sys.modules, 'litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["['dialbgm._lazy']", "False False"], out


def test_the_scoring_code_hash_reads_every_scoring_module() -> None:
    """compare re-scores a finished cell when the scoring code changes; a module moved or split
    without updating the list would silently drop out of that hash (read as "<no source>")."""
    from dialbgm.run._identity import SCORING_MODULES

    listed = {importlib.util.find_spec(m).origin for m in SCORING_MODULES}  # type: ignore[union-attr]
    assert None not in listed and all(Path(str(p)).is_file() for p in listed)
    wanted = {
        str(p) for p in (SRC / "dialbgm" / "metrics").glob("_*.py") if p.name not in ("_paired.py", "__init__.py")
    }
    assert wanted <= {str(p) for p in listed}, "a module of metrics/ is missing from SCORING_MODULES"
