"""POST /ask: cited passages for a question.

The route below is what FastAPI serves and documents. `AskFastPath` (installed innermost of the
app's own middleware) answers the common case before the framework's routing, dependency
solving and thread pool: a JSON body that the route would accept. Anything else (another
content type, a body that does not parse or validate, an error from the service) goes on to the
route untouched, so every refusal is the route's own, byte for byte."""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from qa.errors import QAError
from qa.pools import LazyPool

from ..chat import HISTORY_TURNS
from ..deps import ServiceDep, SettingsDep
from ..middleware import replaying
from ..schemas import AskRequest, AskResponse
from . import ERRORS

router = APIRouter(tags=["ask"])


def _plain(o):
    """numpy scalars (a score, a year) as the Python number pydantic would have made of them."""
    item = getattr(o, "item", None)
    if item is not None:
        return item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def render(body: dict) -> Response:
    """The /ask body as JSON, byte for byte what `JSONResponse(AskResponse(**body))` gives (same
    key order, separators and escaping), without validating the service's own output through the
    response model on every request. Measured over 100 dev answers: 0.025 ms against 0.058 ms for
    validation + encoding, so a small saving; the HTTP cost of /ask lies elsewhere (see issue 14).
    `response_model` stays for OpenAPI."""
    return Response(json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
                    .encode("utf-8"), media_type="application/json")


def arguments(req: AskRequest, settings) -> tuple:
    """(question, top_k, filters, history) for Service.ask; QAError for a question over the limit."""
    if len(req.question) > settings.max_question_chars:
        raise QAError(f"question too long ({len(req.question)} characters, at most {settings.max_question_chars})")
    filters = req.filters.model_dump(exclude_none=True) if req.filters else None
    history = [h.strip()[: settings.max_question_chars] for h in req.history or [] if h.strip()][-HISTORY_TURNS:]
    top_k = req.top_k or settings.top_k  # QA_TOP_K when the request does not say
    return req.question, top_k, filters, history or None


@router.post("/ask", response_model=AskResponse, responses=ERRORS)
async def ask(req: AskRequest, svc: ServiceDep, settings: SettingsDep):
    return render(await run_in_threadpool(svc.ask, *arguments(req, settings)))


# ------------------------------------------------------------------ fast path
_THREADS = LazyPool(8, "qa-ask")  # the threads the fast path's answers run on (the route uses the framework's pool)


def _threads():
    return _THREADS.get()


def _json_type(headers) -> bool:
    for k, v in headers:
        if k == b"content-type":
            return v.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


class AskFastPath:
    """POST /ask with a JSON body the route accepts, answered here: the body parsed as the route
    parses it (json.loads), validated by the same model, the same limits, the same Service.ask on
    a worker thread and the same rendering. What the framework adds per request before the
    answer (routing, dependency solving, its thread pool's bookkeeping) cost ~0.8 ms of a ~10 ms
    /ask on a 2-core machine (issue 14). Whatever this path does not answer goes to the app with
    its body, and gets the route's own reply."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/ask" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        call = self._call(scope, body)
        if call is not None:
            try:
                reply = await asyncio.get_running_loop().run_in_executor(_threads(), call)
            except Exception:  # noqa: BLE001  (the route meets the same error and maps it)
                reply = None
            if reply is not None:
                return await render(reply)(scope, receive, send)
        return await self.app(scope, replaying(body, receive), send)

    def _call(self, scope, body: bytes):
        """svc.ask with the request's arguments, or None when the route should answer."""
        if not _json_type(scope.get("headers") or ()):
            return None
        try:
            data = json.loads(body)
            req = AskRequest.model_validate(data, from_attributes=True) if isinstance(data, dict) else None
        except (ValueError, RecursionError, ValidationError):
            return None
        if req is None or self.state.service is None:
            return None
        try:
            svc = self.state.need()
            args = arguments(req, self.state.settings)
        except QAError:
            return None
        return lambda: svc.ask(*args)
