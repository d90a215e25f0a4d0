"""The A/B comparison web app (FastAPI, server-rendered Jinja2 pages, one small script).

Pages and forms (every form POSTs with a CSRF token, then redirects: post/redirect/get):

* ``GET /login``, ``POST /login`` — sign in with a rater's access token (sets an HttpOnly cookie);
* ``GET /`` — the rater's conversations; ``POST /conversations`` starts one;
* ``GET /c/{id}`` — the conversation; either the message box, or the pending pair with the
  8-point A/B scale and a comment box;
* ``POST /c/{id}/message`` — generate both replies (queued behind the one generation lock),
  store the pair as pending, redirect to the page that shows both together;
* ``POST /c/{id}/rate`` — store the rating as one comparison (committed before the redirect),
  continue the conversation from the chosen reply;
* ``GET /admin/export`` — every comparison as JSON Lines (admin token only);
* ``GET /healthz`` — liveness, no auth.

Everything a model or a person wrote is rendered through Jinja2's autoescaping and, in the
script, only ever assigned to ``textContent``; a Content-Security-Policy forbids inline script as
a second wall. Another rater's conversation is a 404, indistinguishable from a missing one.
Errors (bad token, forged form, over-long message, a model that cannot continue the conversation)
are pages with a status code and a sentence; the server keeps serving.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from hhhlab.errors import HHHLabError, RequestError
from hhhlab.feedback.config import ServeConfig
from hhhlab.feedback.db import SCALE_LABELS, FeedbackStore, FeedbackStoreError, Rater, dumps, utcnow
from hhhlab.feedback.schedule import BalancedScheduler, paper_pairs
from hhhlab.feedback.security import COOKIE, Csrf, CsrfError, RateLimiter
from hhhlab.feedback.systems import SystemPool

HERE = Path(__file__).parent
log = logging.getLogger("hhhlab.feedback")
COMMIT_DELAY_ENV = "HHHLAB_FEEDBACK_COMMIT_DELAY_S"  # fault tests: pause inside the rating transaction


class AppError(Exception):
    """An error page: HTTP status and a sentence for the rater."""

    def __init__(self, status: int, message: str, title: str | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.title = title or {400: "Bad request", 401: "Sign in", 403: "Forbidden", 404: "Not found",
                               409: "Conflict", 413: "Too long", 429: "Slow down", 503: "Unavailable"}.get(status,
                                                                                                          "Error")


def create_app(cfg: ServeConfig, pool: SystemPool, store: FeedbackStore) -> FastAPI:
    app = FastAPI(title="hhhlab A/B comparisons", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    store.register_systems([s.info() for s in pool.systems.values()])
    csrf = Csrf(store.secret())
    pairs = None
    if cfg.pairs == "paper":
        pairs = paper_pairs({s.name: (s.base_model, s.condition) for s in pool.systems.values()})
        if not pairs:
            raise HHHLabError("--pairs paper needs prompted systems (the prompt condition) to compare against")
    scheduler = BalancedScheduler(pool.names, store.pair_counts(), seed=cfg.seed, pairs=pairs)
    msg_limit = RateLimiter(cfg.messages_per_minute)
    rate_limit = RateLimiter(cfg.ratings_per_minute)
    commit_delay = float(os.environ.get(COMMIT_DELAY_ENV, "0") or 0)
    app.state.pool, app.state.store, app.state.scheduler = pool, store, scheduler

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {"cfg": cfg, **ctx}, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError):
        if exc.status == 401:
            return page(request, "login.html", 401, error=exc.message, csrf=csrf.make("login", "login"))
        return page(request, "error.html", exc.status, title=exc.title, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return page(request, "error.html", exc.status_code, title="Error", message=str(exc.detail))

    @app.exception_handler(FeedbackStoreError)
    async def store_error(request: Request, exc: FeedbackStoreError):
        log.error("database error: %s", exc)
        return page(request, "error.html", 503, title="Database error",
                    message=f"the comparison database could not be written or read; nothing was stored for this "
                            f"request: {exc}")

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception):
        log.exception("unexpected error")
        return page(request, "error.html", 500, title="Server error", message=f"{type(exc).__name__}: {exc}")

    def rater_of(request: Request) -> Rater:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        rater, why = store.rater_for_token(token)
        if rater is None:
            raise AppError(401, why)
        return rater

    async def form_of(request: Request) -> dict[str, str]:
        try:
            form = await request.form(max_files=0, max_fields=20, max_part_size=64 * 1024)
        except Exception as exc:  # noqa: BLE001 - malformed multipart, too many fields, part too large
            raise AppError(400, f"the form could not be read: {exc}") from None
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def own_conversation(conv_id: str, rater: Rater):
        conv, pending = store.conversation(conv_id, rater.id)
        if conv is None:
            raise AppError(404, "no such conversation")
        return conv, pending

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return page(request, "login.html", csrf=csrf.make("login", "login"))

    @app.post("/login")
    async def login(request: Request):
        form = await form_of(request)
        try:
            csrf.check(form.get("csrf"), "login", "login")
        except CsrfError as exc:
            raise AppError(403, str(exc)) from None
        token = form.get("token", "").strip()
        rater, why = store.rater_for_token(token)
        if rater is None:
            raise AppError(401, why)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/logout")
    async def logout(request: Request):
        rater = rater_of(request)
        form = await form_of(request)
        _check(csrf, form, rater, "logout")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        rater = rater_of(request)
        return page(request, "home.html", rater=rater, conversations=store.conversations(rater.id),
                    csrf_new=csrf.make(str(rater.id), "new"), csrf_logout=csrf.make(str(rater.id), "logout"))

    @app.post("/conversations")
    async def new_conversation(request: Request):
        rater = rater_of(request)
        _check(csrf, await form_of(request), rater, "new")
        conv = store.new_conversation(rater.id)
        return RedirectResponse(f"/c/{conv.id}", status_code=303)

    @app.get("/c/{conv_id}", response_class=HTMLResponse)
    def conversation(request: Request, conv_id: str):
        rater = rater_of(request)
        conv, pending = own_conversation(conv_id, rater)
        n_human = len(conv.turns) // 2
        return page(request, "conversation.html", rater=rater, conv=conv, pending=pending, scale=SCALE_LABELS,
                    n_human=n_human, can_continue=n_human < cfg.max_turns,
                    csrf_message=csrf.make(str(rater.id), "message", conv.id),
                    csrf_rate=csrf.make(str(rater.id), "rate", pending.id) if pending else "",
                    csrf_new=csrf.make(str(rater.id), "new"))

    @app.post("/c/{conv_id}/message")
    async def message(request: Request, conv_id: str):
        from starlette.concurrency import run_in_threadpool

        rater = rater_of(request)
        form = await form_of(request)
        _check(csrf, form, rater, "message", conv_id)
        conv, pending = own_conversation(conv_id, rater)
        if pending is not None:
            raise AppError(409, "this conversation already shows a pair waiting for your rating: rate it first")
        if form.get("turn") != str(len(conv.turns) // 2):
            raise AppError(409, "this form is out of date (sent twice, or from an old page): reload the conversation")
        text = form.get("message", "").strip()
        if not text:
            raise AppError(400, "the message is empty")
        if len(text) > cfg.max_message_chars:
            raise AppError(413, f"the message has {len(text)} characters; the limit is {cfg.max_message_chars}")
        if len(conv.turns) // 2 >= cfg.max_turns:
            raise AppError(400, f"this conversation reached {cfg.max_turns} turns: start a new one")
        allowed, wait = msg_limit.allow(str(rater.id))
        if not allowed:
            raise AppError(429, f"more than {cfg.messages_per_minute} messages a minute: wait {wait:.0f} s")
        a, b, swapped = scheduler.next_pair()
        requested = utcnow()
        try:
            gen = await run_in_threadpool(pool.generate_pair, a, b, conv.turns, text)
        except RequestError as exc:
            scheduler.release(a, b)
            raise AppError(400, f"the models cannot answer this: {exc}") from None
        except Exception as exc:  # a model that fails must not take the server down
            scheduler.release(a, b)
            log.exception("generation failed")
            raise AppError(500, f"a model failed to answer ({type(exc).__name__}: {exc}); nothing was stored, "
                                "try again or start a new conversation", "Model error") from None
        except BaseException:
            scheduler.release(a, b)
            raise
        try:
            store.add_pending(conversation_id=conv.id, rater_id=rater.id, turn_index=len(conv.turns) // 2,
                              user_message=text, system_a=a, system_b=b, swapped=swapped, requested_at=requested,
                              **gen)
        except FeedbackStoreError:
            scheduler.release(a, b)
            if store.conversation(conv.id, rater.id)[1] is not None:  # a double submit won the race
                raise AppError(409, "this conversation already shows a pair waiting for your rating") from None
            raise
        return RedirectResponse(f"/c/{conv.id}", status_code=303)

    @app.post("/c/{conv_id}/rate")
    async def rate(request: Request, conv_id: str):
        from starlette.concurrency import run_in_threadpool

        rater = rater_of(request)
        form = await form_of(request)
        pending_id = form.get("pending", "")
        _check(csrf, form, rater, "rate", pending_id)
        own_conversation(conv_id, rater)
        try:
            rating = int(form.get("rating", ""))
        except ValueError:
            rating = 0
        if not 1 <= rating <= 8:
            raise AppError(400, f"rating {form.get('rating')!r} is outside the scale: choose 1 (A much better) "
                                "to 8 (B much better)")
        comment = form.get("comment", "").strip()
        if len(comment) > cfg.max_comment_chars:
            raise AppError(413, f"the comment has {len(comment)} characters; the limit is {cfg.max_comment_chars}")
        allowed, wait = rate_limit.allow(str(rater.id))
        if not allowed:
            raise AppError(429, f"more than {cfg.ratings_per_minute} ratings a minute: wait {wait:.0f} s")
        try:
            await run_in_threadpool(store.rate, pending_id, rater, rating, comment, delay_s=commit_delay)
        except LookupError as exc:
            raise AppError(409, f"{exc} (a replayed or stale form); nothing was stored twice") from None
        return RedirectResponse(f"/c/{conv_id}", status_code=303)

    @app.get("/admin/export")
    def export(request: Request):
        rater = rater_of(request)
        if not rater.is_admin:
            raise AppError(403, "exports need an admin token (hhhlab serve --add-admin NAME)")
        rows = store.comparisons()
        return StreamingResponse((dumps(r.to_record()) + "\n" for r in rows), media_type="application/x-ndjson")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    return app


def _check(csrf: Csrf, form: dict[str, str], rater: Rater, purpose: str, obj: str = "") -> None:
    try:
        csrf.check(form.get("csrf"), str(rater.id), purpose, obj)
    except CsrfError as exc:
        raise AppError(403, str(exc)) from None


def build_app(cfg: ServeConfig, *, log_fn=lambda m: None) -> FastAPI:
    """Open the database, load every system, and make the app (errors before anything is served)."""
    from hhhlab.evals.base import parse_conditions
    from hhhlab.feedback.systems import Sampling, load_systems
    from hhhlab.models.load import expand_model_list
    from hhhlab.prompts import load_prompt

    store = FeedbackStore(default_db(cfg.db))
    conditions = parse_conditions(cfg.conditions)
    prompt = None
    if any(c.kind == "prompt" for c in conditions):
        prompt = load_prompt(None if cfg.prompt == "hhh" else cfg.prompt)
    models = expand_model_list(cfg.models)
    if not models:
        raise HHHLabError("--models is empty: give at least one model spec")
    systems = load_systems(models, conditions, prompt, dtype=cfg.dtype, device=cfg.device, log=log_fn)
    sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    return create_app(cfg, SystemPool(systems, sampling), store)


def default_db(db: str | None) -> str:
    from hhhlab.paths import data_home

    return db or str(data_home() / "feedback.sqlite")


__all__ = ["AppError", "build_app", "create_app", "default_db"]
