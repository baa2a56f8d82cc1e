"""What the server refuses in a submission, against a real server: a tie where none is allowed,
a rank out of range, and an audio item sent before its clips could have been heard."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dialbgm.cli import app
from dialbgm.web import AnnotationStore
from tests.support.campaigns import open_page, rank_form, start_server, write_campaign


def test_refused_submissions_store_nothing(tmp_path: Path) -> None:
    write_campaign(tmp_path, gold=False, min_listen_seconds=30)
    server = start_server(tmp_path)
    store = AnnotationStore(str(tmp_path / "annotations" / "demo.sqlite"))
    try:
        with httpx.Client() as c:
            url, html = open_page(c, server.links["alice"])
            assert 'data-min-listen="30.0"' in html
            cases = [
                ({"party": 1, "piano": 1, "drums": 3}, "allows no ties"),
                ({"party": 1, "piano": 2, "drums": 4}, "a rank from 1 to 3"),
                ({"party": 1, "piano": 2, "drums": 3}, "listen to the clips first"),
            ]
            for ranks, message in cases:
                r = c.post(url, data=rank_form(html, ranks), headers={"Origin": server.base})
                assert r.status_code == 422 and message in r.text, (ranks, r.status_code)
            assert store.submissions("demo") == []
    finally:
        server.stop()


def test_ties_given_as_numbers_become_competition_ranks(tmp_path: Path) -> None:
    write_campaign(tmp_path, gold=False, ties=True)
    server = start_server(tmp_path)
    store = AnnotationStore(str(tmp_path / "annotations" / "demo.sqlite"))
    try:
        with httpx.Client() as c:
            url, html = open_page(c, server.links["bob"])
            r = c.post(url, data=rank_form(html, {"party": 2, "piano": 1, "drums": 1}), headers={"Origin": server.base})
            assert r.status_code == 303
        [sub] = store.submissions("demo", "bob")
        assert sorted((r, cid.split("-")[1]) for cid, r in sub.ranks.items()) == [
            (1, "drums"),
            (1, "piano"),
            (3, "party"),
        ]
    finally:
        server.stop()


def test_a_lost_link_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_campaign(tmp_path, gold=False)
    server = start_server(tmp_path)
    old = server.links["alice"]
    try:
        monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(app, ["annotate", "link", "demo", "alice", "--base", server.base])
        assert result.exit_code == 0, result.output
        new = result.output.strip().split(": ", 1)[1]
        with httpx.Client() as c:
            assert c.get(old).status_code == 403
            assert c.get(new, follow_redirects=True).status_code == 200
        assert CliRunner().invoke(app, ["annotate", "link", "demo", "mallory"]).exit_code == 2
    finally:
        server.stop()


def test_captions_hidden_by_the_campaign(tmp_path: Path) -> None:
    write_campaign(tmp_path, gold=False, captions=False)
    server = start_server(tmp_path)
    try:
        with httpx.Client() as c:
            _, html = open_page(c, server.links["alice"])
        assert 'class="caption"' not in html and "party music" not in html
        assert html.count("<audio ") == 3, "the clips are still there to be heard"
    finally:
        server.stop()
