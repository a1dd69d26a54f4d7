"""Per-question work that does not grow with the library, over the indexes a generation
already has: the postings of the bm25s indexes (one CSC matrix per index: for every
token the ascending rows that contain it and their BM25 weights), integer document
codes, and the vocabulary the no-answer decision asks about.

Everything here is built once per generation (a Retriever) and then answers a
question by touching only the postings of the question's own tokens, and only the
candidate rows: nothing allocates or scans an array with one entry per chunk.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence

import numpy as np

FULL_POSTINGS = 4096  # a token in at most this many chunks: every posting is a lexical candidate
IMPACT_TOP = 1024  # a more frequent one: only its postings of highest weight (cached per token)


class Postings:
    """The lexical side of a bm25s index as postings: score given rows, top rows."""

    def __init__(self, bm25):
        s = bm25.scores
        self.data: np.ndarray = s["data"]
        self.indices: np.ndarray = s["indices"]
        self.indptr: np.ndarray = s["indptr"]
        self.n = int(s["num_docs"])
        self.vocab: dict[str, int] = bm25.vocab_dict
        self._impact: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def ids(self, tokens: list[str]) -> list[int]:
        """Token ids in the question's order, repeats kept (bm25s counts a repeated token twice)."""
        v = self.vocab
        return [v[t] for t in tokens if t in v]

    def df(self, tid: int) -> int:
        return int(self.indptr[tid + 1] - self.indptr[tid])

    def ceiling(self, tids: list[int]) -> float:
        """The most these tokens can add up to in one chunk: the sum of each token's highest weight
        (cached per token and generation)."""
        total = 0.0
        cache = self.__dict__.setdefault("_ceiling", {})
        for tid in tids:
            w = cache.get(tid)
            if w is None:
                a, b = int(self.indptr[tid]), int(self.indptr[tid + 1])
                w = cache[tid] = float(self.data[a:b].max()) if b > a else 0.0
            total += w
        return total

    def score_rows(self, tids: list[int], rows: np.ndarray) -> np.ndarray:
        """BM25 of the given ascending rows: the same float32 sums, in the same token order, as
        bm25s' get_scores gives them, at O(len(rows) · log df) per token."""
        out = np.zeros(len(rows), dtype=np.float32)
        if not len(rows):
            return out
        for tid in tids:
            a, b = int(self.indptr[tid]), int(self.indptr[tid + 1])
            if a == b:
                continue
            idx = self.indices[a:b]
            if b - a < len(rows):  # a rare token: look its postings up among the rows
                at = np.searchsorted(rows, idx)
                at[at >= len(rows)] = len(rows) - 1
                hit = rows[at] == idx
                out[at[hit]] += self.data[a:b][hit]
            else:  # a frequent one: look the rows up in its postings
                pos = np.searchsorted(idx, rows)
                pos[pos >= len(idx)] = len(idx) - 1
                hit = idx[pos] == rows
                out[hit] += self.data[a + pos[hit]]
        return out

    def _best(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, weights) of a token's postings: all of them for a rare token, the IMPACT_TOP of
        highest weight for a frequent one (computed once per token and generation)."""
        a, b = int(self.indptr[tid]), int(self.indptr[tid + 1])
        if b - a <= FULL_POSTINGS:
            return self.indices[a:b], self.data[a:b]
        got = self._impact.get(tid)
        if got is None:
            w = self.data[a:b]
            keep = np.sort(np.argpartition(-w, IMPACT_TOP)[:IMPACT_TOP])
            got = (self.indices[a:b][keep], w[keep])
            with self._lock:
                self._impact[tid] = got
        return got

    def top(self, tids: list[int], k: int, row_ok=None) -> np.ndarray:
        """Ascending rows of (about) the k best BM25 scores: the partial sums over each token's
        best postings, so a very frequent token adds its strongest chunks, not all of them.
        row_ok: a function rows -> bool mask (a filter) applied before ranking."""
        if not tids:
            return np.zeros(0, dtype=np.int64)
        parts = [self._best(t) for t in tids]
        rows = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
        w = np.concatenate([p[1] for p in parts])
        if row_ok is not None and len(rows):
            ok = row_ok(rows)
            rows, w = rows[ok], w[ok]
        if not len(rows):
            return rows
        uniq, inv = np.unique(rows, return_inverse=True)
        total = np.bincount(inv, weights=w)
        if len(uniq) > k:
            uniq = np.sort(uniq[np.argpartition(-total, k)[:k]])
        return uniq

    def rows_with_all(self, tokens: list[str], cap: int) -> np.ndarray | None:
        """Ascending rows that have every one of the tokens, the rarest token's postings
        intersected with the others'. None: some token is in no row, or even the rarest is in
        more than `cap` rows (the caller decides what that means)."""
        tids = []
        for t in dict.fromkeys(tokens):
            if t not in self.vocab or not self.df(self.vocab[t]):
                return np.zeros(0, dtype=self.indices.dtype)
            tids.append(self.vocab[t])
        tids.sort(key=self.df)
        if self.df(tids[0]) > cap:
            return None
        a, b = int(self.indptr[tids[0]]), int(self.indptr[tids[0] + 1])
        rows = self.indices[a:b]
        for tid in tids[1:]:
            if not len(rows):
                break
            a, b = int(self.indptr[tid]), int(self.indptr[tid + 1])
            idx = self.indices[a:b]
            pos = np.searchsorted(idx, rows)
            pos[pos >= len(idx)] = len(idx) - 1
            rows = rows[idx[pos] == rows]
        return rows


class IDF(Mapping):
    """Token -> IDF (the formula the retriever always used) from the postings' document
    frequencies: no per-chunk token sets, no Counter over the whole corpus."""

    def __init__(self, postings: Postings):
        self.p = postings
        self.n = postings.n

    def __getitem__(self, t: str) -> float:
        tid = self.p.vocab.get(t) if t else None
        if tid is None:
            raise KeyError(t)
        k = self.p.df(tid)
        if k == 0:
            raise KeyError(t)
        n = self.n
        return math.log(1 + (n - k + 0.5) / (k + 0.5))

    def get(self, t, default=None):
        try:
            return self[t]
        except KeyError:
            return default

    def __contains__(self, t) -> bool:
        tid = self.p.vocab.get(t) if t else None
        return tid is not None and self.p.df(tid) > 0

    def __iter__(self):
        return (t for t, tid in self.p.vocab.items() if t and self.p.df(tid) > 0)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class TokenSets(Sequence):
    """chunk_tokens[i]: the set of chunk i's tokens, made when asked for, not for every chunk."""

    def __init__(self, tokens):
        self.tokens = tokens

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [set(t) for t in self.tokens[i]]
        return set(self.tokens[i])

    def __len__(self) -> int:
        return len(self.tokens)


class CorpusWords:
    """Whether a word occurs anywhere in the library's text (sections and chunk texts, lower
    case): the exact answer of a substring search over the whole corpus, found through the
    vocabularies a generation already has. A word the jieba index knows is there; otherwise
    the chunks holding all of its character bigrams (bigram postings, rarest first) are the
    only ones it can be in, and only those texts are searched; sections through their own
    small bigram index. `cap` bounds the chunks read for one word (beyond it: known)."""

    def __init__(self, chunks, words: Postings, grams: Postings, cap: int = 20_000):
        from .lexical import bigrams

        self.chunks = chunks
        self.words = words
        self.grams = grams
        self.cap = cap
        self._bigrams = bigrams
        sections: dict[str, int] = {}
        for c in chunks:
            if c.section not in sections:
                sections[c.section] = len(sections)
        self.sections = [s.lower() for s in sections]
        self.section_grams: dict[str, set[int]] = {}
        for i, s in enumerate(self.sections):
            for g in set(bigrams(s)):
                self.section_grams.setdefault(g, set()).add(i)
        self._cache: dict[str, bool] = {}

    def __contains__(self, w: str) -> bool:
        hit = self._cache.get(w)
        if hit is None:
            hit = self._cache[w] = self._find(w)
        return hit

    def _find(self, w: str) -> bool:
        if w in self.words.vocab and self.words.df(self.words.vocab[w]) > 0:
            return True  # a token of some chunk is a substring of its section or text
        grams = self._bigrams(w)
        if len(grams) != len(w) - 1 or not grams:  # not all letters/digits: read the texts
            return any(w in c.section.lower() or w in c.text.lower() for c in self.chunks)
        secs = None
        for g in dict.fromkeys(grams):
            s = self.section_grams.get(g, set())
            secs = s if secs is None else secs & s
        if any(w in self.sections[i] for i in secs or ()):
            return True
        rows = self.grams.rows_with_all(grams, self.cap)
        if rows is None:
            return True  # every bigram is common: taken as known beyond `cap` (never at the seeds' size)
        return any(w in self.chunks[int(r)].text.lower() for r in rows)
