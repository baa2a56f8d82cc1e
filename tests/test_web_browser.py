"""The viewer in a real headless chromium: pages served by uvicorn, assets by the app itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval
from dialbgm.web import ViewSettings, create_app
from tests.support.browser import off_the_browser_thread, served


def test_the_run_list_opens_with_its_own_assets_and_links_each_run(
    workspace: Workspace, tmp_path: Path, page: Any
) -> None:
    res = off_the_browser_thread(run_eval, workspace, "random", workspace.sample_data, limit=4)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "index"))
    with served(app) as base:
        page.goto(base + "/")
        row = page.locator(f'tr[data-run="{res.out_dir.name}"]')
        assert row.locator("td").nth(1).inner_text() == "random"
        assert "4 / 4" in row.inner_text()
        # The stylesheet applied (served by the app, not a CDN) and the script ran without error.
        assert page.evaluate("getComputedStyle(document.querySelector('nav.top')).display") == "flex"
        assert row.locator("a").get_attribute("href") == f"/run/{res.out_dir.name}"
    assert requested and all(u.startswith(base) for u in requested), requested
    assert page.errors == []
