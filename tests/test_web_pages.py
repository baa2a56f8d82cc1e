"""What the run and item pages say, checked against the run's own files (HTTP through uvicorn)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from dialbgm.config._workspace import Workspace
from dialbgm.metrics import METRICS
from dialbgm.report import LABELS, num
from dialbgm.run._entry import run_eval
from dialbgm.web import ViewSettings, create_app
from tests.support.browser import served
from tests.test_web_security import get

ROOT = Path(__file__).resolve().parents[1]


def page(base: str, path: str) -> str:
    for _ in range(300):  # a first visit may still be indexing
        status, body, _ = get(base, path)
        if b'id="indexing"' not in body:
            break
    assert status == 200, (path, status)
    return body.decode()


def cells(table_html: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table_html, re.S)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def section(body: str, element_id: str) -> str:
    m = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', body, re.S)
    assert m, element_id
    return m.group(2)


def test_the_run_page_shows_the_runs_recorded_numbers(workspace: Workspace, tmp_path: Path) -> None:
    run = run_eval(
        workspace, "random", workspace.sample_data, out_dir=workspace.results_dir / "r", overrides={"orders": 2}
    )
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        body = page(base, "/run/r")
        rows = [r for r in cells(section(body, "metrics")) if r]
        assert rows == [
            [
                LABELS[m],
                num(metrics[m]),
                f"[{num(metrics['ci95'][m][0])}, {num(metrics['ci95'][m][1])}]",
                num(metrics["chance"][m]),
            ]
            for m in METRICS
        ]
        assert [r for r in cells(section(body, "attrition")) if r] == [["ok", "48", "96"]]
        assert section(body, "item-count") == "48 item(s)" and body.count("<tr data-item=") == 48
        bars = re.findall(r'<figure class="bars" data-bias="top-1 by position">(.*?)</figure>', body, re.S)[0]
        rates = metrics["bias"]["top1_by_position"]["rates"]
        assert re.findall(r"<title>(\d): ([\d.]+)</title>", bars) == [
            (str(k + 1), num(r, 2)) for k, r in enumerate(rates)
        ]


def test_the_item_page_shows_every_judgement_and_the_summary_the_judge_read(
    workspace: Workspace, tmp_path: Path
) -> None:
    over = {"orders": 2, "context": "summary"}
    run = run_eval(
        workspace, "random", workspace.sample_data, out_dir=workspace.results_dir / "s", limit=3, overrides=over
    )
    units = [json.loads(x) for x in (run.out_dir / "units.jsonl").read_text().splitlines()]
    item = json.loads(workspace.sample_data.read_text().splitlines()[0])
    record = json.loads((run.out_dir / "items.jsonl").read_text().splitlines()[0])
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        body = page(base, f"/run/s/-/item?id={item['id']}")
    assert "Summary the judge read" in body and html.unescape(section(body, "summary")) == item["summary"]
    turns = re.findall(r'<span class="spk">(.*?):</span> <span class="text">(.*?)</span>', body)
    assert [(html.unescape(a), html.unescape(b)) for a, b in turns] == [
        (t["speaker"], t["text"]) for t in item["dialogue"]
    ]
    blocks = re.findall(r'<div class="judgement" data-unit="([^"]+)">(.*?)</div>\n', body, re.S)
    mine = [u for u in units if u["item_id"] == item["id"]]
    assert [b[0] for b in blocks] == [u["unit_id"] for u in mine]
    for (_, text), u in zip(blocks, mine, strict=True):
        expected = [
            [str(k + 1), s["label"], s["candidate"], num(u["scores"][s["candidate"]])] for k, s in enumerate(u["shown"])
        ]
        assert [r for r in cells(text) if r] == expected
        (raw,) = re.findall(r'<pre class="raw">(.*?)</pre>', text, re.S)
        assert html.unescape(raw) == u["raw"]
    human: dict[str, Any] = record["human_ranks"]
    ranking = re.findall(r"<li>(.*?) <span", section(body, "human-ranking"))
    assert ranking == sorted(human, key=lambda c: human[c])
    judge = re.findall(r"<li>(.*?) <span", section(body, "judge-ranking"))
    assert judge == sorted(record["scores"], key=lambda c: -record["scores"][c])


def test_pages_of_the_item_list_keep_the_filters(workspace: Workspace, tmp_path: Path) -> None:
    from tests.test_web_index import write_data

    data = write_data(tmp_path / "data.jsonl", 130)
    run_eval(workspace, "random", data, out_dir=workspace.results_dir / "p")
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    seen: list[str] = []
    with served(app) as base:
        path = "/run/p?q=near&sort=item_id&desc=1"
        for expected_page in (1, 2, 3):
            body = page(base, path)
            assert section(body, "item-count") == f"130 item(s) · page {expected_page} of 3"
            seen += re.findall(r'<tr data-item="([^"]+)">', body)
            nxt = re.findall(r'<a rel="next" href="([^"]+)"', body)
            if expected_page == 3:
                assert nxt == []
                break
            path = html.unescape(nxt[0]).split("#")[0]
            assert "q=near" in path and "sort=item_id" in path and "desc=1" in path
    assert seen == [f"g{i:04d}" for i in reversed(range(130))]


def test_a_run_with_only_the_core_fields_still_renders(workspace: Workspace, tmp_path: Path) -> None:
    """Fields added over time (bias, first judgement, counts, tokens, clips...) may be absent."""
    run = run_eval(workspace, "random", workspace.sample_data, out_dir=workspace.results_dir / "lean", limit=3).out_dir
    manifest = json.loads((run / "manifest.json").read_text())
    keep = {"config", "dataset"}
    (run / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k in keep}))
    metrics = json.loads((run / "metrics.json").read_text())
    keep = {*METRICS, "n_items", "ci95", "chance"}
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k in keep}))
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        assert 'data-run="lean"' in page(base, "/")
        assert section(page(base, "/run/lean"), "item-count") == "3 item(s)"
        body = page(base, "/run/lean/-/item?id=s002")
        assert re.findall(r'<a rel="(prev|next)" href="([^"]+)"', body) == [
            ("prev", "/run/lean/-/item?id=s001"),
            ("next", "/run/lean/-/item?id=s003"),
        ]
