"""Make tests/data/old_layout_cache.json: the cache entries and outputs of the flat layout.

The fixture was made from commit 63bb219 (the last commit before the package moved into stage
subpackages), with the judges, providers, prompts and data of that commit:

    git -C /work/main worktree add /work/old-layout 63bb219
    cp -r data/clips /work/old-layout/data/      # optional: the clips are rendered if missing
    PYTHONPATH=/work/old-layout/src .venv/bin/python scripts/make_old_layout_fixture.py
    git -C /work/main worktree remove --force /work/old-layout

It runs every judge of tests/support/old_layout.py (listwise with orders, samples and shuffled
labels; pointwise with reasoning; few-shot with random orders and Kemeny; summaries written by a
summarizer judge; log-probability scores; an audio judge) through ``dialbgm eval`` against the
scripted loopback server on a fresh cache, runs each again from the cache (no call), and writes
every cache entry (key → the value exactly as diskcache holds it) and the cached run's outputs
(volatile fields left out). Whichever ``dialbgm`` is first on the path is the one recorded: run
on the current layout (``--out /tmp/x.json``) it must write the same entries and outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import old_layout as ol


def _response_cache() -> Any:
    try:
        from dialbgm.calls import ResponseCache  # the stage layout
    except ImportError:
        from dialbgm.cache import ResponseCache  # type: ignore[no-redef]  # the flat layout
    return ResponseCache


def _write_clips() -> Any:
    try:
        from dialbgm.sample_music import PIECES, write_clips  # the flat layout
    except ImportError:
        from dialbgm_tools.sample_music import PIECES, write_clips  # type: ignore[no-redef]
    return PIECES, write_clips


def dump_cache(directory: Path) -> dict[str, Any]:
    cache = _response_cache()(directory)
    try:
        return {key: cache.store.get(key) for key in sorted(cache.store.iterkeys())}
    finally:
        cache.close()


def make(out: Path) -> None:
    import dialbgm
    from dialbgm.cli import app

    root = Path(dialbgm.__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    with ol.fixed_home() as home:
        fixture = _fill_and_replay(app, root, home)
    fixture = {
        "made_by": "scripts/make_old_layout_fixture.py",
        "dialbgm": str(Path(dialbgm.__file__).resolve().relative_to(root)),
        "commit": commit.strip() or None,
        **fixture,
    }
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{out}: {len(fixture['entries'])} entries from {fixture['requests']} calls, commit {fixture['commit']}")


def _fill_and_replay(app: Any, root: Path, home: Path) -> dict[str, Any]:
    os.environ["DIALBGM_HOME"] = str(home)
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    for var in ol.UNSET:
        os.environ.pop(var, None)
    data = ol.make_home(home, root)
    pieces, write_clips = _write_clips()
    wanted = set(ol.clip_ids(data))
    write_clips(data / "clips", [p for p in pieces if p.id in wanted])
    outputs = {}
    with ol.fixed_server() as server:
        for scenario in ol.SCENARIOS:
            ol.run(scenario, app, data, home / "fill" / scenario.name)
            calls = len(server.requests)
            ol.run(scenario, app, data, home / "cached" / scenario.name)
            assert len(server.requests) == calls, f"{scenario.name}: the cached re-run made calls"
            outputs[scenario.name] = ol.outputs(home / "cached" / scenario.name)
        requests = len(server.requests)
    return {
        "requests": requests,
        "clips": ol.clip_hashes(data),
        "volatile": ol.VOLATILE,
        "entries": dump_cache(home / "cache"),
        "outputs": outputs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ol.FIXTURE)
    make(parser.parse_args().out)


if __name__ == "__main__":
    main()
