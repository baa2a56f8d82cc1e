"""Judge and provider files (TOML), and ``--set KEY=VALUE`` overrides.

A judge is a provider + a template + variant settings + sampling parameters. Every setting is
typed and checked when the file is loaded, so a typo fails before any call, naming the file and
the key. The effective config (file + overrides) is what a run records and hashes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, MissingKeyError, TemplateError

Mode = Literal["listwise", "pointwise"]
Context = Literal["full", "summary"]
Kind = Literal["litellm", "llama_cpp_server", "random", "embedding"]
StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "none"]
InputMode = Literal["caption", "audio", "caption+audio"]
AudioDialect = Literal["input_audio", "input_audio_data_uri"]

# DialBGM's criteria, the shipped default: prompts/weighted_criteria/criteria.toml holds them as
# data; this is only the default of a JudgeConfig built in code (load_judge merges the template's).
DEFAULT_WEIGHTS: dict[str, float] = {"relevance": 0.5, "non_intrusiveness": 0.3, "consistency": 0.2}
# Judge settings that name a file: relative to the workspace root when written in a workspace
# file, to the current folder when given with --set (see parse_overrides).
PATH_SETTINGS = ("few_shot_pool",)


@dataclass(frozen=True)
class Capabilities:
    """What a provider accepts; differences between providers are data, not branches."""

    structured_output: StructuredOutput = "none"
    streaming_only: bool = False
    temperature: bool = True
    seed: bool = True
    logprobs: bool = False
    audio_formats: tuple[str, ...] = ()
    """Audio encodings the provider accepts, preferred first (empty: it takes no audio)."""
    audio_dialect: AudioDialect = "input_audio"
    """How a clip is sent: OpenAI's input_audio part with base64 data (litellm turns it into
    Gemini's inline audio part), or with a ``data:;base64,`` URI (DashScope's Qwen-Omni)."""
    max_audio_bytes: int = 0
    """Most audio one request may carry, counted as sent (base64); 0: no limit checked."""
    max_top_logprobs: int = 20
    """Most alternatives per token the provider returns (OpenAI and vLLM's default: 20)."""


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    kind: Kind
    route: str = ""
    api_base: str | None = None
    api_base_env: str | None = None
    api_key_env: str | None = None
    api_key_required: bool = True
    concurrency: int = 4
    rpm: float | None = None
    """Requests per minute allowed by the provider (None: no limit)."""
    tpm: float | None = None
    """Tokens per minute allowed by the provider (None: no limit); requests are estimated."""
    timeout: float = 120.0
    max_attempts: int = 5
    max_retry_seconds: float = 300.0
    capabilities: Capabilities = field(default_factory=Capabilities)
    # llama_cpp_server: where the GGUF comes from and how the server is started.
    model_package: str | None = None
    model_glob: str = "*.gguf"
    n_ctx: int = 4096
    n_threads: int | None = None
    startup_timeout: float = 120.0
    # embedding
    embedding_model: str | None = None
    model_revision: str = ""
    """Names the weights behind the model name (a checkpoint hash, a date): part of the cache key,
    so a server that swaps weights under one name is not answered from the old ones' cache."""

    def api_key(self) -> str | None:
        """The key, read from the environment at call time and never stored anywhere."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def effective_api_base(self) -> str | None:
        if self.api_base_env and os.environ.get(self.api_base_env):
            return os.environ[self.api_base_env]
        return self.api_base


@dataclass(frozen=True)
class JudgeConfig:
    name: str
    provider: str
    description: str = ""
    model: str = ""
    template: str = "weighted_criteria"
    mode: Mode = "listwise"
    context: Context = "full"
    input: InputMode = "caption"
    """What the judge gets of each candidate: its caption, its audio, or both."""
    audio_start_s: float = 0.0
    audio_seconds: float = 10.0
    """The window of each clip that is sent (0: the whole clip from audio_start_s)."""
    audio_sample_rate: int = 16000
    """Clips are resampled to this rate, mono (0: keep the source rate)."""
    audio_format: str = ""
    """Encoding to send, among the provider's audio_formats ("": the provider's first)."""
    cot: bool = False
    few_shot: int = 0
    few_shot_seed: int = 0
    few_shot_pool: str = "prompts/fewshot_pool.jsonl"
    order_seed: int = 0
    orders: int | str = 1
    shuffle_labels: bool = False
    samples: int = 1
    aggregation: str = "mean"
    summarizer: str = ""
    """A judge that writes summaries for items without one (context = "summary")."""
    summarizer_template: str = "summarize"
    """The folder in prompts/ whose system.j2 and user.j2 the summarizer is given."""
    score_by: str = "sampled"
    top_logprobs: int = 20
    scale_min: int = 1
    scale_max: int = 10
    seed: int = 0
    api_base: str | None = None
    model_revision: str = ""
    """The revision of the model's weights (overrides the provider's); part of the cache key."""
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """The effective weight of every criterion (after the merge rule of dialbgm.config._criteria)."""
    criteria: dict[str, dict[str, str]] = field(default_factory=dict)
    """The judge file's own [criteria.NAME] texts (empty: the template's set)."""
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Settings added after runs were recorded appear only when set, so that the config hash
        # of a judge that does not use them is the one it had before they existed.
        for key, default in _RECORDED_WHEN_SET.items():
            if d[key] == default:
                del d[key]
        return d

    def config_hash(self) -> str:
        return stable_hash(self.to_dict())


_RECORDED_WHEN_SET: dict[str, Any] = {"criteria": {}, "summarizer_template": "summarize", "model_revision": ""}


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``: key order, spacing and unicode fixed."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- loading


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    check_recordable(data, str(path))
    return data


def check_recordable(value: Any, where: str, key: str = "") -> None:
    """Refuse what a run could not record as JSON or hash stably: NaN, infinities and TOML dates.

    ``where`` names the file (or ``--set``); ``key`` is the dotted key reached so far.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {key or 'value'}: must be a finite number, got {value!r}")
    if isinstance(value, datetime.date | datetime.time):
        raise ConfigError(
            f"{where}: {key or 'value'}: a TOML date/time cannot be recorded; quote it as a string, got {value}"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            check_recordable(v, where, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            check_recordable(v, where, f"{key}[{n}]")


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


def list_judges(ws: Workspace) -> list[str]:
    return list(ws.judge_files())


def _named_file(ws: Workspace, kind: str, files: dict[str, Path], name: str) -> Path:
    """The file of judge or provider ``name`` (the workspace's, else the built-in one)."""
    if name in files:
        return files[name]
    looked = " and ".join(str(p) for p in ws.where(f"{kind}s/{name}.toml")) or f"no {kind}s/ folder"
    raise ConfigError(f"no {kind} {name!r} (looked for {looked}); known: {', '.join(files) or 'none'}")


def load_provider(ws: Workspace, name: str) -> ProviderConfig:
    check_name("provider", name)
    path = _named_file(ws, "provider", ws.provider_files(), name)
    data = _read_toml(path)
    caps = data.pop("capabilities", {})
    if not isinstance(caps, dict):
        raise ConfigError(f"{path}: capabilities: must be a table")
    cap_obj = _build(Capabilities, caps, path, "capabilities.")
    provider: ProviderConfig = _build(ProviderConfig, {**data, "name": name, "capabilities": cap_obj}, path, "")
    _check_provider(provider, path)
    return provider


def load_judge(ws: Workspace, name: str, overrides: dict[str, Any] | None = None) -> JudgeConfig:
    check_name("judge", name)
    path = _named_file(ws, "judge", ws.judge_files(), name)
    data = _read_toml(path)
    data["name"] = name
    over = overrides or {}
    for key, value in over.items():
        check_recordable(value, "--set", key)
        _apply_override(data, key, value, path)
    overridden = {k.partition(".")[2] for k in over if k.startswith("weights.")}
    if isinstance(over.get("weights"), dict):
        overridden |= set(over["weights"])
    raw_criteria = data.pop("criteria", {})
    raw_weights = data.pop("weights", {})
    judge: JudgeConfig = _build(JudgeConfig, data, path, "")
    judge = _with_criteria(ws, judge, raw_criteria, raw_weights, path, overridden)
    _check_judge(judge, path)
    return judge


def _with_criteria(
    ws: Workspace, judge: JudgeConfig, raw_criteria: object, raw_weights: object, path: Path, overridden: set[str]
) -> JudgeConfig:
    """The judge with its effective criteria weights, merged with its template's criteria.toml."""
    from dialbgm.config._criteria import CRITERIA_FILE, read_template_criteria, resolve

    check_template_name(judge.template, path)  # before the name becomes a path
    folder = next((f for f in ws.where(f"prompts/{judge.template}") if f.is_dir()), None)
    if folder is None:
        if not raw_criteria and not raw_weights:
            # A judge that renders no prompt (random, embedding) needs no template: nothing to merge.
            return replace(judge, weights={}, criteria={})
        # A judge template holds the three files PromptSet needs; summary templates are not listed.
        from dialbgm.config._criteria import known_templates

        known = sorted({t for d in ws.where("prompts") if d.is_dir() for t in known_templates(d)})
        looked = ", ".join(str(d) for d in ws.where("prompts"))
        raise TemplateError(
            f"{path}: template: no template {judge.template!r} in {looked} to check its criteria "
            f"and weights against; known: {', '.join(known) or 'none'}"
        )
    weights, texts = resolve(
        read_template_criteria(folder), folder / CRITERIA_FILE, raw_criteria, raw_weights, path, overridden
    )
    return replace(judge, weights=weights, criteria=texts)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["cot=true", "params.temperature=0.7"]`` → typed values (TOML syntax, else a string).

    These are the command line's ``--set``: a relative path among them (``few_shot_pool``) is
    made absolute against the current folder here, as every path on the command line is; the
    same setting written in a judge or experiment file is relative to the workspace root.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        check_recordable(value, "--set", key)
        if key in PATH_SETTINGS and isinstance(value, str) and value:
            value = str(Path(value).expanduser().absolute())
        out[key] = value
    return out


def _apply_override(data: dict[str, Any], key: str, value: Any, path: Path) -> None:
    head, _, tail = key.partition(".")
    if tail:
        if head not in ("params", "weights"):
            raise ConfigError(f"--set {key}: only params.* and weights.* take a dotted key")
        # A dotted weight adjusts one criterion; the others keep theirs (dialbgm.config._criteria).
        table = data.setdefault(head, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {key}: {head} is not a table in {path}")
        table[tail] = value
        return
    names = {f.name for f in fields(JudgeConfig)} - {"name"}
    if key not in names:
        raise ConfigError(
            f"--set {key}: judge {path.stem!r} has no setting {key!r}; settings: {', '.join(sorted(names))}"
        )
    data[key] = value


def _build(cls: Any, data: dict[str, Any], path: Path, prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(prefix + u for u in unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, known[name].type, path, prefix + name)
    try:
        obj = cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None
    return obj


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def _coerce(value: Any, annotation: Any, path: Path, key: str) -> Any:
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    ann = ann.replace(" ", "")
    optional = ann.endswith("|None")
    base = ann[: -len("|None")] if optional else ann
    if value is None and optional:
        return None
    literal = {
        "Mode": Mode,
        "Context": Context,
        "Kind": Kind,
        "StructuredOutput": StructuredOutput,
        "InputMode": InputMode,
        "AudioDialect": AudioDialect,
    }
    if base in literal:
        allowed = get_args(literal[base])
        if value not in allowed:
            raise ConfigError(f"{path}: {key}: must be one of {', '.join(allowed)}, got {value!r}")
        return value
    if base in _SCALARS:
        ok = isinstance(value, _SCALARS[base]) and not (base != "bool" and isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{path}: {key}: must be {base}, got {value!r}")
        return float(value) if base == "float" else value
    if base == "tuple[str,...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {key}: must be a list of strings")
        return tuple(value)
    if base.startswith("dict["):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: must be a table")
        return dict(value)
    return value


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


def _check_provider(p: ProviderConfig, path: Path) -> None:
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


def _check_judge(j: JudgeConfig, path: Path) -> None:
    from dialbgm.metrics import AGGREGATIONS

    check_name("provider", j.provider, str(path))
    if j.summarizer:
        check_name("judge", j.summarizer, f"{path}: summarizer")
    check_template_name(j.template, path)
    _check_orders(j.orders, path)
    if j.samples < 1:
        raise ConfigError(f"{path}: samples: must be >= 1")
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
