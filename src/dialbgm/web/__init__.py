"""``dialbgm view``: a local web app over run and experiment folders (Starlette, served by uvicorn).

Pages are rendered on the server from Jinja2 templates with autoescape on; every asset (CSS,
the little JavaScript) is served by the app itself, nothing comes from a CDN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialbgm._lazy import exports

__all__ = [
    "ViewSettings",
    "check_host",
    "create_app",
    "need_web",
    "serve",
]

_WHERE = {
    "ViewSettings": "._settings",
    "check_host": "._server",
    "create_app": "._app",
    "need_web": "._settings",
    "serve": "._server",
}

if TYPE_CHECKING:
    from dialbgm.web._app import create_app
    from dialbgm.web._server import check_host, serve
    from dialbgm.web._settings import ViewSettings, need_web

__getattr__ = exports(__name__, _WHERE)
