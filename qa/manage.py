"""Documents at run time: add (or replace) and remove, each one new index generation.

Only documents that changed are chunked and embedded; the others keep their vectors.
Everything happens under the index's writer lock, and nothing is visible until the
new generation is committed (see qa/index.py and qa/library.py).
"""
from __future__ import annotations

from .errors import NotFound, QAError
from .library import doc_id_for, load_documents, seed_ids, upload_entry


def add(settings, embedder, files: list[tuple[str, bytes]], progress: bool | None = None):
    """Add or replace documents from (file name, bytes) pairs. Returns (index, results);
    a result says per file whether it was added, replaced or unchanged."""
    from . import index as index_mod

    if not files:
        raise QAError("no files to add")
    names = [doc_id_for(n)[0] for n, _ in files]
    if len(set(names)) != len(names):
        raise QAError("two files in one request would get the same document id")
    with index_mod.writer_lock(settings):
        previous, _ = index_mod.load_live(settings, embedder)
        library = (previous.library if previous else index_mod.committed_library(settings)).copy()
        current_docs = previous.docs if previous else {}
        results = []
        for name, data in files:
            doc_id, entry, doc = upload_entry(settings, data, name)
            old = current_docs.get(doc_id)
            status = "unchanged" if old and old.get("sha256") == doc.sha256 else ("replaced" if old else "added")
            if status != "unchanged":
                library.uploads[doc_id] = entry
                if doc_id in library.removed:
                    library.removed.remove(doc_id)
            results.append({"doc_id": doc_id, "status": status, "title": doc.title})
        if previous is not None and all(r["status"] == "unchanged" for r in results):
            for r in results:
                r["chunks"] = previous.docs[r["doc_id"]]["chunks"]
            return previous, results
        docs = load_documents(settings, library)
        gen = index_mod.build(settings, embedder, docs, library, previous=previous, progress=progress)
        data = index_mod.load(gen)
    for r in results:
        r["chunks"] = data.docs[r["doc_id"]]["chunks"]
    return data, results


def remove(settings, embedder, doc_id: str, progress: bool | None = None):
    """Take a document out of the corpus (an upload's original is deleted; a seed is
    only hidden, so adding a file with its name brings it back)."""
    from . import index as index_mod

    with index_mod.writer_lock(settings):
        previous, _ = index_mod.load_live(settings, embedder)
        library = (previous.library if previous else index_mod.committed_library(settings)).copy()
        known = set(previous.docs) if previous else {d.doc_id for d in load_documents(settings, library)}
        if doc_id not in known:
            raise NotFound(f"unknown doc_id {doc_id!r}; GET /documents (or `qa documents`) lists them")
        library.uploads.pop(doc_id, None)
        if doc_id in seed_ids(settings):
            library.removed.append(doc_id)
        docs = load_documents(settings, library)
        if not docs:
            raise QAError("cannot remove the last document: the corpus would be empty")
        gen = index_mod.build(settings, embedder, docs, library, previous=previous, progress=progress)
        return index_mod.load(gen)

