"""Everything a running service holds, loaded once: the model, the indexes, the
original texts. The CLI and the HTTP server both start from `Service.load`."""
from __future__ import annotations

from dataclasses import dataclass

from .corpus import load_corpus


@dataclass
class Service:
    settings: object
    embedder: object
    index: object
    retriever: object
    sources: dict[str, str]  # doc_id -> original decoded text, for citation slices

    @classmethod
    def load(cls, settings, rebuild: bool = False, progress: bool | None = None) -> "Service":
        from embeddings import Embedder

        from . import index as index_mod
        from .retrieval import Retriever

        embedder = Embedder(settings, progress=progress)
        data = index_mod.ensure(settings, embedder, rebuild=rebuild, progress=progress)
        retriever = Retriever(data, embedder, no_answer_cosine=settings.no_answer_threshold)
        sources = {d.doc_id: d.text for d in load_corpus(settings.corpus_dir)}
        return cls(settings, embedder, data, retriever, sources)

    def ask(self, question: str, top_k: int | None = None, filters: dict | None = None) -> dict:
        from .answer import ask

        return ask(self.retriever, question, top_k=top_k or self.settings.top_k, filters=filters)
