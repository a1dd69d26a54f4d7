"""POST /ask: cited passages for a question."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from qa.errors import QAError

from ..chat import HISTORY_TURNS
from ..deps import ServiceDep, SettingsDep
from ..schemas import AskRequest, AskResponse
from . import ERRORS

router = APIRouter(tags=["ask"])


@router.post("/ask", response_model=AskResponse, responses=ERRORS)
async def ask(req: AskRequest, svc: ServiceDep, settings: SettingsDep):
    if len(req.question) > settings.max_question_chars:
        raise QAError(f"question too long ({len(req.question)} characters, at most {settings.max_question_chars})")
    filters = req.filters.model_dump(exclude_none=True) if req.filters else None
    history = [h.strip()[: settings.max_question_chars] for h in req.history or [] if h.strip()][-HISTORY_TURNS:]
    top_k = req.top_k or settings.top_k  # QA_TOP_K when the request does not say
    return await run_in_threadpool(svc.ask, req.question, top_k, filters, history or None)
