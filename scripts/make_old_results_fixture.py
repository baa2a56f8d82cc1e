"""Make tests/data/old_results/: run folders written by earlier versions of dialbgm's run writer.

Each generation of the run-folder layout (``dialbgm.analysis.GENERATIONS``) is written by the
commit that introduced it, from that commit's own source (``git archive``, no worktree), with the
offline ``random`` judge on the bundled sample's first 3 items; an experiment folder comes from
the commit that introduced ``dialbgm compare``. The viewer's tests read these folders as they
are: nothing in them is edited afterwards.

    .venv/bin/python scripts/make_old_results_fixture.py            # writes tests/data/old_results
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("a9e3ba3", "7f3f0bb", "9ef60f5", "4b270d5")
"""first layout; plan + journal; orders and samples (a parallel branch: no plan); run identity."""
EXPERIMENT = "8a30303"
"""The first ``dialbgm compare``."""
EXPERIMENT_TOML = """name = "old-demo"
baseline = "rnd__seed=0"
[data]
path = "data/sample.jsonl"
limit = 4
[judges.rnd]
judge = "random"
seed = [0, 1]
"""


def _checkout(commit: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    if not (into / "data").is_dir():  # the first commit shipped no sample: today's is used
        shutil.copytree(ROOT / "data", into / "data", ignore=shutil.ignore_patterns("clips"))
    return into


def _dialbgm(src: Path, *args: str) -> None:
    env = {
        **os.environ,
        "DIALBGM_HOME": str(src),
        "DIALBGM_CACHE_DIR": str(src / "cache"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": str(src / "src"),
    }
    code = "from dialbgm.cli import app; app()"
    subprocess.run([sys.executable, "-c", code, *args], cwd=src, env=env, check=True)


def main() -> None:
    out = ROOT / "tests" / "data" / "old_results"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        for commit in RUNS:
            src = _checkout(commit, Path(tmp) / commit)
            _dialbgm(src, "eval", "--judge", "random", "--limit", "3", "--out", str(out / f"run-{commit}"))
        src = _checkout(EXPERIMENT, Path(tmp) / EXPERIMENT)
        (src / "experiments" / "old-demo.toml").write_text(EXPERIMENT_TOML, encoding="utf-8")
        _dialbgm(src, "compare", "old-demo")
        shutil.copytree(src / "results" / "experiments", out / "experiments")
    print(f"{out}: {sorted(p.name for p in out.iterdir())}")


if __name__ == "__main__":
    main()
