"""A small annotation campaign written into a folder: data with real (synthetic) WAV clips, a
gold file, a campaign file, and the server started as a real subprocess."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

DIALOGUES = {
    "d1": ["Happy birthday! Make a wish.", "I wish for cake <b>and</b> more cake."],
    "d2": ["I'm sorry for your loss.", "Thank you. He loved quiet mornings."],
    "d3": ["Let's go, the train leaves in five minutes!", "Run, run!"],
}
CLIPS = ["party", "piano", "drums"]


def write_wav(path: Path, seconds: float, freq: float) -> None:
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * n / rate))) for n in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def item(iid: str, turns: list[str], audio: bool, ranks: list[int] | None = None) -> dict[str, object]:
    cands = []
    for n, clip in enumerate(CLIPS):
        cand: dict[str, object] = {"id": f"{iid}-{clip}", "caption": f"{clip} music <i>for</i> {iid}"}
        if audio:
            cand["audio"] = f"clips/{clip}.wav"
        if ranks is not None:
            cand["rank"] = ranks[n]
        cands.append(cand)
    return {
        "id": iid,
        "dialogue": [{"speaker": "AB"[k % 2], "text": t} for k, t in enumerate(turns)],
        "candidates": cands,
    }


def write_campaign(folder: Path, *, audio: bool = True, gold: bool = True, **settings: object) -> Path:
    """The campaign file ``folder/campaigns/demo.toml`` (a workspace: dialbgm.toml is written too)."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    (folder / "campaigns").mkdir(exist_ok=True)
    (folder / "dialbgm.toml").write_text("")
    if audio:
        for n, clip in enumerate(CLIPS):
            write_wav(folder / "clips" / f"{clip}.wav", 1.0, 220 * (n + 1))
    rows = [item(i, t, audio) for i, t in DIALOGUES.items()]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if gold:
        g = item("g1", ["Shh, the baby is asleep.", "Let's whisper."], audio, ranks=[3, 1, 2])
        (folder / "gold.jsonl").write_text(json.dumps(g) + "\n")
    lines = ['annotators = ["alice", "bob"]', "seed = 7"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    if gold:
        lines += ["[gold]", 'data = "gold.jsonl"', "rate = 0.34", "failure_threshold = 0.5"]
    path = folder / "campaigns" / "demo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Server:
    proc: subprocess.Popen[str]
    base: str
    links: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(folder: Path, *args: str, timeout: float = 60) -> Server:
    """``dialbgm annotate data.jsonl --campaign demo --port 0`` in ``folder``; returns once it serves."""
    env = {**os.environ, "DIALBGM_HOME": str(folder), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialbgm", "annotate", "data.jsonl", "--campaign", "demo", "--port", "0", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    links: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the server ended early:\n{''.join(lines)}")
        lines.append(line)
        if m := re.match(r"\s+(\S+): (http://\S+/a/\S+)$", line):
            links[m.group(1)] = m.group(2)
        if m := re.match(r"serving on (http://\S+)", line):
            server = Server(proc, m.group(1), links, lines)
            _wait_listening(server)
            return server
    proc.kill()
    raise AssertionError(f"the server did not start:\n{''.join(lines)}")


def _wait_listening(server: Server) -> None:
    import httpx

    for _ in range(200):
        try:
            httpx.get(server.base + "/", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the server does not answer")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, html[:500]
    return m.group(1)


def open_page(client: object, link: str) -> tuple[str, str]:
    """Follow an annotator's link to the page it lands on: (that page's URL, its HTML)."""
    import httpx

    assert isinstance(client, httpx.Client)
    r = client.get(link, follow_redirects=True)
    assert r.status_code == 200, r.text[:300]
    return str(r.url), r.text


def rank_form(html: str, ranks: dict[str, int], csrf: str | None = None) -> dict[str, str]:
    """The form fields that give the clips (by the caption's first word: party/piano/drums) these ranks."""
    blocks = re.findall(r'data-k="(\d+)" id="cand-[A-Z]">.*?<p class="caption">(\w+) music', html, re.S)
    assert len(blocks) == len(ranks), html[:500]
    form = {"csrf": csrf or csrf_of(html)}
    for k, clip in blocks:
        form[f"rank-{k}"] = str(ranks[clip])
        form[f"listened-{k}"] = "1.0"
    return form


def item_of(html: str) -> str:
    """The item id a page shows (the captions name it: 'party music <i>for</i> d2')."""
    m = re.search(r"music &lt;i&gt;for&lt;/i&gt; (\w+)", html)
    assert m
    return m.group(1)
