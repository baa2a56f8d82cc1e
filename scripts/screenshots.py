"""Screenshots of the viewer's main pages, for a person to look at.

Starts ``dialbgm view``'s app (uvicorn on a free loopback port) over a results folder and saves a
PNG of each main page with Debian's chromium (headless, through Playwright; nothing downloaded):
the run list, a run page, an item page, an experiment page, and one item across the cells of
its experiment.

    .venv/bin/python scripts/screenshots.py                     # a demo: the random judge on the bundled sample
    .venv/bin/python scripts/screenshots.py --results results   # your own results folder
    .venv/bin/python scripts/screenshots.py --out /tmp/shots --item s002

The demo (made in a temporary workspace, offline, in a few seconds) is one run and a four-cell
experiment of the random judge on the audio sample (its clips composed in code, as ``make setup``
does); ``--readme`` copies its item page to ``docs/viewer-item.png``, the README's screenshot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_EXPERIMENT = """
name = "demo"
description = "The random judge under three seeds and with four orders: a demo of the viewer."
baseline = "random__seed=0"
[data]
path = "data/sample-audio.jsonl"
[judges.random]
seed = [0, 1, 2]
[judges.random-orders]
judge = "random"
orders = 4
shuffle_labels = true
"""


def make_demo(home: Path) -> Path:
    """A workspace in ``home`` with one run and one experiment of the random judge; its results/."""
    for name in ("judges", "providers", "prompts", "data", "prices"):
        shutil.copytree(ROOT / name, home / name)
    os.environ["DIALBGM_HOME"] = str(home)
    os.environ.pop("DIALBGM_CACHE_DIR", None)
    from dialbgm.config import Workspace, load_experiment
    from dialbgm.run import RunOptions, RunSpec, evaluate, run_cells

    ws = Workspace(home)
    clips = home / "data" / "clips"
    if not any(clips.glob("*.flac")):  # the audio sample's clips, composed in code (a few seconds)
        from dialbgm_tools.sample_music import write_clips

        write_clips(clips)
    evaluate(
        ws,
        RunSpec("random", home / "data" / "sample-audio.jsonl", None, {"orders": 2, "shuffle_labels": True}),
        RunOptions(out_dir=ws.results_dir / "20261202T080000-random-audio-demo"),
    )
    (home / "experiments").mkdir(exist_ok=True)
    (home / "experiments" / "demo.toml").write_text(DEMO_EXPERIMENT, encoding="utf-8")
    run_cells(ws, load_experiment(ws, home / "experiments" / "demo.toml"))
    return ws.results_dir


def pages(results: Path, item: str | None) -> list[tuple[str, str]]:
    """``(file name, address)`` of each page to capture, found from the results folder."""
    from dialbgm.analysis import catalog
    from dialbgm.web._experiment import across_url, experiment_url
    from dialbgm.web._pages import item_url, run_url

    entries = [e for e in catalog(results) if e.readable]
    run = next((e for e in entries if e.kind == "run"), None)
    exp = next((e for e in entries if e.kind == "experiment"), None)
    out = [("runs.png", "/")]
    first_item = item
    if run is not None:
        first_item = first_item or _first_item(run.path)
        out.append(("run.png", run_url(run.rel)))
        out.append(("item.png", item_url(run.rel, first_item)))
    if exp is not None:
        cell = exp.cells[0]
        exp_item = item or _first_item(cell.path)
        out.append(("experiment.png", experiment_url(exp.rel)))
        out.append(("across.png", across_url(exp.rel, exp_item)))
        if run is None:
            out.append(("item.png", item_url(cell.rel, exp_item)))
    return out


def _first_item(run_dir: Path) -> str:
    with (run_dir / "items.jsonl").open(encoding="utf-8") as f:
        return str(json.loads(f.readline())["item_id"])


def shoot(results: Path, out: Path, item: str | None, width: int) -> list[Path]:
    from playwright.sync_api import sync_playwright
    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, served

    from dialbgm.web import ViewSettings, create_app

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as index:
        app = create_app(ViewSettings(results_dir=results, index_dir=Path(index)))
        with served(app) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page: Any = browser.new_page(viewport={"width": width, "height": 900})
            for name, address in pages(results, item):
                response = page.goto(base + address)
                page.wait_for_load_state("networkidle")
                for _ in range(60):  # a run's first visit indexes it; the page reloads itself when done
                    if page.locator("#indexing").count() == 0:
                        break
                    page.wait_for_timeout(500)
                    response = page.reload()
                    page.wait_for_load_state("networkidle")
                status = response.status if response is not None else "?"
                path = out / name
                page.screenshot(path=str(path), full_page=True)
                print(f"{path}  {address}  (HTTP {status})")
                written.append(path)
            browser.close()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, help="a results folder (default: a demo made with the random judge)")
    ap.add_argument("--out", type=Path, default=Path("screenshots"), help="where the PNGs go (default: ./screenshots)")
    ap.add_argument("--readme", action="store_true", help="also copy the item page to docs/viewer-item.png")
    ap.add_argument("--item", help="the item to show (default: each run's first)")
    ap.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels")
    args = ap.parse_args()
    if args.results is not None:
        written = shoot(args.results.resolve(), args.out, args.item, args.width)
    else:
        with tempfile.TemporaryDirectory() as home:
            written = shoot(make_demo(Path(home)), args.out, args.item, args.width)
    if args.readme:
        item = next(p for p in written if p.name == "item.png")
        shutil.copyfile(item, ROOT / "docs" / "viewer-item.png")
        print(f"{ROOT / 'docs' / 'viewer-item.png'}: the README's screenshot")


if __name__ == "__main__":
    main()
