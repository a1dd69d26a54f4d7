"""The reply to a question as typed records: `Answer` holds `Passage`s, each with its `Citation`.
`qa.answer.ask` builds them and returns `Answer.model_dump()` (the /ask body, which `qa ask --json`
prints); the HTTP layer declares these same classes as its response model, so the OpenAPI schema
is derived from them rather than written a second time (server/schemas.py imports them)."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_serializer

from .query import ANSWER_TYPES

NoAnswerReason = Literal["out_of_scope_place", "out_of_scope_period", "low_relevance", "no_passages", "not_a_question"]


class _OmitUnset(BaseModel):
    """Optional fields listed in OMIT are left out of the body when they are None, so a body
    without them (a seed's citation, a .txt document) keeps exactly the keys it always had."""

    OMIT: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit(self, handler):
        out = handler(self)
        for k in self.OMIT:
            if out.get(k) is None:
                out.pop(k, None)
        return out


class Citation(_OmitUnset):
    OMIT: ClassVar[tuple[str, ...]] = ("page", "page_end", "ocr")
    doc_id: str = Field(examples=["004_6f03f12d06f5859c"])
    title: str = Field(examples=["海门区教育体育局2024年工作计划"])
    section: str = Field(examples=["三、质量提升的核心在于人… › 2.实现教育质量全新提升"])
    paragraph: int
    start: int = Field(description="offset into the source file's decoded text")
    end: int
    page: int | None = Field(default=None, description="documents with pages (PDF, scans): the 1-based page the passage starts on")
    page_end: int | None = Field(default=None, description="the page it ends on, when that is another page")
    ocr: bool | None = Field(default=None, description="true when a cited page's text was recognised from an image (OCR)")


class Passage(BaseModel):
    rank: int
    score: float = Field(description="fused relevance, 0..1")
    text: str
    highlight: str = Field(description="the sentence that best answers the question")
    citation: Citation


class QueryInfo(BaseModel):
    text: str = Field(description="the question as searched: Simplified characters, half-width letters and digits")
    language: Literal["zh", "en", "mixed"]
    places: list[str] = Field(description="administrative divisions the question names (full names)")
    years: list[int]
    periods: list[str] = Field(description="school years and five-year plans it names (2018—2019学年度, 十四五)")
    kinds: list[str] = Field(description="kinds of document it names (工作计划, 规划 …)")
    answer_types: list[str] = Field(default_factory=list,
                                    description="the kinds of answer it asks for, where it names one: " + ", ".join(ANSWER_TYPES))


class Answer(BaseModel):
    question: str
    answer: str = Field(description="extractive answer; [n] points at passages[n-1]; when no_answer, what the base covers")
    no_answer: bool
    no_answer_reason: NoAnswerReason | None = Field(default=None, description="why no_answer, when it is true")
    confidence: float = Field(ge=0, le=1, description="calibrated probability that the passages answer the question")
    query: QueryInfo | None = Field(default=None, description="how the (resolved) question was read")
    resolved_question: str = Field(description="what was searched: the question resolved against history")
    passages: list[Passage]
    took_ms: float
