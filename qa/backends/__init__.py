"""Store backends next to the embedded default (FAISS + bm25s in a local generation).

`QA_STORE=milvus`: `qa.backends.milvus.MilvusIndex` holds the chunks, their vectors and
Milvus' own BM25; the store mirrors every commit into it and the retriever takes its
candidates and their dense/lexical scores from it (qa/retrieval.py `Retriever.remote`)."""
from __future__ import annotations


def open_remote(settings):
    """The remote index the settings select, or None for the embedded store."""
    if getattr(settings, "store", "embedded") != "milvus":
        return None
    from .milvus import MilvusIndex

    return MilvusIndex.from_settings(settings)
