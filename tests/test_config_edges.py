"""Values from TOML files, ``--set`` and numeric flags that reach a computation or a path.

Each is refused before anything is called or written, with a ConfigError (exit 2) naming the
file (or flag) and the key; never a traceback, never a silent default.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._config import load_judge, load_provider
from dialbgm.config._experiment import ExperimentError, load_experiment
from dialbgm.config._prices import load_prices
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, TemplateError
from dialbgm.judging._prompts import PromptSet
from dialbgm.run._identity import quick_identity
from dialbgm.run._prepare import prepare
from dialbgm.run._summaries import SummaryTemplate
from tests.conftest import ROOT

cli = CliRunner()


def refused(args: list[str], needle: str) -> str:
    res = cli.invoke(app, args)
    assert res.exit_code == 2, (args, res.output, res.exception)
    assert needle in res.output, (args, res.output)
    return str(res.output)


# ---------------------------------------------------------------- numbers TOML or JSON cannot carry


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rpm", "nan"], "--rpm must be a number > 0"),
        (["--rpm", "inf"], "--rpm must be a number > 0"),
        (["--tpm", "nan"], "--tpm must be a number > 0"),
        (["--tpm", "-1"], "--tpm must be a number > 0"),
        (["--concurrency", "0"], "--concurrency must be a whole number >= 1"),
        (["--limit", "0"], "--limit"),
        (["--limit", "-3"], "--limit"),
        (["--set", "params.temperature=nan"], "params.temperature: must be a finite number"),
        (["--set", "params.temperature=inf"], "params.temperature: must be a finite number"),
        (["--set", "params={temperature = -inf}"], "params.temperature: must be a finite number"),
        (["--set", "params.when=1979-05-27"], "params.when: a TOML date/time cannot be recorded"),
        (["--set", "params.when=07:32:00"], "params.when: a TOML date/time cannot be recorded"),
        (["--set", "params.stop=[1979-05-27T07:32:00Z]"], "params.stop[0]: a TOML date/time"),
    ],
)
def test_non_finite_and_date_values_are_refused_up_front(
    workspace: Workspace, tmp_path: Path, args: list[str], needle: str
) -> None:
    # Before: --rpm nan / inf ran (a NaN token bucket), --set ...=nan reached plan.json (whose
    # writer refuses NaN: a traceback after the folder was made), a date was a TypeError traceback.
    refused(["eval", "-j", "random", "--out", str(tmp_path / "run"), *args], needle)
    assert not (tmp_path / "run").exists()


def test_nan_and_dates_in_a_judge_file_name_the_file_and_key(workspace: Workspace) -> None:
    path = workspace.judges_dir / "local.toml"
    original = path.read_text()
    path.write_text(original.replace("temperature = 0.0", "temperature = nan"))
    with pytest.raises(ConfigError, match=r"local\.toml: params\.temperature: must be a finite number"):
        load_judge(workspace, "local")
    path.write_text(original + "released = 2024-01-01\n")  # inside [params]: sent as-is before
    with pytest.raises(ConfigError, match=r"local\.toml: params\.released: a TOML date/time"):
        load_judge(workspace, "local")


# ---------------------------------------------------------------- provider files


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("concurrency = -3", "concurrency: must be a whole number >= 1"),
        ("concurrency = 0", "concurrency: must be a whole number >= 1"),
        ("timeout = -1", "timeout: must be a number > 0"),
        ("timeout = nan", "timeout: must be a finite number"),
        ("max_attempts = 0", "max_attempts: must be a whole number >= 1"),
        ("max_retry_seconds = -5", "max_retry_seconds: must be a number >= 0"),
        ("rpm = 0", "rpm: must be a number > 0 (leave it out for no limit)"),
        ("tpm = 0", "tpm: must be a number > 0 (leave it out for no limit)"),
        ("rpm = -60", "rpm: must be a number > 0"),
        ("rpm = inf", "rpm: must be a finite number"),
        ("n_ctx = 0", "n_ctx: must be a whole number >= 1"),
        ("n_threads = -2", "n_threads: must be a whole number >= 1"),
        ("startup_timeout = 0", "startup_timeout: must be a number > 0"),
        ("[capabilities]\nmax_audio_bytes = -1", "capabilities.max_audio_bytes: must be a whole number >= 0"),
        ("[capabilities]\nmax_top_logprobs = 0", "capabilities.max_top_logprobs: must be a whole number >= 1"),
    ],
)
def test_provider_files_refuse_nonsense(workspace: Workspace, line: str, needle: str) -> None:
    path = workspace.providers_dir / "bad.toml"
    path.write_text(f'kind = "litellm"\nroute = "openai"\n{line}\n')
    with pytest.raises(ConfigError) as e:
        load_provider(workspace, "bad")
    assert str(path) in str(e.value) and needle in str(e.value)


def test_rpm_zero_in_a_provider_is_refused_on_the_command_line_too(workspace: Workspace) -> None:
    # Before, rpm = 0 read as "unset" in the rate limiter: unlimited.
    (workspace.providers_dir / "random.toml").write_text('kind = "random"\nconcurrency = 1\nrpm = 0\n')
    refused(["eval", "-j", "random"], "rpm: must be a number > 0")
    assert not workspace.results_dir.exists()


# ---------------------------------------------------------------- judge settings


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"orders": 0}, "orders: must be"),
        ({"samples": 0}, "samples: must be >= 1"),
        ({"scale_min": 10, "scale_max": 10}, "scale_min must be below scale_max"),
        ({"scale_min": -5, "scale_max": 5, "score_by": "logprobs"}, "scale_min: score_by = logprobs needs"),
        ({"top_logprobs": 0}, "top_logprobs: must be a whole number >= 1"),
        ({"few_shot": -1}, "few_shot: must be a whole number >= 0"),
        ({"audio_seconds": -1.0}, "audio_seconds: must be a number >= 0"),
        ({"audio_start_s": -0.5}, "audio_start_s: must be a number >= 0"),
        ({"audio_sample_rate": 5}, "audio_sample_rate: must be 0"),
        ({"params.max_tokens": 0}, "params.max_tokens: must be >= 1"),
        ({"params.max_tokens": 1.5}, "params.max_tokens: must be a whole number"),
        ({"params.temperature": -0.1}, "params.temperature: must be >= 0"),
        ({"params.top_p": 0}, "params.top_p: must be in (0, 1]"),
        ({"params.seed": "x"}, "params.seed: must be a whole number"),
    ],
)
def test_judge_numbers_are_range_checked(workspace: Workspace, overrides: dict[str, object], needle: str) -> None:
    # Caption judges took a negative audio window and any params before (they are recorded and hashed).
    with pytest.raises(ConfigError) as e:
        load_judge(workspace, "local", overrides)
    assert str(workspace.judges_dir / "local.toml") in str(e.value) and needle in str(e.value)


def test_top_logprobs_beyond_the_providers_range(workspace: Workspace, sample_path: Path) -> None:
    path = workspace.providers_dir / "openai-compatible.toml"
    path.write_text(path.read_text() + "max_top_logprobs = 5\n")
    over = {"score_by": "logprobs", "top_logprobs": 10, "api_base": "http://127.0.0.1:9"}
    with pytest.raises(ConfigError, match=r"top_logprobs = 10, but provider 'openai-compatible' returns at most 5"):
        prepare(workspace, "openai-compatible", sample_path, overrides=over)
    assert prepare(workspace, "openai-compatible", sample_path, limit=1, overrides={**over, "top_logprobs": 5})


def test_a_limit_below_one_is_refused_by_the_api_too(workspace: Workspace, sample_path: Path) -> None:
    # Before, limit=0 planned an empty run and limit=-1 every item but the last.
    for limit in (0, -1):
        with pytest.raises(ConfigError, match="--limit must be a whole number >= 1"):
            prepare(workspace, "random", sample_path, limit=limit)


# ---------------------------------------------------------------- experiments, prices, cache


def write_experiment(ws: Workspace, text: str) -> Path:
    (ws.root / "experiments").mkdir(exist_ok=True)
    shutil.copytree(ROOT / "prices", ws.root / "prices", dirs_exist_ok=True)
    path = ws.root / "experiments" / "exp.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('[data]\npath = "data/sample.jsonl"\n[judges.local.params]\nwhen = 1979-05-27\n', "judges.local.params.when"),
        ('[data]\npath = "data/sample.jsonl"\n[judges.local.params]\ntemperature = [0.0, nan]\n', "temperature[1]"),
        ('[data]\npath = "data"\n[judges.random]\n', "data.path: "),
        ('name = ".."\n[data]\npath = "data/sample.jsonl"\n[judges.random]\n', "name: must be"),
        ('[data]\npath = "data/sample.jsonl"\n[judges."."]\njudge = "random"\n', "cannot be a folder name"),
        ('[data]\npath = "data/sample.jsonl"\n[judges.x]\njudge = "../judges/random"\n', "judge name"),
    ],
)
def test_experiment_values_that_cannot_be_recorded_or_are_no_folder(
    workspace: Workspace, body: str, needle: str
) -> None:
    # Before: the date and NaN loaded (experiment.json then failed to write or held NaN), a folder
    # as data.path passed (a traceback when hashed), ".." as name or cell id wrote the cells one
    # folder up, a judge path outside judges/ was read.
    path = write_experiment(workspace, body)
    with pytest.raises(ExperimentError) as e:
        load_experiment(workspace, path)
    assert str(path) in str(e.value) and needle in str(e.value)
    res = cli.invoke(app, ["compare", str(path)])
    assert res.exit_code == 2, res.output
    assert not workspace.results_dir.exists()


def test_max_cost_nan_is_refused_not_passed(workspace: Workspace) -> None:
    # NaN compares false with every total: the budget check passed and every cell ran.
    path = write_experiment(workspace, '[data]\npath = "data/sample.jsonl"\nlimit = 2\n[judges.random]\n')
    refused(["compare", str(path), "--max-cost", "nan"], "--max-cost must be a finite number >= 0")
    assert not (workspace.results_dir / "experiments" / "exp").exists()


def test_a_nan_price_is_refused(workspace: Workspace) -> None:
    write_experiment(workspace, "")
    prices = workspace.root / "prices" / "prices.toml"
    prices.write_text(prices.read_text().replace("input = 2.50", "input = nan", 1))
    with pytest.raises(ConfigError, match=r"models\.gpt-4o\.input: must be a finite number"):
        load_prices(workspace)


@pytest.mark.parametrize("age", ["nand", "infd", "1e999h"])
def test_cache_prune_refuses_an_age_that_is_no_number(workspace: Workspace, age: str) -> None:
    res = cli.invoke(app, ["cache", "prune", "--older-than", age])
    assert res.exit_code == 2 and "use a number with d, h, m or s" in res.output


# ---------------------------------------------------------------- names and paths


def test_a_template_path_stays_inside_prompts(workspace: Workspace, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "private-folder-name").mkdir(parents=True)
    up = os.path.relpath(outside / "nope", workspace.prompts_dir)
    # Before: "no template 'nope' in <outside>; known: private-folder-name".
    for template in (up, str(outside), "../judges", "weighted_criteria/../../judges"):
        out = refused(["render", "-i", "s001", "--set", f"template={template}"], "template: must name a folder")
        assert "private-folder-name" not in out
    out = refused(["render", "-i", "s001", "--set", "template=nope"], "no template 'nope'")
    assert "weighted_criteria" in out and "summarize" not in out  # only judge templates are listed
    shutil.rmtree(outside)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["eval", "-j", "../judges/random"], "judge name '../judges/random'"),
        (["eval", "-j", "/etc/passwd"], "judge name '/etc/passwd'"),
        (["eval", "-j", "random", "--set", "provider=../providers/random"], "provider name '../providers/random'"),
        (
            ["eval", "-j", "random", "--set", "context=summary", "--set", "summarizer=../judges/local"],
            "judge name '../judges/local'",
        ),
    ],
)
def test_judge_and_provider_names_are_file_names(workspace: Workspace, args: list[str], needle: str) -> None:
    # Before, "../judges/random" resolved to judges/random.toml and ran.
    refused(args, needle)
    assert not workspace.results_dir.exists()


def test_a_few_shot_pool_that_is_no_file_is_a_config_error(workspace: Workspace, sample_path: Path) -> None:
    judge_file = str(workspace.judges_dir / "local.toml")
    # quick_config is what compare and --resume use: it read the pool with read_bytes (a traceback).
    for pool, what in (("nope.jsonl", "no such file"), ("prompts", "is a folder"), ("", "must name a data file")):
        with pytest.raises(ConfigError) as e:
            quick_identity(workspace, "local", sample_path, None, {"few_shot": 1, "few_shot_pool": pool})
        assert judge_file in str(e.value) and "few_shot_pool" in str(e.value) and what in str(e.value)


# ---------------------------------------------------------------- template folders


def test_a_criteria_section_without_description_is_a_clear_error(workspace: Workspace) -> None:
    path = workspace.prompts_dir / "weighted_criteria" / "criteria.toml"
    text = path.read_text()
    start = text.index("[consistency]")
    path.write_text(text[:start] + '[consistency]\ntitle = "Consistency"\n')
    # Before: KeyError: 'description' from render (exit 1, a traceback).
    out = refused(["render", "-i", "s001"], "consistency.description: required")
    assert str(path) in out
    path.write_text(text[:start] + '[consistency]\ntitle = "Consistency"\ndescription = 3\n')
    with pytest.raises(TemplateError, match=r"consistency\.description: must be a non-empty string"):
        PromptSet(path.parent)
    path.write_text('consistency = "steady"\n' + text[:start])  # a top-level key, before the tables
    with pytest.raises(TemplateError, match="consistency: must be a table"):
        PromptSet(path.parent)


def test_a_template_syntax_error_names_file_and_line_before_any_rendering(workspace: Workspace) -> None:
    folder = workspace.prompts_dir / "weighted_criteria"
    (folder / "user_pointwise.j2").write_text("line one\nline two\n{% for x in %}\n")
    with pytest.raises(TemplateError) as e:
        PromptSet(folder)  # before: only when a pointwise judge rendered, and without the line
    assert f"{folder / 'user_pointwise.j2'}:3: " in str(e.value)


def test_an_undecodable_template_is_a_template_error(workspace: Workspace) -> None:
    folder = workspace.prompts_dir / "weighted_criteria"
    (folder / "system.j2").write_bytes(b"caf\xe9 {{ mode }}\n")
    with pytest.raises(TemplateError, match=r"system\.j2: not UTF-8 text"):
        PromptSet(folder)  # before: UnicodeDecodeError at render
    (folder / "system.j2").write_text("ok")
    (folder / "criteria.toml").write_bytes(b"[relevance]\ntitle = '\xff'\n")
    with pytest.raises(TemplateError, match=r"criteria\.toml: not valid UTF-8"):
        PromptSet(folder)


def test_a_required_template_file_that_is_a_folder_counts_as_missing(workspace: Workspace) -> None:
    folder = workspace.prompts_dir / "weighted_criteria"
    (folder / "system.j2").unlink()
    (folder / "system.j2").mkdir()
    with pytest.raises(TemplateError, match=r"missing system\.j2"):
        PromptSet(folder)


def test_summary_template_errors_name_file_and_line(workspace: Workspace) -> None:
    folder = workspace.prompts_dir / "summarize"
    (folder / "user.j2").write_text("{{ dialogue\n")
    with pytest.raises(TemplateError) as e:
        SummaryTemplate(folder)
    assert f"{folder / 'user.j2'}:1: " in str(e.value)


def test_resume_after_the_data_file_moved_is_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    shutil.copy(ROOT / "data" / "sample.jsonl", data)
    assert cli.invoke(app, ["eval", "-j", "random", "--data", str(data), "--out", str(tmp_path / "r")]).exit_code == 0
    (tmp_path / "r" / "manifest.json").unlink()  # as if interrupted
    data.unlink()
    # Before: FileNotFoundError from hashing the data file for the config check.
    refused(["eval", "--resume", str(tmp_path / "r")], f"{data}: <file>: no such file")
