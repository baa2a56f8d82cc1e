"""report.html and report.md: self-contained, escaped, and rendered for real in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dialbgm.cli._experiments import register
from dialbgm.config._experiment import load_experiment
from dialbgm.config._workspace import Workspace
from dialbgm.report._write import write_report
from dialbgm.run._cells import run_cells
from dialbgm.run._entry import run_eval
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
EVIL = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is required in CI (apt-get install -y chromium)")
    pytest.skip(f"{CHROMIUM} not installed: the rendered-HTML test needs headless Chromium (apt-get install chromium)")


def run_chromium(tmp: Path, html: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        str(chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        *extra,
        html.as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)


def reply(body: dict[str, Any], n: int) -> Reply:
    cot = "reasoning" in json.dumps(body.get("response_format", {}))
    if cot:
        return Reply(json.dumps({"reasoning": EVIL, "scores": {"A": 2, "B": 9, "C": 4, "D": 6}}))
    return Reply('{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}')


@pytest.fixture
def experiment_dir(workspace: Workspace) -> Path:
    with ScriptedOpenAIServer(reply) as server:
        (workspace.root / "experiments").mkdir()
        shutil.copytree(ROOT / "prices", workspace.root / "prices")
        path = workspace.root / "experiments" / "rep.toml"
        path.write_text(
            f"""
baseline = "random"
pairs = [["llm__cot=false", "llm__cot=true"]]
[data]
path = "data/sample.jsonl"
limit = 6
[judges.random]
[judges.llm]
judge = "openai-compatible"
api_base = "{server.base_url}"
model = "gpt-4o"
cot = [false, true]
"""
        )
        exp = load_experiment(workspace, path)
        run_cells(workspace, exp)
    return exp.out_dir(workspace)


def test_report_files_are_self_contained_and_escaped(workspace: Workspace, experiment_dir: Path) -> None:
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["report", str(experiment_dir)])
    assert res.exit_code == 0, res.output
    html = (experiment_dir / "report.html").read_text()
    # No external asset of any kind: no src/href attributes, no url(...) in the CSS, no <link>/<script>.
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    assert tags and not [t for t in tags if re.search(r"\s(src|href|onerror)\s*=", t)]
    assert "url(" not in html and "<link" not in html and "<script" not in html
    # The raw reply (JSON, so its quotes are backslashed) is shown as text.
    assert "&lt;script&gt;alert(\\&quot;pwned\\&quot;)&lt;/script&gt;" in html
    md = (experiment_dir / "report.md").read_text()
    for cell in ("random", "llm__cot=false", "llm__cot=true"):
        assert f"| {cell} |" in md
    assert "llm__cot=false | llm__cot=true | 6 | 0/0 |" in md  # the explicit pair, n common 6
    assert "Kendall tau-b" in md and "Holm" in md
    # gpt-4o is priced: 100 prompt + 20 completion tokens per call from the scripted server.
    assert "| llm__cot=true | gpt-4o | 600 | 120 | 0.0027 |" in md


def test_report_renders_in_headless_chromium(workspace: Workspace, experiment_dir: Path, tmp_path: Path) -> None:
    chromium()
    html_path, _ = write_report(experiment_dir, ws=workspace)
    dom = run_chromium(tmp_path, html_path, "--dump-dom").stdout
    # The DOM Chromium built (not our string): tables, one heatmap cell per (cell or human)², six interval plots.
    assert dom.count('<svg xmlns="http://www.w3.org/2000/svg" class="heatmap"') == 1
    assert len(re.findall(r'<rect class="hm-cell"', dom)) == 4 * 4
    assert len(re.findall(r'class="intervals"', dom)) == 6
    board = re.search(r'<table class="leaderboard">(.*?)</table>', dom, re.S)
    assert board is not None
    rows = re.findall(r"<tr>(.*?)</tr>", board.group(1), re.S)
    assert len(rows) == 1 + 3
    assert "random (baseline)" in rows[1] and "6 / 6" in rows[1]
    assert re.search(r"<table class=\"agreement\">", dom)
    assert "<script" not in dom.lower().replace("&lt;script", "")  # the evil reply stayed text
    assert "onerror=alert(1)&gt;" in dom
    shot = tmp_path / "report.png"
    run_chromium(tmp_path, html_path, f"--screenshot={shot}", "--window-size=1280,2000")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a real page, not a blank one


def test_report_of_a_single_run(workspace: Workspace, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_eval(workspace, "random", sample_path, out_dir=out, limit=10)
    html_path, md_path = write_report(out, ws=workspace)
    html = html_path.read_text()
    assert "Items where run and the human ranks disagree most" in html
    assert html.count('class="item"') == 5
    md = md_path.read_text()
    assert "| run | 10/10 |" in md and "Paired comparisons" not in md


def test_report_on_a_folder_that_is_not_a_run_exits_2(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and str(tmp_path) in res.output
