"""Run the scripted OpenAI-compatible server in its own process (benchmarks keep its CPU apart).

python -m tests.support.serve --delay 0.2     # prints the base URL, serves until killed
"""

from __future__ import annotations

import argparse
import json
import time

from tests.support.scripted_server import Reply, ScriptedOpenAIServer


def answer(body: dict[str, object], n: int) -> Reply:
    messages = body.get("messages") or []
    user = str(messages[-1]["content"]) if isinstance(messages, list) and messages else ""  # type: ignore[index]
    lines = [ln for ln in user.splitlines() if ln.startswith("[")]
    return Reply(json.dumps({"scores": {ln[1]: 1 + len(ln) % 10 for ln in lines}}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    with ScriptedOpenAIServer(answer, delay_s=args.delay) as server:
        print(server.base_url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
