"""``dialbgm view`` as a user starts it: loopback, a free port printed as a link, Ctrl-C stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dialbgm.cli._app import app
from dialbgm.web import check_host

runner = CliRunner()


def test_view_listens_on_loopback_prints_its_link_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    env = {**os.environ, "DIALBGM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialbgm", "view", str(tmp_path / "results")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        m = re.search(r"open (http://127\.0\.0\.1:(\d+)/)", lines[1])
        assert m, lines
        assert int(m.group(2)) > 0
        with urllib.request.urlopen(m.group(1), timeout=10) as r:
            body = r.read().decode()
            assert r.status == 200 and "No run folder here yet" in body
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout.read().strip() == "dialbgm view: stopped"
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_host_other_than_loopback_needs_allow_remote_and_then_warns(tmp_path: Path) -> None:
    res = runner.invoke(app, ["view", str(tmp_path), "--host", "0.0.0.0"])
    assert res.exit_code == 2
    assert "--allow-remote" in res.output and "not a loopback address" in res.output
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert check_host(host, allow_remote=False) is None
    for host in ("0.0.0.0", "192.168.1.4", "example.org", "::"):
        warning = check_host(host, allow_remote=True)
        assert warning is not None and "not on loopback" in warning


def test_view_of_a_folder_that_is_none_fails_cleanly(tmp_path: Path) -> None:
    res = runner.invoke(app, ["view", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a folder" in res.output


def test_without_the_web_extra_view_names_the_pip_install(tmp_path: Path) -> None:
    # Stands in for an environment without starlette: the import fails as it would there.
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from dialbgm.cli import main\n"
        f"sys.argv = ['dialbgm', 'view', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == 2, res.stderr
    assert "needs the 'web' extra" in res.stderr and "pip install 'dialbgm[web]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_the_index_goes_beside_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialbgm.web import ViewSettings

    monkeypatch.setenv("DIALBGM_CACHE_DIR", str(tmp_path / "mycache"))
    assert ViewSettings(results_dir=tmp_path).index_root() == tmp_path / "mycache-view"
    assert (tmp_path / "mycache-view").is_dir()


def test_view_of_one_run_folder_opens_at_that_run(workspace: Any, tmp_path: Path) -> None:
    from dialbgm.run._entry import run_eval

    run = run_eval(workspace, "random", workspace.sample_data, out_dir=tmp_path / "results" / "my run", limit=2).out_dir
    env = {**os.environ, "DIALBGM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialbgm", "view", str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"dialbgm view: {run.parent}"
        m = re.search(r"open (http://\S+/run/my%20run) ", proc.stdout.readline())
        assert m
        with urllib.request.urlopen(m.group(1), timeout=20) as r:
            assert r.status == 200 and 'id="metrics"' in r.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
