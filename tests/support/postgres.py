"""A real PostgreSQL server for a test: initdb into a temporary folder, started as an
unprivileged user (postgres refuses to run as root) on a free port, with its unix socket in that
folder only (no TCP listener), and stopped at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields the server's URL (``postgresql://...``); skipped when the binaries are absent
    (failed instead when ``CI`` is set: there they must be installed)."""
    if not (BIN / "initdb").is_file():
        message = f"PostgreSQL 15 is not installed ({BIN}); apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="dialbgm-pg-"))
    data = folder / "data"
    port = _free_port()
    try:
        if user:
            shutil.chown(folder, user)
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        subprocess.run(
            _as_user([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"], user),
            check=True,
            capture_output=True,
            env=env,
        )
        options = f"-p {port} -k {folder} -c listen_addresses='' -c fsync=on"
        subprocess.run(
            _as_user(
                [str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"], user
            ),
            check=True,
            capture_output=True,
            env=env,
            timeout=60,
        )
        try:
            yield f"postgresql://postgres@/postgres?host={quote(str(folder), safe='')}&port={port}"
        finally:
            subprocess.run(
                _as_user([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user),
                capture_output=True,
                env=env,
                timeout=60,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
