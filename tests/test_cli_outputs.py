"""Output paths, folders, URLs and form values that commands cannot use end as a clear error and
exit 2, never a traceback or a secret shown (review findings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.config._workspace import Workspace


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_cache_export_to_a_folder_or_an_unwritable_place_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    code, out = _run("cache", "export", str(tmp_path))
    assert code == 2 and "is a folder: name the file to write" in out and "Traceback" not in out
    code, out = _run("cache", "export", "/proc/dialbgm-cannot-be-here.jsonl")
    assert code == 2 and "cannot write /proc/dialbgm-cannot-be-here.jsonl" in out
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_cache_export_makes_the_missing_folders_of_its_file(workspace: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "cache.jsonl"
    code, out = _run("cache", "export", str(target))
    assert code == 0, out
    assert target.is_file() and "exported 0 entries" in out


def test_batch_status_names_what_the_folder_is_not(workspace: Workspace, tmp_path: Path) -> None:
    code, out = _run("batch", "status", str(tmp_path / "nope"))
    assert code == 2 and "no such run folder" in out
    code, out = _run("batch", "status", str(tmp_path))
    assert code == 2 and "not a run folder (no plan.json)" in out
    run = tmp_path / "run"
    code, out = _run("eval", "--judge", "random", "--limit", "2", "--out", str(run), "--quiet")
    assert code == 0, out
    code, out = _run("batch", "status", str(run))
    assert code == 2 and "no batches.json (the run sent no batch)" in out


def test_a_secret_given_by_a_dotted_set_is_never_written(workspace: Workspace, tmp_path: Path) -> None:
    secret = "sk-SECRETXYZ1234567890"
    out = tmp_path / "run"
    code, text = _run(
        "eval", "--judge", "random", "--limit", "2", "--out", str(out), "--quiet",
        "--set", f'params.api_key="{secret}"', "--set", 'params.extra_headers.Authorization="Bearer abc123"',
    )  # fmt: skip
    assert code == 0, text
    for f in out.iterdir():
        body = f.read_text(encoding="utf-8", errors="replace")
        assert secret not in body and "abc123" not in body, f.name
    assert '"params.api_key": "<redacted>"' in (out / "manifest.json").read_text()


@pytest.mark.parametrize(
    "url", ["redis://:pw5ecret@127.0.0.1:99999/0", "redis://:pw5ecret@[::1", "http://:pw5ecret@host/0"]
)
def test_a_malformed_cache_url_is_a_clear_error_without_its_password(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DIALBGM_CACHE_URL", url)
    code, out = _run("cache", "stats")
    assert code == 2 and "not a usable Redis URL" in out and "pw5ecret" not in out


def test_a_malformed_postgresql_url_is_a_clear_error_without_its_password(workspace: Workspace) -> None:
    from dialbgm.errors import InputError
    from dialbgm.web import AnnotationStore

    with pytest.raises(InputError) as e:
        AnnotationStore("postgresql://u:pw5ecret@[::1/x")  # opening it connects (and makes the schema)
    assert "not a valid PostgreSQL URL" in str(e.value) and "pw5ecret" not in str(e.value)


@pytest.mark.parametrize("body", ["[]", '"x"', '{"version": 1, "batches": [5]}'])
def test_batch_status_on_a_batches_file_of_the_wrong_shape(workspace: Workspace, tmp_path: Path, body: str) -> None:
    run = tmp_path / "run"
    code, out = _run("eval", "--judge", "random", "--limit", "2", "--out", str(run), "--quiet")
    assert code == 0, out
    (run / "batches.json").write_text(body)
    code, out = _run("batch", "status", str(run))
    assert code == 2 and "not a dialbgm batch file" in out


@pytest.mark.parametrize("value", ["\u2460", "\u0661", "1.0", "-1"])
def test_an_annotation_rank_is_ascii_digits_only(value: str) -> None:
    from dialbgm.web._annotate_forms import FormError, parse_ranking

    with pytest.raises(FormError):
        parse_ranking({"rank-0": value, "rank-1": "2"}, ["a", "b"], ties=False)
    assert parse_ranking({"rank-0": "2", "rank-1": "1"}, ["a", "b"], ties=False).ranks
