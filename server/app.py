"""FastAPI app factory: middleware, error mapping and the routers (server/routes/).

The model and indexes load once, in the background, when the app starts; /healthz says
"loading" (503) until they are ready, "degraded" (200) while it answers without some
quarantined uploads or from the previous generation while a damaged one is rebuilt."""
from __future__ import annotations

import errno
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import QAError

from .middleware import BodyLimit, Guard, HeadAsGet, SecurityHeaders, error, header_timeout_protocol
from .routes import ask, documents, openai, pages
from .routes.openai import MODEL_NAME  # noqa: F401  (the old import path)
from .schemas import Health
from .state import RECHECK_S, WATCH_S, State  # noqa: F401  (the old import path)


def create_app(settings=None, background: bool = True, progress: bool | None = None) -> FastAPI:
    from qa.settings import load_settings

    settings = settings or load_settings()
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if background:
            threading.Thread(target=state.load, kwargs={"progress": progress, "warm": True}, daemon=True).start()
        else:
            await run_in_threadpool(state.load, progress)
        stop = threading.Event()
        threading.Thread(target=state.watch, args=(stop,), daemon=True, name="qa-watch").start()
        yield
        stop.set()

    # Swagger UI and ReDoc from the assets fastapi-offline ships, not from a CDN: /docs works offline
    app = FastAPIOffline(title="policy-qa", summary="Cited passages from Chinese education policy documents",
                         version="0.1.0", lifespan=lifespan)
    app.state.qa = state
    # added innermost first: HEAD as GET, /ask's fast path, the body limit, the guard (key before any body is read), CORS,
    # security headers
    app.add_middleware(HeadAsGet)
    app.add_middleware(ask.AskFastPath, state=state)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes,
                       timeout=settings.body_timeout_s)
    app.add_middleware(Guard, settings=settings, state=state)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"])
    app.add_middleware(SecurityHeaders)
    _errors(app)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health, responses={503: {"model": Health}},
                      tags=["health"])
    for r in (ask.router, documents.router, openai.router, pages.router):
        app.include_router(r)
    return app


async def healthz(request: Request):
    state = request.app.state.qa
    svc = state.service
    if svc is None:
        body = Health(status="failed" if state.error else "loading", error=state.error)
        from qa.log import status  # the start-up stage running now and its progress (0..1)

        # fields that do not apply are left out (a stage without a known total has no progress)
        return JSONResponse({**body.model_dump(exclude_none=True), **(status() if not state.error else {})}, status_code=503)
    reasons = [state.rebuilding] if state.rebuilding else []
    quarantined = svc.quarantined
    reasons += [f"{k}: {why}" for k, why in sorted(quarantined.items())][:20]
    return Health(status="degraded" if reasons else "ready", model_id=svc.embedder.model_id, chunks=len(svc.index.chunks),
                  documents=len(svc.index.docs), quarantined=len(quarantined), reasons=reasons or None)


def _errors(app: FastAPI) -> None:
    """Domain errors and framework errors as one JSON shape: {"error": {message, type, status}}."""

    @app.exception_handler(QAError)
    async def qa_error(_: Request, e: QAError):
        return error(e.status, str(e), type(e).__name__, {"WWW-Authenticate": "Bearer"} if e.status == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            kind, where = err.get("type"), tuple(err.get("loc", ()))
            if kind == "json_invalid":  # say what is wrong with the body, not "12: JSON decode error"
                at = f" at character {where[1]}" if len(where) > 1 else ""
                why = (err.get("ctx") or {}).get("error")
                parts.append(f"the body is not valid JSON{at}" + (f" ({why})" if why else ""))
                continue
            if where == ("body",) and kind in ("dict_type", "model_attributes_type") and isinstance(err.get("input"), (str, bytes)):
                parts.append('the body must be a JSON object such as {"question": "…"}, sent with Content-Type: application/json')
                continue
            loc = ".".join(str(x) for x in where if x != "body")
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return error(422, "; ".join(parts) or "invalid request", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        return error(e.status_code, str(e.detail), "http_error", dict(e.headers or {}))  # keeps Allow on a 405

    @app.exception_handler(Exception)
    async def unexpected(_: Request, e: Exception):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return error(507, "no space left on the data volume; nothing was changed", "DiskFull")
        return error(500, f"internal error ({type(e).__name__})", "internal_error")


def server_config(settings) -> dict:
    """uvicorn settings against slow and idle clients: a deadline for request headers,
    a short keep-alive, a cap on connections (the body's deadline is BodyLimit's)."""
    return {
        "http": header_timeout_protocol(settings.header_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
    }
