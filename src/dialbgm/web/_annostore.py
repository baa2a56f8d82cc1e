"""Where a campaign's submissions live: an embedded SQLite database in the workspace (WAL, every
submission committed at once), or a PostgreSQL server (``--db postgresql://...``) when several
processes serve one campaign. One SQL schema for both, with a version in ``meta``.

A token is stored only as its sha256: it is shown once, when it is made, and a copy of the
database does not let anyone act as an annotator.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.errors import ConfigError, InputError

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS campaigns (name TEXT PRIMARY KEY, data_path TEXT NOT NULL,"
    " data_sha256 TEXT NOT NULL, secret TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS annotators (campaign TEXT NOT NULL, name TEXT NOT NULL,"
    " token_sha256 TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (campaign, name))",
    "CREATE TABLE IF NOT EXISTS opened (campaign TEXT NOT NULL, annotator TEXT NOT NULL, kind TEXT NOT NULL,"
    " item TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, PRIMARY KEY (campaign, annotator, kind, item))",
    "CREATE TABLE IF NOT EXISTS submissions (campaign TEXT NOT NULL, annotator TEXT NOT NULL,"
    " kind TEXT NOT NULL, item TEXT NOT NULL, position INTEGER NOT NULL, ranks TEXT NOT NULL,"
    " seconds DOUBLE PRECISION NOT NULL, listened TEXT NOT NULL, submitted DOUBLE PRECISION NOT NULL,"
    " revisions INTEGER NOT NULL, PRIMARY KEY (campaign, annotator, kind, item))",
)


@dataclass(frozen=True)
class Submission:
    annotator: str
    kind: str
    """``item`` (of the campaign's data) or ``gold``."""
    item: str
    position: int
    ranks: dict[str, int]
    """Candidate id → competition rank."""
    seconds: float
    """From the item's page being served to its submission (the last visit's)."""
    listened: dict[str, float]
    """Candidate id → seconds of its clip played (audio items)."""
    submitted: float
    revisions: int
    """How many times it was submitted (1: once; an annotator may go back and change it)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_db(root: Path, campaign: str) -> Path:
    return root / "annotations" / f"{campaign}.sqlite"


class AnnotationStore:
    """One connection per operation (the web server calls from worker threads and several
    processes may share the database); each write is its own committed transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ConfigError("--db postgresql://... needs psycopg: pip install 'dialbgm[postgres]'") from None
        elif "://" in url and not url.startswith("sqlite:///"):
            raise ConfigError(
                f"--db: a postgresql:// URL or an SQLite file (sqlite:///PATH or a path), got {url.split('://')[0]}://..."
            )
        else:
            path = Path(url.removeprefix("sqlite:///"))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"cannot create the folder of the campaign database {path}: {e}") from None
            self.path = path
        self._init()

    @classmethod
    def open(cls, db: str | None, root: Path, campaign: str) -> AnnotationStore:
        return cls(db if db else str(default_db(root, campaign)))

    def describe(self) -> str:
        if self.postgres:
            # The URL may carry a password: name the server only.
            from urllib.parse import urlsplit

            u = urlsplit(self.url)
            return f"PostgreSQL {u.hostname or 'local socket'}{u.path}"
        return f"SQLite {self.path}"

    # ------------------------------------------------------------------ connections

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """A cursor inside one transaction, committed when the block ends without an error."""
        if self.postgres:
            import psycopg

            try:
                conn = psycopg.connect(self.url, connect_timeout=10)
            except psycopg.OperationalError as e:
                raise InputError(f"{self.describe()}: cannot connect ({str(e).strip()})") from None
            except (psycopg.ProgrammingError, ValueError):  # a malformed URL: its text may hold the password
                raise InputError("--db: not a valid PostgreSQL URL (postgresql://user@host:port/dbname)") from None
            with conn, conn.cursor() as pcur:
                yield pcur
            return
        lite = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            # FULL: a commit survives a power cut too, not only the process being killed.
            lite.execute("PRAGMA synchronous=FULL")
            lite.execute("BEGIN IMMEDIATE")
            cur = lite.cursor()
            try:
                yield cur
            except BaseException:
                lite.execute("ROLLBACK")
                raise
            lite.execute("COMMIT")
        finally:
            lite.close()

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._tx() as cur:
            cur.execute(self._q(sql), tuple(args))
            return list(cur.fetchall()) if cur.description else []

    def _init(self) -> None:
        if not self.postgres:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as e:
                raise InputError(f"{self.path}: not a campaign database ({e})") from None
            finally:
                conn.close()
        with self._tx() as cur:
            if self.postgres:
                # Two processes starting at once must not both create the tables.
                cur.execute("SELECT pg_advisory_xact_lock(7140514)")
            for stmt in _SCHEMA:
                cur.execute(stmt)
            cur.execute(
                self._q("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"),
                ("schema_version", str(SCHEMA_VERSION)),
            )
            cur.execute(self._q("SELECT value FROM meta WHERE key = ?"), ("schema_version",))
            found = cur.fetchone()[0]
        if found != str(SCHEMA_VERSION):
            raise InputError(
                f"{self.describe()}: campaign database schema version {found}, this dialbgm reads {SCHEMA_VERSION}"
            )

    # ------------------------------------------------------------------ campaigns and annotators

    def ensure_campaign(self, name: str, data_path: Path, data_sha256: str) -> None:
        """Record the campaign's data on first use; refuse data that changed since (every
        annotator's order and every stored rank is of that file)."""
        self._run(
            "INSERT INTO campaigns (name, data_path, data_sha256, secret, created) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (name, str(data_path.resolve()), data_sha256, secrets.token_hex(32), time.time()),
        )
        rows = self._run("SELECT data_path, data_sha256 FROM campaigns WHERE name = ?", (name,))
        if rows[0][1] != data_sha256:
            raise InputError(
                f"campaign {name!r} was started on {rows[0][0]} (sha256 {rows[0][1][:12]}...), and "
                f"{data_path} differs: its annotators' orders and ranks are of that file. "
                "Start a new campaign (another name) for new data."
            )

    def campaign_data(self, name: str) -> Path | None:
        rows = self._run("SELECT data_path FROM campaigns WHERE name = ?", (name,))
        return Path(rows[0][0]) if rows else None

    def secret(self, name: str) -> bytes:
        """The campaign's key for CSRF tokens, shared by every process serving it."""
        rows = self._run("SELECT secret FROM campaigns WHERE name = ?", (name,))
        return bytes.fromhex(rows[0][0])

    def issue_tokens(self, name: str, annotators: Sequence[str]) -> dict[str, str]:
        """A new token for each annotator who has none yet (returned once, never stored in clear)."""
        made: dict[str, str] = {}
        for a in annotators:
            token = secrets.token_urlsafe(24)
            with self._tx() as cur:
                cur.execute(
                    self._q(
                        "INSERT INTO annotators (campaign, name, token_sha256, created) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (campaign, name) DO NOTHING"
                    ),
                    (name, a, token_hash(token), time.time()),
                )
                if cur.rowcount == 1:
                    made[a] = token
        return made

    def replace_token(self, name: str, annotator: str) -> str:
        """A new token for ``annotator`` (a lost link): the old one stops working at once."""
        token = secrets.token_urlsafe(24)
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO annotators (campaign, name, token_sha256, created) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (campaign, name) DO UPDATE SET token_sha256 = excluded.token_sha256,"
                    " created = excluded.created"
                ),
                (name, annotator, token_hash(token), time.time()),
            )
        return token

    def annotator_for(self, name: str, token: str) -> str | None:
        rows = self._run(
            "SELECT name FROM annotators WHERE campaign = ? AND token_sha256 = ?", (name, token_hash(token))
        )
        return rows[0][0] if rows else None

    def annotators(self, name: str) -> list[str]:
        return [r[0] for r in self._run("SELECT name FROM annotators WHERE campaign = ? ORDER BY name", (name,))]

    # ------------------------------------------------------------------ work

    def record_open(self, name: str, annotator: str, kind: str, item: str) -> None:
        self._run(
            "INSERT INTO opened (campaign, annotator, kind, item, at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (campaign, annotator, kind, item) DO UPDATE SET at = excluded.at",
            (name, annotator, kind, item, time.time()),
        )

    def opened_at(self, name: str, annotator: str, kind: str, item: str) -> float | None:
        rows = self._run(
            "SELECT at FROM opened WHERE campaign = ? AND annotator = ? AND kind = ? AND item = ?",
            (name, annotator, kind, item),
        )
        return float(rows[0][0]) if rows else None

    def submit(
        self,
        name: str,
        annotator: str,
        kind: str,
        item: str,
        position: int,
        ranks: dict[str, int],
        listened: dict[str, float],
    ) -> Submission:
        now = time.time()
        # One transaction: the time on the page and the submission are read and written together.
        with self._tx() as cur:
            cur.execute(
                self._q("SELECT at FROM opened WHERE campaign = ? AND annotator = ? AND kind = ? AND item = ?"),
                (name, annotator, kind, item),
            )
            row = cur.fetchone()
            seconds = max(0.0, now - float(row[0])) if row else 0.0
            cur.execute(
                self._q(
                    "INSERT INTO submissions (campaign, annotator, kind, item, position, ranks, seconds, listened,"
                    " submitted, revisions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
                    " ON CONFLICT (campaign, annotator, kind, item) DO UPDATE SET ranks = excluded.ranks,"
                    " seconds = excluded.seconds, listened = excluded.listened, submitted = excluded.submitted,"
                    " revisions = submissions.revisions + 1"
                ),
                (name, annotator, kind, item, position, json.dumps(ranks), seconds, json.dumps(listened), now),
            )
        return Submission(annotator, kind, item, position, ranks, seconds, listened, now, 1)

    def submissions(self, name: str, annotator: str | None = None) -> list[Submission]:
        sql = (
            "SELECT annotator, kind, item, position, ranks, seconds, listened, submitted, revisions"
            " FROM submissions WHERE campaign = ?"
        )
        args: list[Any] = [name]
        if annotator is not None:
            sql += " AND annotator = ?"
            args.append(annotator)
        rows = self._run(sql + " ORDER BY annotator, position", args)
        return [
            Submission(
                r[0], r[1], r[2], int(r[3]), json.loads(r[4]), float(r[5]), json.loads(r[6]), float(r[7]), int(r[8])
            )
            for r in rows
        ]
