"""Spine benchmarks: `--help` latency, a fully cached re-run of 1,200 items against a floor
process that reads the same items, hashes a key per unit and reads every entry from diskcache
(same run, as a ratio, process start included in both), and the re-run's peak memory.

    .venv/bin/python benchmarks/bench_spine.py [--items 1200] [--repeats 5]

Prints a Markdown table; the README keeps the latest one with the machine it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from tests.support.scripted_server import Reply, ScriptedOpenAIServer  # noqa: E402

from common import print_report  # noqa: E402

VENV_BIN = Path(sys.executable).parent
WORDS = [
    "coffee",
    "rain",
    "train",
    "exam",
    "birthday",
    "doctor",
    "landlord",
    "interview",
    "guitar",
    "beach",
    "breakup",
    "promotion",
    "dinner",
    "movie",
    "late",
    "deadline",
    "garden",
    "wedding",
    "funeral",
    "puppy",
    "traffic",
    "snow",
    "holiday",
    "concert",
]
MOODS = ["calm", "upbeat", "sad", "tense", "romantic", "playful", "dark", "dreamy", "nostalgic", "energetic"]
GENRES = ["piano", "ambient", "jazz", "lo-fi", "folk", "rock", "orchestral", "synthwave", "bossa-nova", "metal"]


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            turns = [
                {"speaker": "AB"[t % 2], "text": " ".join(rng.choices(WORDS, k=rng.randint(6, 18))) + "."}
                for t in range(rng.randint(4, 10))
            ]
            ranks = [1, 2, 3, 4]
            rng.shuffle(ranks)
            cands = [
                {
                    "id": f"g{i}-{k}",
                    "rank": r,
                    "caption": f"A {rng.choice(MOODS)} {rng.choice(GENRES)} piece, "
                    f"{rng.randint(60, 160)} bpm, no vocals, {rng.choice(MOODS)} mood.",
                }
                for k, r in enumerate(ranks)
            ]
            f.write(
                json.dumps({"id": f"g{i:05d}", "dialogue": turns, "summary": "generated", "candidates": cands}) + "\n"
            )


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss


def base_url_of(tmp: Path) -> str:
    manifest = json.loads((tmp / "re0" / "manifest.json").read_text())
    return str(manifest["config"]["judge"]["api_base"])


def stage_times(tmp: Path, data: Path, api_base: str) -> list[tuple[str, str]]:
    """Where a cached re-run spends its time, stage by stage, in a child process."""
    code = f"""
import time, json
t0 = time.perf_counter()
from pathlib import Path
from dialbgm.config import find_workspace
from dialbgm.data import load_dataset
from dialbgm.calls import OutcomeSpool, ResponseCache
from dialbgm.run import _scoring as scoring
from dialbgm.run._lookup import lookup
from dialbgm.run._prepare import prepare
from dialbgm.run._record import unit_row
t1 = time.perf_counter()
ws = find_workspace()
load_dataset(Path({str(data)!r}))
t2 = time.perf_counter()
prep = prepare(ws, "openai-compatible", Path({str(data)!r}), overrides={{"api_base": {api_base!r}}})
t3 = time.perf_counter()
cache = ResponseCache(ws.cache_dir)
spool = OutcomeSpool(len(prep.units))
misses = lookup(prep, cache, spool)
assert not misses
t4 = time.perf_counter()
rows = [unit_row(prep, i, spool.get(i)) for i in range(len(prep.units))]
items = scoring.score_items(prep.dataset, rows, prep.judge)
t5 = time.perf_counter()
scoring.run_metrics(items, prep.dataset, prep.judge, scoring.UnitTally.of(rows))
t6 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5]))
"""
    env = {**os.environ, "DIALBGM_HOME": str(tmp), "DIALBGM_CACHE_DIR": str(tmp / "cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    t = json.loads(out.stdout.strip().splitlines()[-1])
    names = [
        "imports (dialbgm, numpy, jinja2, diskcache)",
        "load + validate the data",
        "plan + render + key every request (includes a second load)",
        "cache lookups",
        "parse replies + per-item metrics",
        "run metrics: bootstrap intervals (6 metrics × 2,000 resamples) + bias diagnostics",
    ]
    return [(f"stage: {n}", f"{v:.3f} s") for n, v in zip(names, t, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dialbgm-bench-"))
    for name in ("judges", "providers", "prompts"):
        shutil.copytree(ROOT / name, tmp / name)
    data = tmp / "gen.jsonl"
    generate(data, args.items)
    env = {**os.environ, "DIALBGM_HOME": str(tmp), "DIALBGM_CACHE_DIR": str(tmp / "cache")}
    # An installed package has its bytecode; without it every child would compile dialbgm's
    # sources again (a sandbox may set this), which is not what a user's re-run costs.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    dialbgm = str(VENV_BIN / "dialbgm")
    py = sys.executable

    rows: list[tuple[str, str]] = []

    # 1. --help, against a bare interpreter start in the same run.
    helps = [timed([dialbgm, "--help"], env)[0] for _ in range(args.repeats)]
    bare = [timed([py, "-c", "pass"], env)[0] for _ in range(args.repeats)]
    probe = (
        subprocess.run(
            [
                py,
                "-c",
                "import sys\nfrom dialbgm.cli import app\ntry:\n app(['--help'])\n"
                "except SystemExit:\n pass\nprint('litellm' in sys.modules)",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    rows.append(("`dialbgm --help` (median wall)", f"{statistics.median(helps):.3f} s (target < 0.2 s)"))
    rows.append(("bare `python -c pass` (median wall)", f"{statistics.median(bare):.3f} s"))
    rows.append(("litellm imported by `--help`", probe))

    # 2. Fill the cache through the real litellm path against a loopback server.
    reply = Reply('{"scores": {"A": 8, "B": 3, "C": 6, "D": 2}}')
    with ScriptedOpenAIServer(lambda b, n: reply) as server:
        base = ["eval", "-j", "openai-compatible", "--data", str(data), "-q", "--set", f'api_base="{server.base_url}"']
        t_fill, _ = timed([dialbgm, *base, "--out", str(tmp / "fill")], env)
        assert len(server.requests) == args.items, len(server.requests)
        rows.append((f"first run, {args.items} items, loopback server (fills the cache)", f"{t_fill:.2f} s"))

        reruns, rss = [], []
        for k in range(args.repeats):
            w, m = timed([dialbgm, *base, "--out", str(tmp / f"re{k}")], env)
            reruns.append(w)
            rss.append(m)
        assert len(server.requests) == args.items, "a cached re-run called the server"
    manifest = json.loads((tmp / "re0" / "manifest.json").read_text())
    assert manifest["counts"]["cache_hits"] == args.items

    # The floor: a process that reads the same items, hashes one key per unit (listwise: one per
    # item) and reads every entry from diskcache — what any cached re-run must do at the least.
    floor = (
        "import sys, json, hashlib, diskcache\n"
        "items = [json.loads(line) for line in open(sys.argv[2], encoding='utf-8')]\n"
        "keys = [hashlib.sha256(json.dumps(it, sort_keys=True).encode()).hexdigest() for it in items]\n"
        "c = diskcache.Cache(sys.argv[1])\n"
        "n = sum(len(c[k]) for k in c.iterkeys())\n"
        "print(n, len(keys))"
    )
    bares = [timed([py, "-c", floor, str(tmp / "cache"), str(data)], env)[0] for _ in range(args.repeats)]
    t_re, t_bare = statistics.median(reruns), statistics.median(bares)
    rows.append((f"cached re-run, {args.items} items (median wall, process start included)", f"{t_re:.3f} s"))
    rows.append(
        ("floor process: read the items, hash a key per unit, read every cache entry (median wall)", f"{t_bare:.3f} s")
    )
    rows.append(("ratio re-run / floor", f"{t_re / t_bare:.2f}× (target ≤ 3×)"))
    rows.append(("peak RSS of the cached re-run (max of runs)", f"{max(rss) / 1024:.0f} MB (target < 300 MB)"))

    rows.extend(stage_times(tmp, data, base_url_of(tmp)))

    print_report(rows)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
