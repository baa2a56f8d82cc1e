"""The statistics' last digits do not depend on how many BLAS threads the machine would use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

BOOTSTRAP = """
import json, random
from dialbgm.metrics import one_blas_thread
from dialbgm.metrics._agreement import bootstrap_means
from threadpoolctl import threadpool_info
rng = random.Random(7)
columns = [[rng.random() for _ in range(1200)] for _ in range(6)]
with one_blas_thread():
    inside = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    est = bootstrap_means(columns, n_resamples=2000, seed=3)
print(json.dumps({"inside": inside, "est": [repr((e.mean, e.ci_low, e.ci_high)) for e in est]}))
"""


def _run(threads: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OPENBLAS_NUM_THREADS": threads}
    out = subprocess.run([sys.executable, "-c", BOOTSTRAP], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_bootstrap_digits_are_the_same_with_one_or_two_blas_threads() -> None:
    one, two = _run("1"), _run("2")
    assert one["inside"] == two["inside"] == [1]
    assert one["est"] == two["est"]
