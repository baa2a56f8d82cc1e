"""Cost of the order/sample schemes, and the time to aggregate and diagnose a large run.

    .venv/bin/python benchmarks/bench_reliability.py

1. Calls and prompt size per item for each scheme, from the real plan of the bundled sample
   (no call is made; prompt tokens are estimated as characters / 4 and labelled so).
2. Time to aggregate 1,200 items × 24 orders × 5 samples (144,000 judgements) by mean, Borda and
   Kemeny, and to compute the bias diagnostics over them.
"""

from __future__ import annotations

import itertools
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dialbgm.config._workspace import Workspace  # noqa: E402
from dialbgm.metrics._aggregate import aggregate_scores  # noqa: E402
from dialbgm.metrics._bias import Judgement, flip_rate, position_consistency, tie_rate, top1_by_position  # noqa: E402
from dialbgm.run._prepare import prepare  # noqa: E402


def scheme_costs() -> list[tuple[str, str, str]]:
    ws = Workspace(ROOT)
    rows = []
    base_chars = None
    for name, over in (
        ("single order", {}),
        ("orders=4 (rotations)", {"orders": 4}),
        ("orders=4, samples=5", {"orders": 4, "samples": 5}),
        ('orders="random:8"', {"orders": "random:8"}),
        ('orders="all" (24)', {"orders": "all"}),
        ("pointwise", {"mode": "pointwise"}),
    ):
        prep = prepare(ws, "local", ws.sample_data, overrides=over)
        n_items = len(prep.dataset)
        chars = sum(len(m["content"]) for r in prep.iter_requests() for m in r.messages) / n_items
        base_chars = base_chars or chars
        rows.append((name, f"{len(prep.units) / n_items:.0f}", f"~{chars / 4:,.0f} ({chars / base_chars:.1f}×)"))
    return rows


def synthetic(n_items: int, n_orders: int, n_samples: int) -> list[list[Judgement]]:
    rng = random.Random(0)
    ids = ["a", "b", "c", "d"]
    perms = list(itertools.permutations(ids))
    out = []
    for i in range(n_items):
        js = []
        for o in range(n_orders):
            shown = perms[o % 24]
            for s in range(n_samples):
                js.append(
                    Judgement(f"i{i}", o, s, shown, ("A", "B", "C", "D"), {c: float(rng.randint(1, 10)) for c in ids})
                )
        out.append(js)
    return out


def main() -> None:
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print("\n| scheme | calls per item | prompt tokens per item (estimate: chars/4) |\n|---|---|---|")
    for row in scheme_costs():
        print(f"| {row[0]} | {row[1]} | {row[2]} |")

    items = synthetic(1200, 24, 5)
    flat = [j for js in items for j in js]
    print(f"\n| 1,200 items × 24 orders × 5 samples ({len(flat):,} judgements) | seconds |\n|---|---|")
    for method in ("mean", "borda", "kemeny"):
        t0 = time.perf_counter()
        for js in items:
            aggregate_scores([j.scores for j in js], method)
        print(f"| aggregate by {method} | {time.perf_counter() - t0:.2f} |")
    for name, fn in (
        ("top-1 by position + chi-square", top1_by_position),
        ("position consistency", position_consistency),
        ("flip rate", flip_rate),
        ("tie rate", tie_rate),
    ):
        t0 = time.perf_counter()
        fn(flat)  # type: ignore[operator]
        print(f"| {name} | {time.perf_counter() - t0:.2f} |")


if __name__ == "__main__":
    main()
