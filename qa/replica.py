"""A stateless read replica: `QA_REPLICA=1` with `QA_STORE=milvus` and a Milvus server
every replica shares (`QA_MILVUS_URI=http://milvus:19530`).

A replica keeps no index generation, no library and no originals: it builds its service
from what Milvus holds — the chunks with their citation fields and tokens, the documents'
metadata and decoded texts (what citations slice), written there by the writer's store at
every commit — and follows the writer by polling the knowledge base's version (one
primary-key lookup). Retrieval is the Milvus path the writer uses too (candidates and
their dense and BM25 scores from Milvus; fusion, answerability, highlight and citations
above the seam), so N replicas behind a load balancer answer alike. Writes sent to a
replica get 409: one writer process (`qa serve` or `qa add` with `QA_STORE=milvus`, no
`QA_REPLICA`) owns the store, its lock and the originals.
"""
from __future__ import annotations

from .errors import QAError, ReadOnly

READ_ONLY = ("this is a read replica (QA_REPLICA=1): it serves what Milvus holds and takes no uploads; "
             "send document changes to the writer")


def check(settings) -> None:
    if getattr(settings, "replica", False) and getattr(settings, "store", "embedded") != "milvus":
        raise QAError("QA_REPLICA=1 needs QA_STORE=milvus and a Milvus every replica shares (QA_MILVUS_URI=http://…)")


def read_only(settings) -> None:
    """Raise for a write on a replica."""
    if getattr(settings, "replica", False):
        raise ReadOnly(READ_ONLY)


def load(settings, embedder):
    """The replica's service over what Milvus holds now."""
    from .backends import open_remote
    from .log import stage
    from .service import Service

    check(settings)
    remote = open_remote(settings)
    with stage(f"reading the knowledge base from Milvus ({remote.uri})"):
        data = remote.snapshot(embedder.dim)
        texts = remote.texts() if data.docs else {}
    if not data.docs:
        raise QAError("Milvus holds no documents yet: start the writer (QA_STORE=milvus without QA_REPLICA) first")
    return Service.over(settings, embedder, data, texts=texts)


def refresh(svc):
    """A new service when the writer committed since `svc` was built (None otherwise); only the
    texts of documents that changed are read again."""
    from .service import Service

    remote = svc.retriever.remote
    version = remote.version()
    if version is None or version == svc.index.manifest.get("version"):
        return None
    data = remote.snapshot(svc.embedder.dim, previous=svc.index)  # reads only the documents that changed
    old = svc.index.docs
    changed = [d for d, m in data.docs.items() if old.get(d, {}).get("sha256") != m.get("sha256")]
    texts = remote.texts(changed) if changed else {}
    return Service.over(svc.settings, svc.embedder, data, texts=texts, previous=svc)
