"""The documents: list (with quarantined uploads and why), slice, add, remove."""
from __future__ import annotations

import asyncio
import threading
import time

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from qa.answer import page_of
from qa.errors import NotFound, QAError
from qa.ingest import TooLarge

from ..deps import ServiceDep, SettingsDep, StateDep
from ..schemas import DeleteResponse, DocumentInfo, DocumentSlice, UploadResponse
from . import ERRORS, WRITE_ERRORS

router = APIRouter(tags=["documents"])

MULTIPART = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }}},
    }
}


@router.get("/documents", response_model=list[DocumentInfo], responses=ERRORS)
async def documents(svc: ServiceDep):
    listed = [DocumentInfo(**m) for m in svc.index.docs.values()]
    listed += [DocumentInfo(doc_id=k, source="upload", status="quarantined", reason=why)
               for k, why in sorted(svc.quarantined.items())]
    return listed


@router.get("/documents/{doc_id}", response_model=DocumentSlice, responses=ERRORS)
async def document_slice(doc_id: str, svc: ServiceDep, start: int = Query(0, ge=0), end: int | None = Query(None, ge=0)):
    if doc_id not in svc.sources:
        why = svc.quarantined.get(doc_id)
        raise NotFound(f"{doc_id!r} is quarantined: {why}" if why else f"unknown doc_id {doc_id!r}; GET /documents lists them")
    text = svc.sources[doc_id]
    end = len(text) if end is None else end
    if end > len(text) or start > end:
        raise QAError(f"bad slice {start}:{end} (document has {len(text)} characters; need 0 <= start <= end <= {len(text)})")
    meta = svc.index.docs[doc_id]
    pages = page_of(meta, start, end)
    return DocumentSlice(doc_id=doc_id, title=meta["title"], start=start, end=end, text=text[start:end],
                         page=pages.get("page"), page_end=pages.get("page_end"), pages=meta.get("pages"),
                         ocr_pages=meta.get("ocr_pages"))


async def _files(request: Request, limit: int) -> list[tuple[str, bytes]]:
    try:
        form = await request.form(max_files=100, max_fields=100)
    except Exception as e:  # starlette's MultiPartException, a body that is not multipart
        raise QAError(f"send the documents as multipart/form-data, field `file` ({str(e)[:100]})") from None
    parts = form.getlist("file")
    if not parts:
        raise QAError("no files to add: send them in the multipart field `file`")
    files = []
    for part in parts:
        if not isinstance(part, UploadFile):  # a part without a file name arrives as a plain field
            raise QAError("the upload has no file name: each `file` part needs filename=\"….txt\"")
        data = await part.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"{part.filename}: larger than {limit} bytes (QA_MAX_UPLOAD_BYTES)")
        files.append((part.filename or "", data))
    return files


async def _cancellable(request: Request, work, deadline_s: float):
    """Run `work(cancel)` in a thread; `cancel()` says why to stop once the client has gone
    or the deadline has passed (checked between embedding batches)."""
    gone = threading.Event()
    deadline = time.monotonic() + deadline_s

    def cancel() -> str | None:
        if gone.is_set():
            return "the client closed the connection; nothing was added"
        if time.monotonic() > deadline:
            return f"indexing took longer than {deadline_s:g} s (QA_UPLOAD_DEADLINE_S); nothing was added: send smaller documents"
        return None

    task = asyncio.ensure_future(run_in_threadpool(work, cancel))
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if not gone.is_set() and await request.is_disconnected():
            gone.set()


@router.post("/documents", response_model=UploadResponse, responses=WRITE_ERRORS, openapi_extra=MULTIPART)
async def add_documents(request: Request, state: StateDep, settings: SettingsDep):
    """Add or replace documents (.txt/.md in UTF-8, UTF-16 or GB18030, .docx, and what qa.formats
    converts): multipart field `file`, repeatable. The document id is the file name without its extension."""
    state.need()
    files = await _files(request, settings.max_upload_bytes)

    def run(cancel):
        with state.writing:
            new, results = state.need().add(files, cancel=cancel)
            state.swap(new)
            return new, results

    new, results = await _cancellable(request, run, settings.upload_deadline_s)
    return {"documents": results, "total_documents": len(new.index.docs), "total_chunks": len(new.index.chunks)}


@router.delete("/documents/{doc_id}", response_model=DeleteResponse, responses=WRITE_ERRORS)
async def delete_document(doc_id: str, state: StateDep):
    state.need()

    def run():
        with state.writing:
            new = state.need().remove(doc_id)
            state.swap(new)
            return new

    new = await run_in_threadpool(run)
    return {"doc_id": doc_id, "deleted": True, "total_documents": len(new.index.docs), "total_chunks": len(new.index.chunks)}
