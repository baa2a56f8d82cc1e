"""The statistics' last digits depend neither on how many BLAS threads the machine would use nor on
which of OpenBLAS's kernels its CPU selects (AVX2 and AVX-512 machines rounded products differently)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _run(threads: str, coretype: str = "") -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OPENBLAS_NUM_THREADS": threads}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = subprocess.run([sys.executable, "-c", BOOTSTRAP], env=env, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_bootstrap_digits_are_the_same_with_one_or_two_blas_threads() -> None:
    one, two = _run("1"), _run("2")
    assert one["inside"] == two["inside"] == [1]
    assert one["est"] == two["est"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


def test_bootstrap_digits_are_the_same_whichever_blas_kernel_the_cpu_selects() -> None:
    # OPENBLAS_CORETYPE forces a kernel; only kernels this CPU can run are tried (an AVX-512
    # kernel on a CPU without it would stop the process).
    flags = _cpu_flags()
    if "sse2" not in flags:
        pytest.skip("not an x86-64 CPU with /proc/cpuinfo: OpenBLAS's x86 kernels cannot be chosen")
    kernels = (
        ["Prescott", "Nehalem"]
        + (["Haswell"] if "avx2" in flags else [])
        + (["SkylakeX"] if "avx512f" in flags else [])
    )
    results = {k: _run("1", k)["est"] for k in kernels}
    assert len(set(map(repr, results.values()))) == 1, results
