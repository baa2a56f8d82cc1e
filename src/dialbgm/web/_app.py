"""The Starlette application: routes → pages. Each page is a plain function of the request."""

from __future__ import annotations

from typing import Any

from dialbgm.web._settings import ViewSettings, need_web
from dialbgm.web._templates import STATIC, render


def create_app(settings: ViewSettings) -> Any:
    """The ASGI app over ``settings.results_dir``."""
    need_web()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from dialbgm.web._listing import list_runs

    def page(name: str, status: int = 200, **context: Any) -> Response:
        return HTMLResponse(render(name, **context), status_code=status, headers=_HEADERS)

    async def runs_page(request: Request) -> Response:
        return page("runs.html", title="Runs", results_dir=str(settings.results_dir), runs=list_runs(settings))

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("error.html", status=404, title="Not found", message="Nothing here.")

    routes = [
        Route("/", runs_page, name="runs"),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.settings = settings
    return app


_HEADERS = {
    # Nothing but this app: no inline script, no outside asset, no framing by another site.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
