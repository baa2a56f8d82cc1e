"""The experiment page and one item across cells: the report's figures byte for byte, from the
same functions; pairing by id; escaping; nothing outside the results folder. Real runs of the
offline random judge, served by the real Starlette app."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from dialbgm.config import Workspace
from dialbgm.report import FIGURES, write_report_checked
from dialbgm.web import ViewSettings, create_app
from tests.support.experiments import make_experiment

starlette_testclient = pytest.importorskip("starlette.testclient")


def client(ws: Workspace, tmp_path: Path) -> Any:
    app = create_app(ViewSettings(results_dir=ws.results_dir, index_dir=tmp_path / "index"))
    return starlette_testclient.TestClient(app, base_url="http://127.0.0.1")  # the app answers only on loopback names


def report_sections(html: str) -> dict[str, str]:
    """Each figure of report.html: the HTML between its heading and the next section's."""
    out = {}
    for k in FIGURES:
        start = html.index(f'<h2 id="{k}">')
        body = html.index("</h2>", start) + len("</h2>")
        out[k] = html[body : html.index("<h2 id=", body)]
    return out


def page_sections(html: str) -> dict[str, str]:
    found = re.findall(r'<section class="figure" id="([a-z]+)"><h2>[^<]*</h2>(.*?)</section>\n', html, re.S)
    return dict(found)


def test_the_experiment_page_shows_the_reports_figures_exactly(workspace: Workspace, tmp_path: Path) -> None:
    exp = make_experiment(workspace, limit=8, orders=2)
    html_path, _, _ = write_report_checked(exp, ws=workspace)
    expected = report_sections(html_path.read_text(encoding="utf-8"))
    r = client(workspace, tmp_path).get("/experiment/experiments/seeds")
    assert r.status_code == 200
    got = page_sections(r.text)
    assert list(got) == list(FIGURES)
    for k in FIGURES:
        assert got[k] == expected[k], k
    # The figures are the experiment's, not empty shells: 4 cells, the heatmap with human, 6 metrics.
    assert got["agreement"].count('class="hm-cell"') == 5 * 5
    assert got["intervals"].count('<svg xmlns="http://www.w3.org/2000/svg" class="intervals"') == 6
    assert got["paired"].count('<table class="paired">') == 3  # every cell against the baseline
    assert "rnd__seed=0 (baseline)" in got["leaderboard"]


def test_the_page_reads_the_analysis_again_only_when_a_cell_changes(workspace: Workspace, tmp_path: Path) -> None:
    from dialbgm.web._experiment import ANALYSES

    exp = make_experiment(workspace, limit=4, orders=1)
    c = client(workspace, tmp_path)
    first = c.get("/experiment/experiments/seeds").text
    cached = ANALYSES._done[exp.resolve()][1]
    assert c.get("/experiment/experiments/seeds").text == first
    assert ANALYSES._done[exp.resolve()][1] is cached
    # A cell run again (here: its metrics rewritten) is a new analysis.
    metrics = exp / "short" / "metrics.json"
    m = json.loads(metrics.read_text())
    m["hit_at_1"] = 0.999
    metrics.write_text(json.dumps(m))
    assert "0.999" in c.get("/experiment/experiments/seeds").text
    assert ANALYSES._done[exp.resolve()][1] is not cached


def test_an_unfinished_experiment_says_which_cells_and_what_to_do(workspace: Workspace, tmp_path: Path) -> None:
    exp = make_experiment(workspace, limit=4, orders=1)
    shutil.rmtree(exp / "short")
    r = client(workspace, tmp_path).get("/experiment/experiments/seeds")
    assert r.status_code == 200
    assert "1 of 4 cells cannot be read: short: this cell has not been run" in r.text
    assert "finish it with: dialbgm compare" in r.text
    assert page_sections(r.text) == {}  # no figure from a part of the experiment, as the report refuses


def test_an_item_across_cells_side_by_side(workspace: Workspace, tmp_path: Path) -> None:
    exp = make_experiment(workspace, limit=5, orders=2, short=3)
    c = client(workspace, tmp_path)
    r = c.get("/experiment/experiments/seeds/across", params={"item": "s002"})
    assert r.status_code == 200
    cards = re.findall(r'<section class="cell-card" data-cell="([^"]+)">(.*?)</section>', r.text, re.S)
    assert [cid for cid, _ in cards] == ["rnd__seed=0", "rnd__seed=1", "rnd__seed=2", "short"]
    for cid, card in cards:
        row = next(json.loads(x) for x in (exp / cid / "items.jsonl").read_text().splitlines() if '"s002"' in x)
        top = max(row["scores"], key=row["scores"].get)
        assert f'<strong class="top-pick">{top}</strong>' in card
        assert card.count('class="judgement"') == (1 if cid == "short" else 2)
        assert f'href="/run/experiments/seeds/{cid.replace("=", "%3D")}/-/item?id=s002"' in card
    cell_page = c.get("/run/experiments/seeds/short").text
    assert 'id="in-experiment"' in cell_page and 'href="/experiment/experiments/seeds"' in cell_page
    item_page = c.get("/run/experiments/seeds/short/-/item", params={"id": "s002"}).text
    assert 'id="across" href="/experiment/experiments/seeds/across?item=s002"' in item_page
    r = c.get("/experiment/experiments/seeds/across", params={"item": "s005"})
    short = dict(re.findall(r'<section class="cell-card" data-cell="([^"]+)">(.*?)</section>', r.text, re.S))["short"]
    assert "this cell has no item s005" in short


def test_dialogue_text_and_ids_are_shown_as_text(workspace: Workspace, tmp_path: Path) -> None:
    data = workspace.root / "data" / "sample.jsonl"
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    rows[0]["dialogue"][0]["text"] = "<script>alert(1)</script> & <b>bold</b>"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    make_experiment(workspace, limit=3, orders=1)
    c = client(workspace, tmp_path)
    r = c.get("/experiment/experiments/seeds/across", params={"item": rows[0]["id"]})
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in r.text
    assert "<script>alert" not in r.text
    r = c.get("/experiment/experiments/seeds/across", params={"item": "<img src=x onerror=alert(1)>"})
    assert r.status_code == 200 and "<img src=x" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text


@pytest.mark.parametrize(
    "address",
    [
        "/experiment/..%2F..%2Fetc",
        "/experiment/../../etc/passwd",
        "/experiment/%2Fetc",
        "/experiment/experiments/seeds/rnd__seed=0",  # a run folder, not an experiment
        "/experiment/experiments/nothing",
        "/experiment/experiments/seeds/across",  # no item named
    ],
)
def test_nothing_but_experiment_folders_under_the_results_folder(
    workspace: Workspace, tmp_path: Path, address: str
) -> None:
    make_experiment(workspace, limit=3, orders=1)
    # An experiment folder outside the results folder, one level up: never reachable.
    outside = workspace.results_dir.parent / "elsewhere"
    shutil.copytree(workspace.results_dir / "experiments" / "seeds", outside)
    r = client(workspace, tmp_path).get(address)
    assert r.status_code == 404
    assert client(workspace, tmp_path).get("/experiment/..%2Felsewhere").status_code == 404


OLD = Path(__file__).resolve().parent / "data" / "old_results"


def test_every_older_layout_opens_in_the_viewer(tmp_path: Path) -> None:
    shutil.copytree(OLD, tmp_path / "results")
    app = create_app(ViewSettings(results_dir=tmp_path / "results", index_dir=tmp_path / "index"))
    c = starlette_testclient.TestClient(app, base_url="http://127.0.0.1")  # the app answers only on loopback names
    listing = c.get("/")
    assert listing.status_code == 200 and 'data-experiment="experiments/old-demo"' in listing.text
    for key in ("run-a9e3ba3", "run-9ef60f5", "run-7f3f0bb", "run-4b270d5", "experiments/old-demo/rnd__seed=0"):
        assert f'data-run="{key}"' in listing.text or key.startswith("experiments/")
        run = c.get(f"/run/{key}")
        assert run.status_code == 200, key
        # What an older folder lacks is on its page; today's layout has nothing to say.
        assert ('id="folder-notes"' in run.text) == (key != "run-4b270d5"), key
        assert ("every judgement is shown as order 0" in run.text) == (key == "run-a9e3ba3"), key
        item = c.get(f"/run/{key}/-/item", params={"id": "s002"})
        assert item.status_code == 200 and 'class="judgement"' in item.text, key
    exp = c.get("/experiment/experiments/old-demo")
    assert list(page_sections(exp.text)) == list(FIGURES)
    across = c.get("/experiment/experiments/old-demo/across", params={"item": "s002"})
    assert across.text.count('class="cell-card"') == 2 and "this cell has no item" not in across.text


def test_the_run_list_names_experiments_and_the_folders_it_cannot_show(workspace: Workspace, tmp_path: Path) -> None:
    from tests.support.experiments import make_run

    make_experiment(workspace, limit=4, orders=1)
    make_run(workspace, workspace.results_dir / "fine", limit=3)
    stopped = make_run(workspace, workspace.results_dir / "stopped", limit=3)
    for name in ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json"):
        (stopped / name).unlink()
    broken = make_run(workspace, workspace.results_dir / "broken", limit=3)
    (broken / "manifest.json").write_text("{")
    future = make_run(workspace, workspace.results_dir / "future", limit=3)
    m = json.loads((future / "manifest.json").read_text())
    (future / "manifest.json").write_text(json.dumps({**m, "results_format": 7}))
    text = client(workspace, tmp_path).get("/").text
    exp_row = re.search(r'<tr data-experiment="experiments/seeds">(.*?)</tr>', text, re.S)
    assert exp_row is not None and 'href="/experiment/experiments/seeds"' in exp_row.group(1)
    assert ">4</td>" in exp_row.group(1)  # cells
    stopped_row = re.search(r'<tr data-folder="stopped">(.*?)</tr>', text, re.S)
    assert stopped_row is not None and "interrupted" in stopped_row.group(1)
    assert f"dialbgm eval --resume {stopped}" in stopped_row.group(1)
    broken_row = re.search(r'<tr data-run="broken">(.*?)</tr>', text, re.S)
    assert broken_row is not None and "cannot be read: manifest.json:1: not valid JSON" in broken_row.group(1)
    future_row = re.search(r'<tr data-run="future">(.*?)</tr>', text, re.S)
    assert (
        future_row is not None
        and "results format 7" in future_row.group(1)
        and "upgrade dialbgm" in future_row.group(1)
    )
    assert 'href="/run/fine"' in text
