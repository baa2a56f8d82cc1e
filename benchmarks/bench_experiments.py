"""Experiment benchmark: 4 judges × 6 variants over generated DialBGM-shaped items, fully cached.

    .venv/bin/python benchmarks/bench_experiments.py [--items 1200] [--repeats 3]
        [--reuse DIR] [--baseline-src OTHER/src]

1. Fill the cache: one `compare` run whose every call goes through litellm to a scripted
   OpenAI-compatible server on loopback (4 judge files, each a different model name). With
   ``--reuse DIR`` the workspace, cache and results live in DIR and are kept: the first run fills
   them (~450 s at 1,200 items), later runs skip the fill and time the same cached experiment.
2. Time `compare` again in a fresh process, process start included, with every answer cached
   (target: under 2 s on 2 cores), and print the share of each stage as the command reports it
   (runs from the cache, statistics, writing).
3. With ``--baseline-src``, the same command from another source tree (e.g. an older commit,
   exported with ``git archive``) is timed alternately with this one on the same folder, and both
   must write a byte-identical comparison.json (its ``runs`` rows aside, which hold no statistics).

Prints a Markdown table for docs/experiments.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from tests.support.scripted_server import Reply, ScriptedOpenAIServer  # noqa: E402

from bench_spine import generate  # noqa: E402
from common import print_report  # noqa: E402

JUDGES = ("bench-a", "bench-b", "bench-c", "bench-d")
ENTRY = (
    "import sys, typer\nfrom dialbgm.cli._experiments import register\n"
    "app = typer.Typer(add_completion=False)\nregister(app)\napp(sys.argv[1:])\n"
)


def scripted(body: dict[str, Any], n: int) -> Reply:
    """Deterministic, request-dependent scores, so judges and variants genuinely differ."""
    seed = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    rng = random.Random(seed)
    scores = {lab: rng.randint(1, 10) for lab in "ABCD"}
    if "reasoning" in json.dumps(body.get("response_format", {})):
        return Reply(json.dumps({"reasoning": "fits the mood", "scores": scores}))
    return Reply(json.dumps({"scores": scores}))


def setup(tmp: Path, items: int, base_url: str) -> Path:
    for name in ("judges", "providers", "prompts"):
        shutil.copytree(ROOT / name, tmp / name)
    shutil.copytree(ROOT / "prices", tmp / "prices")
    template = (ROOT / "judges" / "openai-compatible.toml").read_text()
    for k, name in enumerate(JUDGES):
        text = re.sub(r'^model = ".*"$', f'model = "bench-model-{k}"', template, flags=re.M)
        (tmp / "judges" / f"{name}.toml").write_text(text)
    generate(tmp / "gen.jsonl", items)
    judges = "\n".join(
        f'[judges.{name}]\napi_base = "{base_url}"\ncot = [false, true]\n'
        f"[judges.{name}.params]\ntemperature = [0.0, 0.3, 0.7]\n"
        for name in JUDGES
    )
    exp = tmp / "experiments" / "bench.toml"
    exp.parent.mkdir()
    exp.write_text(f'baseline = "{JUDGES[0]}__cot=false__params.temperature=0.0"\n[data]\npath = "gen.jsonl"\n{judges}')
    return exp


def run_compare(exp: Path, env: dict[str, str]) -> tuple[float, dict[str, float], str]:
    """One `compare` in a fresh process: wall seconds, the stage times it reports, its stdout."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", ENTRY, "compare", str(exp)], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"compare failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    m = re.search(r"time: runs ([\d.]+) s · statistics ([\d.]+) s · writing ([\d.]+) s", out.stderr)
    assert m, out.stderr
    stages = {"runs": float(m[1]), "statistics": float(m[2]), "writing": float(m[3])}
    return wall, stages, out.stdout


def statistics_json(tmp: Path) -> str:
    """comparison.json without its ``runs`` rows (per-run bookkeeping, not the statistics)."""
    cmp = json.loads((tmp / "results" / "experiments" / "bench" / "comparison.json").read_text())
    cmp.pop("runs", None)
    return json.dumps(cmp, sort_keys=True)


def fill(tmp: Path, items: int, env: dict[str, str]) -> tuple[Path, list[tuple[str, str]]]:
    """Write the workspace and fill the cache through litellm; the experiment file and a row."""
    n_cells = len(JUDGES) * 6
    with ScriptedOpenAIServer(scripted) as server:
        exp = setup(tmp, items, server.base_url)
        fill_wall, _, _ = run_compare(exp, env)
        calls = len(server.requests)
        assert calls == n_cells * items, calls
    # Marks a complete fill for --reuse (the server is gone: a later call would fail, not hang).
    (tmp / "filled.json").write_text(json.dumps({"items": items, "calls": calls, "fill_s": fill_wall}))
    row = (
        f"fill the cache: {n_cells} cells × {items} items = {calls} calls via litellm to loopback",
        f"{fill_wall:.1f} s ({calls / fill_wall:.0f} calls/s)",
    )
    return exp, [row]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reuse", type=Path, help="keep the filled workspace here; skip the fill when it is there")
    ap.add_argument("--baseline-src", type=Path, help="another src/ tree to time alternately (before/after)")
    args = ap.parse_args()
    tmp = (args.reuse or Path(tempfile.mkdtemp(prefix="dialbgm-bench-exp-"))).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DIALBGM_HOME": str(tmp), "DIALBGM_CACHE_DIR": str(tmp / "cache")}
    env.pop("OPENAI_COMPATIBLE_BASE_URL", None)
    n_cells = len(JUDGES) * 6
    marker = tmp / "filled.json"
    if args.reuse and marker.exists():
        done = json.loads(marker.read_text())
        if done["items"] != args.items:
            raise SystemExit(f"{tmp} was filled with --items {done['items']}, not {args.items}")
        exp = tmp / "experiments" / "bench.toml"
        rows = [(f"fill the cache (reused from {tmp})", f"{done['fill_s']:.1f} s when filled")]
    else:
        exp, rows = fill(tmp, args.items, env)
    variants = {"this tree": env}
    if args.baseline_src:
        variants["baseline"] = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
    walls: dict[str, list[float]] = {k: [] for k in variants}
    stage_runs: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    outputs: dict[str, str] = {}
    for _ in range(args.repeats):
        for name, venv in variants.items():  # alternately, so both see the same machine load
            wall, stages, stdout = run_compare(exp, venv)
            walls[name].append(wall)
            stage_runs[name].append(stages)
            assert "provider calls: 0" in stdout, stdout[-500:]
            outputs.setdefault(name, statistics_json(tmp))
            assert outputs[name] == statistics_json(tmp), f"{name}: comparison.json differs between runs"
    if args.baseline_src:
        same = outputs["baseline"] == outputs["this tree"]
        rows.append(("comparison.json (statistics) identical to the baseline's", "yes" if same else "**NO**"))
    for name in variants:
        med = statistics.median(walls[name])
        label = f"cached `compare`, {n_cells} cells × {args.items} items (median of {args.repeats}, fresh process)"
        rows.append(
            (
                label if name == "this tree" else f"{label}, baseline {args.baseline_src}",
                f"{med:.2f} s" + (f" (target < 2 s: {'met' if med < 2 else 'MISSED'})" if name == "this tree" else ""),
            )
        )
        best = min(range(len(walls[name])), key=lambda i: abs(walls[name][i] - med))
        st = stage_runs[name][best]
        other = med - sum(st.values())
        for stage, v in (*st.items(), ("process start, imports, experiment load", other)):
            rows.append((f"{name}: stage: {stage}", f"{v:.2f} s ({100 * v / med:.0f}%)"))
    if args.baseline_src:
        ratio = statistics.median(walls["baseline"]) / statistics.median(walls["this tree"])
        rows.append(("speed-up, baseline / this tree (medians)", f"{ratio:.2f}×"))
    cmp = json.loads((tmp / "results" / "experiments" / "bench" / "comparison.json").read_text())
    rows.append(("paired comparisons × metrics (Holm family)", str(cmp["family"]["n_tests"])))
    print_report(rows)
    if not args.reuse:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
