"""A run's identity: the one place that says what a run's results depend on.

Every decision of the form "is this finished or recorded thing still valid?" goes through
:func:`run_identity`: ``eval`` records it, ``--resume`` refuses a run whose ``config_hash``
changed, and ``compare`` reuses a finished cell only when its ``results_hash`` is unchanged.

The identity has three parts:

- ``config`` (hashed into ``config_hash``): what the requests depend on — the judge after
  overrides, every provider setting that can change an answer, the data file's sha256 and the
  limit, every file the judge's template folder lets a render read (``{% include %}``,
  ``{% import %}``, ``{% extends %}``), the few-shot pool, the summarizer's whole effective
  config (judge, provider, template tree), the captioner's likewise (a retrieval judge with
  ``query = "music_caption"``), the clips sent and the parser version. A resumed run must have
  exactly this again.
- ``model``: what identifies the models behind the judge, the summarizer and the captioner
  beyond their names (the GGUF's sha256 and the llama.cpp version, the embedding model's files,
  a CLAP judge's weights folder), as each backend puts it into every cache key.
- ``scoring``: the code that turns replies into numbers (dialbgm's version, the parser version
  and a hash of the parsing, aggregation and metrics modules).

``model`` and ``scoring`` are not in ``config_hash``: a resumed run re-reads every reply by its
cache key (which holds the model identity) and scores everything with the code that finishes
it, so neither can mix two setups there. A finished cell, however, holds numbers made by the
code and models of its day, so ``compare`` reuses it only when all three parts agree, and
otherwise runs it again from the cache (a new dialbgm version re-scores cached replies without
a call).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.config import (
    CAPABILITIES_RECORDED_WHEN_SET,
    CARRIED_OUT,
    JudgeConfig,
    ProviderConfig,
    Workspace,
    few_shot_pool_path,
    load_judge,
    load_provider,
    stable_hash,
)
from dialbgm.errors import ConfigError, DataError, Problem
from dialbgm.judging import PARSER_VERSION

if TYPE_CHECKING:
    from dialbgm.data import Item, PreparedClip

# Settings that change how fast or how patiently a provider is called, never what it answers:
# left out of the config hash, so changing them neither blocks --resume nor re-runs a cell.
_THROUGHPUT = {
    "concurrency",
    "rpm",
    "tpm",
    "timeout",
    "max_attempts",
    "max_retry_seconds",
    "startup_timeout",
    "api_key_env",
    "api_key_required",
    "api_base_env",
    "batch_max_lines",
}

SCORING_MODULES = (
    "dialbgm.judging._parse",
    "dialbgm.judging._logprobs",
    "dialbgm.metrics._aggregate",
    "dialbgm.metrics._agreement",
    "dialbgm.metrics._bias",
    "dialbgm.metrics._ceiling",
    "dialbgm.metrics._concordance",
    "dialbgm.metrics._exact",
    "dialbgm.metrics._methods",
    "dialbgm.metrics._ranking",
    "dialbgm.metrics._threads",
    "dialbgm.run._scoring",
)
"""The modules that turn a cached reply into scores, item metrics and run metrics (a test keeps
this list in step with the package's files)."""


@dataclass(frozen=True)
class RunIdentity:
    config: dict[str, Any]
    """What the run's requests depend on; ``--resume`` refuses a run whose hash of it changed."""
    config_hash: str
    model: dict[str, Any]
    """What identifies the models that answer (judge, summarizer) beyond their names."""
    scoring: dict[str, Any]
    """The code that turns replies into numbers."""

    @property
    def results_hash(self) -> str:
        """What a finished run's files depend on: a finished cell is reused only while this holds."""
        return stable_hash({"config_hash": self.config_hash, "model": self.model, "scoring": self.scoring})

    def record(self) -> dict[str, Any]:
        """As recorded in ``manifest.json`` under ``identity``."""
        return {
            "config_hash": self.config_hash,
            "model": self.model,
            "scoring": self.scoring,
            "results_hash": self.results_hash,
        }


def run_identity(
    ws: Workspace,
    judge: JudgeConfig,
    provider: ProviderConfig,
    data_path: Path,
    limit: int | None,
    overrides: dict[str, Any] | None,
    *,
    data_sha256: str | None = None,
    clips: Mapping[tuple[str, str], PreparedClip] | None = None,
    template_sha256: str | None = None,
    planning: bool = False,
) -> RunIdentity:
    """The identity of a run of ``judge`` on ``data_path``: the only function that computes one.

    Everything is read from the files (judge, provider, templates, pool, summarizer), so a run
    that was planned and a cell that was not yet planned get the same answer. ``data_sha256``,
    ``clips`` and ``template_sha256`` (of the judge's template folder, as
    :attr:`~dialbgm.judging.PromptSet.sha256` gives it) spare reading the data, the clips and the
    templates again when the caller has them; without
    them the data file is hashed and, for a judge that hears the clips, the clips are prepared
    (a stat per clip once they are in the clip store). ``planning`` (a dry run): a judge's model
    whose files are absent gets an ``unknown`` identity instead of stopping (see
    :func:`dialbgm.calls.model_identity`); such an identity is never recorded, as nothing runs.
    """
    from dialbgm.calls import model_identity, renders_prompts
    from dialbgm.judging import clips_digest, wants_audio

    data_sha = data_sha256 if data_sha256 is not None else file_sha256(data_path)
    template_sha = None
    if renders_prompts(provider):
        from dialbgm.judging import PromptSet

        template_sha = template_sha256 or PromptSet(ws.template_dir(judge.template)).sha256
    pool_sha = None
    if judge.few_shot > 0:
        pool_sha = file_sha256(few_shot_pool_path(ws, judge), what="few-shot pool")
    summarizer = _summarizer(ws, judge)
    config: dict[str, Any] = {
        "judge": judge_record(judge),
        "provider": provider_record(provider, judge),
        "data": {"path": str(data_path), "sha256": data_sha, "limit": limit},
        "template_sha256": template_sha,
        "few_shot_pool_sha256": pool_sha,
        "summarizer_sha256": stable_hash(summarizer[0]) if summarizer else None,
        "overrides": {k: v for k, v in (overrides or {}).items() if k not in CARRIED_OUT},
        "parser_version": PARSER_VERSION,
    }
    if judge.score_by == "logprobs":
        # Expectations are recomputed from cached replies; a new rule must not reuse old results.
        from dialbgm.judging import LOGPROBS_VERSION

        config["logprobs_version"] = LOGPROBS_VERSION
    if wants_audio(judge):
        if clips is None:
            clips = _prepare_clips(ws, judge, provider, data_path, limit)
        # The data file names the clips; this hash is of what is sent, so an edited clip changes the run.
        config["audio_sha256"] = clips_digest(clips)
    model = {"judge": model_identity(provider, judge, ws, planning=planning)}
    if summarizer:
        model["summarizer"] = summarizer[1]
    from dialbgm.run._captions import captioner_identity

    if captioner := captioner_identity(ws, judge):
        # Only when there is one, so a run without music captions keeps the hash it had.
        config["captioner_sha256"] = stable_hash(captioner[0])
        model["captioner"] = captioner[1]
    return RunIdentity(config, stable_hash(config), model, scoring_identity())


def quick_identity(
    ws: Workspace,
    judge_name: str,
    data_path: Path,
    limit: int | None,
    overrides: dict[str, Any] | None,
    *,
    planning: bool = False,
) -> RunIdentity:
    """:func:`run_identity` from names, without planning the run (nothing is rendered)."""
    judge = load_judge(ws, judge_name, overrides)
    provider = load_provider(ws, judge.provider)
    return run_identity(ws, judge, provider, data_path, limit, overrides, planning=planning)


def judge_record(judge: JudgeConfig) -> dict[str, Any]:
    # The description is cosmetic; batch settings say how the calls are made, not what they answer.
    return {k: v for k, v in judge.to_dict().items() if k != "description" and k not in CARRIED_OUT}


def provider_record(p: ProviderConfig, judge: JudgeConfig | None = None) -> dict[str, Any]:
    """Every provider setting that can change an answer (the effective base URL included);
    the name of the key's variable is recorded in the manifest, never its value."""
    record = {k: v for k, v in asdict(p).items() if k not in _THROUGHPUT}
    del record["capabilities"]["batch_api"]  # how calls can be made, not what they answer
    if not record["model_revision"]:  # unset: the record (and the config hash) is what it was before
        del record["model_revision"]
    caps = record["capabilities"]
    for key, default in CAPABILITIES_RECORDED_WHEN_SET.items():
        if caps.get(key) == default:
            del caps[key]
    record["api_base"] = p.effective_api_base()
    if judge is not None and p.kind == "litellm" and not judge.api_base and not record["api_base"]:
        # Where litellm sends when nothing names a base URL: OPENAI_BASE_URL and its kin. Part of
        # every cache key already; here so that a finished cell or --resume sees the move too.
        # Recorded only when set, so a run with none keeps the hash it had.
        from dialbgm.calls import base_url_from_environment

        env_base = base_url_from_environment(p, judge.model)
        if env_base:
            record["api_base_from_environment"] = env_base
    return record


def _summarizer(ws: Workspace, judge: JudgeConfig) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(config, model identity) of the judge that writes the summaries, when there is one: its
    whole effective config — judge, provider and every file of the summary template."""
    from dialbgm.calls import model_identity
    from dialbgm.run._summaries import load_summarizer

    loaded = load_summarizer(ws, judge)
    if loaded is None:
        return None
    sj, sp, tmpl = loaded
    config = {"judge": judge_record(sj), "provider": provider_record(sp, sj), "template_sha256": tmpl.sha256}
    return config, model_identity(sp, sj, ws)


@functools.cache
def _scoring_code_sha256() -> str:
    h = hashlib.sha256()
    for name in SCORING_MODULES:
        spec = importlib.util.find_spec(name)
        try:
            data = Path(spec.origin if spec and spec.origin else "").read_bytes()
        except OSError:  # an install without sources (bytecode only): the version still tells releases apart
            data = b"<no source>"
        h.update(name.encode() + b"\x00" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def scoring_identity() -> dict[str, Any]:
    """dialbgm's version, the parser version and a hash of the scoring code: a change of any
    makes ``compare`` score a finished cell again (from the cached replies, without a call)."""
    import dialbgm

    return {"dialbgm": dialbgm.__version__, "parser_version": PARSER_VERSION, "code_sha256": _scoring_code_sha256()}


def file_sha256(path: Path, what: str = "data file") -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        if what == "data file":
            raise DataError([Problem(str(path), None, "<file>", "no such file")]) from None
        raise ConfigError(f"{what} {path}: no such file") from None
    except OSError as e:
        if what == "data file":
            raise DataError([Problem(str(path), None, "<file>", f"cannot read ({e.strerror})")]) from None
        raise ConfigError(f"{what} {path}: cannot read ({e.strerror})") from None


def _prepare_clips(
    ws: Workspace, judge: JudgeConfig, provider: ProviderConfig, data_path: Path, limit: int | None
) -> dict[tuple[str, str], PreparedClip]:
    """The clips a judge that hears them would send (preparing them is what its run does first)."""
    from dialbgm.data import ClipStore, load_dataset
    from dialbgm.judging import audio_spec, prepare_clips

    spec = audio_spec(judge, provider)
    with ClipStore(ws.audio_dir) as store:
        return prepare_clips(load_dataset(data_path).limited(limit), spec, store)


def item_sha256(item: Item) -> str:
    """An item's content as the data file gives it: dialogue, summary, candidates (id, caption,
    audio path, human rank). Two runs may be paired on an item only if this agrees."""
    content: dict[str, Any] = {
        "id": item.id,
        "dialogue": [[t.speaker, t.text] for t in item.dialogue],
        "summary": item.summary,
        "candidates": [[c.id, c.caption, c.audio, c.rank] for c in item.candidates],
    }
    # Only when present, so an item without them hashes as it did before they existed.
    if item.group is not None:
        content["group"] = item.group
    if item.annotations:
        content["annotations"] = [[a.annotator, list(a.ranks)] for a in item.annotations]
        content["consensus"] = item.consensus
    return stable_hash(content)
