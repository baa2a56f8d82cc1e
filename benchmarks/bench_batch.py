"""Batch benchmark: a 24-cell grid (4 judges × cot × 3 temperatures) over generated items,
submitted, collected and scored through the loopback batch server (OpenAI's files + batches).

    .venv/bin/python benchmarks/bench_batch.py [--items 1200]

1. ``compare --batch`` in a fresh process: every cell plans and submits its batch (the server
   holds them all), then the server completes every batch at once; the clock that matters starts
   there ("all batches completed") and stops when the process has written every cell's results
   (the last ``manifest.json``) and when it exits (after the comparison's statistics).
2. Baseline, same run: the same grid's cached re-run (``compare`` again, every answer from the
   cache the batches filled), in a fresh process.
3. Peak memory (max RSS) of each of the two processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from tests.support.batch_server import BatchServer, Line  # noqa: E402

from bench_experiments import JUDGES, scripted  # noqa: E402
from bench_spine import generate  # noqa: E402
from common import print_report  # noqa: E402

ENTRY = (
    "import sys, typer\nfrom dialbgm.cli._experiments import register\n"
    "app = typer.Typer(add_completion=False)\nregister(app)\napp(sys.argv[1:])\n"
)


def answer(dialect: str, body: dict[str, object]) -> Line:
    return Line(scripted(body, 0).content)


def setup(tmp: Path, items: int, root: str) -> Path:
    for name in ("judges", "providers", "prompts", "prices"):
        shutil.copytree(ROOT / name, tmp / name)
    (tmp / "providers" / "bench-batch.toml").write_text(
        f'kind = "litellm"\nroute = "openai"\napi_base = "{root}/v1"\napi_key_env = "BENCH_BATCH_KEY"\n'
        'concurrency = 8\n[capabilities]\nstructured_output = "json_schema"\nbatch_api = "openai"\n'
    )
    for k, name in enumerate(JUDGES):
        (tmp / "judges" / f"{name}.toml").write_text(
            f'provider = "bench-batch"\nmodel = "bench-model-{k}"\n[params]\ntemperature = 0.0\nmax_tokens = 300\n'
        )
    generate(tmp / "gen.jsonl", items)
    judges = "\n".join(
        f"[judges.{name}]\ncot = [false, true]\n[judges.{name}.params]\ntemperature = [0.0, 0.3, 0.7]\n"
        for name in JUDGES
    )
    exp = tmp / "experiments" / "bench.toml"
    exp.parent.mkdir()
    exp.write_text(f'baseline = "{JUDGES[0]}__cot=false__params.temperature=0.0"\n[data]\npath = "gen.jsonl"\n{judges}')
    return exp


def peak_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between the client's polls")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dialbgm-bench-batch-")).resolve()
    env = {
        **os.environ,
        "DIALBGM_HOME": str(tmp),
        "DIALBGM_CACHE_DIR": str(tmp / "cache"),
        "BENCH_BATCH_KEY": "sk-bench-batch-0000",
        "DIALBGM_BATCH_POLL_S": str(args.poll),
    }
    n_cells = len(JUDGES) * 6
    rows: list[tuple[str, str]] = []
    with BatchServer(answer) as server:
        server.hold = True
        exp = setup(tmp, args.items, server.root)
        t_start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, "compare", str(exp), "--batch"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while len(server.submissions) < n_cells:
            if proc.poll() is not None:
                raise SystemExit(f"compare ended early:\n{proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.05)
        t_submitted = time.perf_counter()
        server.complete_all()
        t_completed, wall_completed = time.perf_counter(), time.time()
        out, err = proc.communicate()
        t_exit = time.perf_counter()
        if proc.returncode != 0:
            raise SystemExit(f"compare --batch failed ({proc.returncode}):\n{out}\n{err}")
        batch_rss = peak_children_mb()
        calls = sum(len(b.lines) for b in server.batches.values())
        assert calls == n_cells * args.items and not server.online, (calls, len(server.online))
    results = tmp / "results" / "experiments" / "bench"
    last_manifest = max((results / c.name / "manifest.json").stat().st_mtime for c in results.iterdir() if c.is_dir())
    written_after = last_manifest - wall_completed
    t0 = time.perf_counter()
    cached = subprocess.run(
        [sys.executable, "-c", ENTRY, "compare", str(exp)], env=env, capture_output=True, text=True, check=False
    )
    cached_wall = time.perf_counter() - t0
    if cached.returncode != 0 or "provider calls: 0" not in cached.stdout:
        raise SystemExit(f"cached re-run failed:\n{cached.stdout[-800:]}\n{cached.stderr}")
    both_rss = peak_children_mb()
    # The same grid run again from the cache with nothing to reuse: every cell planned, looked up,
    # scored and written again (the work of the collection, minus the batches).
    for cell in results.iterdir():
        if cell.is_dir():
            shutil.rmtree(cell)
    t0 = time.perf_counter()
    rescored = subprocess.run(
        [sys.executable, "-c", ENTRY, "compare", str(exp)], env=env, capture_output=True, text=True, check=False
    )
    rescored_wall = time.perf_counter() - t0
    if rescored.returncode != 0 or "provider calls: 0" not in rescored.stdout:
        raise SystemExit(f"re-scored re-run failed:\n{rescored.stdout[-800:]}\n{rescored.stderr}")
    rescored_rss = peak_children_mb()
    collect = t_exit - t_completed
    rows += [
        (f"grid: {n_cells} cells × {args.items} items", f"{calls:,} calls in {len(server.submissions)} batches"),
        ("process start → every batch submitted (plan, build lines, upload)", f"{t_submitted - t_start:.1f} s"),
        ("all batches completed → every cell's results written (last manifest.json)", f"{written_after:.1f} s"),
        ("all batches completed → process exit (results + comparison statistics)", f"**{collect:.1f} s**"),
        ("per collected call", f"{1000 * collect / calls:.2f} ms"),
        ("baseline 1: the same grid's cached re-run (`compare`: every cell reused)", f"{cached_wall:.1f} s"),
        ("baseline 2: the grid re-run from the cache, no cell reused (all re-scored)", f"{rescored_wall:.1f} s"),
        ("ratio collect / baseline 2", f"**{collect / rescored_wall:.2f}×**"),
        ("ratio collect / baseline 1", f"{collect / cached_wall:.2f}×"),
        ("peak RSS, compare --batch process", f"{batch_rss:.0f} MB"),
        ("peak RSS, max over the batch run and baseline 1", f"{both_rss:.0f} MB"),
        ("peak RSS, max over all three (baseline 2 included)", f"{rescored_rss:.0f} MB"),
    ]
    print(json.dumps({"stderr_tail": err.strip().splitlines()[-1:]}))
    print_report(rows)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
