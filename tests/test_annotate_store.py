"""The campaign store: durable SQLite (a killed server loses nothing submitted) and the same
schema on a real PostgreSQL server, served by two processes at once."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dialbgm.web import SCHEMA_VERSION, AnnotationStore
from tests.support.campaigns import item_of, open_page, rank_form, start_server, write_campaign
from tests.support.postgres import postgres_server

RANKS = {"party": 1, "piano": 2, "drums": 3}


def _submit(base: str, link: str, client: httpx.Client, ranks: dict[str, int]) -> str:
    url, html = open_page(client, link)
    r = client.post(url, data=rank_form(html, ranks), headers={"Origin": base}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    return item_of(html)


def test_kill_9_loses_nothing_submitted(tmp_path: Path) -> None:
    write_campaign(tmp_path, gold=False)
    server = start_server(tmp_path)
    done = []
    try:
        with httpx.Client() as c:
            for ranks in (RANKS, {"party": 3, "piano": 1, "drums": 2}):
                done.append((_submit(server.base, server.links["alice"], c, ranks), ranks))
        # No goodbye: the process gets no chance to flush or close anything.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
    finally:
        server.stop()
    db = tmp_path / "annotations" / "demo.sqlite"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    subs = AnnotationStore(str(db)).submissions("demo", "alice")
    assert [(s.item, {cid.split("-")[1]: r for cid, r in s.ranks.items()}) for s in subs] == done
    assert all(s.seconds >= 0 and s.revisions == 1 for s in subs)
    # Restarted, the server sends alice on to her third item (she resumes where she was).
    again = start_server(tmp_path)
    try:
        assert again.links == {}, "tokens are made once; a restart shows no new link"
        assert "links made earlier (not shown again): alice, bob" in "".join(again.output)
        with httpx.Client() as c:
            _, html = open_page(c, server.links["alice"].replace(server.base, again.base))
        assert "item 3 of 3" in html
    finally:
        again.stop()


def test_schema_version_is_checked(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    store = AnnotationStore(str(db))
    store.ensure_campaign("c", tmp_path / "data.jsonl", "ab" * 32)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="schema version 99"):
        AnnotationStore(str(db))


def test_changed_data_is_refused(tmp_path: Path) -> None:
    store = AnnotationStore(str(tmp_path / "x.sqlite"))
    store.ensure_campaign("c", tmp_path / "data.jsonl", "ab" * 32)
    store.ensure_campaign("c", tmp_path / "data.jsonl", "ab" * 32)
    with pytest.raises(Exception, match="differs"):
        store.ensure_campaign("c", tmp_path / "data.jsonl", "cd" * 32)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_postgres_store_round_trip(pg_url: str) -> None:
    store = AnnotationStore(pg_url)
    store.ensure_campaign("pg", Path("/x/data.jsonl"), "ab" * 32)
    tokens = store.issue_tokens("pg", ["ann-1", "ann-2"])
    assert set(tokens) == {"ann-1", "ann-2"}
    assert store.issue_tokens("pg", ["ann-1"]) == {}, "a second process does not make a second token"
    assert store.annotator_for("pg", tokens["ann-2"]) == "ann-2"
    assert store.annotator_for("pg", "nope") is None
    store.record_open("pg", "ann-1", "item", "d1")
    store.submit("pg", "ann-1", "item", "d1", 0, {"a": 1, "b": 2}, {"a": 3.5})
    store.submit("pg", "ann-1", "item", "d1", 0, {"a": 2, "b": 1}, {"a": 4.0})
    [sub] = store.submissions("pg")
    assert (sub.ranks, sub.listened, sub.revisions) == ({"a": 2, "b": 1}, {"a": 4.0}, 2)
    # The same schema and version as SQLite's.
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


def test_two_server_processes_share_one_postgres_campaign(tmp_path: Path, pg_url: str) -> None:
    write_campaign(tmp_path, gold=False)
    one = start_server(tmp_path, "--db", pg_url)
    two = None
    try:
        two = start_server(tmp_path, "--db", pg_url)
        assert two.links == {} and set(one.links) == {"alice", "bob"}
        token = one.links["alice"].rsplit("/", 1)[1]
        with httpx.Client() as c:
            first = _submit(one.base, one.links["alice"], c, RANKS)
        # The other process sends alice on from where the first one left her, and accepts her
        # submission (the CSRF key is the campaign's, shared through the database).
        with httpx.Client() as c:
            second = _submit(two.base, f"{two.base}/a/{token}", c, {"party": 2, "piano": 1, "drums": 3})
        assert first != second
        subs = AnnotationStore(pg_url).submissions("demo", "alice")
        assert [s.item for s in subs] == [first, second]
    finally:
        one.stop()
        if two:
            two.stop()


def test_bad_db_urls_exit_2_without_showing_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from dialbgm.cli import app

    write_campaign(tmp_path, gold=False)
    monkeypatch.setenv("DIALBGM_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["annotate", "status", "demo", "--db", "mysql://u:pw@host/db"])
    assert r.exit_code == 2 and "postgresql://" in r.output
    # Nothing listens on this socket folder: a clear error, exit 2, and the password is not echoed.
    url = f"postgresql://u:hunter2@/db?host={tmp_path}&port=1"
    r = runner.invoke(app, ["annotate", "status", "demo", "--db", url])
    assert r.exit_code == 2 and "cannot connect" in r.output, r.output
    assert "hunter2" not in r.output
