"""The annotation server's security, against a real server process: tokens, CSRF, clips, escaping."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dialbgm.web import AnnotationStore
from tests.support.campaigns import Server, csrf_of, item_of, open_page, rank_form, start_server, write_campaign

RANKS = {"party": 1, "piano": 2, "drums": 3}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("campaign")
    write_campaign(folder)
    (folder / "secret.txt").write_text("not a clip")
    s = start_server(folder)
    s.folder = folder  # type: ignore[attr-defined]
    yield s
    s.stop()


def _raw_get(base: str, path: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _post(client: httpx.Client, url: str, form: dict[str, str], origin: str | None) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    return client.post(url, data=form, headers=headers, follow_redirects=False)


def test_missing_or_wrong_token_is_403(server: Server) -> None:
    with httpx.Client() as c:
        for path in ("/", "/a", "/a/", "/a/not-a-token", "/a/not-a-token/item/0", "/a/x/clip/0/0", "/a/x/done"):
            r = c.get(server.base + path)
            assert r.status_code == 403, path
        token = server.links["alice"].rsplit("/", 1)[1]
        r = c.get(f"{server.base}/a/{token[:-1]}/item/0")
        assert r.status_code == 403
        r = c.post(f"{server.base}/a/wrong/item/0", data={"rank-0": "1"}, headers={"Origin": server.base})
        assert r.status_code == 403


def test_post_needs_session_csrf_and_origin(server: Server) -> None:
    folder: Path = server.folder  # type: ignore[attr-defined]
    store = AnnotationStore(str(folder / "annotations" / "demo.sqlite"))
    with httpx.Client() as c:
        url, html = open_page(c, server.links["bob"])
        form = rank_form(html, RANKS)
        # A page of another origin (the browser says so in Origin), no Origin at all, or another's form.
        assert _post(c, url, form, "http://evil.example").status_code == 403
        assert _post(c, url, form, None).status_code == 403
        assert _post(c, url, {**form, "csrf": "0" * 64}, server.base).status_code == 403
        assert _post(c, url, {k: v for k, v in form.items() if k != "csrf"}, server.base).status_code == 403
        with httpx.Client() as other:  # the same form from a browser without bob's session cookie
            assert _post(other, url, form, server.base).status_code == 403
        assert store.submissions("demo", "bob") == []
        r = _post(c, url, form, server.base)
        assert r.status_code == 303, r.text
        assert len(store.submissions("demo", "bob")) == 1


def test_a_token_reaches_only_its_own_submissions(server: Server) -> None:
    folder: Path = server.folder  # type: ignore[attr-defined]
    store = AnnotationStore(str(folder / "annotations" / "demo.sqlite"))
    with httpx.Client() as alice, httpx.Client() as carol:
        a_url, a_html = open_page(alice, server.links["alice"])
        assert _post(alice, a_url, rank_form(a_html, RANKS), server.base).status_code == 303
        before = store.submissions("demo", "alice")
        # Another annotator's session and CSRF token do not work on alice's page.
        _b_url, b_html = open_page(carol, server.links["bob"])
        b_csrf = csrf_of(b_html)
        a_page = a_url.replace(server.links["alice"].rsplit("/", 1)[1], server.links["bob"].rsplit("/", 1)[1])
        forged = rank_form(a_html, {"party": 3, "piano": 2, "drums": 1}, csrf=b_csrf)
        assert _post(carol, a_url, forged, server.base).status_code == 403
        assert store.submissions("demo", "alice") == before
        # With bob's link, the same page number is bob's own page: alice's ranks are not shown there.
        r = carol.get(a_page)
        assert r.status_code == 200 and '<span class="who">bob</span>' in r.text
        assert "alice" not in r.text
        # Alice's revisited page shows her ranks (her own submission, readable by her token only).
        again = alice.get(a_url)
        assert "Submit again" in again.text
        assert item_of(again.text) == before[0].item


def test_only_the_campaigns_clips_can_be_fetched(server: Server) -> None:
    token = server.links["alice"].rsplit("/", 1)[1]
    with httpx.Client() as c:
        r = c.get(f"{server.base}/a/{token}/clip/0/0")
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
        assert r.headers["content-type"].startswith("audio/")
        for path in (
            f"/a/{token}/clip/0/9",
            f"/a/{token}/clip/99/0",
            f"/a/{token}/clip/0/-1",
            f"/a/{token}/clip/../../secret.txt",
            f"/a/{token}/clip/0/%2e%2e%2fsecret.txt",
            "/static/annotate/../../../secret.txt",
            "/static/annotate/%2e%2e%2f%2e%2e%2f_annostore.py",
            "/clips/party.wav",
            "/secret.txt",
        ):
            # http.client sends the path as written (httpx would resolve the dots first).
            status, body = _raw_get(server.base, path)
            assert status == 404, (path, status)
            assert b"not a clip" not in body


def test_every_text_is_escaped(server: Server) -> None:
    with httpx.Client() as c:
        _, html = open_page(c, server.links["alice"])
        # The data holds markup in dialogue and captions: shown as text, never as tags.
        assert "<i>for</i>" not in html and "&lt;i&gt;for&lt;/i&gt;" in html
        assert c.get(server.links["alice"] + "/done").status_code == 200
        assert "<b>and</b>" not in "".join(c.get(f"{server.links['alice']}/item/{n}").text for n in range(4))
        assert "default-src 'self'" in c.get(server.links["alice"] + "/item/0").headers["content-security-policy"]


def test_odd_posts_are_refused_without_a_crash(server: Server) -> None:
    with httpx.Client() as c:
        url, html = open_page(c, server.links["alice"])
        form = rank_form(html, RANKS)
        r = _post(c, url, {**form, "csrf": "é" * 64}, server.base)
        assert r.status_code == 403
        r = c.post(url, content=b"a=" + b"x" * 200_000, headers={"Origin": server.base})
        assert r.status_code == 413
        r = c.post(url, content=b"\xff\xfe", headers={"Origin": server.base})
        assert r.status_code == 400
        assert c.get(server.base + "/").status_code == 403, "the server still answers"
