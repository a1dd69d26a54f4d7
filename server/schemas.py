"""HTTP models: what /ask and friends accept and return (OpenAPI is built from these)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, field_validator

from qa.query import is_blank


def _whole(v):
    """2.0 is the integer 2 (JSON Schema's "integer" admits it); "5", 2.5 and true stay refused."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 else v


WholeInt = Annotated[StrictInt, BeforeValidator(_whole)]


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: StrictStr | list[StrictStr] | None = Field(default=None, examples=["004_6f03f12d06f5859c"])
    region: StrictStr | None = Field(default=None, examples=["海门区"])
    year: StrictInt | None = Field(default=None, examples=[2024])
    kind: StrictStr | None = Field(default=None, description="kind of document (工作计划, 工作意见, 专项规划 …)", examples=["工作计划"])
    issued_after: StrictStr | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                           description="documents issued or published on or after this date (YYYY-MM-DD)",
                                           examples=["2020-01-01"])

    @field_validator("issued_after")
    @classmethod
    def a_calendar_date(cls, v: str | None) -> str | None:
        from qa.text import is_date

        if v is not None and not is_date(v):
            raise ValueError(f"{v!r} is not a date of the calendar (YYYY-MM-DD)")
        return v


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "海门区2024年对清华北大录取人数的目标是多少？", "top_k": 5}]},
    )
    question: StrictStr = Field(min_length=1, description="the question, in Chinese (at most QA_MAX_QUESTION_CHARS, default 500)")
    top_k: WholeInt | None = Field(default=None, ge=1, le=50, description="passages to return (default: QA_TOP_K, 5)")
    filters: Filters | None = None
    history: list[StrictStr] | None = Field(
        default=None, max_length=100,
        description="earlier user questions of the conversation, oldest first: a follow-up such as “那惠山区呢？” is "
                    "resolved against them (the last 6 are used, each cut to QA_MAX_QUESTION_CHARS)",
        examples=[["武进区2020年新建改扩建多少所学校？"]],
    )

    @field_validator("question")
    @classmethod
    def not_blank(cls, v: str) -> str:
        v = v.strip()
        if is_blank(v):
            raise ValueError("the question is empty")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in v):
            raise ValueError("the question contains control characters")
        return v


# the reply to a question: typed records of qa itself, the response model of /ask as they are
from qa.reply import Answer as AskResponse  # noqa: E402,F401
from qa.reply import Citation, NoAnswerReason, Passage, QueryInfo, _OmitUnset  # noqa: E402,F401


class Health(BaseModel):
    status: Literal["ready", "degraded", "loading", "failed"] = Field(
        description="degraded: answering, but some uploads are quarantined or a damaged index is being rebuilt (see reasons)")
    model_id: str | None = None
    chunks: int | None = None
    documents: int | None = None
    quarantined: int | None = Field(default=None, description="uploads left out because their original is missing, "
                                    "changed on disk or undecodable (GET /documents lists them with the reason)")
    reasons: list[str] | None = Field(default=None, description="why the service is degraded")
    stage: str | None = Field(default=None, description="while loading: the start-up stage now running")
    progress: float | None = Field(default=None, description="while loading: how far that stage is (0–1)")
    error: str | None = None


class DocumentInfo(BaseModel):
    doc_id: str
    title: str = ""
    region: str | None = None
    city: str | None = None
    years: list[int] = []
    kind: str = ""
    chunks: int = 0
    chars: int = 0
    source: Literal["seed", "upload"] = "seed"
    issuer: str | None = Field(default=None, description="issuing body, as the document's header names it")
    doc_number: str | None = Field(default=None, description="document number (文号), e.g. 惠教发[2018]50号")
    issued: str | None = Field(default=None, description="date of issue (YYYY-MM-DD) from the header")
    published: str | None = Field(default=None, description="publication date (YYYY-MM-DD) of the page it was saved from")
    publisher: str | None = Field(default=None, description="the site or body the page names as its source (来源)")
    status: Literal["served", "quarantined"] = "served"
    reason: str | None = Field(default=None, description="why a quarantined document is not served, and the fix")


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


class DocumentSlice(_OmitUnset):
    OMIT: ClassVar[tuple[str, ...]] = ("page", "page_end", "pages", "ocr_pages")
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    page: int | None = Field(default=None, description="documents with pages: the 1-based page the slice starts on")
    page_end: int | None = Field(default=None, description="the page it ends on, when that is another page")
    pages: list[list[int]] | None = Field(default=None, description="character range [start, end) of page n at n-1")
    ocr_pages: list[int] | None = Field(default=None, description="pages (1-based) whose text was recognised by OCR")


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
    n: StrictInt | None = Field(default=None, description="only 1 (one reply per request); other values get a 400")
    tools: list | None = Field(default=None, description="accepted and ignored: this service never calls tools")
    tool_choice: StrictStr | dict | None = Field(default=None, description="'auto' or 'none'; 'required' or a named function get a 400")
    response_format: dict | None = Field(default=None, description="{'type': 'text'} only; json_object / json_schema get a 400")
    stream_options: dict | None = Field(default=None, description="{'include_usage': true}: a last chunk with usage and no choices")


class ModelCard(BaseModel):
    id: str = Field(examples=["policy-qa"])
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "policy-qa"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class UrlCitation(BaseModel):
    url: str = Field(description="absolute link to this service's document view at the cited offsets (/view/{doc_id}?start=&end=)")
    title: str = Field(description="document title › section")
    start_index: int = Field(description="where the [n] marker starts in the content")
    end_index: int


class Annotation(BaseModel):
    type: Literal["url_citation"] = "url_citation"
    url_citation: UrlCitation


class ChatReplyMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="the extractive answer with [n] markers, then 来源： one line per passage "
                                     "(first line 检索：… when a follow-up was resolved into another question)")
    annotations: list[Annotation] = Field(default_factory=list, description="one url_citation per cited passage (OpenAI format)")


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
    no_answer_reason: NoAnswerReason | None = Field(default=None, description="as in /ask; not_a_question for a greeting")
    resolved_question: str | None = Field(default=None, description="what was searched: the last question resolved against the earlier turns")
    reply_kind: Literal["answer", "task", "greeting", "continuation"] = Field(
        default="answer", description="answer (retrieval), task (a frontend's title/tags/follow-up prompt), greeting, continuation (empty)"
    )
