"""Experiment files, cells and the cache: through the real runner, litellm and a loopback server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dialbgm.analysis._compare import analyse
from dialbgm.cli._experiments import register
from dialbgm.config._experiment import ExperimentError, load_experiment
from dialbgm.config._workspace import Workspace
from dialbgm.data._dataset import load_dataset
from dialbgm.run._cells import plan_cells, run_cells
from tests.support.scripted_server import Reply, ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
GOOD = '{"scores": {"A": 9, "B": 2, "C": 5, "D": 7}}'
GOOD_COT = '{"reasoning": "calm cafe", "scores": {"A": 3, "B": 8, "C": 5, "D": 6}}'

app = typer.Typer()
register(app)
cli = CliRunner()


def write_experiment(ws: Workspace, text: str, name: str = "exp") -> Path:
    (ws.root / "experiments").mkdir(exist_ok=True)
    path = ws.root / "experiments" / f"{name}.toml"
    path.write_text(text)
    shutil.copytree(ROOT / "prices", ws.root / "prices", dirs_exist_ok=True)
    return path


def llm_experiment(base_url: str, temps: str = "[0.0]", limit: int = 4, model: str = "served") -> str:
    return f"""
baseline = "rnd"
pairs = [["llm__cot=false__params.temperature=0.0", "llm__cot=true__params.temperature=0.0"]]
[data]
path = "data/sample.jsonl"
limit = {limit}
[judges.rnd]
judge = "random"
[judges.llm]
judge = "openai-compatible"
api_base = "{base_url}"
model = "{model}"
cot = [false, true]
[judges.llm.params]
temperature = {temps}
"""


def reply_for(body: dict[str, Any], bad_texts: tuple[str, ...] = (), refuse_texts: tuple[str, ...] = ()) -> Reply:
    user = body["messages"][-1]["content"]
    cot = "reasoning" in json.dumps(body.get("response_format", {}))
    if any(t in user for t in refuse_texts) and not cot:
        return Reply(status=400)  # not retried: the unit ends as a transport error
    if cot and any(t in user for t in bad_texts):
        return Reply("I think the second one fits best!")  # no JSON: a parse error
    return Reply(GOOD_COT if cot else GOOD)


def test_cells_are_the_full_cross_product_with_readable_ids(workspace: Workspace) -> None:
    path = write_experiment(
        workspace,
        """
[data]
path = "data/sample.jsonl"
[judges.local]
limit = 3
cot = [false, true]
few_shot = [0, 2]
context = "full"
[judges.local.params]
temperature = [0.0, 0.7]
[judges.random]
""",
    )
    exp = load_experiment(workspace, path)
    ids = [c.cell_id for c in exp.cells]
    assert len(ids) == 2 * 2 * 2 + 1
    assert ids[0] == "local__cot=false__few_shot=0__params.temperature=0.0"
    assert "local__cot=true__few_shot=2__params.temperature=0.7" in ids
    assert ids[-1] == "random"
    cell = exp.cell("local__cot=true__few_shot=2__params.temperature=0.7")
    assert cell.overrides == {"context": "full", "cot": True, "few_shot": 2, "params.temperature": 0.7}
    assert cell.limit == 3 and exp.cell("random").limit is None
    # No baseline and no pairs: every cell is compared with the first.
    assert exp.comparisons()[0] == (ids[0], ids[1]) and len(exp.comparisons()) == len(ids) - 1
    assert exp.out_dir(workspace) == workspace.root / "results" / "experiments" / "exp"


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("[judges.local]\ncot = [false]\n", ["data.path"]),
        ('[data]\npath = "nope.jsonl"\n[judges.local]\n', ["data.path", "nope.jsonl"]),
        ('[data]\npath = "data/sample.jsonl"\n', ["judges"]),
        ('[data]\npath = "data/sample.jsonl"\n[judges.local]\ncot = []\n', ["judges.local.cot", "level"]),
        ('[data]\npath = "data/sample.jsonl"\n[judges.local]\nkot = [false, true]\n', ["judges.local", "kot"]),
        ('[data]\npath = "data/sample.jsonl"\n[judges.local]\nmode = ["listwise", "sideways"]\n', ["mode"]),
        ('baseline = "x"\n[data]\npath = "data/sample.jsonl"\n[judges.local]\n', ["baseline", "'x'"]),
        ('pairs = [["local", "y"]]\n[data]\npath = "data/sample.jsonl"\n[judges.local]\n', ["pairs[0]", "'y'"]),
        ('[data]\npath = "data/sample.jsonl"\nbaseline = "local"\n[judges.local]\n', ["data.baseline", "unknown key"]),
        ('[data]\npath = "data/sample.jsonl"\nlimit = 0\n[judges.local]\n', ["data.limit"]),
        ('[data]\npath = "data/sample.jsonl"\n[judges.nosuchjudge]\n', ["judges.nosuchjudge", "no judge"]),
        ("this is = = not toml", ["not valid TOML"]),
    ],
)
def test_a_bad_experiment_file_names_file_and_key_and_exits_2(
    workspace: Workspace, body: str, needles: list[str]
) -> None:
    path = write_experiment(workspace, body)
    with pytest.raises(ExperimentError) as e:
        load_experiment(workspace, path)
    assert str(path) in str(e.value)
    for n in needles:
        assert n in str(e.value)
    res = cli.invoke(app, ["compare", str(path)])
    assert res.exit_code == 2
    assert str(path) in res.output and needles[0] in res.output
    assert not (workspace.root / "results" / "experiments").exists()


def test_a_missing_experiment_exits_2(workspace: Workspace) -> None:
    res = cli.invoke(app, ["compare", "does-not-exist"])
    assert res.exit_code == 2 and "does-not-exist" in res.output


def test_rerun_makes_no_call_and_a_new_level_only_the_new_calls(workspace: Workspace) -> None:
    with ScriptedOpenAIServer(lambda b, n: reply_for(b)) as server:
        path = write_experiment(workspace, llm_experiment(server.base_url))
        exp = load_experiment(workspace, path)
        plans = {p.cell_id: p for p in plan_cells(workspace, exp)}
        assert plans["rnd"].calls == 0 and plans["rnd"].cached == 0  # random: computed, never cached
        llm = plans["llm__cot=false__params.temperature=0.0"]
        assert (llm.calls, llm.cached, llm.uncached) == (4, 0, 4)
        assert llm.price is None and llm.cost_est is None  # "served" has no price: unknown, not 0
        assert server.requests == []  # planning calls nothing

        res = cli.invoke(app, ["compare", str(path)])
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 8  # 2 LLM cells × 4 items

        res = cli.invoke(app, ["compare", str(path)])
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 8  # unchanged experiment: zero calls
        cmp = json.loads((exp.out_dir(workspace) / "comparison.json").read_text())
        assert sum(r["provider_calls"] for r in cmp["runs"]) == 0
        # Finished cells with the same config hash are reused as they are, not even re-read from the cache.
        assert all(r.get("reused") for r in cmp["runs"])

        write_experiment(workspace, llm_experiment(server.base_url, temps="[0.0, 0.7]"))
        exp2 = load_experiment(workspace, path)
        plans2 = {p.cell_id: p for p in plan_cells(workspace, exp2)}
        assert sum(p.uncached for p in plans2.values()) == 8
        assert plans2["llm__cot=true__params.temperature=0.0"].cached == 4
        assert plans2["llm__cot=true__params.temperature=0.7"].uncached == 4
        res = cli.invoke(app, ["compare", str(path)])
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 16  # only the two new cells' 8 calls
        assert {r["temperature"] for r in server.requests[8:]} == {0.7}
    cells = sorted(p.name for p in exp2.out_dir(workspace).iterdir() if p.is_dir())
    assert len(cells) == 5


def test_max_cost_refuses_before_any_call(workspace: Workspace) -> None:
    with ScriptedOpenAIServer(lambda b, n: reply_for(b)) as server:
        path = write_experiment(workspace, llm_experiment(server.base_url, model="gpt-4o"))
        plans = plan_cells(workspace, load_experiment(workspace, path))
        priced = [p for p in plans if p.cell_id.startswith("llm")]
        assert all(p.cost_est is not None and p.cost_est > 0 for p in priced)
        # Upper bound: estimated input at $2.50/M plus 4 replies at max_tokens (1024) at $10/M.
        p0 = priced[0]
        assert p0.cost_est == pytest.approx((p0.prompt_tokens_est * 2.5 + 4 * 1024 * 10.0) / 1e6)
        total = sum(p.cost_est or 0 for p in plans)

        res = cli.invoke(app, ["compare", str(path), "--max-cost", f"{total / 2:.6f}"])
        assert res.exit_code == 2, res.output
        assert "exceeds --max-cost" in res.output
        assert server.requests == []
        assert not (workspace.root / "results" / "experiments").exists()

        res = cli.invoke(app, ["compare", str(path), "--dry-run"])
        assert res.exit_code == 0 and server.requests == []
        assert "estimate" in res.output

        res = cli.invoke(app, ["compare", str(path), "--max-cost", f"{total * 2:.6f}"])
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 8


def _first_turn(item_id: str) -> str:
    return load_dataset(ROOT / "data" / "sample.jsonl").get(item_id).dialogue[0].text


def test_leaderboard_attrition_and_paired_comparison_use_only_common_items(workspace: Workspace) -> None:
    bad = (_first_turn("s002"), _first_turn("s004"))  # cot cell: unparseable replies
    refused = (_first_turn("s005"),)  # no-cot cell: HTTP 400 → transport error
    with ScriptedOpenAIServer(lambda b, n: reply_for(b, bad, refused)) as server:
        path = write_experiment(workspace, llm_experiment(server.base_url, limit=6))
        exp = load_experiment(workspace, path)
        run_cells(workspace, exp)
    result = analyse(exp.out_dir(workspace), ws=workspace, n_flips=2000)
    board = {r["cell_id"]: r for r in result["leaderboard"]}
    a_id, b_id = "llm__cot=false__params.temperature=0.0", "llm__cot=true__params.temperature=0.0"
    for cid in (a_id, b_id, "rnd"):
        m = json.loads((exp.out_dir(workspace) / cid / "metrics.json").read_text())
        assert board[cid]["n_items"] == m["n_items"]
        assert board[cid]["metrics"]["ndcg"]["mean"] == m["ndcg"]
        assert [board[cid]["metrics"]["ndcg"]["ci_low"], board[cid]["metrics"]["ndcg"]["ci_high"]] == m["ci95"]["ndcg"]
    assert (board[b_id]["n_items"], board[b_id]["items_failed_parse"], board[b_id]["items_failed_transport"]) == (
        4,
        2,
        0,
    )
    assert (board[a_id]["n_items"], board[a_id]["items_failed_parse"], board[a_id]["items_failed_transport"]) == (
        5,
        0,
        1,
    )
    assert board[a_id]["units_transport_failures"] == 1 and board[b_id]["units_parse_failures"] == 2

    comp = next(c for c in result["comparisons"] if (c["a"], c["b"]) == (a_id, b_id))
    assert comp["n_common"] == 3  # s001, s003, s006
    assert (comp["lost_by_a"], comp["lost_by_b"]) == (1, 2)  # s005 lost by A; s002, s004 by B
    items_a = _items(exp.out_dir(workspace) / a_id)
    items_b = _items(exp.out_dir(workspace) / b_id)
    common = ["s001", "s003", "s006"]
    for m in ("hit_at_1", "kendall_tau_b"):
        expected = sum(items_b[i]["metrics"][m] - items_a[i]["metrics"][m] for i in common) / 3
        assert comp["metrics"][m]["diff"] == pytest.approx(expected)
        assert comp["metrics"][m]["exact"] is True
    # Holm over the whole family: 3 comparisons × 6 metrics, minus tests without data.
    assert result["family"]["n_tests"] == sum(
        1 for c in result["comparisons"] for m in c["metrics"].values() if m.get("p_value") is not None
    )
    assert all(
        m["p_holm"] >= m["p_value"] for c in result["comparisons"] for m in c["metrics"].values() if m.get("p_value")
    )


def _items(run: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(x) for x in (run / "items.jsonl").read_text().splitlines()]
    return {r["item_id"]: r for r in rows}


def test_the_cli_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, typer\nfrom dialbgm.cli._experiments import register\napp = typer.Typer()\nregister(app)\n"
        "heavy = [m for m in ('numpy', 'scipy', 'pandas', 'litellm') if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_shipped_offline_demo_is_valid(workspace: Workspace) -> None:
    shutil.copytree(ROOT / "experiments", workspace.root / "experiments")
    exp = load_experiment(workspace, "offline-demo")
    ids = [c.cell_id for c in exp.cells]
    assert exp.baseline == "random" and "random" in ids
    assert {"local__cot=false", "local__cot=true", "embedding__context=summary"} <= set(ids)
    assert exp.cell("local__cot=true").limit == 6
    # Every item in reach of a summary cell has a summary (the sample's last three have none).
    ds = load_dataset(exp.data_path).limited(exp.cell("embedding__context=summary").limit)
    assert all(i.summary for i in ds)


def test_quick_config_hash_matches_the_runs_own(workspace: Workspace, tmp_path: Path) -> None:
    from dialbgm.run._entry import run_eval
    from dialbgm.run._identity import quick_identity

    data = workspace.sample_data
    for judge, over in (
        ("random", {"seed": 3}),
        ("embedding", {"context": "summary"}),
        ("local", {"few_shot": 2, "cot": True}),
        ("openai-compatible", {"api_base": "http://x/v1"}),
    ):
        limit = 3
        if judge in ("random", "embedding"):
            res = run_eval(workspace, judge, data, out_dir=tmp_path / judge, limit=limit, overrides=over)
            assert quick_identity(workspace, judge, data, limit, over).config_hash == res.manifest["config_hash"]
        from dialbgm.config._models import stable_hash
        from dialbgm.run._prepare import prepare, prepared_identity

        prep = prepare(workspace, judge, data, limit=limit, overrides=over)
        assert quick_identity(workspace, judge, data, limit, over).config_hash == stable_hash(
            prepared_identity(workspace, prep, data, limit, over).config
        )
    # A template edit changes the hash, so a finished cell is not reused after it.
    before = quick_identity(workspace, "local", data, 3, {}).config_hash
    tmpl = workspace.prompts_dir / "weighted_criteria" / "system.j2"
    tmpl.write_text(tmpl.read_text() + "\nBe brief.")
    assert quick_identity(workspace, "local", data, 3, {}).config_hash != before


def test_an_interrupted_cell_is_resumed_from_its_journal(workspace: Workspace) -> None:
    import shutil

    with ScriptedOpenAIServer(lambda b, n: reply_for(b)) as server:
        path = write_experiment(workspace, llm_experiment(server.base_url))
        exp = load_experiment(workspace, path)
        assert cli.invoke(app, ["compare", str(path)]).exit_code == 0
        calls = len(server.requests)
        cell = exp.out_dir(workspace) / "llm__cot=false__params.temperature=0.0"
        # As if killed mid-run: the plan and journal are there, the final files are not; and the
        # cache lost its entries, so only the journal can spare the calls.
        for f in ("manifest.json", "metrics.json", "units.jsonl", "items.jsonl"):
            (cell / f).unlink()
        shutil.rmtree(workspace.cache_dir)
        res = cli.invoke(app, ["compare", str(path)])
        assert res.exit_code == 0, res.output
        manifest = json.loads((cell / "manifest.json").read_text())
        assert manifest["counts"]["resumed_from_journal"] == 4
        # The other LLM cell lost its cache but not its folder: it is reused, so nothing is called.
        assert len(server.requests) == calls
