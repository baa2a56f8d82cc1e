"""The Starlette application: routes → pages. Each page is a plain function of the request.

Page work (SQLite, file reads, an index build) is synchronous and runs in Starlette's thread
pool, so one slow page does not hold the others.
"""

from __future__ import annotations

from typing import Any

from dialbgm.web._settings import ViewSettings, need_web
from dialbgm.web._templates import STATIC, render


def create_app(settings: ViewSettings) -> Any:
    """The ASGI app over ``settings.results_dir``."""
    need_web()
    if settings.index_dir is None:
        from dataclasses import replace

        from dialbgm.web._settings import default_index_dir

        settings = replace(settings, index_dir=default_index_dir())
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from dialbgm.errors import DialbgmError
    from dialbgm.web._audio import playable
    from dialbgm.web._index import data_path_of
    from dialbgm.web._listing import list_runs
    from dialbgm.web._pages import NotFound, index_of, item_context, run_context

    def page(name: str, status: int = 200, **context: Any) -> Response:
        return HTMLResponse(render(name, **context), status_code=status, headers=HEADERS)

    def problem(e: DialbgmError) -> Response:
        return page("error.html", status=422, title="Cannot be shown", message=str(e))

    async def runs_page(request: Request) -> Response:
        runs = await run_in_threadpool(list_runs, settings)
        return page("runs.html", title="Runs", results_dir=str(settings.results_dir), runs=runs)

    async def run_page(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            others = await run_in_threadpool(list_runs, settings)
            ctx = await run_in_threadpool(run_context, settings, key, dict(request.query_params), others)
        except NotFound:
            raise HTTPException(404) from None
        except DialbgmError as e:
            return problem(e)
        return page("run.html", **ctx)

    async def item_page(request: Request) -> Response:
        try:
            ctx = await run_in_threadpool(
                item_context, settings, request.path_params["key"], request.query_params.get("id", "")
            )
        except NotFound:
            raise HTTPException(404) from None
        except DialbgmError as e:
            return problem(e)
        return page("item.html", **ctx)

    def _find_audio(key: str, item_id: str, candidate: str) -> Any:
        index = index_of(settings, key)
        data_path = data_path_of(index.meta()["manifest"])
        return playable(index, data_path.parent if data_path else None, item_id, candidate)

    async def audio(request: Request) -> Response:
        q = request.query_params
        try:
            found = await run_in_threadpool(
                _find_audio, request.path_params["key"], q.get("item", ""), q.get("cand", "")
            )
        except (NotFound, DialbgmError):
            found = None
        if found is None:
            raise HTTPException(404)
        return FileResponse(found.path, media_type=found.media_type, headers=HEADERS)

    async def not_found(request: Request, exc: Exception) -> Response:
        return page("error.html", status=404, title="Not found", message="Nothing here.")

    routes = [
        Route("/", runs_page, name="runs"),
        # The item and audio routes first: a run's key is a path, and would swallow their suffix.
        Route("/run/{key:path}/-/item", item_page, name="item"),
        Route("/run/{key:path}/-/audio", audio, name="audio"),
        Route("/run/{key:path}", run_page, name="run"),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.settings = settings
    return HostCheck(app, settings.allowed_hosts)


def host_of(header: str) -> str:
    """``127.0.0.1:8000`` → ``127.0.0.1``; ``[::1]:8000`` → ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """Answer only requests whose ``Host`` is one this server is reached by on loopback."""

    def __init__(self, app: Any, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "*" not in self.allowed:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if host_of(host) not in self.allowed:
                from starlette.responses import PlainTextResponse

                response = PlainTextResponse("This server answers only on loopback addresses.", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


HEADERS = {
    # Nothing but this app: no inline script, no outside asset, no framing by another site.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
