"""Serving the app with uvicorn: loopback by default, a free port, a printed link, Ctrl-C stops."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from dialbgm.errors import ConfigError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def check_host(host: str, allow_remote: bool) -> str | None:
    """None for a loopback host; a warning to print for another one when ``allow_remote``; else
    a ConfigError (the pages show dialogues, replies and audio to whoever can connect)."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise ConfigError(
            f"--host {host} is not a loopback address: anyone who can reach this machine there could read "
            "every run, its data and its audio (there is no login). Add --allow-remote to do it anyway."
        )
    return (
        f"listening on {host}, not on loopback: anyone who can reach this machine there can read every run, "
        "its data and its audio (there is no login)"
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one, chosen by the system)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app: Any, host: str, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` on ``host:port`` (0: a free port) until Ctrl-C (or SIGTERM); uvicorn's own
    signal handlers finish the requests in flight. A port that cannot be bound is a ConfigError,
    raised before anything is served."""
    import uvicorn

    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    if on_ready is not None:
        # The socket already listens: a browser opened on this link now waits in its backlog.
        on_ready(url_of(sock))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled, once it has shut down: stopping is the normal end
    finally:
        sock.close()
