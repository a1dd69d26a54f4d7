"""Hybrid search: dense (FAISS) + lexical (BM25 over jieba tokens), fused.

The scoring, step by step:
1. dense cosine of every chunk (exact inner product on normalised vectors),
   taken as the better of the whole chunk and its best sentence window;
2. BM25 of every chunk over jieba search-mode tokens, and over character bigrams;
3. weighted fusion of the min-max normalised scores (weights below; reciprocal
   rank fusion is kept as an option and measured in the README's ablation);
4. when the question names a region or a year the corpus knows, chunks of the
   matching documents are preferred (score × PREFER);
5. filters restrict, overlapping chunks are de-duplicated, the top_k returned;
6. "not in the corpus" when the top chunk's dense cosine and its lexical
   coverage of the question both fall short (calibrated on the dev set).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .errors import QAError
from .lexical import bigrams, expand, synonyms, tokenize
from .records import Chunk

RRF_K = 60
W_DENSE = 1.0
W_LEXICAL = 0.5
W_BIGRAM = 0.5
PREFER = 1.5
# no-answer calibration (dev + project questions, see README "Retrieval quality", bench/calibrate.py)
NO_ANSWER_FLOOR = 0.80  # below this cosine nothing in the corpus is about the question
NO_ANSWER_COSINE = 0.90  # below this, a question that names a thing the corpus never mentions
NO_ANSWER_UNKNOWN = 0.2  # (share of its content words that are such nouns) is not answered by it
NOUN_TAGS = ("n", "vn", "j", "eng")  # jieba POS prefixes of names of things (n, nr, ns, nt, nz, …)


@dataclass
class Options:
    dense: bool = True
    windows: bool = True  # a chunk's dense score may come from its best sentence window
    lexical: bool = True
    bigrams: bool = True
    fusion: str = "weighted"  # weighted | rrf
    prefer_region_year: bool = True
    synonyms: bool = True  # everyday words -> official terms, for the lexical signals


@dataclass
class Candidate:
    chunk: Chunk
    score: float
    dense: float
    lexical: float


@dataclass
class SearchResult:
    question: str
    candidates: list[Candidate]
    no_answer: bool
    confidence: dict = field(default_factory=dict)
    query_tokens: list[str] = field(default_factory=list)


FILTER_KEYS = {"doc_id", "region", "year"}
DENSE_CANDIDATES = 1000  # dense hits scored per question; the seeds (208 chunks) are scored whole


class Retriever:
    def __init__(self, data, embedder, options: Options | None = None, no_answer_cosine: float | None = None):
        self.data = data
        self.embedder = embedder
        self.options = options or Options()
        self.chunks: list[Chunk] = data.chunks
        self.no_answer_cosine = NO_ANSWER_COSINE if no_answer_cosine is None else no_answer_cosine
        self.doc_of = np.array([c.doc_id for c in self.chunks])
        tokens = [set(ts) for ts in data.tokens]
        df = Counter(t for ts in tokens for t in ts)
        n = len(self.chunks)
        self.idf = {t: math.log(1 + (n - k + 0.5) / (k + 0.5)) for t, k in df.items()}
        self.default_idf = math.log(1 + (n + 0.5) / 0.5)
        self.chunk_tokens = tokens
        self._names = self._known_names()

    # -------------------------------------------------------------- helpers
    def _known_names(self) -> dict[str, set[str]]:
        """doc_id -> region/city names a question may use for it (海门区, 海门, 南通市, 南通)."""
        names: dict[str, set[str]] = {}
        for doc_id, meta in self.data.docs.items():
            s = set()
            for key in ("region", "city"):
                v = meta.get(key)
                if v:
                    s.add(v)
                    if len(v) >= 3:
                        s.add(v[:-1])
            names[doc_id] = s
        return names

    def mentioned(self, question: str) -> set[str]:
        """Documents the question points at by region or year."""
        by_region = {d for d, ns in self._names.items() if any(n in question for n in ns)}
        years = {int(y) for y in re.findall(r"(?<!\d)((?:19|20)\d{2})(?!\d)", question)}
        by_year = {d for d, m in self.data.docs.items() if years & set(m.get("years", []))}
        if by_region and by_year:
            return (by_region & by_year) or by_region
        return by_region or by_year

    def _allowed(self, filters: dict | None) -> np.ndarray:
        mask = np.ones(len(self.chunks), dtype=bool)
        if not filters:
            return mask
        unknown = set(filters) - FILTER_KEYS
        if unknown:
            raise QAError(f"unknown filter(s) {sorted(unknown)}; allowed: {sorted(FILTER_KEYS)}")
        docs = self.data.docs
        keep = set(docs)
        if filters.get("doc_id") is not None:
            ids = filters["doc_id"] if isinstance(filters["doc_id"], list) else [filters["doc_id"]]
            missing = [i for i in ids if i not in docs]
            if missing:
                raise QAError(f"unknown doc_id {missing[0]!r}")
            keep &= set(ids)
        if filters.get("region") is not None:
            r = str(filters["region"])
            keep &= {d for d, m in docs.items() if m.get("region") and (m["region"] == r or m["region"][:-1] == r)}
        if filters.get("year") is not None:
            try:
                y = int(filters["year"])
            except (TypeError, ValueError):
                raise QAError(f"filter year must be a number, got {filters['year']!r}") from None
            keep &= {d for d, m in docs.items() if y in m.get("years", [])}
        return np.isin(self.doc_of, list(keep)) if keep else np.zeros(len(self.chunks), dtype=bool)

    @property
    def max_score(self) -> float:
        """The fused score of a chunk that is first on every signal: scales `score` into 0..1."""
        if self.options.fusion == "rrf":
            return (W_DENSE + W_LEXICAL + W_BIGRAM) / (RRF_K + 1)
        return W_DENSE + W_LEXICAL + W_BIGRAM

    def unknown_nouns(self, question: str) -> tuple[float, list[str]]:
        """(share, words): the question's content words (jieba precise mode, with part of
        speech) that are nouns of two or more characters the corpus text never contains
        (a single character such as 娃 says too little to rule a question out). Precise mode matters: search
        mode would cut 研究生 into 研究 + 研究生, and the known fragment would hide that the
        corpus never mentions graduate students. A word the synonym lexicon maps counts as known."""
        from .lexical import content_words

        words = content_words(question)
        if not words:
            return 0.0, []
        everyday = [e for e, _ in synonyms() if e in question]
        text = self._corpus_text()
        unknown = [w for w, tag in words if tag.startswith(NOUN_TAGS) and len(w) >= 2 and w not in text
                   and not any(w in e or e in w for e in everyday)]
        return len(unknown) / len(words), unknown

    def _corpus_text(self) -> str:
        text = getattr(self, "_text", None)
        if text is None:
            text = self._text = "\n".join(c.section + "\n" + c.text for c in self.chunks).lower()
        return text

    # --------------------------------------------------------------- search
    def search(self, question: str, top_k: int = 5, filters: dict | None = None) -> SearchResult:
        opts = self.options
        n = len(self.chunks)
        allowed = self._allowed(filters)
        extra = expand(question) if opts.synonyms else ""
        q_tokens = tokenize(question)
        lex_tokens = q_tokens + tokenize(extra) if extra else q_tokens
        # the dense cosine is computed even when fusion ignores it: it drives the no-answer decision
        q = self.embedder.encode_queries([question])
        # dense scores of the best DENSE_CANDIDATES chunks (all of them at the seeds' size); the
        # rest get the lowest score retrieved, so min-max fusion puts them at the bottom
        k = min(n, DENSE_CANDIDATES)
        D, I = self.data.dense.search(q, k)
        found = I[0] >= 0
        dense = np.full(n, D[0][found][-1] if k < n and found.any() else 0.0, dtype=np.float32)
        dense[I[0][found]] = D[0][found]
        if opts.windows:
            m = self.data.dense_windows.ntotal
            Dw, Iw = self.data.dense_windows.search(q, min(m, 3 * DENSE_CANDIDATES))
            ok = Iw[0] >= 0
            best_window = np.full(n, -1.0, dtype=np.float32)
            np.maximum.at(best_window, self.data.window_owner[Iw[0][ok]], Dw[0][ok])
            dense = np.maximum(dense, best_window)
        zeros = np.zeros(n, dtype=np.float32)
        lexical = np.asarray(self.data.bm25.get_scores(lex_tokens), dtype=np.float32) if lex_tokens else zeros
        q_bigrams = bigrams(question) + (bigrams(extra) if extra else [])
        bigram = np.asarray(self.data.bm25_bigrams.get_scores(q_bigrams), dtype=np.float32) if q_bigrams else zeros
        signals = [(W_DENSE, dense, opts.dense), (W_LEXICAL, lexical, opts.lexical), (W_BIGRAM, bigram, opts.bigrams)]

        score = np.zeros(n, dtype=np.float64)
        for weight, x, used in signals:
            if not used:
                continue
            if opts.fusion == "rrf":
                score += np.where(x > 0, weight / (RRF_K + _ranks(x)), 0.0)
            else:
                score += weight * _minmax(x)
        if opts.prefer_region_year:
            pointed = self.mentioned(question)
            if pointed:
                score = np.where(np.isin(self.doc_of, list(pointed)), score * PREFER, score)
        score = np.where(allowed, score, -np.inf)

        order = np.argsort(-score, kind="stable")
        picked: list[Candidate] = []
        spans: dict[str, list[tuple[int, int]]] = {}
        best = None
        for i in order:
            if not np.isfinite(score[i]):
                break
            c = self.chunks[i]
            if any(c.start < b and a < c.end for a, b in spans.get(c.doc_id, [])):
                continue  # overlaps a chunk already returned
            spans.setdefault(c.doc_id, []).append((c.start, c.end))
            if best is None:
                best = i
            picked.append(Candidate(c, float(score[i]), float(dense[i]), float(lexical[i])))
            if len(picked) >= top_k:
                break
        top_cos = float(dense[allowed].max()) if allowed.any() else 0.0
        unknown, nouns = self.unknown_nouns(question)
        no_answer = best is None or top_cos < NO_ANSWER_FLOOR or (
            top_cos < self.no_answer_cosine and unknown >= NO_ANSWER_UNKNOWN
        )
        return SearchResult(
            question,
            picked,
            no_answer,
            {"top_cosine": round(top_cos, 4), "unknown_nouns": round(unknown, 4), "nouns_not_in_corpus": nouns},
            lex_tokens,
        )


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based rank of every element, highest first."""
    order = np.argsort(-x, kind="stable")
    r = np.empty(len(x), dtype=np.float64)
    r[order] = np.arange(1, len(x) + 1)
    return r


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=np.float64)
