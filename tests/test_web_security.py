"""What the viewer refuses to serve or show, over real HTTP to the app under uvicorn.

Requests are written with http.client, so a path reaches the server exactly as typed (no client
normalises ``..`` or decodes ``%2e`` on the way).
"""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dialbgm.config._workspace import Workspace
from dialbgm.run._entry import run_eval
from dialbgm.web import ViewSettings, create_app
from tests.support.browser import served
from tests.support.scripted_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[1]


def get(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    u = urlsplit(base)
    con = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
    try:
        given = {k.lower() for k in headers or {}}
        con.putrequest("GET", path, skip_host="host" in given, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            con.putheader(k, v)
        con.endheaders()
        r = con.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        con.close()


@pytest.fixture
def audio_run(workspace: Workspace, tmp_path: Path) -> tuple[Path, Path]:
    """A run of the offline random judge on three items of the audio sample, whose clips are
    stand-ins (any bytes: the random judge does not open them, the browser tests use real ones)."""
    folder = tmp_path / "data"
    (folder / "clips").mkdir(parents=True)
    lines = (ROOT / "data" / "sample-audio.jsonl").read_text().splitlines()[:3]
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    for line in lines:
        for c in json.loads(line)["candidates"]:
            (folder / c["audio"]).write_bytes(b"RIFF----WAVEfmt " + c["id"].encode())
    res = run_eval(workspace, "random", folder / "data.jsonl", out_dir=workspace.results_dir / "r1")
    return res.out_dir, folder


def test_only_the_datas_own_clips_are_served(audio_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = audio_run
    first = json.loads((data / "data.jsonl").read_text().splitlines()[0])
    item, cand = first["id"], first["candidates"][0]
    (tmp_path / "secret.wav").write_bytes(b"outside the data folder")
    # A clip that is a symlink to a file outside the data's folder is not served.
    evil = data / first["candidates"][1]["audio"]
    evil.unlink()
    evil.symlink_to(tmp_path / "secret.wav")
    # Nor a run folder that is a symlink to a run elsewhere.
    shutil.copytree(run, tmp_path / "elsewhere")
    (run.parent / "linked").symlink_to(tmp_path / "elsewhere")
    app = create_app(ViewSettings(results_dir=run.parent, index_dir=tmp_path / "idx"))
    with served(app) as base:
        status, body, headers = get(base, f"/run/r1/-/audio?item={item}&cand={cand['id']}")
        assert status == 200 and body == (data / cand["audio"]).read_bytes()
        assert headers["content-type"].startswith("audio/")
        # Seeking works: a range request gets a partial answer.
        status, body, _ = get(base, f"/run/r1/-/audio?item={item}&cand={cand['id']}", {"Range": "bytes=4-7"})
        assert status == 206 and body == b"----"
        refused = [
            "/static/../../../../etc/passwd",
            "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/static/..%2f..%2f..%2fetc%2fpasswd",
            "/static/%2fetc%2fpasswd",
            "/run/../../../etc/passwd",
            "/run/%2e%2e/%2e%2e/etc",
            "/run/%2Fetc/-/audio?item=x&cand=passwd",
            "/run//etc/-/audio?item=x&cand=passwd",
            "/run/r1/../../../etc/-/item?id=passwd",
            f"/run/r1/-/audio?item={item}&cand=../../../../etc/passwd",
            f"/run/r1/-/audio?item={item}&cand=%2Fetc%2Fpasswd",
            f"/run/r1/-/audio?item={item}&cand=..%2F..%2F..%2Fetc%2Fpasswd",
            f"/run/r1/-/audio?item=../../etc&cand={cand['id']}",
            f"/run/r1/-/audio?item={item}&cand={cand['id']}%00",
            f"/run/r1/-/audio?item={item}&cand={first['candidates'][1]['id']}",  # the symlink out
            f"/run/r1/-/audio?item={item}",
            "/run/linked",
            f"/run/linked/-/audio?item={item}&cand={cand['id']}",
            "/run/.hidden",
            "/run/r1/-/item?id=nope",
        ]
        for path in refused:
            status, body, _ = get(base, path)
            assert status == 404, path
            assert b"root:" not in body and b"outside the data folder" not in body, path


def test_no_secret_of_a_runs_config_reaches_a_page(
    workspace: Workspace, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-env-key-never-shown-111")
    with ScriptedOpenAIServer() as server:
        host = server.base_url.replace("http://", "http://user:pw-in-url-222@")
        over = {"api_base": host, "params.extra_headers": {"Authorization": "Bearer sk-header-333"}}
        run = run_eval(
            workspace, "openai-compatible", sample_path, out_dir=workspace.results_dir / "s", limit=2, overrides=over
        ).out_dir
    # An older run folder, written before the redaction existed, holds a key in plain text.
    old = workspace.results_dir / "old"
    shutil.copytree(run, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["config"]["judge"]["params"]["api_key"] = "sk-plain-in-old-run-444"
    (old / "manifest.json").write_text(json.dumps(manifest))
    units = [json.loads(x) for x in (old / "units.jsonl").read_text().splitlines()]
    units[0]["error"] = "call to http://u:sk-in-error-555@host/v1?key=sk-query-666 failed"
    (old / "units.jsonl").write_text("".join(json.dumps(u) + "\n" for u in units))
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    secrets = [b"sk-env-key", b"pw-in-url-222", b"sk-header-333", b"sk-plain-in-old", b"sk-in-error", b"sk-query"]
    pages: list[bytes] = []
    with served(app) as base:
        for key in ("s", "old"):
            for path in ("/", f"/run/{key}", f"/run/{key}/-/item?id={units[0]['item_id']}"):
                for _ in range(100):  # the first visit may still be indexing
                    status, body, _ = get(base, path)
                    if b'id="indexing"' not in body:
                        break
                assert status == 200, path
                pages.append(body)
    text = b"\n".join(pages)
    assert b"&lt;redacted&gt;" in text and b"Authorization" in text  # the config is shown, redacted
    assert [s for s in secrets if s in text] == []


def test_an_unreadable_run_is_named_on_the_list_not_a_crash(workspace: Workspace, tmp_path: Path) -> None:
    bad = workspace.results_dir / "broken"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{not json")
    odd = run_eval(workspace, "random", workspace.sample_data, out_dir=workspace.results_dir / "odd", limit=2).out_dir
    (odd / "items.jsonl").write_text('{"no_item_id": true}\n')
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        status, body, _ = get(base, "/")
        assert status == 200 and b"broken" in body and b"cannot be read" in body
        status, body, _ = get(base, "/run/broken")
        assert status == 422 and b"Cannot be shown" in body
        # A finished run whose rows this version cannot read: the page says so (after the
        # background build has failed), it does not fail with a server error.
        for _ in range(200):
            status, body, _ = get(base, "/run/odd")
            if b'id="indexing"' not in body:
                break
        assert status == 422 and b"cannot be read by this version" in body, body[-400:]


def test_a_request_naming_another_host_is_refused(workspace: Workspace, tmp_path: Path) -> None:
    """DNS rebinding: a page of another site whose name resolves to 127.0.0.1 reaches the
    server, but names its own host."""
    from dialbgm.web._app import host_of

    assert [host_of(h) for h in ("127.0.0.1:8000", "[::1]:80", "LocalHost", "evil.example:1")] == [
        "127.0.0.1",
        "::1",
        "localhost",
        "evil.example",
    ]
    app = create_app(ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "idx"))
    with served(app) as base:
        assert get(base, "/")[0] == 200
        port = urlsplit(base).port
        for host in (f"localhost:{port}", f"[::1]:{port}"):
            assert get(base, "/", {"Host": host})[0] == 200, host
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", ""):
            status, body, _ = get(base, "/static/app.css", {"Host": host})
            assert status == 400 and b"only on loopback" in body, host
    anywhere = create_app(
        ViewSettings(results_dir=workspace.results_dir, index_dir=tmp_path / "i", allowed_hosts=("*",))
    )
    with served(anywhere) as base:
        assert get(base, "/", {"Host": "my-server.lan:8000"})[0] == 200
