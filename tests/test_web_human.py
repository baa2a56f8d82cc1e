"""The human ceiling in the viewer: the run page's row beside the judge (metrics.json's
``human_ceiling``), and an item's annotators' ranks and ceiling (HTTP through uvicorn)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dialbgm.config._workspace import Workspace
from dialbgm.metrics import METRICS
from dialbgm.report import LABELS, fraction, num
from dialbgm.run._entry import run_eval
from dialbgm.web import ViewSettings, create_app
from tests.support.browser import served
from tests.test_web_pages import cells, page, section


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_an_annotated_run_shows_the_human_ceiling_beside_the_judge(workspace: Workspace, tmp_path: Path) -> None:
    data = workspace.root / "data" / "sample-annotated.jsonl"
    run = run_eval(workspace, "random", data, out_dir=workspace.results_dir / "a")
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    human = metrics["human_ceiling"]
    records = {r["item_id"]: r for r in _lines(run.out_dir / "items.jsonl")}
    items = _lines(data)
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        body = page(base, "/run/a")
        rows = [r for r in cells(section(body, "human")) if r]
        assert rows == [
            [
                LABELS[m],
                num(human["judge_means"][m]),
                num(human["means"][m]),
                f"[{num(human['ci95'][m][0])}, {num(human['ci95'][m][1])}]",
                fraction(human["fraction_of_ceiling"][m]),
            ]
            for m in METRICS
        ]
        # The simulated annotators agree (the ceiling is above 0): every share is a percentage.
        assert all(re.fullmatch(r"-?\d+%", r[4]) for r in rows)
        assert f"the {human['n_items']}\nscored items" in body
        # The judge's own table is unchanged by the ceiling.
        assert [r[0] for r in cells(section(body, "metrics")) if r] == [LABELS[m] for m in METRICS]

        item = items[0]
        record = records[item["id"]]  # type: ignore[index]
        body = page(base, f"/run/a/-/item?id={item['id']}")
    annotators = [a["annotator"] for a in item["annotations"]]  # type: ignore[index,union-attr]
    head = re.findall(r'<th class="annotator">(.*?)</th>', section(body, "candidates"))
    assert head == annotators
    table = re.findall(r'<tr data-candidate="([^"]+)">(.*?)</tr>', section(body, "candidates"), re.S)
    assert table, "no candidate rows"
    for cand, row in table:
        shown = re.findall(r'<td class="annotator">(.*?)</td>', row)
        assert shown == [str(a["ranks"][cand]) for a in item["annotations"]]  # type: ignore[index,union-attr]
    ceiling = record["human_ceiling"]
    assert [r for r in cells(section(body, "item-ceiling")) if r] == [
        [LABELS[m], num(record["metrics"][m]), num(ceiling[m])]  # type: ignore[index]
        for m in METRICS
    ]
    assert 'id="annotators-note"' in body


def test_a_run_without_annotations_has_no_human_row(workspace: Workspace, tmp_path: Path) -> None:
    run = run_eval(workspace, "random", workspace.sample_data, out_dir=workspace.results_dir / "p", limit=2)
    assert "human_ceiling" not in json.loads((run.out_dir / "metrics.json").read_text())
    first = _lines(run.out_dir / "items.jsonl")[0]
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        body = page(base, "/run/p")
        item = page(base, f"/run/p/-/item?id={first['item_id']}")
    for text in (body, item):
        assert "Human ceiling" not in text and "human ceiling" not in text
        assert 'id="human"' not in text and 'class="annotator"' not in text and "annotators-note" not in text
    assert "<th>human rank</th><th>judge rank</th>" in item
