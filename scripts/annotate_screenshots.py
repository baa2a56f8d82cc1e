"""Screenshots of the annotation pages, for a person to look at: a small demo campaign (synthetic
clips) served for real, opened in headless chromium, one PNG per page.

    PYTHONPATH=src:. python scripts/annotate_screenshots.py OUT_DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.campaigns import start_server, write_campaign


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_campaign(folder, ties=True, min_listen_seconds=0.5)
        server = start_server(folder)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 1100})
                page.goto(server.links["alice"])
                page.screenshot(path=str(out / "annotate-item.png"), full_page=True)
                page.locator("#guideline summary").click()
                page.screenshot(path=str(out / "annotate-item-guideline.png"), full_page=True)
                page.goto(server.links["alice"] + "/done")
                page.screenshot(path=str(out / "annotate-progress.png"), full_page=True)
                page.goto(server.base + "/a/wrong-token")
                page.screenshot(path=str(out / "annotate-denied.png"), full_page=True)
                browser.close()
        finally:
            server.stop()
    for p in sorted(out.glob("annotate-*.png")):
        print(p)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots"))
