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
    rebuilding: str | None = None  # a fallback generation is served; why, while the current one is rebuilt

    @classmethod
    def load(cls, settings, rebuild: bool = False, progress: bool | None = None, embedder=None,
             wait: bool = True) -> "Service":
        """The service over the live generation (the store makes it current first). With
        `wait=False` a damaged generation is replaced by the previous one at once and
        `rebuilding` says why; `Service.repair()` then makes the new one."""
        from embeddings import Embedder

        from .store import Store

        embedder = embedder or Embedder(settings, progress=progress)
        if getattr(settings, "replica", False):  # stateless: no generation of its own (qa/replica.py)
            from . import replica

            return replica.load(settings, embedder)
        opened = Store(settings).open(embedder, rebuild=rebuild, progress=progress, wait=wait)
        svc = cls.over(settings, embedder, opened.data, texts=opened.texts)
        svc.rebuilding = opened.rebuilding
        return svc

    @classmethod
    def over(cls, settings, embedder, data, texts: dict[str, str] | None = None, previous: "Service | None" = None) -> "Service":
        """A service over a loaded generation. The texts citations slice come from `texts`,
        then from `previous` (same sha256: unchanged), and only the rest are read from disk."""
        from .backends import open_remote
        from .retrieval import Retriever

        sources = _sources(settings, data, texts or {}, previous)
        retriever = Retriever(data, embedder, no_answer_threshold=settings.no_answer_threshold, texts=sources,
                              remote=open_remote(settings))
        return cls(settings, embedder, data, retriever, sources)

    def repair(self, progress: bool | None = False) -> "Service":
        """A new current generation from the last committed library (after a damaged one)."""
        from .store import Store

        opened = Store(self.settings).repair(self.embedder, self.index, progress=progress)
        return Service.over(self.settings, self.embedder, opened.data, texts=opened.texts, previous=self)

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

    def add(self, files: list[tuple[str, bytes]], progress: bool | None = False, cancel=None) -> tuple["Service", list[dict]]:
        from .store import Store

        data, results = Store(self.settings).add(self.embedder, files, live=self.index, progress=progress, cancel=cancel)
        if data is self.index:
            return self, results
        return Service.over(self.settings, self.embedder, data, previous=self), results

    def remove(self, doc_id: str, progress: bool | None = False) -> "Service":
        from .store import Store

        data = Store(self.settings).remove(self.embedder, doc_id, live=self.index, progress=progress)
        return Service.over(self.settings, self.embedder, data, previous=self)

    def quarantine(self, bad: dict[str, str]) -> "Service":
        """Uploads whose original went bad while serving (doc_id -> why) taken out and listed."""
        from .store import Store

        data = Store(self.settings).quarantine(self.embedder, bad, live=self.index)
        return self if data is self.index else Service.over(self.settings, self.embedder, data, previous=self)

    @property
    def quarantined(self) -> dict[str, str]:
        return dict(getattr(self.index.library, "quarantined", {}) or {})


def _sources(settings, data, texts: dict[str, str], previous) -> dict[str, str]:
    from .corpus import CorpusError, decode
    from .library import read_original

    out = {}
    old = previous.sources if previous is not None else {}
    old_docs = previous.index.docs if previous is not None else {}
    for doc_id, meta in data.docs.items():
        prev = old_docs.get(doc_id)
        if prev is meta and doc_id in old and doc_id not in texts:  # carried over by the write: the same record
            out[doc_id] = old[doc_id]
        elif doc_id in texts:
            out[doc_id] = texts[doc_id]
        elif doc_id in old and prev is not None and prev.get("sha256") == meta.get("sha256"):
            out[doc_id] = old[doc_id]
        else:
            try:
                entry = data.library.uploads.get(doc_id)
                if entry is not None:
                    out[doc_id] = read_original(settings, doc_id, entry)
                elif settings.corpus_dir:
                    for ext in (".txt", ".md"):
                        p = settings.corpus_dir / (doc_id + ext)
                        if p.is_file():
                            out[doc_id] = decode(p.read_bytes(), p.name)
                            break
            except (OSError, CorpusError):
                pass  # its slices answer 404; the next start quarantines it
    return out
