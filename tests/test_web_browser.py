"""The viewer in a real headless chromium: pages served by uvicorn, assets by the app itself, clips
played by the browser's own decoders. The runs are made by the offline ``random`` judge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dialbgm.analysis import diff_runs
from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval
from dialbgm.web import ViewSettings, create_app
from dialbgm_tools.sample_music import write_clips
from tests.support.browser import off_the_browser_thread, served

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def rendered_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audio sample's clips (wav, flac, ogg, mp3), rendered once from the composed MIDI."""
    folder = tmp_path_factory.mktemp("viewer-clips") / "clips"
    write_clips(folder)
    return folder


def audio_data(dest: Path, clips: Path, n: int, edit: Any = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(clips, dest / "clips")
    items = [json.loads(x) for x in (ROOT / "data" / "sample-audio.jsonl").read_text().splitlines()[:n]]
    if edit is not None:
        edit(items)
    (dest / "data.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return dest / "data.jsonl"


def wait_indexed(page: Any) -> None:
    """A first visit may show the run while its index is built (the page reloads itself)."""
    page.wait_for_selector("#item-list", timeout=30_000)


def test_list_filter_open_an_item_and_play_its_clips(
    workspace: Workspace, rendered_clips: Path, tmp_path: Path, page: Any
) -> None:
    data = audio_data(tmp_path / "d", rendered_clips, 6)
    a = off_the_browser_thread(
        run_eval, workspace, "random", data, out_dir=workspace.results_dir / "a", overrides={"orders": 2}
    )
    b = off_the_browser_thread(
        run_eval, workspace, "random", data, out_dir=workspace.results_dir / "b", overrides={"orders": 2, "seed": 3}
    )
    items = [json.loads(x) for x in (a.out_dir / "items.jsonl").read_text().splitlines()]
    worst = []
    for r in items:
        top = max(r["scores"].values())
        tops = {c for c, s in r["scores"].items() if s == top}
        if tops <= {c for c, k in r["human_ranks"].items() if k == 4}:
            worst.append(r["item_id"])
    flipped = sorted(f["item_id"] for f in diff_runs(a.out_dir, b.out_dir, n_flips=100)["flips"])
    assert worst and flipped and len(flipped) < 6, "the seeds give a filter that selects some items, not all"
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "index"))
    with served(app) as base:
        page.goto(base + "/")
        row = page.locator('tr[data-run="a"]')
        assert row.locator("td").nth(1).inner_text() == "random" and "6 / 6" in row.inner_text()
        assert page.evaluate("getComputedStyle(document.querySelector('nav.top')).display") == "flex"
        row.locator("a").click()
        wait_indexed(page)
        assert page.locator("#metrics tbody tr").count() == 6
        assert page.locator("#item-list tbody tr").count() == 6

        # A filter applies as soon as it is chosen (the page's one script).
        with page.expect_navigation():
            page.select_option("select[name=show]", "worst")
        assert "show=worst" in page.url
        assert [r.get_attribute("data-item") for r in page.locator("#item-list tbody tr").all()] == worst
        # Flips against the other run: the items `dialbgm diff` lists.
        page.select_option("select[name=other]", "b")
        with page.expect_navigation():
            page.select_option("select[name=show]", "flipped")
        assert [r.get_attribute("data-item") for r in page.locator("#item-list tbody tr").all()] == flipped
        # Free text over the dialogue.
        page.select_option("select[name=show]", "")
        page.fill("input[name=q]", "LATTE")
        with page.expect_navigation():
            page.press("input[name=q]", "Enter")
        assert [r.get_attribute("data-item") for r in page.locator("#item-list tbody tr").all()] == ["a001"]

        page.click("#item-list a:text('a001')")
        page.wait_for_selector("#dialogue")
        assert "medium oat latte" in page.inner_text("#dialogue")
        assert page.locator(".judgement").count() == 2  # two orders
        audios = page.locator("audio")
        assert audios.count() == 4
        for k in range(4):
            el = audios.nth(k)
            # Loaded: the browser decoded the header and knows the clip's length (10 s).
            el.evaluate("e => e.readyState >= 1 || new Promise(ok => e.addEventListener('loadedmetadata', ok))")
            assert el.evaluate("e => e.duration") == pytest.approx(10.0, abs=0.1)
            # Played: time moves on.
            el.evaluate("e => e.play()")
            page.wait_for_function("e => e.currentTime > 0.3 && !e.paused", arg=el.element_handle())
            el.evaluate("e => e.pause()")
    assert requested and all(u.startswith(base) for u in requested), [u for u in requested if not u.startswith(base)]
    assert page.errors == []


def test_text_from_data_and_replies_shows_as_text(
    workspace: Workspace, rendered_clips: Path, tmp_path: Path, page: Any
) -> None:
    script = "<script>window.__pwned = 1</script>"

    def edit(items: list[dict[str, Any]]) -> None:
        items[0]["dialogue"][0]["text"] = f"Hello {script} there"
        items[0]["dialogue"][1]["speaker"] = "<b>B</b>"
        items[0]["candidates"][0]["caption"] = '<img src=x onerror="window.__pwned = 2">'

    data = audio_data(tmp_path / "d", rendered_clips, 2, edit)
    run = off_the_browser_thread(run_eval, workspace, "random", data, out_dir=workspace.results_dir / "x").out_dir
    units = [json.loads(x) for x in (run / "units.jsonl").read_text().splitlines()]
    units[0]["raw"] = '<iframe src="/"></iframe><script>window.__pwned = 3</script>'
    units[0]["reasoning"] = "<style>body{display:none}</style>"
    (run / "units.jsonl").write_text("".join(json.dumps(u) + "\n" for u in units))
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "index"))
    with served(app) as base:
        page.goto(f"{base}/run/x/-/item?id={units[0]['item_id']}")
        page.wait_for_selector("#dialogue")
        assert script in page.inner_text("#dialogue") and "<b>B</b>:" in page.inner_text("#dialogue")
        assert '<img src=x onerror="window.__pwned = 2">' in page.inner_text("#candidates")
        page.click(".judgement details summary")
        assert "<iframe" in page.inner_text(".judgement pre.raw")
        assert page.locator("main img, main iframe, main b, main style").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("getComputedStyle(document.body).display") == "block"
        # A query parameter echoed into the search box stays a value.
        page.goto(f"{base}/run/x?q=%22%3E%3Cscript%3Ewindow.__pwned%3D4%3C/script%3E")
        wait_indexed(page)
        assert page.input_value("input[name=q]") == '"><script>window.__pwned=4</script>'
        assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_an_audio_judges_item_plays_the_clips_as_the_judge_was_sent_them(
    workspace: Workspace, rendered_clips: Path, tmp_path: Path, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from tests.support.scripted_server import ScriptedOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    data = audio_data(tmp_path / "d", rendered_clips, 2)
    with ScriptedOpenAIServer() as server:
        run = off_the_browser_thread(
            run_eval, workspace, "gpt-4o-audio", data, out_dir=workspace.results_dir / "heard",
            overrides={"api_base": server.base_url},
        ).out_dir  # fmt: skip
    clips = [json.loads(x) for x in (run / "clips.jsonl").read_text().splitlines()]
    assert len(clips) == 8 and {c["format"] for c in clips} == {"wav"}  # what gpt-4o-audio takes
    # A clip whose source is not a wav, so that the two files can be told apart.
    first = next(c for c in clips if not c["source"].endswith(".wav"))
    blob = workspace.audio_dir / "blobs" / first["sha256"][:2] / f"{first['sha256']}.wav"
    source = Path(first["source"])
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "index"))
    with served(app) as base:
        page.goto(f"{base}/run/heard/-/item?id={first['item_id']}")
        page.wait_for_selector("#candidates")
        row = page.locator(f'tr[data-candidate="{first["candidate"]}"]')
        assert "as sent to the judge" in row.inner_text()
        el = row.locator("audio")
        el.evaluate("e => e.readyState >= 1 || new Promise(ok => e.addEventListener('loadedmetadata', ok))")
        assert el.evaluate("e => e.duration") == pytest.approx(first["duration_s"], abs=0.05)
        got = page.request.get(base + str(el.get_attribute("src")))
        assert got.headers["content-type"] == "audio/wav" and got.body() == blob.read_bytes()
        assert hashlib.sha256(got.body()).hexdigest() == first["sha256"]
        # A prepared clip that no longer matches its hash is not played: the source file is.
        blob.write_bytes(blob.read_bytes()[:-100])
        page.reload()
        assert "source file" in page.locator(f'tr[data-candidate="{first["candidate"]}"]').inner_text()
        src = page.locator(f'tr[data-candidate="{first["candidate"]}"] audio').get_attribute("src")
        assert page.request.get(base + str(src)).body() == source.read_bytes()
    assert page.errors == []
