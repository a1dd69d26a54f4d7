"""POST /ask: cited passages for a question."""
from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from qa.errors import QAError

from ..chat import HISTORY_TURNS
from ..deps import ServiceDep, SettingsDep
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


@router.post("/ask", response_model=AskResponse, responses=ERRORS)
async def ask(req: AskRequest, svc: ServiceDep, settings: SettingsDep):
    if len(req.question) > settings.max_question_chars:
        raise QAError(f"question too long ({len(req.question)} characters, at most {settings.max_question_chars})")
    filters = req.filters.model_dump(exclude_none=True) if req.filters else None
    history = [h.strip()[: settings.max_question_chars] for h in req.history or [] if h.strip()][-HISTORY_TURNS:]
    top_k = req.top_k or settings.top_k  # QA_TOP_K when the request does not say
    return render(await run_in_threadpool(svc.ask, req.question, top_k, filters, history or None))
