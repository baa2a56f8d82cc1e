"""Engine benchmarks, side by side in one run (issue: fast and unbreakable).

    .venv/bin/python benchmarks/bench_engine.py [--calls 640] [--big 50000] [--memory-only | --no-memory]
                                                [--live-only] [--memory-units 5000,50000] [--memory-items 50000]

1. Throughput against the loopback server with 200 ms added latency at concurrency 64: dialbgm
   (litellm async path, cache writes, journal) against a bare httpx async client sending the
   same requests at the same concurrency. The ratio is the figure.
1b. Live fill against its physical limit (calls × latency / concurrency): 1,200 calls at 200 ms,
   concurrency 32, and 3,000 calls at 300 ms, concurrency 128. litellm is imported before the
   clock starts (its import, seconds of CPU, is not per call); the fill is the engine's part of
   the run, and the client's CPU per call is the process's CPU time over that window (all threads).
2. Per-call CPU time of dialbgm on a cache miss (zero-latency server in its own process) and on a
   cache hit.
3. Peak memory against run length (zero-latency server): 400, 5,000 and 50,000 units of a
   4-orders × 10-samples grid, the growth per 1,000 units, and a 50,000-item run. The real run
   path costs ~20 ms of CPU per call (litellm), so this part takes ~30 min; for a quicker slope
   pass smaller sizes (``--memory-units 5000,20000``, both ≥ 4,000 units so that the bootstrap's
   fixed block size is reached) and ``--memory-items 0`` to skip the 50,000-item run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_spine import generate  # noqa: E402
from common import print_report  # noqa: E402


def start_server(delay: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.serve", "--delay", str(delay)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def workspace(tmp: Path) -> dict[str, str]:
    for name in ("judges", "providers", "prompts"):
        shutil.copytree(ROOT / name, tmp / name, dirs_exist_ok=True)
    return {**os.environ, "DIALBGM_HOME": str(tmp), "DIALBGM_CACHE_DIR": str(tmp / "cache")}


def run_child(code: str, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


EVAL = """
import json, resource, sys, time
from pathlib import Path
from dialbgm.run._entry import run_eval
from dialbgm.run._prepare import prepare
from dialbgm.config._workspace import find_workspace
ws = find_workspace()
over = {{"api_base": {url!r}, **{extra!r}}}
t0, c0 = time.perf_counter(), time.process_time()
r = run_eval(ws, "openai-compatible", Path({data!r}), out_dir=Path({out!r}), overrides=over,
             provider_overrides={{"concurrency": {conc}}}, use_cache={use_cache}, force=True)
print(json.dumps({{"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "calls": r.manifest["counts"]["provider_calls"], "hits": r.manifest["counts"]["cache_hits"],
                  "ok": r.manifest["counts"]["by_status"].get("ok", 0),
                  "units": r.manifest["counts"]["units"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

BARE = """
import asyncio, json, time
import httpx
from pathlib import Path
from dialbgm.run._prepare import prepare
from dialbgm.config._workspace import find_workspace
prep = prepare(find_workspace(), "openai-compatible", Path({data!r}), overrides={{"api_base": {url!r}}})
bodies = [{{"model": r.model.split("/", 1)[1], "messages": r.messages, **{{k: v for k, v in r.params.items()}}}}
          for r in prep.iter_requests()]
async def main():
    sem = asyncio.Semaphore({conc})
    limits = httpx.Limits(max_connections={conc}, max_keepalive_connections={conc})
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one(b):
            async with sem:
                r = await client.post({url!r} + "/chat/completions", json=b)
                r.raise_for_status()
                return r.json()
        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - t0
print(json.dumps({{"wall": asyncio.run(main())}}))
"""


LIVE = """
import json, time
from pathlib import Path
from dialbgm.calls.backends import _litellm
from dialbgm.config._workspace import find_workspace
import dialbgm.calls as calls
from dialbgm.run import run_eval
if not {lean!r}:  # the baseline: litellm's per-call pricing and success logging left on
    _litellm.install = lambda litellm: ()
_litellm.import_litellm()  # seconds of CPU once per process: not part of any call
fill = {{}}
real = calls.run_calls
def timed(*a, **k):
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        return real(*a, **k)
    finally:
        fill["wall"], fill["cpu"] = time.perf_counter() - t0, time.process_time() - c0
calls.run_calls = timed  # run/_execute imports it from the face when a unit needs a call
t0, c0 = time.perf_counter(), time.process_time()
r = run_eval(find_workspace(), "openai-compatible", Path({data!r}), out_dir=Path({out!r}),
                     overrides={{"api_base": {url!r}}}, provider_overrides={{"concurrency": {conc}}}, force=True)
print(json.dumps({{"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "fill_wall": fill["wall"], "fill_cpu": fill["cpu"],
                  "calls": r.manifest["counts"]["provider_calls"],
                  "ok": r.manifest["counts"]["by_status"].get("ok", 0)}}))
"""


def live_rows(tmp: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    """Live fills against their physical limit, with the client's CPU per call; the baseline is the
    same fill with litellm's per-call pricing and success logging left on (paired, same data)."""
    out: list[tuple[str, str]] = []
    for calls, delay, conc, target in ((1200, 0.2, 32, 1.15), (3000, 0.3, 128, 1.3)):
        data = tmp / f"live-{calls}.jsonl"
        generate(data, calls, seed=calls + 7)
        limit = calls * delay / conc
        server, url = start_server(delay)
        try:
            for lean in (False, True):
                tag = "lean" if lean else "asis"
                code = LIVE.format(data=str(data), url=url, out=str(tmp / f"live-{calls}-{tag}"), conc=conc, lean=lean)
                r = run_child(code, {**env, "DIALBGM_CACHE_DIR": str(tmp / f"live-cache-{calls}-{tag}")})
                assert r["calls"] == calls == r["ok"], r
                what = "dialbgm" if lean else "baseline: litellm's pricing and success logging on"
                out.append(
                    (
                        f"live fill, {calls:,} calls at {delay * 1000:.0f} ms, concurrency {conc} ({what}): "
                        f"wall / physical limit {limit:.2f} s",
                        f"{r['fill_wall']:.2f} s = {r['fill_wall'] / limit:.2f}×"
                        + (f" (target ≤ {target}×)" if lean else "")
                        + f"; whole run {r['wall']:.2f} s",
                    )
                )
                out.append(
                    (
                        "  client CPU per call in that fill (in brackets: the whole run, planning and summaries too)",
                        f"{r['fill_cpu'] / calls * 1000:.2f} ms ({r['cpu'] / calls * 1000:.2f} ms)"
                        + (" (target ≤ 2.5 ms)" if lean and conc == 32 else ""),
                    )
                )
        finally:
            server.kill()
    return out


def memory_rows(tmp: Path, env: dict[str, str], sizes: tuple[int, int], n_items: int) -> list[tuple[str, str]]:
    """Peak memory against the number of units, in the shape of a real grid: each item judged in
    4 candidate orders × 10 samples (40 units per item), so 50,000 units are 1,250 items; and a
    50,000-item run of one unit each, where the data itself is the bulk."""
    per_item = 40
    shape = {"orders": 4, "samples": 10}
    server, url = start_server(0.0)
    out: list[tuple[str, str]] = []
    try:
        peaks: dict[int, float] = {}
        for units in (per_item * 10, *sizes):
            data = tmp / f"mem-{units}.jsonl"
            generate(data, units // per_item, seed=units)  # distinct items: no run reuses another's answers
            code = EVAL.format(
                data=str(data), url=url, out=str(tmp / f"mem-{units}"), conc=64, use_cache=True, extra=shape
            )
            r = run_child(code, env)
            assert r["ok"] == units == r["units"], r
            peaks[units] = r["rss_mb"]
            out.append(
                (
                    f"{units:,} units ({units // per_item:,} items × 4 orders × 10 samples): peak RSS",
                    f"{r['rss_mb']:.0f} MB ({r['wall']:.0f} s, {units / r['wall']:.0f} calls/s)",
                )
            )
        lo, hi = sizes
        slope = (peaks[hi] - peaks[lo]) / ((hi - lo) / 1000)
        out.append((f"growth from {lo:,} to {hi:,} units", f"{slope:.2f} MB per 1,000 units"))
        if n_items:
            data = tmp / "mem-items.jsonl"
            generate(data, n_items, seed=4)
            code = EVAL.format(data=str(data), url=url, out=str(tmp / "mem-items"), conc=64, use_cache=True, extra={})
            r = run_child(code, env)
            assert r["ok"] == n_items, r
            size = data.stat().st_size / 2**20
            out.append(
                (
                    f"{n_items:,} items × 1 unit: peak RSS (the data is held: {size:.0f} MB of JSONL)",
                    f"{r['rss_mb']:.0f} MB ({r['wall']:.0f} s)",
                )
            )
    finally:
        server.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=640)
    ap.add_argument("--big", type=int, default=50000)
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory figures")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory figures (~30 min)")
    ap.add_argument("--live-only", action="store_true", help="only the live-fill figures (~1 min)")
    ap.add_argument("--memory-units", default=None, help="LO,HI: the two run lengths the growth is measured between")
    ap.add_argument("--memory-items", type=int, default=None, help="items of the one-unit-per-item run (0: skip it)")
    args = ap.parse_args()
    lo, hi = map(int, args.memory_units.split(",")) if args.memory_units else (args.big // 10, args.big)
    n_items = args.big if args.memory_items is None else args.memory_items
    tmp = Path(tempfile.mkdtemp(prefix="dialbgm-engine-"))
    env = workspace(tmp)
    rows: list[tuple[str, str]] = []
    if args.live_only:
        print_report(live_rows(tmp, env))
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if args.memory_only:
        print_report(memory_rows(tmp, env, (lo, hi), n_items))
        shutil.rmtree(tmp, ignore_errors=True)
        return

    # 1. Throughput at 200 ms latency, concurrency 64.
    data = tmp / "thr.jsonl"
    generate(data, args.calls, seed=1)
    server, url = start_server(0.2)
    try:
        bare = run_child(BARE.format(data=str(data), url=url, conc=64), env)
        ours = run_child(
            EVAL.format(data=str(data), url=url, out=str(tmp / "thr"), conc=64, use_cache=False, extra={}), env
        )
    finally:
        server.kill()
    assert ours["ok"] == args.calls, ours
    rows.append(
        (
            f"bare httpx async, {args.calls} calls, 200 ms latency, concurrency 64",
            f"{args.calls / bare['wall']:.1f} calls/s ({bare['wall']:.2f} s)",
        )
    )
    rows.append(
        (
            "dialbgm (litellm async, cache, journal), same requests",
            f"{args.calls / ours['wall']:.1f} calls/s ({ours['wall']:.2f} s, including planning)",
        )
    )
    rows.append(("ratio dialbgm / bare httpx", f"{bare['wall'] / ours['wall']:.2f} (target ≥ 0.80)"))
    rows += live_rows(tmp, env)

    # 2. CPU per call: miss against a zero-latency server in another process, then all hits.
    data2 = tmp / "cpu.jsonl"
    generate(data2, 1000, seed=2)
    server, url = start_server(0.0)
    try:
        miss = run_child(
            EVAL.format(data=str(data2), url=url, out=str(tmp / "miss"), conc=16, use_cache=True, extra={}), env
        )
        hit = run_child(
            EVAL.format(data=str(data2), url=url, out=str(tmp / "hit"), conc=16, use_cache=True, extra={}), env
        )
    finally:
        server.kill()
    assert miss["calls"] == 1000 and hit["hits"] == 1000
    rows.append(
        (
            "CPU per call on a cache miss (zero-latency server, 1,000 calls; includes litellm import)",
            f"{miss['cpu'] / 1000 * 1000:.2f} ms",
        )
    )
    rows.append(
        ("CPU per unit on a cache hit (1,000 units, process start excluded)", f"{hit['cpu'] / 1000 * 1000:.2f} ms")
    )

    if not args.no_memory:
        rows += memory_rows(tmp, env, (lo, hi), n_items)
    print_report(rows)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
