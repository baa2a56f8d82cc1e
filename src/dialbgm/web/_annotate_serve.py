"""Serving a campaign: the annotators' links (made once, printed once) and the HTTP server."""

from __future__ import annotations

from collections.abc import Callable

from dialbgm.errors import ConfigError
from dialbgm.web._annotate_app import AnnotationSite, build_annotation_app
from dialbgm.web._annotate_export import CampaignState
from dialbgm.web._server import bind, is_loopback, url_of
from dialbgm.web._settings import need_web


def remote_warning(host: str, allow_remote: bool) -> str | None:
    """Annotators on other machines need a non-loopback address; the links are then the only
    lock, and plain HTTP carries them in clear: say so, and ask for it explicitly."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ConfigError(
            f"--host {host} is not a loopback address: annotators elsewhere could reach the pages, protected only "
            "by their links, over plain HTTP. Add --allow-remote to do it (best behind an HTTPS proxy)."
        )
    return f"listening on {host}: the annotator links are the only protection, and HTTP sends them in clear"


def serve_campaign(
    state: CampaignState, host: str, port: int, say: Callable[[str], None], allow_remote: bool = False
) -> None:
    """Issue the tokens of annotators who have none, print their links, and serve until stopped."""
    need_web()
    import uvicorn

    if warning := remote_warning(host, allow_remote):
        say(f"warning: {warning}")
    sock = bind(host, port)
    c = state.campaign
    made = state.store.issue_tokens(c.name, c.annotators)
    base = url_of(sock).rstrip("/")
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
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled once it has shut down: the normal end
    finally:
        sock.close()
