"""The OpenAI-compatible surface: /v1/models and /v1/chat/completions (server/chat.py does the work)."""
from __future__ import annotations

from fastapi import APIRouter, Request

from ..chat import respond as chat_respond
from ..deps import SettingsDep, StateDep
from ..schemas import ChatCompletion, ChatRequest, ModelList
from . import ERRORS

MODEL_NAME = "policy-qa"
router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models", response_model=ModelList, responses=ERRORS)
async def models():
    return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "policy-qa"}]}


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={**ERRORS, 413: ERRORS[400], 200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream=true"}},
)
async def chat(req: ChatRequest, request: Request, state: StateDep, settings: SettingsDep):
    """The last user message, resolved against the earlier user turns, answered with cited
    passages (`annotations` link each [n] to the document view); see server/chat.py."""
    return await chat_respond(req, settings, state.need, str(request.base_url))
