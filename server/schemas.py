"""HTTP models: what /ask and friends accept and return (OpenAPI is built from these)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: StrictStr | list[StrictStr] | None = Field(default=None, examples=["004_6f03f12d06f5859c"])
    region: StrictStr | None = Field(default=None, examples=["海门区"])
    year: StrictInt | None = Field(default=None, examples=[2024])


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "海门区2024年对清华北大录取人数的目标是多少？", "top_k": 5}]},
    )
    question: StrictStr = Field(min_length=1, description="the question, in Chinese (at most QA_MAX_QUESTION_CHARS, default 500)")
    top_k: StrictInt = Field(default=5, ge=1, le=50, description="passages to return")
    filters: Filters | None = None

    @field_validator("question")
    @classmethod
    def not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the question is empty")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in v):
            raise ValueError("the question contains control characters")
        return v


class Citation(BaseModel):
    doc_id: str = Field(examples=["004_6f03f12d06f5859c"])
    title: str = Field(examples=["海门区教育体育局2024年工作计划"])
    section: str = Field(examples=["三、质量提升的核心在于人… › 2.实现教育质量全新提升"])
    paragraph: int
    start: int = Field(description="offset into the source file's decoded text")
    end: int


class Passage(BaseModel):
    rank: int
    score: float = Field(description="fused relevance, 0..1")
    text: str
    highlight: str = Field(description="the sentence that best answers the question")
    citation: Citation


class AskResponse(BaseModel):
    question: str
    answer: str = Field(description="extractive answer; [n] points at passages[n-1]")
    no_answer: bool
    passages: list[Passage]
    took_ms: float


class Health(BaseModel):
    status: Literal["ready", "loading", "failed"]
    model_id: str | None = None
    chunks: int | None = None
    documents: int | None = None
    error: str | None = None


class DocumentInfo(BaseModel):
    doc_id: str
    title: str
    region: str | None
    city: str | None = None
    years: list[int]
    kind: str
    chunks: int
    chars: int
    source: Literal["seed", "upload"] = "seed"


class UploadResult(BaseModel):
    doc_id: str
    status: Literal["added", "replaced", "unchanged"]
    title: str
    chunks: int


class UploadResponse(BaseModel):
    documents: list[UploadResult]
    total_documents: int
    total_chunks: int


class DeleteResponse(BaseModel):
    doc_id: str
    deleted: bool
    total_documents: int
    total_chunks: int


class DocumentSlice(BaseModel):
    doc_id: str
    title: str
    start: int
    end: int
    text: str


class ErrorBody(BaseModel):
    message: str
    type: str
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody


# ----------------------------------------------------- OpenAI-compatible chat
class ChatMessage(BaseModel):
    role: StrictStr
    content: StrictStr | list | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send temperature, user, … : accepted, ignored
    model: StrictStr | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    top_k: StrictInt | None = Field(default=None, ge=1, le=50)


class ModelCard(BaseModel):
    id: str = Field(examples=["policy-qa"])
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "policy-qa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatReplyMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="the extractive answer with [n] markers, then 来源： one line per passage")


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatReplyMessage
    finish_reason: Literal["stop"] = "stop"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatCompletion(BaseModel):
    """OpenAI chat.completion, plus the structured `passages` and `no_answer` of /ask.
    With stream=true the same extra fields ride on the final chunk (finish_reason "stop")."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage = Usage()
    passages: list[Passage]
    no_answer: bool
