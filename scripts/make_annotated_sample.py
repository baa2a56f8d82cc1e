"""Write data/sample-annotated.jsonl: s001-s024 of the text sample with simulated annotators.

Illustrative, not collected from people: each of five simulated annotators sees an item's four
clips as the sample's illustrative ranking (quality 4 - rank) plus Gaussian noise of SD 1.0,
rounds its scores to whole numbers one item in eight (which makes ties), and ranks the clips
by score (competition ranks). Each item is ranked by three of the five (seeded), two items by
one only; items 21-24 take the Kemeny consensus, the rest the mean. Run from the repository root:
``python scripts/make_annotated_sample.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ANNOTATORS = ("ann-1", "ann-2", "ann-3", "ann-4", "ann-5")


def competition(scores: list[float]) -> list[int]:
    return [1 + sum(1 for t in scores if t > s) for s in scores]


def main() -> None:
    rng = random.Random(20261202)
    src = Path("data/sample.jsonl").read_text(encoding="utf-8").splitlines()[:24]
    out = []
    for k, line in enumerate(src):
        item = json.loads(line)
        truth = {c["id"]: 4 - c["rank"] for c in item["candidates"]}
        for c in item["candidates"]:
            del c["rank"]
        who = sorted(rng.sample(ANNOTATORS, 1 if k in (5, 17) else 3))
        annotations = []
        for a in who:
            while True:
                scores = [truth[c["id"]] + rng.gauss(0, 1.0) for c in item["candidates"]]
                if rng.random() < 1 / 8:
                    scores = [float(round(s)) for s in scores]
                if len(set(scores)) > 1:
                    break
            ranks = competition(scores)
            by_id = {c["id"]: r for c, r in zip(item["candidates"], ranks, strict=True)}
            annotations.append({"annotator": a, "ranks": by_id})
        item["annotations"] = annotations
        if k >= 20:
            item["consensus"] = "kemeny"
        out.append(json.dumps(item, ensure_ascii=False))
    Path("data/sample-annotated.jsonl").write_text("\n".join(out) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
