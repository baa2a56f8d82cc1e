"""The offline default judge's server: llama.cpp's OpenAI-compatible server on loopback.

Started on the first cache miss only (a cached re-run never loads the model), on a free port,
and stopped when the run ends. litellm reaches it as ``openai/<alias>`` with its base URL, the
same code path as any vLLM, Ollama or llama.cpp server a user runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from dialbgm.backends.embedding import packaged_file
from dialbgm.config import ProviderConfig
from dialbgm.errors import ConfigError, ProviderError


def gguf_identity(provider: ProviderConfig) -> tuple[Path, dict[str, str]]:
    """The model file and what identifies it in cache keys (from the wheel's RECORD, no hashing)."""
    if not provider.model_package:
        raise ConfigError(f"provider {provider.name!r}: model_package is required for llama_cpp_server")
    path, sha = packaged_file(provider.model_package, ".gguf")
    try:
        runtime = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        runtime = "not-installed"
    return path, {"gguf": path.name, "gguf_sha256": sha, "llama_cpp_python": runtime}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LlamaServer:
    def __init__(self, provider: ProviderConfig, model_path: Path, alias: str) -> None:
        self.provider = provider
        self.model_path = model_path
        self.alias = alias
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url: str | None = None
        # Kept open for the server's lifetime (the child writes to it), closed in stop().
        self._log = tempfile.NamedTemporaryFile(prefix="dialbgm-llama-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> str:
        try:
            import llama_cpp.server  # noqa: F401  (checks the extra is installed, before spawning)
        except ImportError:
            raise ConfigError(
                "the local judge needs llama-cpp-python[server]: install the local extra with  "
                "pip install 'dialbgm[local]'  (in a checkout: make setup)"
            ) from None
        port = _free_port()
        threads = self.provider.n_threads or max(1, os.cpu_count() or 1)
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(self.provider.n_ctx),
            "--n_threads",
            str(threads),
            "--verbose",
            "False",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.provider.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProviderError(f"llama.cpp server exited with {self.proc.returncode}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        self.base_url = f"{url}/v1"
                        return self.base_url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise ProviderError(f"llama.cpp server not ready after {self.provider.startup_timeout:.0f} s:\n{self._tail()}")

    def _tail(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
