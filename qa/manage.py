"""Documents at run time: add (or replace) and remove, each one new index generation.

Thin entry points over `qa.store.Store`, which owns every change (one transaction:
lock, live generation, stage, one atomic pointer switch). Only documents that changed
are chunked and embedded; the others are carried over from the live generation.
"""
from __future__ import annotations


def add(settings, embedder, files: list[tuple[str, bytes]], progress: bool | None = None, live=None, cancel=None):
    """Add or replace documents from (file name, bytes) pairs. Returns (index, results);
    a result says per file whether it was added, replaced or unchanged."""
    from .store import Store

    return Store(settings).add(embedder, files, live=live, progress=progress, cancel=cancel)


def remove(settings, embedder, doc_id: str, progress: bool | None = None, live=None):
    """Take a document out of the corpus (an upload's original is deleted; a seed is
    only hidden, so adding a file with its name brings it back)."""
    from .store import Store

    return Store(settings).remove(embedder, doc_id, live=live, progress=progress)
