"""Judge and provider files (TOML), and ``--set KEY=VALUE`` overrides.

A judge is a provider + a template + variant settings + sampling parameters. Every setting is
typed and checked when the file is loaded, so a typo fails before any call, naming the file and
the key. The effective config (file + overrides) is what a run records and hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from dialbgm.errors import ConfigError, MissingKeyError
from dialbgm.workspace import Workspace

Mode = Literal["listwise", "pointwise"]
Context = Literal["full", "summary"]
Kind = Literal["litellm", "llama_cpp_server", "random", "embedding"]
StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "none"]
InputMode = Literal["caption", "audio", "caption+audio"]
AudioDialect = Literal["input_audio", "input_audio_data_uri"]

CRITERIA = ("relevance", "non_intrusiveness", "consistency")
DEFAULT_WEIGHTS: dict[str, float] = {"relevance": 0.5, "non_intrusiveness": 0.3, "consistency": 0.2}


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
    score_by: str = "sampled"
    top_logprobs: int = 20
    scale_min: int = 1
    scale_max: int = 10
    seed: int = 0
    api_base: str | None = None
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def config_hash(self) -> str:
        return stable_hash(self.to_dict())


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``: key order, spacing and unicode fixed."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- loading


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def list_judges(ws: Workspace) -> list[str]:
    return list(ws.judge_files())


def _named_file(ws: Workspace, kind: str, files: dict[str, Path], name: str) -> Path:
    """The file of judge or provider ``name`` (the workspace's, else the built-in one)."""
    if name in files:
        return files[name]
    looked = " and ".join(str(p) for p in ws.where(f"{kind}s/{name}.toml")) or f"no {kind}s/ folder"
    raise ConfigError(f"no {kind} {name!r} (looked for {looked}); known: {', '.join(files) or 'none'}")


def load_provider(ws: Workspace, name: str) -> ProviderConfig:
    path = _named_file(ws, "provider", ws.provider_files(), name)
    data = _read_toml(path)
    caps = data.pop("capabilities", {})
    if not isinstance(caps, dict):
        raise ConfigError(f"{path}: capabilities: must be a table")
    cap_obj = _build(Capabilities, caps, path, "capabilities.")
    provider: ProviderConfig = _build(ProviderConfig, {**data, "name": name, "capabilities": cap_obj}, path, "")
    return provider


def load_judge(ws: Workspace, name: str, overrides: dict[str, Any] | None = None) -> JudgeConfig:
    path = _named_file(ws, "judge", ws.judge_files(), name)
    data = _read_toml(path)
    data["name"] = name
    for key, value in (overrides or {}).items():
        _apply_override(data, key, value, path)
    judge: JudgeConfig = _build(JudgeConfig, data, path, "")
    _check_judge(judge, path)
    return judge


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["cot=true", "params.temperature=0.7"]`` → typed values (TOML syntax, else a string)."""
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
        out[key] = value
    return out


def _apply_override(data: dict[str, Any], key: str, value: Any, path: Path) -> None:
    head, _, tail = key.partition(".")
    if tail:
        if head not in ("params", "weights"):
            raise ConfigError(f"--set {key}: only params.* and weights.* take a dotted key")
        if head == "weights" and "weights" not in data:
            # A dotted override adjusts the defaults; it does not replace the whole table.
            data["weights"] = dict(DEFAULT_WEIGHTS)
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


def _check_judge(j: JudgeConfig, path: Path) -> None:
    from dialbgm.aggregate import AGGREGATIONS

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
    if not 1 <= j.top_logprobs <= 20:
        raise ConfigError(f"{path}: top_logprobs: must be between 1 and 20")
    if j.few_shot < 0:
        raise ConfigError(f"{path}: few_shot: must be >= 0")
    if j.input != "caption":
        if j.few_shot > 0:
            raise ConfigError(f"{path}: few_shot: the few-shot examples are captions only; use it with input = caption")
        if not (math.isfinite(j.audio_start_s) and j.audio_start_s >= 0):
            raise ConfigError(f"{path}: audio_start_s: must be a number >= 0")
        if not (math.isfinite(j.audio_seconds) and j.audio_seconds >= 0):
            raise ConfigError(f"{path}: audio_seconds: must be a number >= 0 (0: the whole clip)")
        if j.audio_sample_rate < 0:
            raise ConfigError(f"{path}: audio_sample_rate: must be >= 0 (0: keep the source rate)")
    if j.scale_min >= j.scale_max:
        raise ConfigError(f"{path}: scale_min must be below scale_max")
    missing = [c for c in CRITERIA if c not in j.weights]
    extra = [c for c in j.weights if c not in CRITERIA]
    if missing or extra:
        raise ConfigError(f"{path}: weights: need exactly {', '.join(CRITERIA)} (missing {missing}, unknown {extra})")
    for k, v in j.weights.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{path}: weights.{k}: must be a finite number >= 0, got {v!r}")
    total = sum(j.weights.values())
    if not math.isfinite(total) or total <= 0:
        raise ConfigError(f"{path}: weights: must not all be zero, and must have a finite sum")


def require_key(judge: JudgeConfig, provider: ProviderConfig) -> None:
    """Fail before any call when the judge's key is missing (never reads it into config)."""
    if provider.api_key_env and provider.api_key_required and not provider.api_key():
        raise MissingKeyError(judge.name, provider.api_key_env)
