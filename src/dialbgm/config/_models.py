"""The judge and provider settings as typed, frozen records, and the hash of a recorded config.

A judge is a provider + a template + variant settings + sampling parameters. The effective
config (file + overrides) is what a run records and hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["listwise", "pointwise"]
Context = Literal["full", "summary"]
Kind = Literal["litellm", "llama_cpp_server", "random", "embedding", "embedding_api", "clap"]
StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "none"]
InputMode = Literal["caption", "audio", "caption+audio"]
AudioDialect = Literal["input_audio", "input_audio_data_uri", "audio_url"]
BatchApi = Literal["none", "openai", "anthropic", "gemini"]

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
    Gemini's inline audio part), or with a ``data:;base64,`` URI (DashScope's Qwen-Omni), or
    vLLM's ``audio_url`` part holding a ``data:audio/...;base64,`` URI."""
    audio_dialects: tuple[str, ...] = ()
    """The other dialects the provider also accepts, which a judge may choose (``audio_dialect``)."""
    max_audio_clips: int = 0
    """Most clips one request may carry (vLLM: its --limit-mm-per-prompt); 0: no limit checked."""
    max_clip_seconds: float = 0.0
    """Longest clip the model takes whole (a longer one would be cut by the server); 0: no limit."""
    max_audio_bytes: int = 0
    """Most audio one request may carry, counted as sent (base64); 0: no limit checked."""
    max_top_logprobs: int = 20
    """Most alternatives per token the provider returns (OpenAI and vLLM's default: 20)."""
    batch_api: BatchApi = "none"
    """The batch API the provider offers (``--batch``): OpenAI's files + batches (also any gateway
    that implements them), Anthropic's Message Batches, Gemini's batch mode; none: online only."""


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
    batch_max_lines: int = 0
    """Most requests in one batch (0: the batch API's own limit); smaller batches finish sooner."""
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
    audio_dialect: str = ""
    """How clips are sent, among the provider's accepted dialects ("": the provider's own)."""
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
    query: str = ""
    """Retrieval judges (embedding, clap): the text their text tower embeds — "dialogue",
    "summary" or "music_caption" ("": the dialogue, or the summary with context = "summary")."""
    captioner: str = ""
    """With query = "music_caption": the judge that writes each dialogue's music description."""
    captioner_template: str = "music_caption"
    """The folder in prompts/ whose system.j2 and user.j2 the captioner is given."""
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
    cache_markers: bool = False
    """Mark the system prompt (the part every item shares) for the provider's prompt cache, as
    Anthropic needs (``cache_control``); sent on the wire only, so it never changes a cache key."""
    batch: bool = False
    """Send the calls that are not cached through the provider's batch API (how a run is carried
    out, never part of its identity: a batched run's results are those of an online one)."""
    batch_deadline_s: float = 86400.0
    """A batch still pending or running this long after its submission is cancelled, and its
    unanswered requests are called online."""

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


_RECORDED_WHEN_SET: dict[str, Any] = {
    "criteria": {},
    "summarizer_template": "summarize",
    "model_revision": "",
    "cache_markers": False,
    "audio_dialect": "",
    "batch": False,
    "batch_deadline_s": 86400.0,
    "query": "",
    "captioner": "",
    "captioner_template": "music_caption",
}
# Capabilities added after runs were recorded: left out of a provider's record while at their
# default, so that the config hash of a provider that does not use them is the one it had.
CAPABILITIES_RECORDED_WHEN_SET: dict[str, Any] = {"audio_dialects": (), "max_audio_clips": 0, "max_clip_seconds": 0.0}
CARRIED_OUT = ("batch", "batch_deadline_s")
"""Judge settings that say how a run is carried out, not what it answers: never in its identity."""


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``: key order, spacing and unicode fixed."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
