"""Everything a running service holds, loaded once: the model, the indexes, the
original texts. The CLI and the HTTP server both start from `Service.load`.

A Service is a consistent snapshot: adding or removing documents returns a new
Service over the new index generation (sharing the model), so a request that
holds the old one finishes on the old index."""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field



@dataclass
class Service:
    settings: object
    embedder: object
    index: object
    retriever: object
    sources: dict[str, str]  # doc_id -> original decoded text, for citation slices
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, settings, rebuild: bool = False, progress: bool | None = None, embedder=None) -> "Service":
        from embeddings import Embedder

        from . import index as index_mod

        embedder = embedder or Embedder(settings, progress=progress)
        return cls.over(settings, embedder, index_mod.ensure(settings, embedder, rebuild=rebuild, progress=progress))

    @classmethod
    def over(cls, settings, embedder, data) -> "Service":
        from .library import source_texts
        from .retrieval import Retriever

        sources = source_texts(settings, data.library)
        retriever = Retriever(data, embedder, no_answer_threshold=settings.no_answer_threshold, texts=sources)
        return cls(settings, embedder, data, retriever, sources)

    def ask(self, question: str, top_k: int | None = None, filters: dict | None = None,
            history: list[str] | None = None) -> dict:
        """The /ask body. Answers are cached per snapshot (a new index is a new Service,
        so an upload never serves a stale cached answer)."""
        from .answer import ask

        t0 = time.perf_counter()
        top_k = top_k or self.settings.top_k
        key = json.dumps([question, top_k, filters, history or []], ensure_ascii=False, sort_keys=True)
        with self._cache_lock:
            body = self._cache.get(key) if self.settings.answer_cache else None
            if body is not None:
                self._cache.move_to_end(key)
        if body is None:
            body = ask(self.retriever, question, top_k=top_k, filters=filters, history=history)
            with self._cache_lock:
                self._cache[key] = body
                while len(self._cache) > self.settings.answer_cache:
                    self._cache.popitem(last=False)
        return {**body, "took_ms": round((time.perf_counter() - t0) * 1000, 1)}

    def add(self, files: list[tuple[str, bytes]], progress: bool | None = False) -> tuple["Service", list[dict]]:
        from . import manage

        data, results = manage.add(self.settings, self.embedder, files, progress=progress)
        return (self if data is self.index else Service.over(self.settings, self.embedder, data)), results

    def remove(self, doc_id: str, progress: bool | None = False) -> "Service":
        from . import manage

        return Service.over(self.settings, self.embedder, manage.remove(self.settings, self.embedder, doc_id, progress=progress))
