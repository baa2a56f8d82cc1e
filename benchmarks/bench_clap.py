"""CLAP embedding throughput on CPU: 1,200 items x 4 distinct clips of 10 s, first time and from the store.

    .venv/bin/python benchmarks/bench_clap.py [--items 1200] [--clips 4] [--baseline-clips 400] [--keep]

Clips are written as the run prepares them for a CLAP judge (10 s, 48 kHz, mono, 16-bit wav,
every one distinct by content) straight into a prepared-clip store: preparing them from sources
is bench_audio.py's subject. Each item is one request (its dialogue for the text tower, its four
clips for the audio tower) answered by the CLAP backend's ``complete``, as the engine calls it:

- first pass: an empty embedding store, so every clip and every query is embedded (the model's
  load is timed apart);
- second pass: a new backend on the filled store (what a second experiment cell with another
  query, or a cell with more orders, does): every vector is read back, the model is never loaded;
- baseline, in the same run: the bare transformers calls (feature extractor + get_audio_features,
  batches of 8) on the first ``--baseline-clips`` clips, without dialbgm.

Models: the tiny, randomly initialised ClapModel of the tests (built here), and
laion/clap-htsat-unfused when it is in the local Hugging Face cache (never downloaded here).
Files go under benchmarks/out/clap/ (removed unless --keep).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from common import print_report  # noqa: E402

RATE = 48000
SECONDS = 10.0


def write_clips(store_root: Path, n: int) -> list[dict[str, Any]]:
    """``n`` distinct prepared clips (tones + noise, each its own seed) as audio_ref parts."""
    import hashlib

    import numpy as np
    import soundfile as sf

    from dialbgm.data import PreparedClip
    from dialbgm.data._clips import blob_path, write_atomically
    from dialbgm.judging import audio_ref

    frames = round(SECONDS * RATE)
    t = np.arange(frames, dtype=np.float32) / RATE
    parts = []
    for k in range(n):
        rng = np.random.default_rng(k)
        tones = sum(0.15 * np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 880, 3))
        x = (tones + 0.05 * rng.standard_normal(frames)).astype(np.float32)
        buffer = io.BytesIO()
        sf.write(buffer, x, RATE, format="WAV", subtype="PCM_16")
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        clip = PreparedClip(sha, "wav", "audio/wav", RATE, 1, SECONDS, len(data), f"bench-{k}")
        write_atomically(blob_path(store_root, clip), data)
        parts.append(audio_ref(clip, "input_audio"))
    return parts


def make_backend(ws: Any, model: str) -> Any:
    from dialbgm.calls.backends._clap import ClapBackend
    from dialbgm.config import JudgeConfig, ProviderConfig

    judge = JudgeConfig(name="bench-clap", provider="clap", model=model, input="audio", audio_sample_rate=RATE)
    return ClapBackend(judge, ProviderConfig(name="clap", kind="clap"), ws)


def requests(backend: Any, parts: list[dict[str, Any]], items: int, per_item: int) -> list[Any]:
    from dialbgm.data import Candidate, Item, Turn

    out = []
    for i in range(items):
        dialogue = (Turn("A", f"Shall we meet at the station at {i % 12 + 1}?"), Turn("B", f"Yes, see you, item {i}."))
        shown = tuple(Candidate(f"c{i}-{k}", None, "x.wav", k + 1) for k in range(per_item))
        mine = parts[i * per_item : (i + 1) * per_item]
        out.append(backend.build_request(Item(f"i{i}", dialogue, shown), shown, mine, None, 0))
    return out


def bench_model(
    label: str, model: str, ws: Any, parts: list[dict[str, Any]], args: argparse.Namespace
) -> list[tuple[str, str]]:
    from dialbgm.calls.backends import _clap

    rows: list[tuple[str, str]] = []
    n_clips = args.items * args.clips
    backend = make_backend(ws, model)
    reqs = requests(backend, parts, args.items, args.clips)
    t0 = time.perf_counter()
    backend._model()  # the load, timed apart from the embedding
    rows.append(
        (f"{label}: load (from_pretrained; torch was imported by the set-up)", f"{time.perf_counter() - t0:.2f} s")
    )
    _clap.TOTALS.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    for r in reqs:
        backend.complete(r)
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    backend.close()
    assert _clap.TOTALS.audio_computed == n_clips, _clap.TOTALS
    rows.append(
        (
            f"{label}: first pass, {args.items} requests x {args.clips} clips (all embedded)",
            f"{first:.1f} s ({n_clips / first:.1f} clips/s; CPU {1000 * first_cpu / n_clips:.0f} ms per clip)",
        )
    )
    _clap.TOTALS.reset()
    again = make_backend(ws, model)
    t0 = time.perf_counter()
    for r in reqs:
        again.complete(r)
    second = time.perf_counter() - t0
    again.close()
    assert _clap.TOTALS.audio_computed == 0 and _clap.TOTALS.audio_stored == n_clips, _clap.TOTALS
    rows.append(
        (
            f"{label}: second pass, new backend on the filled store (model not loaded)",
            f"{second:.2f} s ({n_clips / second:.0f} clips/s; {first / second:.0f}x the first)",
        )
    )
    base, base_cpu = bare_baseline(backend, parts[: args.baseline_clips])
    rows.append(
        (
            f"{label}: baseline, bare transformers on {args.baseline_clips} clips (batches of 8)",
            f"{base:.1f} clips/s; CPU {1000 * base_cpu:.0f} ms per clip (first pass / baseline, by CPU per clip: "
            f"{base_cpu / (first_cpu / n_clips):.2f})",
        )
    )
    return rows


def bare_baseline(backend: Any, parts: list[dict[str, Any]]) -> tuple[float, float]:
    import numpy as np
    import soundfile as sf
    import torch

    model, processor = backend._model()
    blobs = [backend.audio_root / "blobs" / p["audio"]["sha256"][:2] / f"{p['audio']['sha256']}.wav" for p in parts]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for start in range(0, len(blobs), 8):
            waves = [sf.read(b, dtype="float32")[0] for b in blobs[start : start + 8]]
            features = processor.feature_extractor(waves, sampling_rate=RATE, return_tensors="pt")
            out = model.get_audio_features(**features)
            np.asarray(getattr(out, "pooler_output", out))
    return len(blobs) / (time.perf_counter() - t0), (time.process_time() - c0) / len(blobs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--baseline-clips", type=int, default=400)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a model id is looked up in the local cache only

    from tests.support.tiny_clap import save_tiny_clap

    from dialbgm.config import Workspace

    out = ROOT / "benchmarks" / "out" / "clap"
    shutil.rmtree(out, ignore_errors=True)
    (out / "ws").mkdir(parents=True)
    (out / "ws" / "dialbgm.toml").write_text("")
    ws = Workspace(out / "ws")
    rows: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    parts = write_clips(ws.audio_dir, args.items * args.clips)
    rows.append(
        (
            f"set-up: {len(parts)} distinct prepared clips (10 s, 48 kHz, mono wav), not timed below",
            f"{time.perf_counter() - t0:.1f} s",
        )
    )
    save_tiny_clap(out / "tiny")
    rows += bench_model("tiny model", str(out / "tiny"), ws, parts, args)
    try:
        from dialbgm.calls.backends._clap_weights import weights_folder

        weights_folder("laion/clap-htsat-unfused", ws.root)
    except Exception as e:
        rows.append(("laion/clap-htsat-unfused", f"not present locally, not run ({str(e).splitlines()[0][:90]})"))
    else:
        shutil.rmtree(ws.cache_dir.with_name(ws.cache_dir.name + "-embeddings"), ignore_errors=True)
        rows += bench_model("laion/clap-htsat-unfused", "laion/clap-htsat-unfused", ws, parts, args)
    print_report(rows)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
