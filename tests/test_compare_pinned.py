"""What `compare`, `report` and `diff` print and write for fixed experiments, pinned byte for byte.

The files under tests/golden/ were written by the code before the analysis was made faster (commit
099c512): any change to a statistic, a rounding, an order or a file's layout fails here. The
experiments are offline (seeded random judges) and cover the three test paths: Monte Carlo sign
flips (40 common items), exact enumeration (10 common items) and groups (cluster bootstrap).

To re-pin after a deliberate change of output: DIALBGM_WRITE_GOLDEN=1 pytest tests/test_compare_pinned.py
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dialbgm.cli._experiments import register
from dialbgm.config._workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
WRITE = os.environ.get("DIALBGM_WRITE_GOLDEN") == "1"

app = typer.Typer()
register(app)
cli = CliRunner()

EXPERIMENTS = {
    "pin": """
[data]
path = "data/pin.jsonl"
[judges.rnd]
judge = "random"
seed = [0, 1, 2]
[judges.few]
judge = "random"
limit = 10
seed = [3]
""",
    "grp": """
[data]
path = "data/grp.jsonl"
[judges.rnd]
judge = "random"
seed = [5, 6]
""",
}


def write_data(path: Path, n: int, *, groups: int | None = None, seed: int = 0) -> None:
    """``n`` items of four candidates with shuffled human ranks; with ``groups``, each names one."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            ranks = [1, 2, 3, 4]
            rng.shuffle(ranks)
            obj = {
                "id": f"p{i:03d}",
                "dialogue": [{"speaker": "AB"[t % 2], "text": f"line {t} of dialogue {i} <b>&</b>"} for t in range(3)],
                "candidates": [
                    {"id": f"p{i}-{k}", "rank": r, "caption": f"clip {k} | mood {rng.randint(1, 9)}"}
                    for k, r in enumerate(ranks)
                ],
            }
            if groups:
                obj["group"] = f"g{i % groups}"
            f.write(json.dumps(obj) + "\n")


def normalise(text: str, root: Path) -> str:
    """The temporary folder's path is the one thing that differs between two runs."""
    return text.replace(str(root), "<ws>")


def strip_provenance(text: str) -> str:
    """Provenance stamps the time of writing and the versions installed: not the analysis's."""
    text = re.sub(r'<h2 id="provenance">.*</body>', "<h2 id=provenance></body>", text, flags=re.S)
    return re.sub(r"## Provenance\n.*", "## Provenance\n", text, flags=re.S)


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from the pinned output"


@pytest.fixture
def experiments(workspace: Workspace) -> Path:
    write_data(workspace.root / "data" / "pin.jsonl", 40)
    write_data(workspace.root / "data" / "grp.jsonl", 36, groups=9, seed=1)
    (workspace.root / "experiments").mkdir()
    shutil.copytree(ROOT / "prices", workspace.root / "prices", dirs_exist_ok=True)
    for name, text in EXPERIMENTS.items():
        (workspace.root / "experiments" / f"{name}.toml").write_text(text)
    return workspace.root


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_compare_report_and_diff_are_byte_identical_to_the_pinned_outputs(experiments: Path, name: str) -> None:
    first = cli.invoke(app, ["compare", name, "--flips", "2000"])
    assert first.exit_code == 0, first.output
    # The second compare reuses every cell: its output depends on the run folders alone.
    again = cli.invoke(app, ["compare", name, "--flips", "2000"])
    assert again.exit_code == 0, again.output
    out = experiments / "results" / "experiments" / name
    stdout = again.stdout
    check(f"{name}.stdout.txt", normalise(stdout, experiments))
    check(f"{name}.comparison.json", normalise((out / "comparison.json").read_text(encoding="utf-8"), experiments))

    rep = cli.invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    for file in ("report.html", "report.md"):
        check(f"{name}.{file}", normalise(strip_provenance((out / file).read_text(encoding="utf-8")), experiments))

    cells = sorted(p.name for p in out.iterdir() if p.is_dir())
    diff = cli.invoke(app, ["diff", str(out / cells[0]), str(out / cells[-1]), "--json"])
    assert diff.exit_code == 0, diff.output
    check(f"{name}.diff.json", normalise(diff.stdout, experiments))
    table = cli.invoke(app, ["diff", str(out / cells[0]), str(out / cells[1])])
    assert table.exit_code == 0, table.output
    check(f"{name}.diff.txt", normalise(table.stdout, experiments))


def test_the_pinned_experiments_cover_monte_carlo_exact_and_grouped_tests() -> None:
    """The golden files must keep exercising all three paths of the paired statistics."""
    pin = json.loads((GOLDEN / "pin.comparison.json").read_text(encoding="utf-8"))
    exact = {c["b"]: c["metrics"]["hit_at_1"]["exact"] for c in pin["comparisons"]}
    assert True in exact.values() and False in exact.values(), exact
    grp = json.loads((GOLDEN / "grp.comparison.json").read_text(encoding="utf-8"))
    assert all(c.get("n_groups") == 9 for c in grp["comparisons"])
    assert pin["family"]["n_tests"] == 18 and grp["family"]["n_tests"] == 6
