"""Audio preparation at benchmark scale: 1,200 items x 4 clips of 10 s, through the ClipStore.

    .venv/bin/python benchmarks/bench_audio.py [--items 1200] [--clips 4] [--seconds 10] [--keep]

Each clip is decoded, trimmed to a 10 s window (from 1 s into a 12 s source), downmixed to
mono, resampled 44.1 -> 16 kHz, encoded as wav and hashed; a first pass fills the store, a
second pass is served from it. Sources are realistic 44.1 kHz stereo, 12 s long, in flac, ogg,
mp3 and wav, every file distinct by content: a pool of rendered pieces and synthetic clips, each
file a pool clip with its own gain and rotation. Writing them is the set-up, timed on its own
and run in worker processes so that it does not count towards this process's peak memory.

Peak RSS is reported against a baseline taken right after importing numpy, soundfile and
scipy.signal, and after 10 % of the clips against after all of them: the store streams, so the
peak must not grow with the number of clips. Files go under benchmarks/out/ (removed unless --keep).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_report  # noqa: E402

RATE = 44100
SOURCE_SECONDS = 12.0
FORMATS = ("flac", "ogg", "mp3", "wav")
SUBTYPES = {"flac": "PCM_16", "ogg": "VORBIS", "mp3": "MPEG_LAYER_III", "wav": "PCM_16"}
SYNTHETIC = 8


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# Set-up (worker processes)


def make_pool_clip(args: tuple[int, str]) -> str:
    """Pool clip ``index``: a composed piece rendered at 44.1 kHz, or a synthetic one; saved as .npy."""
    import numpy as np

    index, folder = args
    frames = round(SOURCE_SECONDS * RATE)
    from dialbgm_tools.sample_music import PIECES, compose, render

    if index < len(PIECES):
        x = render(compose(PIECES[index]), SOURCE_SECONDS, RATE)
    else:
        rng = np.random.default_rng(index)
        t = np.arange(frames) / RATE
        # A few tones, each with its own slow tremolo.
        tremolo = [1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t) for _ in range(4)]
        tones = sum(0.2 * np.sin(2 * np.pi * f * t) * m for f, m in zip(rng.uniform(110, 880, 4), tremolo, strict=True))
        # Brown-ish noise: an integrated, leaky random walk, different in each channel.
        walk = np.cumsum(rng.standard_normal((frames, 2)), axis=0)
        walk -= np.linspace(walk[0], walk[-1], frames)
        noise = 0.3 * walk / np.abs(walk).max()
        x = (tones[:, None] + noise).astype(np.float32)
        x *= np.float32(0.7 / np.abs(x).max())
    path = Path(folder) / f"pool-{index:02d}.npy"
    np.save(path, x.astype(np.float32))
    return str(path)


@cache
def _pool(folder: str, index: int) -> Any:
    import numpy as np

    return np.load(Path(folder) / f"pool-{index:02d}.npy", mmap_mode="r")


def make_source(args: tuple[int, str, str, int]) -> int:
    """Source file ``i``: pool clip i mod n, with its own gain and rotation, in format i mod 4."""
    import numpy as np
    import soundfile as sf

    i, pool_folder, out_folder, pool_size = args
    x = np.asarray(_pool(pool_folder, i % pool_size))
    gain = 0.5 + 0.45 * ((i * 0.6180339887) % 1.0)
    y = np.roll(x, (i * 7919) % len(x), axis=0) * np.float32(gain)
    fmt = FORMATS[i % len(FORMATS)]
    path = Path(out_folder) / f"{i // 100:03d}" / f"src-{i:05d}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, RATE, format=fmt.upper(), subtype=SUBTYPES[fmt])
    return path.stat().st_size


def set_up(out: Path, n_files: int, workers: int) -> tuple[list[Path], int]:
    from dialbgm_tools.sample_music import PIECES

    pool_folder, src_folder = out / "pool", out / "sources"
    pool_folder.mkdir(parents=True, exist_ok=True)
    src_folder.mkdir(parents=True, exist_ok=True)
    pool_size = len(PIECES) + SYNTHETIC
    # spawn: the workers start clean, and nothing they allocate is charged to this process.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(make_pool_clip, [(i, str(pool_folder)) for i in range(pool_size)])
        tasks = [(i, str(pool_folder), str(src_folder), pool_size) for i in range(n_files)]
        total = sum(pool.imap(make_source, tasks, chunksize=16))
    shutil.rmtree(pool_folder)
    files = sorted(src_folder.glob("*/src-*.*"))
    assert len(files) == n_files, (len(files), n_files)
    return files, total


# ---------------------------------------------------------------------------------------------
# The measured passes


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1200)
    ap.add_argument("--clips", type=int, default=4, help="clips per item")
    ap.add_argument("--seconds", type=float, default=10.0, help="window sent per clip")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the set-up")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_audio")
    ap.add_argument("--keep", action="store_true", help="keep the sources and the store")
    args = ap.parse_args()

    import numpy  # noqa: F401  (the baseline: what any audio code pays before its first clip)
    import scipy.signal  # noqa: F401
    import soundfile  # noqa: F401

    baseline = peak_rss_mb()
    if args.out.exists():
        shutil.rmtree(args.out)
    n = args.items * args.clips

    t0 = time.perf_counter()
    files, source_bytes = set_up(args.out, n, args.workers)
    setup_s = time.perf_counter() - t0
    print(f"set-up: {n:,} source files, {source_bytes / 1e6:,.0f} MB, in {setup_s:.0f} s", flush=True)

    from dialbgm.data import AudioSpec, ClipStore

    spec = AudioSpec(("wav",), sample_rate=16000, channels=1, start_s=1.0, duration_s=args.seconds)
    tenth = max(1, n // 10)
    with ClipStore(args.out / "store") as store:
        t0 = time.perf_counter()
        for k, path in enumerate(files, 1):
            clip = store.get_or_prepare(path, spec)
            if k == tenth:
                rss_tenth, t_tenth = peak_rss_mb(), time.perf_counter() - t0
        first_s = time.perf_counter() - t0
        rss_first = peak_rss_mb()
        assert clip.duration_s == args.seconds and clip.sample_rate == 16000 and clip.channels == 1
        print(f"first pass: {first_s:.0f} s", flush=True)

        t0 = time.perf_counter()
        sent = 0
        for path in files:
            sent += len(store.read(store.get_or_prepare(path, spec)))
        second_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for path in files:
            store.get_or_prepare(path, spec)
        index_s = time.perf_counter() - t0
        stats = store.stats()
    rss_all = peak_rss_mb()
    assert stats["misses"] == n and stats["hits"] == 2 * n, stats

    mix = ", ".join(f"{fmt} {sum(p.suffix == '.' + fmt for p in files):,}" for fmt in FORMATS)
    rows = [
        ("workload", f"{args.items:,} items x {args.clips} clips = {n:,} distinct sources ({mix})"),
        ("source clips", f"44.1 kHz stereo, {SOURCE_SECONDS:g} s, {source_bytes / 1e6:,.0f} MB in all"),
        ("prepared clip", f"{args.seconds:g} s window from 1 s, mono, 16 kHz, wav ({clip.nbytes:,} B)"),
        ("set-up: writing the sources (not counted)", f"{setup_s:.0f} s with {args.workers} worker processes"),
        ("first pass: decode, trim, downmix, resample, encode, hash, store", f"{first_s:.1f} s"),
        ("first pass: clips/s (one process)", f"{n / first_s:,.1f}"),
        (f"first pass: first 10 % ({tenth:,} clips)", f"{t_tenth:.1f} s"),
        ("second pass: index hit + blob read (sha256 verified)", f"{second_s:.2f} s ({n / second_s:,.0f} clips/s)"),
        ("second pass: index hit only", f"{index_s:.2f} s ({n / index_s:,.0f} clips/s)"),
        ("speed-up of the second pass (hit + read)", f"{first_s / second_s:.0f}x"),
        ("store on disk", f"{stats['blobs']:,} blobs, {stats['bytes'] / 1e6:,.0f} MB; {stats['entries']:,} entries"),
        ("bytes read back in the second pass", f"{sent / 1e6:,.0f} MB"),
        ("peak RSS baseline (numpy + soundfile + scipy.signal imported)", f"{baseline:.0f} MB"),
        (f"peak RSS after 10 % of the first pass ({tenth:,} clips)", f"{rss_tenth:.0f} MB"),
        (f"peak RSS after the first pass ({n:,} clips)", f"{rss_first:.0f} MB"),
        ("peak RSS after both passes", f"{rss_all:.0f} MB"),
        ("growth over the baseline", f"+{rss_all - baseline:.0f} MB ({rss_all / baseline:.2f}x)"),
        ("growth from 10 % to 100 % of the clips", f"+{rss_first - rss_tenth:.1f} MB"),
    ]
    print_report(rows)
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
