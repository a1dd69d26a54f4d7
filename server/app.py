"""FastAPI app: a thin mapping of HTTP onto `qa.service.Service`.

The model and indexes load once, in the background, when the app starts;
/healthz says "loading" (503) until they are ready.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import NotFound, NotReady, QAError
from qa.settings import Settings

from .schemas import (
    AskRequest,
    AskResponse,
    ChatCompletion,
    ChatRequest,
    DocumentInfo,
    DocumentSlice,
    ErrorResponse,
    Health,
    ModelList,
)

STATIC = Path(__file__).parent / "static"
MODEL_NAME = "policy-qa"
ERRORS = {400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


class State:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.service = None
        self.error: str | None = None
        self.ready = threading.Event()

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
        if self.service is None:
            raise NotReady(self.error or "the index is still loading; try again shortly (see /healthz)")
        return self.service


class BodyLimit:
    """Refuse request bodies over the limit, whether or not they declare a Content-Length
    (a chunked body is counted as it arrives)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body too large (limit {self.limit} bytes)"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
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
            if seen > self.limit:
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
        yield

    app = FastAPI(
        title="policy-qa",
        summary="Cited passages from Chinese education policy documents",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.qa = state
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    # ------------------------------------------------------------- errors
    @app.exception_handler(QAError)
    async def qa_error(_: Request, e: QAError):
        return error(e.status, str(e), type(e).__name__)

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
            return JSONResponse(body.model_dump(), status_code=503)
        return Health(status="ready", model_id=svc.embedder.model_id, chunks=len(svc.index.chunks), documents=len(svc.index.docs))

    @app.post("/ask", response_model=AskResponse, responses=ERRORS)
    async def ask(req: AskRequest):
        if len(req.question) > settings.max_question_chars:
            raise QAError(f"question too long ({len(req.question)} characters, at most {settings.max_question_chars})")
        svc = state.need()
        filters = req.filters.model_dump(exclude_none=True) if req.filters else None
        return await run_in_threadpool(svc.ask, req.question, req.top_k, filters)

    @app.get("/documents", response_model=list[DocumentInfo], responses=ERRORS)
    async def documents():
        svc = state.need()
        return [DocumentInfo(**m) for m in svc.index.docs.values()]

    @app.get("/documents/{doc_id}", response_model=DocumentSlice, responses=ERRORS)
    async def document_slice(doc_id: str, start: int = Query(0, ge=0), end: int | None = Query(None, ge=0)):
        svc = state.need()
        if doc_id not in svc.sources:
            raise NotFound(f"unknown doc_id {doc_id!r}; GET /documents lists them")
        text = svc.sources[doc_id]
        end = len(text) if end is None else end
        if end > len(text) or start > end:
            raise QAError(f"bad slice {start}:{end} (document has {len(text)} characters; need 0 <= start <= end <= {len(text)})")
        return DocumentSlice(doc_id=doc_id, title=svc.index.docs[doc_id]["title"], start=start, end=end, text=text[start:end])

    # ----------------------------------------------- OpenAI-compatible chat
    @app.get("/v1/models", response_model=ModelList)
    async def models():
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "policy-qa"}]}

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream=true"}},
    )
    async def chat(req: ChatRequest):
        question = _last_user_message(req)
        if len(question) > settings.max_question_chars:
            raise QAError(f"question too long ({len(question)} characters, at most {settings.max_question_chars})")
        svc = state.need()
        body = await run_in_threadpool(svc.ask, question, req.top_k or settings.top_k, None)
        content = chat_reply(body)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        extra = {"passages": body["passages"], "no_answer": body["no_answer"]}
        if not req.stream:
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": MODEL_NAME,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                **extra,
            }
        return StreamingResponse(_stream(cid, created, content, extra), media_type="text/event-stream")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    return app


def _last_user_message(req: ChatRequest) -> str:
    for m in reversed(req.messages):
        if m.role == "user":
            content = m.content
            if isinstance(content, list):  # [{"type": "text", "text": …}, …]
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str) and content.strip():
                return content.strip()
            break
    raise QAError("messages must end with a non-empty user message (the question)")


def chat_reply(body: dict) -> str:
    """The extractive answer with numbered citations, then the sources list."""
    lines = [body["answer"], "", "来源："]
    for p in body["passages"]:
        c = p["citation"]
        where = f"{c['title']} › {c['section']}" if c["section"] else c["title"]
        quote = p["highlight"] if len(p["highlight"]) <= 60 else p["highlight"][:59] + "…"
        lines.append(f"[{p['rank']}] {where}：“{quote}”")
    return "\n".join(lines)


def _stream(cid: str, created: int, content: str, extra: dict):
    def chunk(delta: dict, finish: str | None = None, **more) -> str:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **more,
        }
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    step = 24
    for i in range(0, len(content), step):
        yield chunk({"content": content[i : i + step]})
    yield chunk({}, "stop", **extra)  # the structured passages travel on the final chunk
    yield "data: [DONE]\n\n"
