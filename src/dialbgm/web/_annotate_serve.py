"""Serving a campaign: the annotators' links (made once, printed once) and the HTTP server."""

from __future__ import annotations

import socket
from collections.abc import Callable

from dialbgm.errors import InputError
from dialbgm.web._annotate_app import AnnotationSite, build_annotation_app
from dialbgm.web._annotate_export import CampaignState


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the links are printed so that they name the real port
    (``port`` 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve_campaign(state: CampaignState, sock: socket.socket, say: Callable[[str], None]) -> None:
    """Issue the tokens of annotators who have none, print their links, and serve until stopped."""
    import uvicorn

    c = state.campaign
    made = state.store.issue_tokens(c.name, c.annotators)
    base = base_url(sock)
    say(f"campaign {c.name}: {len(state.data)} items from {state.data.path}; submissions in {state.store.describe()}")
    if made:
        say("new annotator links (shown only this once: keep them, each is that annotator's password):")
        for name, token in made.items():
            say(f"  {name}: {base}/a/{token}")
    others = [a for a in c.annotators if a not in made]
    if others:
        say(f"links made earlier (not shown again): {', '.join(others)}")
    say(f"serving on {base} (Ctrl-C to stop; every submission is already stored)")
    app = build_annotation_app(AnnotationSite(c, state.data, state.store))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
