"""The chat page and the document view (static shells; they read the API)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
async def page():
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/view/{doc_id}")
async def document_view(doc_id: str):
    """The document with the cited range (?start=&end=) marked; the page reads GET /documents/{doc_id}."""
    return FileResponse(STATIC / "document.html", media_type="text/html; charset=utf-8")
