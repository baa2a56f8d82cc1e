"""The annotation pages: one link per annotator (``/a/TOKEN``), one page per item of their seeded
sequence, each submission stored at once.

Security, in one place: the token in the path is the annotator's identity (unknown or missing:
403), so a link reaches only its own sequence and submissions; a POST needs the session cookie,
the CSRF token of that session and annotator, and an Origin (or Referer) of this server; a clip
is fetched by its position on the annotator's page, never by a path (anything else: 404); every
text goes through Jinja's autoescape.
"""

from __future__ import annotations

import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialbgm.web._annostore import AnnotationStore, Submission
from dialbgm.web._annotate_forms import (
    LABELS,
    MAX_FORM_BYTES,
    SESSION_COOKIE,
    FormError,
    csrf_token,
    parse_form,
    parse_ranking,
    same_origin,
)
from dialbgm.web._campaign import Campaign, Slot
from dialbgm.web._templates import STATIC as STATIC_ROOT
from dialbgm.web._templates import render

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from dialbgm.data import Dataset

STATIC = STATIC_ROOT / "annotate"
_STATIC_FILES = {"annotate.js": "text/javascript", "annotate.css": "text/css"}


@dataclass
class _Annotator:
    name: str
    slots: list[Slot]


class AnnotationSite:
    """The campaign being served: its sequences are computed once per annotator and kept."""

    def __init__(self, campaign: Campaign, data: Dataset, store: AnnotationStore) -> None:
        self.campaign = campaign
        self.data = data
        self.store = store
        self.secret = store.secret(campaign.name)
        self._sequences: dict[str, list[Slot]] = {}

    # ------------------------------------------------------------------ who is asking

    def annotator(self, token: str) -> _Annotator | None:
        name = self.store.annotator_for(self.campaign.name, token) if token else None
        if name is None or name not in self.campaign.annotators:
            return None
        if name not in self._sequences:
            self._sequences[name] = self.campaign.sequence(name, self.data)
        return _Annotator(name, self._sequences[name])

    def clip_path(self, slot: Slot, index: int) -> Path | None:
        audio = slot.item.candidates[index].audio
        if audio is None:
            return None
        base = self.campaign.gold.dataset.path if slot.gold and self.campaign.gold else self.data.path
        p = Path(audio)
        p = p if p.is_absolute() else base.parent / p
        return p if p.is_file() else None

    def render(self, name: str, status: int = 200, **context: Any) -> Response:
        from starlette.responses import HTMLResponse

        return HTMLResponse(render(f"annotate/{name}", **context), status_code=status)

    def forbidden(self) -> Response:
        return self.render("denied.html", 403, campaign=self.campaign.name)


def _session(request: Request) -> tuple[str, bool]:
    """The browser's session id (made on its first page: new = True, to be set as a cookie)."""
    sid = request.cookies.get(SESSION_COOKIE, "")
    if len(sid) == 43 and sid.replace("-", "").replace("_", "").isalnum():
        return sid, False
    return secrets.token_urlsafe(32), True


def _with_session(response: Response, sid: str, new: bool) -> Response:
    if new:
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; media-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return response


def _page_context(site: AnnotationSite, who: _Annotator, slot: Slot, sid: str) -> dict[str, Any]:
    c = site.campaign
    mine = {(s.kind, s.item): s for s in site.store.submissions(c.name, who.name)}
    previous: Submission | None = mine.get((slot.kind, slot.item.id))
    order = c.candidate_order(who.name, slot.item, slot.gold)
    n = len(order)
    shown = []
    for k, i in enumerate(order):
        cand = slot.item.candidates[i]
        rank = previous.ranks.get(cand.id) if previous else None
        shown.append(
            {
                "label": LABELS[k],
                "k": k,
                "caption": cand.caption if c.captions else None,
                "audio": site.clip_path(slot, i) is not None,
                "rank": rank if rank is not None else k + 1,
            }
        )
    if previous:
        # The list is shown in rank order, so a page revisited looks as it was submitted.
        shown.sort(key=lambda s: (s["rank"], s["k"]))
    has_audio = any(s["audio"] for s in shown)
    return {
        "campaign": c.name,
        "annotator": who.name,
        "token": "",  # filled by the caller: the page's own link
        "slot": slot,
        "dialogue": slot.item.dialogue,
        "shown": shown,
        "n": n,
        "ties": c.ties,
        "guideline": c.guideline,
        "min_listen": c.min_listen_seconds if has_audio else 0,
        "csrf": csrf_token(site.secret, sid, who.name),
        "position": slot.position,
        "total": len(who.slots),
        "done": len(mine),
        "submitted": previous is not None,
        "error": None,
    }


def _first_open(site: AnnotationSite, who: _Annotator) -> int | None:
    done = {(s.kind, s.item) for s in site.store.submissions(site.campaign.name, who.name)}
    return next((s.position for s in who.slots if (s.kind, s.item.id) not in done), None)


def build_annotation_app(site: AnnotationSite) -> Starlette:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    c = site.campaign

    async def home(request: Request) -> Response:
        return site.forbidden()

    async def start(request: Request) -> Response:
        token = request.path_params["token"]
        who = await run_in_threadpool(site.annotator, token)
        if who is None:
            return site.forbidden()
        sid, new = _session(request)
        pos = await run_in_threadpool(_first_open, site, who)
        target = f"/a/{token}/done" if pos is None else f"/a/{token}/item/{pos}"
        return _with_session(RedirectResponse(target, status_code=303), sid, new)

    def _slot(who: _Annotator, request: Request) -> Slot | None:
        pos = request.path_params["pos"]
        return who.slots[pos] if 0 <= pos < len(who.slots) else None

    def show(request: Request, who: _Annotator, slot: Slot, sid: str, error: str | None = None) -> Response:
        ctx = _page_context(site, who, slot, sid)
        ctx["token"] = request.path_params["token"]
        ctx["error"] = error
        return site.render("item.html", 422 if error else 200, **ctx)

    async def item(request: Request) -> Response:
        token = request.path_params["token"]
        who = await run_in_threadpool(site.annotator, token)
        if who is None:
            return site.forbidden()
        slot = _slot(who, request)
        if slot is None:
            return PlainTextResponse("no such page", status_code=404)
        sid, new = _session(request)
        if request.method == "GET":
            await run_in_threadpool(site.store.record_open, c.name, who.name, slot.kind, slot.item.id)
            return _with_session(await run_in_threadpool(show, request, who, slot, sid), sid, new)
        # POST: the session must already exist, and the form be this session's and this page's.
        host = request.headers.get("host", "")
        if new or not same_origin(request.headers, request.url.scheme, host):
            return PlainTextResponse("cross-site request refused", status_code=403)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:  # read no further than a form can need
                return PlainTextResponse("form too large", status_code=413)
        try:
            form = parse_form(body)
        except FormError:
            return PlainTextResponse("bad form", status_code=400)
        expected = csrf_token(site.secret, sid, who.name)
        if not secrets.compare_digest(form.get("csrf", "").encode(), expected.encode()):
            return PlainTextResponse("cross-site request refused", status_code=403)
        order = c.candidate_order(who.name, slot.item, slot.gold)
        shown_ids = [slot.item.candidates[i].id for i in order]
        try:
            ranking = parse_ranking(form, shown_ids, c.ties)
            has_audio = any(site.clip_path(slot, i) is not None for i in order)
            if has_audio and c.min_listen_seconds > 0:
                opened = await run_in_threadpool(site.store.opened_at, c.name, who.name, slot.kind, slot.item.id)
                import time

                if opened is None or time.time() - opened < c.min_listen_seconds:
                    raise FormError(f"listen to the clips first (at least {c.min_listen_seconds:g} s each)")
        except FormError as e:
            return _with_session(await run_in_threadpool(show, request, who, slot, sid, str(e)), sid, new)
        await run_in_threadpool(
            site.store.submit, c.name, who.name, slot.kind, slot.item.id, slot.position, ranking.ranks, ranking.listened
        )
        pos = await run_in_threadpool(_first_open, site, who)
        target = f"/a/{token}/done" if pos is None else f"/a/{token}/item/{pos}"
        return _with_session(RedirectResponse(target, status_code=303), sid, new)

    async def clip(request: Request) -> Response:
        who = await run_in_threadpool(site.annotator, request.path_params["token"])
        if who is None:
            return site.forbidden()
        slot = _slot(who, request)
        k = request.path_params["k"]
        if slot is None:
            return PlainTextResponse("no such clip", status_code=404)
        order = c.candidate_order(who.name, slot.item, slot.gold)
        path = site.clip_path(slot, order[k]) if 0 <= k < len(order) else None
        if path is None:
            return PlainTextResponse("no such clip", status_code=404)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})

    async def done(request: Request) -> Response:
        token = request.path_params["token"]
        who = await run_in_threadpool(site.annotator, token)
        if who is None:
            return site.forbidden()
        sid, new = _session(request)
        subs = await run_in_threadpool(site.store.submissions, c.name, who.name)
        submitted = {(s.kind, s.item) for s in subs}
        pages = [{"position": s.position, "done": (s.kind, s.item.id) in submitted} for s in who.slots]
        page = site.render(
            "done.html",
            campaign=c.name,
            annotator=who.name,
            token=token,
            pages=pages,
            finished=all(p["done"] for p in pages),
            done=len(submitted),
            total=len(who.slots),
        )
        return _with_session(page, sid, new)

    async def guideline(request: Request) -> Response:
        token = request.path_params["token"]
        who = await run_in_threadpool(site.annotator, token)
        if who is None:
            return site.forbidden()
        return site.render("guideline.html", campaign=c.name, guideline=c.guideline, token=token)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC_FILES:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(STATIC / name, media_type=_STATIC_FILES[name])

    routes = [
        Route("/", home),
        Route("/a", home),
        Route("/a/", home),
        Route("/a/{token}", start),
        Route("/a/{token}/item/{pos:int}", item, methods=["GET", "POST"]),
        Route("/a/{token}/clip/{pos:int}/{k:int}", clip),
        Route("/a/{token}/done", done),
        Route("/a/{token}/guideline", guideline),
        Route("/static/annotate/{name}", static),
    ]
    return Starlette(routes=routes)
