"""Loading judge and provider files (TOML), and ``--set KEY=VALUE`` overrides.

Every setting is typed (into the records of ``_models``) and checked (by ``_checks``) when the
file is loaded, so a typo fails before any call, naming the file and the key.
"""

from __future__ import annotations

import datetime
import math
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, get_args

from dialbgm.config._checks import check_judge, check_name, check_provider, check_template_name
from dialbgm.config._models import (
    PATH_SETTINGS,
    AudioDialect,
    BatchApi,
    Capabilities,
    Context,
    InputMode,
    JudgeConfig,
    Kind,
    Mode,
    ProviderConfig,
    StructuredOutput,
)
from dialbgm.config._query import with_query
from dialbgm.config._workspace import Workspace
from dialbgm.errors import ConfigError, TemplateError


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
    check_provider(provider, path)
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
    judge = with_query(judge, path, over)
    check_judge(judge, path)
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
        "BatchApi": BatchApi,
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
