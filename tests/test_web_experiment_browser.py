"""The experiment page and an item followed across cells, in a real headless chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.config import Workspace
from dialbgm.web import ViewSettings, create_app
from tests.support.browser import off_the_browser_thread, served
from tests.support.experiments import make_experiment


def test_open_an_experiment_see_its_figures_and_follow_an_item_across_cells(
    workspace: Workspace, tmp_path: Path, page: Any
) -> None:
    off_the_browser_thread(make_experiment, workspace, limit=6, orders=2, short=3)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "index"))
    with served(app) as base:
        page.goto(base + "/experiment/experiments/seeds")
        # Every figure is there and drawn: 4 cells on the leaderboard, 6 interval plots, the
        # heatmap's 5 x 5 cells (with the human ranks), the paired tables and the cost table.
        assert page.locator("table.leaderboard tr").count() == 1 + 4
        assert page.locator("section#intervals svg.intervals").count() == 6
        assert page.locator("svg.heatmap rect.hm-cell").count() == 25
        assert page.locator("table.paired").count() == 3
        assert page.locator("table.cost tr").count() == 1 + 4
        # The figures' styles came from the app: table borders collapse inside the figures.
        collapse = "getComputedStyle(document.querySelector('section.figure table')).borderCollapse"
        assert page.evaluate(collapse) == "collapse"
        box = page.locator("svg.heatmap").bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 200
        # Follow an item: type its id, one click.
        page.fill("#follow input[name=item]", "s005")
        page.click("#follow button")
        page.wait_for_url("**/across?item=s005")
        cards = page.locator("section.cell-card")
        assert [cards.nth(i).get_attribute("data-cell") for i in range(4)] == [
            "rnd__seed=0",
            "rnd__seed=1",
            "rnd__seed=2",
            "short",
        ]
        assert page.locator('section.cell-card[data-cell="rnd__seed=1"] .judgement').count() == 2
        assert "this cell has no item s005" in page.locator('section.cell-card[data-cell="short"]').inner_text()
        # Each present cell marks its top pick in the score table, and links to its own item page.
        assert page.locator("#scores td.top").count() >= 3
        page.click('section.cell-card[data-cell="rnd__seed=2"] h3 a')
        page.wait_for_url("**/run/experiments/seeds/rnd__seed%3D2/-/item?id=s005")
        assert "rnd__seed=2" in page.locator("h1").inner_text() and "s005" in page.locator("h1").inner_text()
        # From the cell's item page, one click shows the item in every cell again.
        page.click("a#across")
        page.wait_for_url("**/experiment/experiments/seeds/across?item=s005")
        assert page.locator("section.cell-card").count() == 4
        page.click("a#to-experiment")
        page.wait_for_url("**/experiment/experiments/seeds")
    assert requested and all(u.startswith(base) for u in requested), requested
    assert page.errors == []
