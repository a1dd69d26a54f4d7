"""FastAPI app: a thin mapping of HTTP onto `qa.service.Service`.

The model and indexes load once, in the background, when the app starts;
/healthz says "loading" (503) until they are ready.
"""
from __future__ import annotations

import hmac
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import NotFound, NotReady, QAError
from qa.library import TooLarge
from qa.settings import Settings

from .chat import MAX_BODY_BYTES as CHAT_MAX_BODY_BYTES
from .chat import HISTORY_TURNS
from .chat import respond as chat_respond
from .schemas import (
    AskRequest,
    AskResponse,
    ChatCompletion,
    ChatRequest,
    DeleteResponse,
    DocumentInfo,
    DocumentSlice,
    ErrorResponse,
    Health,
    ModelList,
    UploadResponse,
)

STATIC = Path(__file__).parent / "static"
MODEL_NAME = "policy-qa"
ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}
WRITE_ERRORS = {**ERRORS, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 413: {"model": ErrorResponse}}
RECHECK_S = 2.0  # how often a request may look for a generation committed by another process
WATCH_S = 0.5  # how often the watcher looks at the CURRENT pointer (one stat) for another process's commit


class Unauthorized(QAError):
    status = 401


class Forbidden(QAError):
    status = 403


class State:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.service = None
        self.error: str | None = None
        self.ready = threading.Event()
        self.writing = threading.Lock()  # one add/remove at a time in this process
        self._checked = 0.0

    def load(self, progress: bool | None = None) -> None:
        from qa.service import Service

        try:
            self.service = Service.load(self.settings, progress=progress)
        except QAError as e:
            self.error = str(e)
        except Exception as e:  # keep serving /healthz with the reason instead of dying silently
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()

    def need(self):
        svc = self.service
        if svc is None:
            raise NotReady(self.error or "the index is still loading; try again shortly (see /healthz)")
        now = time.monotonic()
        if now - self._checked > RECHECK_S and not self.writing.locked():
            self._checked = now
            self._follow(svc)
        return svc

    def _follow(self, svc) -> None:
        """Pick up a generation another process (`qa add`, `qa remove`) committed, in the background."""
        from qa import index as index_mod

        live = index_mod.current_generation(self.settings.index_dir)
        if live is None or live.name == svc.index.path.name:
            return
        threading.Thread(target=self._reload, args=(svc,), daemon=True).start()

    def _reload(self, svc) -> bool:
        """Swap in the live generation when it is not the one `svc` serves; False if nothing changed."""
        from qa import index as index_mod
        from qa.log import log
        from qa.service import Service

        live = index_mod.current_generation(self.settings.index_dir)
        if live is None or live.name == svc.index.path.name:
            return False
        with self.writing:
            try:
                data = index_mod.load(live)
            except QAError:
                return False  # replaced again meanwhile, or damaged: keep serving what we have
            if self.service is not svc:
                return False  # this process wrote a newer one meanwhile
            self.service = Service.over(self.settings, svc.embedder, data)
        log.info("following %s (committed by another process): %d documents, %d passages",
                 live.name, len(data.docs), len(data.chunks))
        _release_memory()
        return True

    def watch(self, stop: threading.Event, interval: float = WATCH_S) -> None:
        """Follow commits of other processes (`qa add` while serving) as they happen, not when the
        next request arrives: one stat of the CURRENT pointer every `interval` seconds."""
        pointer = self.settings.index_dir / "CURRENT"
        seen = None
        while not stop.wait(interval):
            try:
                st = pointer.stat()
            except OSError:
                continue
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
            svc = self.service
            if sig == seen or svc is None or self.writing.locked():
                continue  # unchanged, still loading, or this process is writing: look again next time
            seen = sig
            try:
                self._reload(svc)
            except Exception as e:  # never let the watcher die; the request path still follows
                from qa.log import log

                log.warning("could not follow the new index generation: %s", e)

    def swap(self, new) -> None:
        self.service = new
        _release_memory()


def _release_memory() -> None:
    """Hand the old generation's freed memory back to the OS (glibc keeps it otherwise,
    and resident memory would creep up with every document update)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class BodyLimit:
    """Refuse request bodies over the limit, whether or not they declare a Content-Length
    (a chunked body is counted as it arrives)."""

    def __init__(self, app, limit: int, upload_limit: int):
        self.app, self.default_limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope.get("path", "").rstrip("/") == "/documents" and scope.get("method") == "POST"
        limit = self.upload_limit + 64 * 1024 if upload else self.default_limit  # room for the multipart framing
        what = "upload" if upload else "request body"
        message = f"{what} too large (limit {limit if not upload else self.upload_limit} bytes)"
        if scope.get("path", "").rstrip("/") == "/v1/chat/completions":
            # frontends send the whole chat and tool definitions each turn; only the last turns are read
            limit = max(self.default_limit, CHAT_MAX_BODY_BYTES)
            message = f"chat request too large (limit {limit} bytes): start a new chat"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await error(413, message, "payload_too_large")(scope, receive, send)
        # buffer the body (it is small by definition) so an oversized one is refused before the app sees it
        chunks, seen, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            seen += len(chunks[-1])
            more = msg.get("more_body", False)
            if seen > limit:
                return await error(413, message, "payload_too_large")(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "status": status}}, status_code=status)


def create_app(settings: Settings | None = None, background: bool = True, progress: bool | None = None) -> FastAPI:
    settings = settings or Settings()
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if background:
            threading.Thread(target=state.load, kwargs={"progress": progress}, daemon=True).start()
        else:
            await run_in_threadpool(state.load, progress)
        stop = threading.Event()
        threading.Thread(target=state.watch, args=(stop,), daemon=True, name="qa-watch").start()
        yield
        stop.set()

    # Swagger UI and ReDoc from the assets fastapi-offline ships, not from a CDN: /docs works offline
    app = FastAPIOffline(
        title="policy-qa",
        summary="Cited passages from Chinese education policy documents",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.qa = state
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"], allow_headers=["*"]
        )

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes)

    # --------------------------------------------------------------- auth
    def presented_key(request: Request) -> str | None:
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        return key

    def check_key(request: Request) -> None:
        key = presented_key(request)
        if key is None:
            raise Unauthorized("this endpoint needs the API key (header X-API-Key or Authorization: Bearer)")
        if not hmac.compare_digest(key.encode("utf-8", "surrogatepass"), settings.api_key.encode("utf-8")):
            raise Unauthorized("wrong API key")

    def writer(request: Request) -> None:
        if not settings.api_key:
            raise Forbidden("adding and removing documents is disabled: start the server with QA_API_KEY set")
        check_key(request)

    def reader(request: Request) -> None:
        if settings.require_key_for_reads:
            if not settings.api_key:
                raise Forbidden("QA_REQUIRE_KEY_FOR_READS is set but QA_API_KEY is not")
            check_key(request)

    # ------------------------------------------------------------- errors
    @app.exception_handler(QAError)
    async def qa_error(_: Request, e: QAError):
        response = error(e.status, str(e), type(e).__name__)
        if e.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            msg = err.get("msg", "invalid").removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return error(422, "; ".join(parts) or "invalid request", "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        return error(e.status_code, str(e.detail), "http_error")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, e: Exception):
        return error(500, f"internal error ({type(e).__name__})", "internal_error")

    # ------------------------------------------------------------- routes
    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    async def healthz():
        svc = state.service
        if svc is None:
            body = Health(status="failed" if state.error else "loading", error=state.error)
            from qa.log import status  # the start-up stage running now and its progress (0..1)

            return JSONResponse({**body.model_dump(), **(status() if not state.error else {})}, status_code=503)
        return Health(status="ready", model_id=svc.embedder.model_id, chunks=len(svc.index.chunks), documents=len(svc.index.docs))

    @app.post("/ask", response_model=AskResponse, responses=ERRORS, dependencies=[Depends(reader)])
    async def ask(req: AskRequest):
        if len(req.question) > settings.max_question_chars:
            raise QAError(f"question too long ({len(req.question)} characters, at most {settings.max_question_chars})")
        svc = state.need()
        filters = req.filters.model_dump(exclude_none=True) if req.filters else None
        history = [h.strip()[: settings.max_question_chars] for h in req.history or [] if h.strip()][-HISTORY_TURNS:]
        return await run_in_threadpool(svc.ask, req.question, req.top_k, filters, history or None)

    @app.get("/documents", response_model=list[DocumentInfo], responses=ERRORS, dependencies=[Depends(reader)])
    async def documents():
        svc = state.need()
        return [DocumentInfo(**m) for m in svc.index.docs.values()]

    @app.get("/documents/{doc_id}", response_model=DocumentSlice, responses=ERRORS, dependencies=[Depends(reader)])
    async def document_slice(doc_id: str, start: int = Query(0, ge=0), end: int | None = Query(None, ge=0)):
        svc = state.need()
        if doc_id not in svc.sources:
            raise NotFound(f"unknown doc_id {doc_id!r}; GET /documents lists them")
        text = svc.sources[doc_id]
        end = len(text) if end is None else end
        if end > len(text) or start > end:
            raise QAError(f"bad slice {start}:{end} (document has {len(text)} characters; need 0 <= start <= end <= {len(text)})")
        return DocumentSlice(doc_id=doc_id, title=svc.index.docs[doc_id]["title"], start=start, end=end, text=text[start:end])

    @app.post("/documents", response_model=UploadResponse, responses=WRITE_ERRORS, dependencies=[Depends(writer)])
    async def add_documents(file: list[UploadFile]):
        """Add or replace documents (.txt/.md in UTF-8 or GB18030, .docx): multipart field `file`,
        repeatable. The document id is the file name without its extension."""
        state.need()
        files = []
        for f in file:
            data = await f.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise TooLarge(f"{f.filename}: larger than {settings.max_upload_bytes} bytes")
            files.append((f.filename or "", data))

        def run():
            with state.writing:
                new, results = state.need().add(files)
                state.swap(new)
                return new, results

        new, results = await run_in_threadpool(run)
        return {"documents": results, "total_documents": len(new.index.docs), "total_chunks": len(new.index.chunks)}

    @app.delete("/documents/{doc_id}", response_model=DeleteResponse, responses=WRITE_ERRORS, dependencies=[Depends(writer)])
    async def delete_document(doc_id: str):
        state.need()

        def run():
            with state.writing:
                new = state.need().remove(doc_id)
                state.swap(new)
                return new

        new = await run_in_threadpool(run)
        return {"doc_id": doc_id, "deleted": True, "total_documents": len(new.index.docs), "total_chunks": len(new.index.chunks)}

    # ----------------------------------------------- OpenAI-compatible chat
    @app.get("/v1/models", response_model=ModelList, dependencies=[Depends(reader)])
    async def models():
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "policy-qa"}]}

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        dependencies=[Depends(reader)],
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream=true"}},
    )
    async def chat(req: ChatRequest, request: Request):
        """The last user message, resolved against the earlier user turns, answered with cited
        passages (`annotations` link each [n] to the document view); see server/chat.py."""
        return await chat_respond(req, settings, state.need, str(request.base_url))

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/view/{doc_id}", include_in_schema=False)
    async def document_view(doc_id: str):
        """The document with the cited range (?start=&end=) marked; the page reads GET /documents/{doc_id}."""
        return FileResponse(STATIC / "document.html", media_type="text/html; charset=utf-8")

    return app

