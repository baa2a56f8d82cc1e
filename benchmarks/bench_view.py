"""`dialbgm view` on a big run: 1,200 items × 40 judgements (4 orders × 10 samples, shuffled labels).

The run is made for real by the offline ``random`` judge; the viewer is the real command
(``dialbgm view RESULTS``, uvicorn) in its own process, reached over HTTP on loopback. Measured:

- first open: the run page's first answer (metrics, bias, attrition: read from the run's small
  files while the index is built in the background), then the time until the item list is there
  (the index built: one pass over units.jsonl and items.jsonl, the data file once);
- warm: the run page (plain, and with each filter), an item page (40 judgements), medians;
- memory: the server's peak RSS after all of it.

Baseline, measured in the same run: reading units.jsonl whole with ``json.loads`` per line (what
a viewer without an index would do on every open), its time and its process's peak RSS.

    python benchmarks/bench_view.py [--items 1200] [--orders 4] [--samples 10]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_spine import generate  # noqa: E402
from common import print_report  # noqa: E402

BASELINE = (
    "import json, sys, resource\n"
    "rows = [json.loads(line) for line in open(sys.argv[1], encoding='utf-8')]\n"
    "print(len(rows))\n"
)


def get(url: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read().decode()
        assert r.status == 200, url
    return time.perf_counter() - t0, body


def median_ms(url: str, n: int) -> float:
    get(url)  # one warm-up request
    return statistics.median(get(url)[0] for _ in range(n)) * 1000


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (the machine may be shared: wall time is not
    the only figure worth having)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {cmd}")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--orders", type=int, default=4)
    ap.add_argument("--samples", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-view-"))
    try:
        for name in ("judges", "providers", "prompts"):
            shutil.copytree(ROOT / name, tmp / name)
        env = {**os.environ, "DIALBGM_HOME": str(tmp), "DIALBGM_CACHE_DIR": str(tmp / "cache")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
        data = tmp / "big.jsonl"
        generate(data, args.items)
        sets = [f"orders={args.orders}", f"samples={args.samples}", "shuffle_labels=true"]
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dialbgm", "eval", "--judge", "random", "--data", str(data), "-q", "--out",
             str(tmp / "results" / "big"), *(x for s in sets for x in ("--set", s))],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        made_s = time.perf_counter() - t0
        units = tmp / "results" / "big" / "units.jsonl"
        n_units = sum(1 for _ in units.open())
        size_mb = units.stat().st_size / 1e6

        base_s, base_cpu, base_kib = timed_child([sys.executable, "-c", BASELINE, str(units)], env)
        _, empty_cpu, empty_kib = timed_child([sys.executable, "-c", "import json, sys"], env)

        server = subprocess.Popen(
            [sys.executable, "-m", "dialbgm", "view", str(tmp / "results")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            server.stdout.readline()
            m = re.search(r"open (http://\S+/)", server.stdout.readline())
            assert m, "no link printed"
            base = m.group(1).rstrip("/")
            idle_kib = peak_rss_kib(server.pid)
            cpu0 = cpu_s(server.pid)
            first_s, body = get(base + "/run/big")
            assert 'id="metrics"' in body
            t0 = time.perf_counter()
            while 'id="item-list"' not in body:
                time.sleep(0.05)
                body = get(base + "/run/big")[1]
            ready_s = first_s + time.perf_counter() - t0
            build_cpu = cpu_s(server.pid) - cpu0
            run_ms = median_ms(base + "/run/big", 20)
            filters = {
                "position-biased": "show=biased",
                "top = human's worst, by tau-b": "show=worst&sort=kendall_tau_b&desc=1",
                "search": "q=rain",
                "page 12": "page=12",
            }
            filter_ms = {k: median_ms(f"{base}/run/big?{q}", 10) for k, q in filters.items()}
            rng = random.Random(0)
            ids = [f"g{rng.randrange(args.items):05d}" for _ in range(40)]
            get(f"{base}/run/big/-/item?id={ids[0]}")
            item_times = [get(f"{base}/run/big/-/item?id={i}")[0] * 1000 for i in ids]
            item_ms = statistics.median(item_times)
            item_max = max(item_times)
            served_kib = peak_rss_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=20)
        index_files = list((tmp / "cache-view").glob("*.sqlite"))
        index_mb = sum(p.stat().st_size for p in index_files) / 1e6

        per = args.orders * args.samples
        rows = [
            ("run", f"{args.items} items × {per} judgements = {n_units:,} units; units.jsonl {size_mb:.0f} MB "
                    f"(made by the random judge in {made_s:.0f} s)"),
            ("first open: run page's first answer (metrics; index building)", f"{first_s * 1000:.0f} ms"),
            ("first open: item list ready (index built)", f"{ready_s:.2f} s wall, {build_cpu:.2f} s CPU; "
                                                          f"index {index_mb:.1f} MB in cache-view/"),
            ("warm run page (median of 20)", f"{run_ms:.0f} ms"),
            *((f"warm run page, {k} (median of 10)", f"{v:.0f} ms") for k, v in filter_ms.items()),
            (f"item page, {per} judgements (median / max of 40 items)", f"{item_ms:.0f} ms / {item_max:.0f} ms"),
            ("server peak RSS: idle / after all of the above",
             f"{idle_kib / 1024:.0f} MiB / {served_kib / 1024:.0f} MiB"),
            ("baseline: json.loads of units.jsonl whole",
             f"{base_s:.2f} s wall, {base_cpu - empty_cpu:.2f} s CPU, peak RSS {base_kib / 1024:.0f} MiB "
             f"(a bare interpreter: {empty_kib / 1024:.0f} MiB)"),
            ("index build CPU / baseline load CPU", f"{build_cpu / max(1e-9, base_cpu - empty_cpu):.2f}"),
            ("warm run page / baseline load (wall)", f"{run_ms / 1000 / base_s:.3f}"),
            ("server RSS growth / baseline RSS growth",
             f"{(served_kib - idle_kib) / max(1, base_kib - empty_kib):.2f}"),
        ]  # fmt: skip
        print_report(rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
