"""Small real runs and experiments for the viewer's tests, made offline with the ``random`` judge."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dialbgm.config import Workspace, load_experiment
from dialbgm.run import RunOptions, RunSpec, evaluate, run_cells

ROOT = Path(__file__).resolve().parents[2]

RANDOM_EXPERIMENT = """
name = "{name}"
baseline = "rnd__seed=0"
[data]
path = "data/sample.jsonl"
limit = {limit}
[judges.rnd]
judge = "random"
seed = [0, 1, 2]
orders = {orders}
[judges.short]
judge = "random"
limit = {short}
"""
"""Three seeds of the random judge and one cell on fewer items (``short``, which lacks the last
ones): four cells, the comparisons of every cell against the baseline."""


def in_a_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` off this thread: once a test session has opened the browser (Playwright keeps
    an event loop running in the main thread), a run's ``asyncio.run`` cannot start there."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def make_run(ws: Workspace, out: Path, *, limit: int = 5, **overrides: Any) -> Path:
    spec = RunSpec("random", ws.root / "data" / "sample.jsonl", limit, overrides or None)
    in_a_thread(evaluate, ws, spec, RunOptions(out_dir=out))
    return out


def make_experiment(ws: Workspace, name: str = "seeds", *, limit: int = 8, orders: int = 2, short: int = 3) -> Path:
    """Run a three-cell experiment into ``results/experiments/NAME``; returns that folder."""
    (ws.root / "experiments").mkdir(exist_ok=True)
    path = ws.root / "experiments" / f"{name}.toml"
    path.write_text(RANDOM_EXPERIMENT.format(name=name, limit=limit, orders=orders, short=short), encoding="utf-8")
    shutil.copytree(ROOT / "prices", ws.root / "prices", dirs_exist_ok=True)
    exp = load_experiment(ws, path)
    in_a_thread(run_cells, ws, exp)
    return exp.out_dir(ws)
