"""A real headless Chromium completes a small campaign as two annotators at once: alice ranks by
dragging, bob by typing numbers (with a tie); both play every clip (the page holds the submit
button until each has played long enough); alice leaves half-way and comes back where she was.
The two work at the same time, each in their own browser.
Then the export holds exactly the rankings given, and the status flags the annotator who failed
the gold item."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from scipy.stats import kendalltau

from dialbgm.data import load_dataset
from tests.support.browser import CHROMIUM_ARGS, _chromium_or_skip
from tests.support.campaigns import Server, start_server, write_campaign

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect, sync_playwright


@pytest.fixture
def chromium_path() -> str:
    return _chromium_or_skip()


# The rankings known in advance, by item and clip (best first); g1 is the gold item (best: piano).
ALICE = {
    "d1": ["party", "drums", "piano"],
    "d2": ["piano", "drums", "party"],
    "d3": ["drums", "party", "piano"],
    "g1": ["piano", "party", "drums"],
}
BOB = {  # ranks typed per clip: d2 ties piano and drums
    "d1": {"party": 1, "piano": 3, "drums": 2},
    "d2": {"party": 3, "piano": 1, "drums": 1},
    "d3": {"party": 2, "piano": 3, "drums": 1},
    "g1": {"party": 1, "piano": 2, "drums": 3},
}


def _clip_names(page: Page) -> list[str]:
    """The clips in the list's current order, by the first word of their captions."""
    return [t.split()[0] for t in page.locator("li.candidate .caption").all_inner_texts()]


def _item(page: Page) -> str:
    return page.locator("li.candidate .caption").first.inner_text().split()[-1]


def _listen(page: Page) -> None:
    """Play every clip through the page's players, and wait until the page lets us submit."""
    button = page.locator("#submit")
    assert button.is_disabled(), "submit is held until the clips have been heard"
    for audio in page.locator("audio").all():
        audio.evaluate("a => a.play()")
    expect(button).to_be_enabled(timeout=20_000)
    for k in range(page.locator("audio").count()):
        assert float(page.locator(f"input[name=listened-{k}]").input_value()) > 0


def _rank_by_drag(page: Page, best_first: list[str]) -> None:
    for i, clip in enumerate(best_first):
        names = _clip_names(page)
        j = names.index(clip)
        if j != i:
            items = page.locator("li.candidate")
            items.nth(j).drag_to(items.nth(i))
    assert _clip_names(page) == best_first
    values = [page.locator("li.candidate").nth(i).locator("input[type=number]").input_value() for i in range(3)]
    assert values == ["1", "2", "3"], "dragging renumbers the clips"


def _rank_by_numbers(page: Page, ranks: dict[str, int]) -> None:
    # By id: typing a number re-sorts the list, so "the n-th clip" changes under our feet.
    ids = [li.get_attribute("id") for li in page.locator("li.candidate").all()]
    for cid in ids:
        li = page.locator(f"#{cid}")
        clip = li.locator(".caption").inner_text().split()[0]
        field = li.locator("input[type=number]")
        field.fill(str(ranks[clip]))
        field.dispatch_event("change")
    order = sorted(ranks, key=lambda c: ranks[c])
    assert [ranks[c] for c in _clip_names(page)] == [ranks[c] for c in order], "the list follows the numbers"


def _progress(page: Page) -> str:
    return page.locator("#progress-text").inner_text()


def test_two_annotators_complete_a_campaign(tmp_path: Path, chromium_path: str) -> None:
    write_campaign(tmp_path, ties=True, min_listen_seconds=0.6)
    server = start_server(tmp_path)
    try:
        _run_campaign(server, chromium_path)
    finally:
        server.stop()
    out = tmp_path / "ranked.jsonl"
    env = {**os.environ, "DIALBGM_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "dialbgm", "annotate", "export", "demo", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    ds = load_dataset(out)
    assert sorted(i.id for i in ds.items) == ["d1", "d2", "d3"]
    for item in ds.items:
        clips = [c.id.split("-")[1] for c in item.candidates]
        got = {a.annotator: dict(zip(clips, a.ranks, strict=True)) for a in item.annotations}
        assert got["alice"] == {clip: ALICE[item.id].index(clip) + 1 for clip in clips}
        assert got["bob"] == BOB[item.id]
    status = subprocess.run(
        [sys.executable, "-m", "dialbgm", "annotate", "status", "demo", "--format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {r["name"]: r for r in json.loads(status.stdout)["annotators"]}
    assert rows["alice"]["done"] == rows["bob"]["done"] == 4
    assert (rows["alice"]["flagged"], rows["bob"]["flagged"]) == (False, True), rows
    assert all(rows[a]["seconds"] > 0 for a in rows), "time per item is recorded"
    # `dialbgm agreement NAME` reads the campaign through its export: the pairwise tau-b between
    # alice and bob is the mean over the three items of scipy's tau-b on the rankings given.
    agreed = subprocess.run(
        [sys.executable, "-m", "dialbgm", "agreement", "demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert agreed.returncode == 0, agreed.stderr
    result = json.loads(agreed.stdout)
    [pair] = result["pairwise_tau_b"]["pairs"]
    clips = ["party", "piano", "drums"]
    taus = [
        kendalltau([ALICE[i].index(c) + 1 for c in clips], [BOB[i][c] for c in clips]).statistic
        for i in ("d1", "d2", "d3")
    ]
    assert (pair["n_items"], pair["mean_tau_b"]) == (3, pytest.approx(sum(taus) / 3))


def _run_campaign(server: Server, executable: str) -> None:
    """Both annotators at once, each in a thread with its own chromium (Playwright's sync API
    keeps to one thread), both on their first item before either submits anything."""
    barrier = threading.Barrier(2, timeout=120)
    errors: list[BaseException] = []

    def annotate(name: str) -> None:
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
                try:
                    _annotate(server, browser, name, barrier)
                finally:
                    browser.close()
        except BaseException as e:
            barrier.abort()
            errors.append(e)

    threads = [threading.Thread(target=annotate, args=(name,)) for name in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "an annotator did not finish"
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]


def _annotate(server: Server, browser: Browser, name: str, barrier: threading.Barrier) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.links[name])
    assert name in page.locator("header").inner_text()
    # The guideline is one click away.
    page.locator("#guideline summary").click()
    assert "Contextual relevance" in page.locator("#guideline .guideline-text").inner_text()
    # Markup in the data is shown as text.
    assert page.locator("li.candidate .caption i").count() == 0
    barrier.wait()
    for step in range(4):
        if name == "alice" and step == 2:
            # Alice leaves (closes her tab) and comes back with her link: she lands on her third item.
            page.close()
            page = context.new_page()
            page.goto(server.links[name])
            assert _progress(page).startswith("item 3 of 4 · 2 submitted")
        assert _progress(page).startswith(f"item {step + 1} of 4"), (name, _progress(page))
        item = _item(page)
        _listen(page)
        if name == "alice":
            _rank_by_drag(page, ALICE[item])
        else:
            _rank_by_numbers(page, BOB[item])
        page.locator("#submit").click()
        page.wait_for_load_state()
    assert page.locator("#finished").is_visible()
    assert "4 of 4 submitted" in page.locator("#progress-text").inner_text()
    context.close()
