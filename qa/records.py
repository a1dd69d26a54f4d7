"""The records that flow through the pipeline: a Chunk is the unit of citation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

CHUNK_FIELDS = ("id", "doc_id", "title", "section", "paragraph", "start", "end", "text")


@dataclass(frozen=True)
class Chunk:
    id: str
    doc_id: str
    title: str
    section: str  # heading path joined with " › "
    paragraph: int  # 1-based paragraph number within the document
    start: int  # offsets into the original file's decoded text
    end: int
    text: str

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def top_section(self) -> str:
        return self.section.split(" › ")[0] if self.section else ""


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its score, rank and best sentence(s)."""

    chunk: Chunk
    score: float
    rank: int
    highlight: str
