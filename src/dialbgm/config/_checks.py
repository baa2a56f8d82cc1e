"""The checks a judge and a provider pass when loaded, so a typo fails before any call, naming the
file and the key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, get_args

from dialbgm.config._models import AudioDialect, JudgeConfig, ProviderConfig
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, MissingKeyError

DIALECTS: tuple[str, ...] = get_args(AudioDialect)


def check_name(kind: str, name: Any, where: str = "") -> str:
    """A judge or provider name is a file name in its folder: no path, no hidden file."""
    bad = (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or any(ch in name for ch in ("/", "\\", "\x00"))
        or name != name.strip()
    )
    if bad:
        prefix = f"{where}: " if where else ""
        raise ConfigError(f"{prefix}{kind} name {name!r}: must be a file name in {kind}s/ (no path, no leading '.')")
    return str(name)


def _check_orders(spec: object, path: Path) -> None:
    ok = (isinstance(spec, int) and not isinstance(spec, bool) and spec >= 1) or spec == "all"
    if isinstance(spec, str) and spec.startswith("random:"):
        n = spec.partition(":")[2]
        ok = n.isdigit() and int(n) >= 1 and n == str(int(n))
    if not ok:
        raise ConfigError(f'{path}: orders: must be a whole number >= 1, "all" or "random:N", got {spec!r}')


def _whole(value: int, path: Path, key: str, least: int, meaning: str = "") -> None:
    if value < least:
        raise ConfigError(f"{path}: {key}: must be a whole number >= {least}{meaning}, got {value!r}")


def _positive(value: float | None, path: Path, key: str, meaning: str = "") -> None:
    """None passes (unset); NaN fails every comparison, so it is refused here too."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{path}: {key}: must be a number > 0{meaning}, got {value!r}")


def check_provider(p: ProviderConfig, path: Path) -> None:
    _whole(p.concurrency, path, "concurrency", 1)
    # 0 would read as "unset" to the rate limiter: an explicit zero must not mean unlimited.
    _positive(p.rpm, path, "rpm", " (leave it out for no limit)")
    _positive(p.tpm, path, "tpm", " (leave it out for no limit)")
    _positive(p.timeout, path, "timeout", " (seconds per request)")
    _whole(p.max_attempts, path, "max_attempts", 1, " (1: no retry)")
    if not (math.isfinite(p.max_retry_seconds) and p.max_retry_seconds >= 0):
        raise ConfigError(f"{path}: max_retry_seconds: must be a number >= 0, got {p.max_retry_seconds!r}")
    _whole(p.n_ctx, path, "n_ctx", 1)
    if p.n_threads is not None:
        _whole(p.n_threads, path, "n_threads", 1)
    _positive(p.startup_timeout, path, "startup_timeout")
    _whole(p.capabilities.max_audio_bytes, path, "capabilities.max_audio_bytes", 0, " (0: no limit)")
    _whole(p.capabilities.max_top_logprobs, path, "capabilities.max_top_logprobs", 1)
    _whole(p.capabilities.max_audio_clips, path, "capabilities.max_audio_clips", 0, " (0: no limit)")
    seconds = p.capabilities.max_clip_seconds
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(
            f"{path}: capabilities.max_clip_seconds: must be a number >= 0 (0: no limit), got {seconds!r}"
        )
    for dialect in p.capabilities.audio_dialects:
        if dialect not in DIALECTS:
            raise ConfigError(
                f"{path}: capabilities.audio_dialects: {dialect!r} is not a dialect; known: {', '.join(DIALECTS)}"
            )


def check_template_name(name: str, path: Path) -> None:
    """A template is a folder inside prompts/: a relative path of plain names, never out of it."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\x00" in name:
        raise ConfigError(f"{path}: template: must name a folder inside prompts/ (no '..', not absolute), got {name!r}")


def few_shot_pool_path(ws: Workspace, judge: JudgeConfig) -> Path:
    """The judge's few-shot pool file: absolute or relative to the workspace, and a file."""
    where = ws.judges_dir / f"{judge.name}.toml"
    if not judge.few_shot_pool.strip():
        raise ConfigError(f"{where}: few_shot_pool: must name a data file")
    pool = ws.resolve_for_judge(judge.name, judge.few_shot_pool)
    if not pool.is_file():
        what = "is a folder, not a data file" if pool.is_dir() else "no such file"
        raise ConfigError(f"{where}: few_shot_pool: {pool}: {what}")
    return pool


# Sampling parameters dialbgm reads itself (token estimates) or whose nonsense no provider takes.
def _check_params(params: dict[str, Any], path: Path) -> None:
    def number(key: str) -> float | None:
        v = params.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{path}: params.{key}: must be a number, got {v!r}")
        return float(v)

    for key in ("max_tokens", "max_completion_tokens", "seed"):
        v = params.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"{path}: params.{key}: must be a whole number, got {v!r}")
    for key in ("max_tokens", "max_completion_tokens"):
        if (v := params.get(key)) is not None and v < 1:
            raise ConfigError(f"{path}: params.{key}: must be >= 1, got {v!r}")
    temperature = number("temperature")
    if temperature is not None and temperature < 0:
        raise ConfigError(f"{path}: params.temperature: must be >= 0, got {params['temperature']!r}")
    top_p = number("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"{path}: params.top_p: must be in (0, 1], got {params['top_p']!r}")


def check_judge(j: JudgeConfig, path: Path) -> None:
    from dialbgm.metrics import AGGREGATIONS

    check_name("provider", j.provider, str(path))
    if j.summarizer:
        check_name("judge", j.summarizer, f"{path}: summarizer")
    check_template_name(j.template, path)
    _check_orders(j.orders, path)
    if j.samples < 1:
        raise ConfigError(f"{path}: samples: must be >= 1")
    if not (math.isfinite(j.batch_deadline_s) and j.batch_deadline_s > 0):
        raise ConfigError(f"{path}: batch_deadline_s: must be a number of seconds > 0, got {j.batch_deadline_s!r}")
    if j.aggregation not in AGGREGATIONS:
        raise ConfigError(f"{path}: aggregation: must be one of {', '.join(AGGREGATIONS)}, got {j.aggregation!r}")
    if j.mode == "pointwise" and (j.orders != 1 or j.shuffle_labels):
        raise ConfigError(
            f"{path}: orders and shuffle_labels apply to listwise judging (a pointwise call shows one clip)"
        )
    if j.score_by not in ("sampled", "logprobs"):
        raise ConfigError(f"{path}: score_by: must be sampled or logprobs, got {j.score_by!r}")
    # The upper bound is the provider's (capabilities.max_top_logprobs), checked with it.
    _whole(j.top_logprobs, path, "top_logprobs", 1)
    _whole(j.few_shot, path, "few_shot", 0)
    if j.input != "caption" and j.few_shot > 0:
        raise ConfigError(f"{path}: few_shot: the few-shot examples are captions only; use it with input = caption")
    # Checked for every judge: they are part of the recorded config even when no audio is sent.
    if not (math.isfinite(j.audio_start_s) and j.audio_start_s >= 0):
        raise ConfigError(f"{path}: audio_start_s: must be a number >= 0, got {j.audio_start_s!r}")
    if not (math.isfinite(j.audio_seconds) and j.audio_seconds >= 0):
        raise ConfigError(f"{path}: audio_seconds: must be a number >= 0 (0: the whole clip), got {j.audio_seconds!r}")
    if j.audio_sample_rate != 0 and not 1000 <= j.audio_sample_rate <= 384000:
        rate = j.audio_sample_rate
        raise ConfigError(
            f"{path}: audio_sample_rate: must be 0 (keep the source rate) or 1000..384000 Hz, got {rate!r}"
        )
    if j.audio_dialect and j.audio_dialect not in DIALECTS:
        raise ConfigError(
            f'{path}: audio_dialect: must be one of {", ".join(DIALECTS)} (or "": the provider\'s), '
            f"got {j.audio_dialect!r}"
        )
    if j.scale_min >= j.scale_max:
        raise ConfigError(f"{path}: scale_min must be below scale_max (got {j.scale_min} and {j.scale_max})")
    if j.score_by == "logprobs" and j.scale_min < 0:
        # A "-" alternative carries the mass of every negative score at once: no expectation can be read.
        raise ConfigError(f"{path}: scale_min: score_by = logprobs needs a scale of integers >= 0")
    _check_params(j.params, path)
    # The criteria and their weights were checked when merged (dialbgm.config._criteria.resolve).


def require_key(judge: JudgeConfig, provider: ProviderConfig) -> None:
    """Fail before any call when the judge's key is missing (never reads it into config)."""
    if provider.api_key_env and provider.api_key_required and not provider.api_key():
        raise MissingKeyError(judge.name, provider.api_key_env)
