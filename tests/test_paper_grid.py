"""experiments/paper-grid.toml: the paper's Figure 4 as crossed factors, planned whole by
`dialbgm compare paper-grid --dry-run` (every cell listed with its calls and cost, nothing called)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._experiment import load_experiment
from dialbgm.config._workspace import Workspace
from dialbgm_tools.sample_music import write_clips

ROOT = Path(__file__).resolve().parents[1]


def test_the_paper_grid_crosses_the_figures_factors(workspace: Workspace) -> None:
    exp = load_experiment(workspace, ROOT / "experiments" / "paper-grid.toml")
    cells = {c.cell_id: c for c in exp.cells}
    judges = {c.judge for c in exp.cells}
    # Every family of the figure that ships a judge: text embedders, multimodal and audio-language LLMs.
    assert {"embedding", "embedding-e5", "embedding-openai"} <= judges
    assert {"gpt-4o", "gpt-4o-audio", "gpt-5", "gemini-2.5-flash", "gemini-2.5-pro"} <= judges
    assert {"vllm-qwen2.5-omni", "vllm-phi-4-multimodal", "vllm-qwen2-audio"} <= judges
    # Audio models: audio x caption x full x summary x plain/CoT, and few-shot on captions.
    for model in ("gemini-2.5-flash", "vllm-qwen2-audio", "vllm-qwen2.5-omni", "vllm-phi-4-multimodal"):
        for inp in ("caption", "audio"):
            for ctx in ("full", "summary"):
                for cot in ("false", "true"):
                    assert f"{model}__input={inp}__context={ctx}__cot={cot}" in cells
        for ctx in ("full", "summary"):
            fewshot = cells[f"{model}-fewshot__context={ctx}"]
            assert fewshot.overrides["few_shot"] == 3 and fewshot.overrides.get("input", "caption") == "caption"
    # CLAP (both checkpoints): audio tower or caption-only x the three queries, captions by gpt-4o.
    for model in ("clap-htsat-unfused", "clap-music"):
        for inp in ("audio", "caption"):
            for query in ("dialogue", "summary", "music_caption"):
                cell = cells[f"{model}__input={inp}__query={query}"]
                assert cell.overrides["captioner"] == "gpt-4o" and cell.overrides["query"] == query
    assert exp.baseline == "random" and len(cells) == 85


CLAP_CELLS = [
    f"{model}__input={inp}__query={query}"
    for model in ("clap-htsat-unfused", "clap-music")
    for inp in ("audio", "caption")
    for query in ("dialogue", "summary", "music_caption")
]


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache without the CLAP weights (as on every test machine), and no hub access."""
    import huggingface_hub.constants

    cache = tmp_path / "empty-hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_compare_paper_grid_dry_run_lists_every_cell_and_calls_nothing(
    workspace: Workspace, tmp_path: Path, empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HF_HUB_OFFLINE is left unset: a dry run must not try the hub even so (a fetch would fail here).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (workspace.root / "experiments").mkdir(exist_ok=True)
    shutil.copy(ROOT / "experiments" / "paper-grid.toml", workspace.root / "experiments" / "paper-grid.toml")
    write_clips(workspace.root / "data" / "clips")  # the audio sample's clips, as make setup renders them
    res = CliRunner().invoke(app, ["compare", "paper-grid", "--dry-run"])
    assert res.exit_code == 0, res.output
    exp = load_experiment(workspace, "paper-grid")
    rows = {}
    for line in res.output.splitlines():
        cols = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cols) == 8:  # cell, model, calls, cached, to call, tokens, cost, cost as batch
            rows[cols[0]] = cols
    assert set(rows) >= {c.cell_id for c in exp.cells}
    for cell in exp.cells:
        _, model, calls, cached, to_call, tokens, cost, batch_cost = rows[cell.cell_id]
        assert model, cell.cell_id
        assert (calls, cached, to_call) == (("0", "0", "0") if cell.judge == "random" else ("12", "0", "12")), (
            cell.cell_id
        )
        assert re.fullmatch(r"~[\d,]+", tokens) and (cost == "unknown" or cost.startswith("$")), cell.cell_id
        assert batch_cost == "unknown" or batch_cost.startswith("$"), cell.cell_id
    # Priced where the table has the model; audio input and self-hosted models are not priced.
    assert rows["gpt-4o__context=full__cot=false"][6].startswith("$")
    # gpt-4o's batch rates are half its online ones (prices/prices.toml).
    online, batch = (float(rows["gpt-4o__context=full__cot=false"][i].lstrip("$")) for i in (6, 7))
    assert batch == pytest.approx(online / 2, rel=0.01)
    assert rows["vllm-qwen2-audio__input=audio__context=full__cot=false"][6] == "unknown"
    assert rows["embedding-e5__context=full"][6] == "$0.0000"
    # The CLAP cells, weights absent: listed with their embeddings to compute, at $0, and a note per
    # checkpoint naming where the weights were looked for, followed by exactly its cells.
    for cell_id in CLAP_CELLS:
        assert rows[cell_id][2:5] == ["12", "0", "12"] and rows[cell_id][6] == "$0.0000", rows[cell_id]
    lines = res.output.splitlines()
    for model, hub_id in (("clap-htsat-unfused", "clap-htsat-unfused"), ("clap-music", "larger_clap_music")):
        head = next(k for k, line in enumerate(lines) if line.startswith("note: ") and hub_id in line)
        note = " ".join(lines[head : head + 3])
        assert f"weights not found at {empty_hub_cache / f'models--laion--{hub_id}'}" in note, note
        assert "identity unknown until they are present" in note
        listed = []
        for line in lines[head + 1 :]:
            if line.startswith("  ") and "__" in line:
                listed.append(line.strip())
            elif listed:
                break
        assert listed == [c for c in CLAP_CELLS if c.startswith(model + "__")], listed
    assert not (workspace.root / "results").exists()  # a dry run writes nothing


def test_a_run_of_a_clap_cell_without_its_weights_stops_naming_them(
    workspace: Workspace, empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned without the weights, refused when run: the folder (or the model id and the cache it
    is not in) is named, exit 2, and no cell ran."""
    (workspace.root / "experiments").mkdir(exist_ok=True)
    write_clips(workspace.root / "data" / "clips")
    grid = (ROOT / "experiments" / "paper-grid.toml").read_text(encoding="utf-8")
    (workspace.root / "experiments" / "paper-grid.toml").write_text(grid, encoding="utf-8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the run would otherwise fetch the weights, as it should
    res = CliRunner().invoke(app, ["compare", "paper-grid"])
    assert res.exit_code == 2, res.output
    assert "cell clap-htsat-unfused__input=audio__query=dialogue" in res.output
    assert str(empty_hub_cache / "models--laion--clap-htsat-unfused") in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output
    # A weights folder the judge names: the same in both directions, with the folder in the error.
    (workspace.root / "experiments" / "clap-only.toml").write_text(
        'name = "clap-only"\n[data]\npath = "data/sample-audio.jsonl"\n'
        '[judges.clap-htsat-unfused]\nmodel = "./weights/clap-here"\nquery = ["dialogue", "summary"]\n',
        encoding="utf-8",
    )
    dry = CliRunner().invoke(app, ["compare", "clap-only", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"weights not found at {workspace.root / 'weights' / 'clap-here'}" in " ".join(dry.output.split())
    run = CliRunner().invoke(app, ["compare", "clap-only"])
    assert run.exit_code == 2, run.output
    flat = " ".join(run.output.split())
    assert f"CLAP weights folder {workspace.root / 'weights' / 'clap-here'} does not exist" in flat, flat
    assert not (workspace.root / "results" / "experiments" / "paper-grid").exists()
