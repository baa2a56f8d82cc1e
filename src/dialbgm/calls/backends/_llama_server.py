"""The offline default judge's server: llama.cpp's OpenAI-compatible server on loopback.

Started on the first cache miss only (a cached re-run never loads the model), on a free port,
and stopped when the run ends; tethered to the dialbgm process (:mod:`.tethered`), so it dies
with it even on ``kill -9``, and its log has no name on disk. litellm reaches it as
``openai/<alias>`` with its base URL, the same code path as any vLLM, Ollama or llama.cpp
server a user runs.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from dialbgm.calls.backends._packaged import packaged_file
from dialbgm.calls.backends._tethered import Tethered
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
        self.proc: Tethered | None = None
        self.base_url: str | None = None

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
        args = [
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
        self.proc = proc = Tethered("llama_cpp.server", args)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.provider.startup_timeout
        while time.monotonic() < deadline:
            if (code := proc.poll()) is not None:
                tail = proc.tail()
                self.stop()
                raise ProviderError(f"llama.cpp server exited with {code}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        self.base_url = f"{url}/v1"
                        return self.base_url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        tail = proc.tail()
        self.stop()
        raise ProviderError(f"llama.cpp server not ready after {self.provider.startup_timeout:.0f} s:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.proc = None
