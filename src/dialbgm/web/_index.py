"""One SQLite index per run folder, built once from its files, so pages never load a whole run.

What it keeps per item: its status, metrics, aggregated and human ranks, the flags the item list
filters on (failed, top pick = the human's worst, position-biased), a lower-cased search text of
its dialogue, its content from the data file (when that file is still the one the run read), and
the byte ranges of its rows in ``items.jsonl`` and ``units.jsonl``: an item page reads its own
judgements from the run's files by seeking, never the rest.

Where: ``<index dir>/<sha256 of the run folder's path>.sqlite`` (the index dir is the
workspace's ``cache-view/`` beside ``cache/``), never inside the run folder, so a read-only
results folder is shown as well. Keyed by a signature of the run's files (size, mtime, inode) and
of its data file: when any of them changes, the index is built again. It is written to a temporary
file and renamed into place, so a reader never sees half an index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialbgm.errors import ResultsError
from dialbgm.metrics import METRICS

INDEX_VERSION = 2  # 2: item content carries the annotations
RUN_FILES = ("manifest.json", "metrics.json", "items.jsonl", "units.jsonl")
OPTIONAL_FILES = ("clips.jsonl", "summaries.jsonl")

_SCHEMA = f"""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items(
    pos INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    error TEXT,
    failed INTEGER NOT NULL,
    n_units INTEGER,
    top TEXT,
    top_is_worst INTEGER NOT NULL DEFAULT 0,
    consistency REAL,
    position_biased INTEGER NOT NULL DEFAULT 0,
    {", ".join(f"{m} REAL" for m in METRICS)},
    search TEXT NOT NULL DEFAULT '',
    item_off INTEGER NOT NULL,
    item_len INTEGER NOT NULL,
    content TEXT
);
CREATE TABLE unit_ranges(item_id TEXT NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL);
CREATE INDEX unit_ranges_item ON unit_ranges(item_id);
CREATE TABLE clips(item_id TEXT NOT NULL, candidate TEXT NOT NULL, source TEXT, prepared TEXT,
    PRIMARY KEY (item_id, candidate));
"""


@dataclass(frozen=True)
class RunIndex:
    """An open index of one run folder (a fresh SQLite connection per use: pages run in threads)."""

    run_dir: Path
    db_path: Path

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    def meta(self) -> dict[str, Any]:
        with self.connect() as con:
            return {r["key"]: json.loads(r["value"]) for r in con.execute("SELECT key, value FROM meta")}

    def item_row(self, item_id: str) -> sqlite3.Row | None:
        with self.connect() as con:
            row: sqlite3.Row | None = con.execute("SELECT * FROM items WHERE item_id = ?", (item_id,)).fetchone()
            return row

    def neighbours(self, pos: int) -> tuple[str | None, str | None]:
        """The items before and after the one at ``pos``, in run order."""
        with self.connect() as con:
            before = con.execute("SELECT item_id FROM items WHERE pos < ? ORDER BY pos DESC LIMIT 1", (pos,)).fetchone()
            after = con.execute("SELECT item_id FROM items WHERE pos > ? ORDER BY pos LIMIT 1", (pos,)).fetchone()
        return (before[0] if before else None, after[0] if after else None)

    def item_record(self, row: sqlite3.Row) -> dict[str, Any]:
        """The item's row of ``items.jsonl``, read at its recorded offset."""
        return _read_range(self.run_dir / "items.jsonl", row["item_off"], row["item_len"])[0]

    def units(self, item_id: str) -> list[dict[str, Any]]:
        """Every judgement of the item, from ``units.jsonl``, in the order the run wrote them."""
        with self.connect() as con:
            ranges = con.execute(
                "SELECT off, len FROM unit_ranges WHERE item_id = ? ORDER BY off", (item_id,)
            ).fetchall()
        out: list[dict[str, Any]] = []
        for r in ranges:
            out.extend(
                u for u in _read_range(self.run_dir / "units.jsonl", r["off"], r["len"]) if u["item_id"] == item_id
            )
        return out

    def clip(self, item_id: str, candidate: str) -> sqlite3.Row | None:
        with self.connect() as con:
            row: sqlite3.Row | None = con.execute(
                "SELECT * FROM clips WHERE item_id = ? AND candidate = ?", (item_id, candidate)
            ).fetchone()
            return row

    def tops(self) -> dict[str, tuple[str, ...]]:
        """Item id → the judge's top pick(s), for the scored items (to find flips against another run)."""
        with self.connect() as con:
            rows = con.execute("SELECT item_id, top FROM items WHERE top IS NOT NULL").fetchall()
        return {r["item_id"]: tuple(json.loads(r["top"])) for r in rows}


def _read_range(path: Path, off: int, length: int) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as f:
            f.seek(off)
            data = f.read(length)
    except OSError as e:
        raise ResultsError(f"{path}: cannot be read ({e.strerror or e})") from None
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def signature(run_dir: Path, data_path: Path | None) -> str:
    """What the index depends on: the run's files and its data file, by their stat identity."""
    parts: dict[str, Any] = {"version": INDEX_VERSION, "run": str(run_dir)}
    for name in (*RUN_FILES, *OPTIONAL_FILES):
        parts[name] = _stat(run_dir / name)
    parts["data"] = [str(data_path), _stat(data_path)] if data_path is not None else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _manifest(run_dir: Path) -> dict[str, Any]:
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise ResultsError(f"{run_dir}: not a finished run folder (missing {', '.join(missing)})")
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ResultsError(f"{run_dir / 'manifest.json'}: cannot be read ({e})") from None
    if not isinstance(manifest, dict):
        raise ResultsError(f"{run_dir / 'manifest.json'}: expected a JSON object")
    return manifest


def data_path_of(manifest: dict[str, Any]) -> Path | None:
    path = (manifest.get("dataset") or {}).get("path")
    return Path(path) if path else None


_locks: dict[str, threading.Lock] = {}
_failures: dict[str, tuple[str, BaseException]] = {}
_guard = threading.Lock()


def open_index(run_dir: Path, index_root: Path, *, wait: bool = True) -> RunIndex | None:
    """The index of ``run_dir``, built if there is none or the run's files changed since.

    With ``wait=False``, an index still to be built is built in a background thread and None is
    returned at once (a page then says so and refreshes); a build that failed raises here."""
    run_dir = run_dir.resolve()
    manifest = _manifest(run_dir)
    data_path = data_path_of(manifest)
    sig = signature(run_dir, data_path)
    name = hashlib.sha256(str(run_dir).encode()).hexdigest()[:24]
    db_path = index_root / f"{name}.sqlite"
    index = RunIndex(run_dir, db_path)
    if _signature_of(db_path) == sig:
        return index
    with _guard:
        lock = _locks.setdefault(name, threading.Lock())
        failed = _failures.get(name)
    if failed is not None and failed[0] == sig:
        raise failed[1]
    if wait:
        _build_once(lock, name, sig, index_root, run_dir, manifest, data_path)
        return index
    if not lock.locked():
        threading.Thread(
            target=_build_quietly,
            args=(lock, name, sig, index_root, run_dir, manifest, data_path),
            name=f"dialbgm-index-{name[:8]}",
            daemon=True,
        ).start()
    return None


def _build_quietly(*args: Any) -> None:
    # The failure is kept (_failures) and raised to the next page that asks for this index.
    with contextlib.suppress(Exception):
        _build_once(*args)


def _build_once(
    lock: threading.Lock,
    name: str,
    sig: str,
    index_root: Path,
    run_dir: Path,
    manifest: dict[str, Any],
    data_path: Path | None,
) -> None:
    from dialbgm.web._build import build

    db_path = index_root / f"{name}.sqlite"
    with lock:
        if _signature_of(db_path) == sig:
            return  # built by another request meanwhile
        index_root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=index_root, prefix=f".{name}-", suffix=".tmp")
        os.close(fd)
        try:
            con = sqlite3.connect(tmp)
            try:
                con.executescript(_SCHEMA)
                build(con, run_dir, manifest, data_path)
                con.execute("INSERT INTO meta VALUES ('signature', ?)", (json.dumps(sig),))
                con.commit()
            finally:
                con.close()
            os.replace(tmp, db_path)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, Exception) and not isinstance(e, ResultsError):
                # A row of a shape this version does not know: said plainly, not a server error.
                e = ResultsError(f"{run_dir}: cannot be read by this version of dialbgm ({type(e).__name__}: {e})")
            with _guard:
                _failures[name] = (sig, e)
            raise e from None
        with _guard:
            _failures.pop(name, None)


def _signature_of(db_path: Path) -> str | None:
    if not db_path.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'signature'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None  # damaged or of another layout: built again
    return json.loads(row[0]) if row else None


def jsonl_ranges(path: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Each row of a JSON-lines file with its byte offset and length (``\\n`` separated only)."""
    off = 0
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            n = len(line)
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise ResultsError(f"{path}:{lineno}: not valid JSON ({e})") from None
                if not isinstance(row, dict):
                    raise ResultsError(f"{path}:{lineno}: expected a JSON object per line")
                yield off, n, row
            off += n


def jsonl_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Each non-blank line of a JSON-lines file as bytes, with its byte offset and length."""
    off = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield off, len(line), line
            off += len(line)
