"""Candidates as sound: what a judge asks of its clips, preparing them before any call, and the
audio parts of a request.

A request never holds audio bytes. Its messages carry an ``audio_ref`` part per clip, holding the
sha256 of the exact bytes that will be sent (plus their format and shape, never the source path),
so the cache key covers the sound itself: two files with the same sound share answers, an edited
clip misses. The bytes are read from the clip store and base64-encoded only on the way to the
provider, in the dialect its capabilities name.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.config import JudgeConfig, ProviderConfig
from dialbgm.data import Candidate, Dataset, Item
from dialbgm.errors import ConfigError, DataError, Problem

if TYPE_CHECKING:
    from dialbgm.data import AudioSpec, ClipStore, PreparedClip

AUDIO_REF = "audio_ref"
_REF_FIELDS = ("sha256", "format", "mime", "sample_rate", "channels", "duration_s", "nbytes")


def wants_audio(judge: JudgeConfig) -> bool:
    return judge.input != "caption"


def wants_caption(judge: JudgeConfig) -> bool:
    return judge.input != "audio"


def audio_spec(judge: JudgeConfig, provider: ProviderConfig) -> AudioSpec:
    """The clip format this judge sends to this provider; refuses a provider that takes no audio."""
    from dialbgm.data import AUDIO_FORMATS, AudioSpec, require_audio_support

    offered = provider.capabilities.audio_formats
    accepted = [f for f in offered if f in AUDIO_FORMATS]
    if not accepted:
        why = (
            f"takes no audio (providers/{provider.name}.toml: capabilities.audio_formats is empty)"
            if not offered
            else f"takes only {', '.join(offered)}, none of which dialbgm can encode ({', '.join(AUDIO_FORMATS)})"
        )
        raise ConfigError(
            f"judge {judge.name!r} (judges/{judge.name}.toml): input = {judge.input!r} sends audio, but provider "
            f"{provider.name!r} {why}; use an audio judge (gpt-4o-audio, gemini-2.5-flash-audio, qwen-omni-audio, "
            "vllm-qwen2-audio, ...) or input = caption"
        )
    if judge.audio_format:
        if judge.audio_format not in accepted:
            raise ConfigError(
                f"judge {judge.name!r}: audio_format = {judge.audio_format!r}, but provider {provider.name!r} "
                f"accepts {', '.join(accepted)}"
            )
        accepted = [judge.audio_format] + [f for f in accepted if f != judge.audio_format]
    audio_dialect(judge, provider)
    most = provider.capabilities.max_clip_seconds
    if most and (judge.audio_seconds == 0 or judge.audio_seconds > most):
        window = "the whole clip (audio_seconds = 0)" if judge.audio_seconds == 0 else f"{judge.audio_seconds:g} s"
        raise ConfigError(
            f"judge {judge.name!r}: sends {window} of each clip, but provider {provider.name!r} takes clips of at most "
            f"{most:g} s (capabilities.max_clip_seconds: the model would cut the rest); set audio_seconds <= {most:g}"
        )
    require_audio_support()
    try:
        return AudioSpec(
            formats=tuple(accepted),
            sample_rate=judge.audio_sample_rate or None,
            channels=1,
            start_s=judge.audio_start_s,
            duration_s=judge.audio_seconds or None,
        )
    except ValueError as e:
        raise ConfigError(f"judge {judge.name!r}: {e}") from None


def audio_dialect(judge: JudgeConfig, provider: ProviderConfig) -> str:
    """How this judge's clips are sent: its own ``audio_dialect`` when set, which must be one the
    provider accepts (``capabilities.audio_dialect`` and ``audio_dialects``), else the provider's."""
    caps = provider.capabilities
    if not judge.audio_dialect or judge.audio_dialect == caps.audio_dialect:
        return caps.audio_dialect
    accepted = [caps.audio_dialect, *(d for d in caps.audio_dialects if d != caps.audio_dialect)]
    if judge.audio_dialect not in accepted:
        raise ConfigError(
            f"judge {judge.name!r}: audio_dialect = {judge.audio_dialect!r}, but provider {provider.name!r} accepts "
            f"{', '.join(accepted)} (capabilities.audio_dialect and audio_dialects)"
        )
    return judge.audio_dialect


def clip_path(data_path: Path, audio: str) -> Path:
    """A candidate's audio path: relative paths are relative to the data file's folder."""
    p = Path(audio)
    return p if p.is_absolute() else data_path.parent / p


def prepare_clips(dataset: Dataset, spec: AudioSpec, store: ClipStore) -> dict[tuple[str, str], PreparedClip]:
    """Every candidate's clip, decoded, trimmed, resampled, encoded and stored (or found in the
    store). Every bad clip is reported at once, naming the item, the candidate and the file."""
    clips: dict[tuple[str, str], PreparedClip] = {}

    def one(item: Item, c: Candidate, path: Path) -> None:
        clips[(item.id, c.id)] = store.get_or_prepare(path, spec)

    if problems := _each_clip(dataset, one, require_path=True):
        raise DataError(problems)
    return clips


def check_clips(dataset: Dataset) -> list[Problem]:
    """``validate``: every audio path given must be a readable, non-empty, non-silent clip."""
    from dialbgm.data import check, require_audio_support

    require_audio_support()
    return _each_clip(dataset, lambda item, c, path: check(path), require_path=False)


def _each_clip(dataset: Dataset, fn: Callable[[Item, Candidate, Path], object], require_path: bool) -> list[Problem]:
    """Run ``fn`` on each candidate's clip; the problems, each naming the item, candidate and path."""
    from dialbgm.data import AudioError

    problems: list[Problem] = []
    for item in dataset:
        for k, c in enumerate(item.candidates):
            where = (str(dataset.path), item.source_line, f"candidates[{k}].audio")
            if c.audio is None:
                if require_path:
                    problems.append(Problem(*where, f"item {item.id!r}, candidate {c.id!r}: no audio path"))
                continue
            path = clip_path(dataset.path, c.audio)
            try:
                fn(item, c, path)
            except AudioError as e:
                problems.append(Problem(*where, f"item {item.id!r}, candidate {c.id!r}: {path}: {e.reason}"))
    return problems


def audio_ref(clip: PreparedClip, dialect: str) -> dict[str, Any]:
    """The part a message holds for a clip: what identifies the bytes and how they will be sent
    (so both are in the cache key), never the bytes or the path."""
    d = clip.to_dict()
    return {"type": AUDIO_REF, "audio": {k: d[k] for k in _REF_FIELDS}, "dialect": dialect}


def clips_digest(clips: Mapping[tuple[str, str], PreparedClip]) -> str:
    """One hash of every clip a run sends: part of its config, so an edited clip is a changed run."""
    import hashlib
    import json

    listing = sorted((item, cand, clip.sha256) for (item, cand), clip in clips.items())
    return hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()


def text_chars(messages: list[dict[str, Any]]) -> int:
    """Characters of text in a request (its text parts only, when it carries audio)."""
    n = 0
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            n += len(c)
        elif isinstance(c, list):
            n += sum(len(p.get("text", "")) for p in c if isinstance(p, dict))
    return n


def _audio_parts(messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            yield from (p for p in content if p.get("type") == AUDIO_REF)


def audio_seconds(messages: list[dict[str, Any]]) -> float:
    """Seconds of audio a request carries (providers bill audio by its length)."""
    return sum(float(p["audio"]["duration_s"]) for p in _audio_parts(messages))


def has_audio(messages: list[dict[str, Any]]) -> bool:
    return next(_audio_parts(messages), None) is not None


def audio_bytes_sent(messages: list[dict[str, Any]]) -> int:
    """The size of the audio in a request as sent: base64 of every clip."""
    return sum(4 * ((p["audio"]["nbytes"] + 2) // 3) for p in _audio_parts(messages))


def check_request_size(messages: list[dict[str, Any]], provider: ProviderConfig, what: str) -> None:
    """A request's audio against the provider's limits (bytes, clips, seconds per clip), before any call."""
    caps = provider.capabilities
    limit = caps.max_audio_bytes
    if limit and (size := audio_bytes_sent(messages)) > limit:
        raise ConfigError(
            f"{what}: the request would carry {size:,} bytes of audio (base64), over the limit of {limit:,} "
            f"bytes of provider {provider.name!r} (capabilities.max_audio_bytes); send shorter clips "
            "(audio_seconds), a lower audio_sample_rate, or a compressed audio_format"
        )
    parts = list(_audio_parts(messages)) if caps.max_audio_clips or caps.max_clip_seconds else []
    if caps.max_audio_clips and len(parts) > caps.max_audio_clips:
        raise ConfigError(
            f"{what}: the request would carry {len(parts)} clips, over the {caps.max_audio_clips} of provider "
            f"{provider.name!r} (capabilities.max_audio_clips: a vLLM server refuses more than its "
            "--limit-mm-per-prompt allows); start the server with a higher limit and raise it, or use mode = pointwise"
        )
    longest = max((float(p["audio"]["duration_s"]) for p in parts), default=0.0)
    if caps.max_clip_seconds and longest > caps.max_clip_seconds + 1e-6:
        raise ConfigError(
            f"{what}: a clip lasts {longest:.2f} s, over the {caps.max_clip_seconds:g} s of provider {provider.name!r} "
            "(capabilities.max_clip_seconds: the model would cut the rest); set audio_seconds"
        )


def to_wire(messages: list[dict[str, Any]], store_root: Path) -> list[dict[str, Any]]:
    """The messages as the provider gets them: each audio reference replaced by its clip's bytes,
    in the dialect the reference names."""
    from dialbgm.data import PreparedClip, read_blob

    out = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, list):
            out.append(m)
            continue
        parts = []
        for p in content:
            if p.get("type") != AUDIO_REF:
                parts.append(p)
                continue
            clip = PreparedClip.from_dict({**p["audio"], "source": f"clip {p['audio']['sha256'][:12]}"})
            data = base64.b64encode(read_blob(store_root, clip)).decode("ascii")
            parts.append(wire_part(p["dialect"], data, clip.format, clip.mime))
        out.append({**m, "content": parts})
    return out


def wire_part(dialect: str, data: str, fmt: str, mime: str) -> dict[str, Any]:
    """One clip's content part as sent, base64 ``data`` given. vLLM reads both of its dialects the
    same way (input_audio becomes ``data:audio/<format>;base64,...`` on its side) and decodes the
    bytes with librosa, whatever the MIME type says."""
    if dialect == "audio_url":
        return {"type": "audio_url", "audio_url": {"url": f"data:{mime};base64,{data}"}}
    if dialect == "input_audio_data_uri":
        data = f"data:;base64,{data}"
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def describe_part(part: Mapping[str, Any]) -> str:
    """How ``render`` shows an audio part: format, length, rate, size and hash, never base64."""
    from dialbgm.data import PreparedClip

    clip = PreparedClip.from_dict({**part["audio"], "source": ""})
    return f"[audio: {clip.describe()}]"
