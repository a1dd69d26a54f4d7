"""Hybrid search: dense (FAISS) + lexical (BM25 over jieba tokens), fused, then a
decision whether the passages answer the question at all.

For each question, parsed once by `qa.query` (Simplified, half width, language,
places, years):
1. scope: a question about a place or period no document covers is "not in the
   corpus" with its reason (`qa.scope`); the documents it points at are preferred;
2. dense cosine of every chunk (exact inner product on normalised vectors), the
   better of the whole chunk and its best sentence window: cross-lingual, so an
   English question meets the Chinese passages here;
3. BM25 over jieba search-mode tokens and over character bigrams; an English
   question's words reach the documents' vocabulary through CC-CEDICT;
4. weighted fusion of the min-max normalised signals, plus a bonus for the
   documents the question points at; weights are fitted on the train split
   (`bench/fit.py`, `qa/data/params.json`);
5. filters restrict, overlapping chunks are de-duplicated, the top_k returned;
6. answerability: a logistic model over the top cosine, its margin, the share of
   the question's words the best passage contains and the share it names that the
   corpus never does gives `confidence`; below the fitted threshold the reply is
   "not in the corpus" (low_relevance).
"""
from __future__ import annotations

import json
import math
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import QAError
from .index import EXACT_UP_TO
from .lexical import (HAN_WORD, Bilingual, bigrams, content_words, dictionary_word, expand, focus_words, sentence_sets, slip_of,
                      synonyms, tokenize)
from .postings import IDF, CorpusWords, Postings, TokenSets
from .query import ANSWER_TYPES, COUNT, Query, counts_asked, holds_answer_type, parse
from .text import is_date
from .records import Chunk

RRF_K = 60
PARAMS = Path(__file__).parent / "data" / "params.json"
LEXICON = Path(__file__).parent / "data" / "lexicon.tsv"
NOUN_TAGS = ("n", "vn", "j", "eng")  # jieba POS prefixes of names of things (n, nr, ns, nt, nz, …)
# the parts of speech a question's topic can be said in: nouns, verbs (返聘, 复读), numerals with their measure
# (几点, 一套), time words, abbreviations. Pronouns, locatives, adverbs, adjectives and idioms the library lacks
# (这边, 里面, 不难, 老掉牙) are how people talk, not what they ask about: on the train questions they were
# absent from 290 answerable questions' words against 25 unanswerable ones'
TOPIC_TAGS = ("n", "v", "m", "t", "j", "eng")
FEATURES = ("top_cosine", "cosine_margin", "top_z", "coverage", "unknown", "unknown_noun", "domain", "english",
            "dense_gap", "answer_type_missing", "absent", "absent_any", "absent_length", "focus_missing",
            "sentence_type_missing", "neighbours", "question_form")
SAID_SENTENCES = 2  # the sentences of the best passage looked at for the kind of answer a question asks for
TYPED_PASSAGES = 3  # the best passages looked at for the kind of answer a question asks for (qa.query.ANSWER_TYPES)
# the second stage: the best RERANK_CANDIDATES passages of the fused score are put in order again by a
# linear model over these features of each (fitted by bench/fit.py on the train split, listwise)
RERANK_FEATURES = ("fused", "dense", "dense_behind", "lexical", "bigram", "coverage", "bigram_coverage",
                   "log_length", "inverse_rank")
RERANK_CANDIDATES = 20
ROW_SETS = 50_000  # chunks whose token and bigram sets a retriever keeps for the second stage


def _fitted() -> dict:
    try:
        return json.loads(PARAMS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _lexicon() -> dict[str, list[str]] | None:
    try:
        lines = LEXICON.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        if line.strip() and not line.startswith("#") and "\t" in line:
            w, vs = line.split("\t", 1)
            out[w] = vs.split()
    return out or None


@dataclass
class Options:
    dense: bool = True
    windows: bool = True  # a chunk's dense score may come from its best sentence window
    lexical: bool = True
    bigrams: bool = True
    fusion: str = "weighted"  # weighted | rrf
    prefer_region_year: bool = True
    synonyms: bool = True  # everyday words -> official terms, for the lexical signals
    bilingual: bool = True  # English words -> the corpus's Chinese words (CC-CEDICT), for the lexical signals
    slips: bool = True  # a word the library lacks that sounds like one of its words (优材 -> 优才), for the lexical signals
    scope: bool = True  # out-of-scope place/period -> no answer
    adapter: bool = True  # the query-side adapter trained for the model (embeddings/query_adapter.py), if one is shipped
    learned: dict | None = None  # everyday word -> the documents' words, learned by bench/learn_lexicon.py
    w_dense: float = 1.0
    w_lexical: float = 0.5
    w_bigram: float = 0.5
    # added to the fused score of the documents the question points at; at 2.0 (the most the three weighted
    # signals add up to) their passages come first: a question about 惠山区 is answered from 惠山区's document
    # before any other (train: 0.5 → 2.0 MRR 0.870 → 0.892, conversations 0.762 → 0.843)
    prefer: float = 2.0
    w_lexical_en: float = 0.25  # lexical weights for English questions (the dictionary is noisy)
    answerability: dict | None = None  # {"weights": {feature: w}, "bias": b, "threshold": t}
    rerank: dict | None = None  # {"weights"|"mean"|"scale": {feature: x}}: the second stage (RERANK_FEATURES); None: off
    # the second stage for English questions too. Off: its inputs are mostly lexical (coverage, bigrams), which for
    # an English question measure the dictionary's noisy translations; on the train documents' English questions of
    # the read blind sets (252) it lowered MRR@10 (0.856 -> 0.835, fused order alone against the stage; README)
    rerank_english: bool = False
    # a place or period that points at documents is a scope, not a topic: "off" searches the question
    # as asked, "lexical" leaves the scope words out of the lexical signals, "both" out of the dense one too,
    # "mean" embeds both forms and averages them (two encodes). Chosen on the train split: both
    scope_query: str = "both"
    scope_years: bool = True  # the years and periods are left out too (not only the places)
    # min-max of a lexical signal divides by at least this share of its ceiling (the sum of each question
    # word's highest weight): a best match on only 孩子 and 学校 stays small (train: 0 → 0.4 R@5 0.956 → 0.971)
    lexical_floor: float = 0.4
    # a count a question asks for (多少名, 几所) is held by a number with a measure word that counts the same things
    # (qa.query.counts_asked); False: by any number with a measure word (before; bench/fit.py --any-count)
    count_units: bool = True
    neighbours: bool = True  # the answerability input from the bank of the project's own questions (qa.neighbours)

    @classmethod
    def fitted(cls, **overrides) -> "Options":
        """Defaults, then what bench/fit.py fitted on the train split, then overrides."""
        p = _fitted()
        base = {k: v for k, v in p.get("fusion", {}).items() if k in cls.__dataclass_fields__}
        return cls(**{**base, "answerability": p.get("answerability"), "rerank": p.get("rerank"), "learned": _lexicon(),
                      **overrides})


@dataclass
class Candidate:
    chunk: Chunk
    score: float
    dense: float
    lexical: float


@dataclass
class Signals:
    question: str
    resolved: str
    query: Query
    verdict: object  # qa.scope.Verdict
    lex_tokens: list[str]
    dense: np.ndarray
    lexical: np.ndarray
    bigram: np.ndarray
    # None: the arrays hold every chunk (row i = chunk i). Else the candidates' rows (ascending),
    # the arrays aligned with them; a last row -1 stands for every chunk not retrieved
    rows: np.ndarray | None = None
    sample: np.ndarray | None = None  # cosines of a fixed sample of chunks: the question's cosine distribution
    ceilings: tuple[float, float] | None = None  # the most the question's words / bigrams can score in one chunk
    # features that need no vector, computed while the question is encoded (None: computed when asked for)
    unknown: tuple[float, list[str]] | None = None
    absent: tuple[float, int, list[str]] | None = None
    domain: float | None = None
    vector: np.ndarray | None = None  # the question's embedding (after the adapter): highlights use it
    window_cos: np.ndarray | None = None  # every sentence window's cosine, where all were scored (the seeds' size)


@dataclass
class SearchResult:
    question: str
    candidates: list[Candidate]
    no_answer: bool
    confidence: dict = field(default_factory=dict)
    query_tokens: list[str] = field(default_factory=list)
    query: Query | None = None
    reason: str | None = None  # out_of_scope_place | out_of_scope_period | low_relevance | not_a_question | None
    message: str = ""  # what to tell the user when there is no answer
    probability: float = 1.0  # calibrated confidence that the passages answer the question
    features: dict = field(default_factory=dict)
    resolved_question: str = ""
    vector: np.ndarray | None = None  # the question's embedding, for highlights
    rows: list[int] = field(default_factory=list)  # the candidates' chunk rows
    window_cos: np.ndarray | None = None  # Signals.window_cos


FILTER_KEYS = {"doc_id", "region", "year", "kind", "issued_after"}
DENSE_CANDIDATES = 1000  # dense hits scored per question above EXACT_UP_TO chunks; the seeds are scored whole
LEXICAL_CANDIDATES = 300  # best BM25 rows (words, and bigrams) added to the candidates above EXACT_UP_TO
FILTER_EXACT = 20_000  # a filter that leaves at most this many chunks: every one of them is scored
COSINE_SAMPLE = 1024  # chunks whose cosines stand for the question's cosine distribution above EXACT_UP_TO


class Retriever:
    def __init__(self, data, embedder, options: Options | None = None, no_answer_threshold: float | None = None,
                 texts: dict[str, str] | None = None, adapter=True, remote=None):
        """adapter: True = the query adapter shipped for this model (if Options.adapter), False = none,
        or a QueryAdapter to use. remote: a qa.backends index (Milvus) the candidates and their
        dense/lexical scores come from instead of FAISS/bm25s; fusion and answerability unchanged."""
        self.data = data
        self.remote = remote
        self.embedder = embedder
        self.options = options or Options.fitted()
        if adapter is True:
            from embeddings.query_adapter import QueryAdapter

            adapter = QueryAdapter.load(embedder.model_id) if self.options.adapter else None
        self.adapter = adapter or None
        if no_answer_threshold is not None and self.options.answerability:
            self.options.answerability = {**self.options.answerability, "threshold": no_answer_threshold}
        self.chunks: list[Chunk] = data.chunks
        n = len(self.chunks)
        # up to EXACT_UP_TO chunks every chunk is scored (exactly as before); above, only candidates
        self.exact = n <= EXACT_UP_TO
        # documents as integer codes: a filter or a preference is a boolean table over documents,
        # looked up by the rows' codes, instead of np.isin over an array of doc-id strings
        codes = _codes_from_rows(data, n)  # the layout every write records: no walk over the chunks
        if codes is None:
            ids = list(dict.fromkeys([*data.docs, *(c.doc_id for c in self.chunks)]))
            at = {d: i for i, d in enumerate(ids)}
            codes = ids, np.fromiter((at[c.doc_id] for c in self.chunks), dtype=np.int32, count=n)
        self.doc_ids, self.doc_code = codes
        self.doc_index = {d: i for i, d in enumerate(self.doc_ids)}
        order = np.argsort(self.doc_code, kind="stable")
        self._doc_rows = (order, np.searchsorted(self.doc_code[order], np.arange(len(self.doc_ids) + 1)))
        # the lexical indexes as postings; IDF from their document frequencies; token sets on demand
        self.words = Postings(data.bm25)
        self.grams = Postings(data.bm25_bigrams)
        self.idf = IDF(self.words)
        self.default_idf = math.log(1 + (n + 0.5) / 0.5)
        self.chunk_tokens = TokenSets(data.tokens)
        self._sets: dict[int, tuple[frozenset, frozenset, int]] = {}
        self._texts = texts
        self._bilingual_lock = threading.Lock()

    # -------------------------------------------------------------- helpers
    @cached_property
    def bank(self):
        """The project's own questions with their labels (qa.neighbours), for the model in use; None without."""
        from .neighbours import Bank

        return Bank.load(getattr(self.embedder, "model_id", ""))

    @cached_property
    def scope(self):
        from .scope import Scope

        texts = self._texts
        if texts is None:
            texts = {}
            for c in self.chunks:
                texts[c.doc_id] = texts.get(c.doc_id, "") + c.text + "\n"
        return Scope(self.data.docs, texts)

    @property
    def bilingual(self) -> Bilingual:
        with self._bilingual_lock:
            if getattr(self, "_bilingual", None) is None:
                self._bilingual = Bilingual(set(self.idf))
            return self._bilingual

    def _allowed(self, filters: dict | None, per_doc: bool = False) -> np.ndarray | None:
        """The chunks a filter keeps (a boolean per row); per_doc=True: a boolean per document code
        instead, None without a filter."""
        if not filters:
            return None if per_doc else np.ones(len(self.chunks), dtype=bool)
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
        if filters.get("kind") is not None:
            keep &= {d for d, m in docs.items() if m.get("kind") == filters["kind"]}
        if filters.get("issued_after") is not None:
            after = str(filters["issued_after"])
            if not is_date(after):
                raise QAError(f"filter issued_after must be a date YYYY-MM-DD, got {after!r}")
            keep &= {d for d, m in docs.items() if _date(m) >= after}
        lut = self._doc_table(keep)
        return lut if per_doc else lut[self.doc_code]

    def _doc_table(self, docs) -> np.ndarray:
        lut = np.zeros(len(self.doc_ids), dtype=bool)
        codes = [self.doc_index[d] for d in docs if d in self.doc_index]
        lut[codes] = True
        return lut

    def _rows_of(self, lut: np.ndarray) -> np.ndarray:
        """Ascending rows of the documents a table keeps (from the per-document row lists)."""
        order, start = self._doc_rows
        parts = [order[start[c] : start[c + 1]] for c in np.flatnonzero(lut)]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    @cached_property
    def doc_of(self) -> np.ndarray:
        """The doc id of every row (for callers that want strings; the retriever uses doc_code)."""
        return np.array(self.doc_ids, dtype=object)[self.doc_code]

    @cached_property
    def corpus_words(self) -> CorpusWords:
        """The no-answer vocabulary, built once per generation."""
        return CorpusWords(self.chunks, self.words, self.grams)

    @cached_property
    def _term_counts(self) -> tuple[dict, int]:
        """How often each token occurs in the library (a generation may ship them as term_counts)."""
        tf = getattr(self.data, "term_counts", None)
        if tf is None:
            tf = Counter(t for ts in self.data.tokens for t in ts)
        return tf, max(1, sum(tf.values()))

    @cached_property
    def _sample(self) -> np.ndarray:
        n = len(self.chunks)
        return np.sort(np.random.default_rng(0).choice(n, min(n, COSINE_SAMPLE), replace=False))

    @property
    def max_score(self) -> float:
        """The fused score of a chunk that is first on every signal and in a document the
        question points at: scales `score` into 0..1."""
        o = self.options
        if o.fusion == "rrf":
            return (o.w_dense + o.w_lexical + o.w_bigram) / (RRF_K + 1) + o.prefer
        return o.w_dense + o.w_lexical + o.w_bigram + o.prefer

    def unknown_words(self, query: Query) -> tuple[float, list[str]]:
        """(share, words) of the question's content words that this corpus never uses.
        Chinese: nouns of two or more characters (jieba precise mode with part of speech)
        that the corpus text never contains: precise mode matters, search mode would cut
        研究生 into 研究 + 研究生 and the known fragment would hide that the corpus never
        mentions graduate students; a word the synonym lexicon maps counts as known, and so do a
        word of a document's title (要点 of 2020年某区教育工作要点) and a pinyin-keyboard slip of one of
        the library's words (优材 for 优才).
        English: content words with no dictionary translation into the corpus's words."""
        if query.language == "en":
            words, unknown = self._english_unknown(query)
            return (len(unknown) / len(words) if words else 0.0), unknown
        words = content_words(query.text)
        if not words:
            return 0.0, []
        lacks = self._lacks(query)
        unknown = [w for w, tag in words if tag.startswith(NOUN_TAGS) and len(w) >= 2 and lacks(w)]
        return len(unknown) / len(words), unknown

    def _english_unknown(self, query: Query) -> tuple[list[str], list[str]]:
        """(content words, those with no dictionary translation into the corpus's words) of an English question."""
        words = _en_words(query.text)
        return words, [w for w in words if not self.bilingual.translate(w)]

    def _lacks(self, query: Query):
        """w -> whether the library never uses the question's word w: neither its text nor a document's title
        has it, the synonym lexicon does not map it (from the question's everyday words), and it is no
        pinyin-keyboard slip of one of the library's words."""
        everyday = [e for e, _ in synonyms() if e in query.text]
        known, titles = self.corpus_words, self._titles
        return lambda w: (w not in known and w not in titles and not any(w in e or e in w for e in everyday)
                          and not self.slip(w))

    def word_df(self, word: str) -> int:
        """In how many chunks the library uses the word as a jieba token (0: never)."""
        tid = self.words.vocab.get(word)
        return self.words.df(tid) if tid is not None else 0

    @cached_property
    def _titles(self) -> str:
        return "\n".join(str(m.get("title") or "") for m in self.data.docs.values()).lower()

    def slip(self, word: str) -> str | None:
        """The library's word a question's word is a pinyin-keyboard slip of (优材 -> 优才), if any."""
        return slip_of(word, self.word_df)

    def says_all(self, query: Query) -> bool:
        """Whether the library uses every content word of a parsed question (absent_words finds none) and some
        word of it more than everyday language does (domain): 今天天气怎么样 is not about the library."""
        return self.absent_words(query)[0] == 0 and self.domain(self.lexical_query(query)[0]) > 0

    def absent_words(self, query: Query) -> tuple[float, int, list[str]]:
        """(share, number of content words, words) of the question's content words that the library never
        uses: neither its text nor a document's title has them, the synonym lexicon does not map them, and
        they are no slip of a pinyin keyboard for one of its words. Wider than `unknown_words` (nouns only):
        返聘, 复读, 欺凌, 染发 are verbs, and a question about them asks about something no document treats
        (TOPIC_TAGS). The number of content words lets the model tell a short question resting on such a
        word from a long, chatty one that has a few (女儿, 同事) around its real topic."""
        if query.language == "en":
            words, unknown = self._english_unknown(query)
            return (len(unknown) / len(words) if words else 0.0), len(words), unknown
        words = content_words(query.text)
        if not words:
            return 0.0, 0, []
        lacks = self._lacks(query)
        # a two-character string general Chinese does not have is jieba's guess at a word, as often a cut in
        # the wrong place (多少名省特级 -> 名省, 能装上 -> 能装) as a word: it does not count
        absent = [w for w, tag in words if tag.startswith(TOPIC_TAGS) and HAN_WORD.fullmatch(w)
                  and (len(w) > 2 or dictionary_word(w)) and lacks(w)]
        return len(absent) / len(words), len(words), absent

    def content_query(self, query: Query, verdict) -> Query:
        """The question less the places and periods that point it at documents (the preference for
        those documents stands for them): 惠山区美育工作有什么安排 searches 美育工作有什么安排, so the
        document's header, which names 惠山区 in every line, does not outrank its passage on 美育."""
        if self.options.scope_query == "off" or not verdict.docs or verdict.reason:
            return query
        from dataclasses import replace as _replace

        from .conversation import bare, strip_scope

        # a period is scope only where it is the period of a document it points at: 十三五 asked of a 十四五
        # plan (whose review of 十三五 is a topic of its text) stays in what is searched
        own = set().union(*(self.scope.periods.get(d, set()) for d in verdict.docs))
        text = strip_scope(query.text, query, places=bool(query.places),
                            years=bool(set(query.years) & own) and self.options.scope_years)
        if len(bare(text, query)) < 2:
            return query
        return _replace(query, text=text)

    def _ceilings(self, lex_tokens: list[str], q_bigrams: list[str]) -> tuple[float, float]:
        """The most the question's words and bigrams can score in one chunk (Options.lexical_floor)."""
        return self.words.ceiling(self.words.ids(lex_tokens)), self.grams.ceiling(self.grams.ids(q_bigrams))

    def lexical_query(self, query: Query) -> tuple[list[str], list[str]]:
        """(jieba tokens, character bigrams) the lexical signals search for."""
        opts = self.options
        text = query.text
        extra = []
        if opts.synonyms:
            e = expand(text)
            if e:
                extra.append(e)
        if opts.bilingual and query.language != "zh":
            extra.append(" ".join(self.bilingual.translate(text)))
        own = tokenize(text)
        if opts.slips:  # 优材计划 searches 优才 too: a word the library lacks that sounds like one of its own
            meant = [m for m in (self.slip(w) for w in dict.fromkeys(own) if not self.word_df(w)) if m]
            if meant:
                extra.append(" ".join(meant))
        if opts.learned:
            learned = [v for w in dict.fromkeys(own) for v in opts.learned.get(w, ())]
            if learned:
                extra.append(" ".join(learned))
        tokens = own + [t for e in extra for t in tokenize(e)]
        grams = bigrams(text) + [g for e in extra for w in e.split() for g in bigrams(w)]
        return tokens, grams

    def domain(self, tokens: list[str]) -> float:
        """How typical of this library the question's words are: the highest log-ratio of a word's
        frequency in the corpus to its frequency in general Chinese (jieba's dictionary counts).
        今天天气怎么样 has no word the documents use more than everyday language does."""
        from .lexical import _jieba

        general = _jieba().dt
        tf, total = self._term_counts
        best = 0.0
        for t in set(tokens):
            if len(t) < 2 or t not in tf:
                continue
            pc = tf[t] / total
            pg = (general.FREQ.get(t, 0) + 1) / general.total
            best = max(best, math.log(pc / pg))
        return min(best, 12.0)

    def coverage(self, tokens: list[str], i: int) -> float:
        """IDF-weighted share of the question's tokens that chunk i contains."""
        q = set(tokens)
        if not q:
            return 0.0
        total = sum(self.idf.get(t, self.default_idf) for t in q)
        return sum(self.idf.get(t, self.default_idf) for t in q & self.chunk_tokens[i]) / total

    def focus_missing(self, query: Query, best: int | None) -> float:
        """Share of the question's focus words (qa.lexical.focus_words) that chunk `best` (its text, section
        and title) does not contain; 0 for a question without any, or in English."""
        if best is None or query.language == "en":
            return 0.0
        # measured against counting only the words the library uses (the others are `absent` already):
        # leave-one-document-out no-answer recall 0.889 -> 0.875 at 4 false no-answers, so every one counts
        focus = focus_words(query.text)
        if not focus:
            return 0.0
        c = self.chunks[best]
        text = f"{c.title} {c.section} {c.text}".lower()
        return sum(1 for w in focus if w not in text) / len(focus)

    def sentence_type_missing(self, query: Query, tokens: list[str], best: int | None) -> float:
        """1 when the question asks for a kind of answer — a count, a share or a rate (qa.query.COUNT: 招聘多少名
        教师, 覆盖率是多少) or one of qa.query.ANSWER_TYPES (an amount of money, a date …) — and the two sentences of
        chunk `best` that say most of the question's words (IDF-weighted) do not hold it; 0 otherwise. The
        passage on 教师招聘 that gives no number of teachers does not answer 招聘多少名; the sentence that names
        集团办学专项经费 without an amount does not answer 专项经费是多少万元, though another sentence of the
        passage names 15亿元 (answer_type_missing looks at whole passages). A count is held by a number with a
        measure word that counts the same things (qa.query.counts_asked: 多少名 by 30人, not by 3所), a share by
        a percentage."""
        counts = counts_asked(query.text)
        if counts and not self.options.count_units:
            counts = [COUNT[1]]
        kinds = counts + [ANSWER_TYPES[t][1] for t in query.answer_types]
        if best is None or not kinds:
            return 0.0
        said = self.said_sentences(tokens, best)
        return 0.0 if all(any(k.search(s) for s in said) for k in kinds) else 1.0

    def said_sentences(self, tokens: list[str], best: int) -> list[str]:
        """The SAID_SENTENCES sentences of chunk `best` that say most of the question's words (IDF-weighted)."""
        q = set(tokens)
        sents = sentence_sets(self.chunks[best].text)
        said = sorted(((sum(self.idf.get(t, self.default_idf) for t in q & toks), n)
                       for n, (_, toks, _) in enumerate(sents)), reverse=True)[:SAID_SENTENCES]
        return [sents[n][0] for _, n in said]

    # --------------------------------------------------------------- search
    def signals(self, question: str, history: list[str] | None = None, filters: dict | None = None) -> "Signals":
        """Everything about a question that does not depend on fusion weights. Up to EXACT_UP_TO
        chunks the arrays hold every chunk; above, only the candidates (`Signals.rows`): the dense
        ANN hits, the chunks of the best sentence windows and the best BM25 rows of words and of
        bigrams, all inside `filters` (a filter that leaves few chunks has all of them scored)."""
        from .conversation import resolve

        resolved = resolve(question, history or [], self.scope, self.says_all) if history else question
        verdict = self.scope.check(parse(resolved))
        query = verdict.query
        content = self.content_query(query, verdict)
        mean = self.options.scope_query == "mean" and content is not query
        exact = self.remote is None and self.exact
        texts = [query.text, content.text] if mean else [(content if self.options.scope_query in ("both",) else query).text]
        beside = getattr(self.embedder, "encode_queries_beside", None)
        if beside is not None:  # the side that needs no vector runs while the question is encoded
            q, side = beside(texts, self._vector_free, query, content, exact)
        else:
            side = self._vector_free(query, content, exact)
            q = self.embedder.encode_queries(texts)
        lex_tokens, q_bigrams, unknown, absent, domain, lexical, bigram, ceilings = side
        if mean:
            q = q.sum(axis=0, keepdims=True)
            q = (q / np.linalg.norm(q)).astype(np.float32)
        if self.adapter is not None:
            q = self.adapter.apply(q)
        if not exact:
            if self.remote is not None:
                sig = self._remote_signals(question, resolved, verdict, query, lex_tokens, q_bigrams, q, filters)
            else:
                sig = self._candidate_signals(question, resolved, verdict, query, lex_tokens, q_bigrams, q,
                                              self._allowed(filters, per_doc=True) if filters else None)
            sig.unknown, sig.absent, sig.domain, sig.vector = unknown, absent, domain, q[0]
            return sig
        # dense scores of the best DENSE_CANDIDATES chunks (all of them at the seeds' size); the
        # rest get the lowest score retrieved, so min-max fusion puts them at the bottom
        n = len(self.chunks)
        k = min(n, DENSE_CANDIDATES)
        data = self.data
        window_cos = None
        if k == n and len(data.vectors) == n:
            # every chunk is scored: one product with the vectors in memory, not a search that sorts them all
            dense = data.vectors @ q[0]
        else:
            D, I = data.dense.search(q, k)
            found = I[0] >= 0
            dense = np.full(n, D[0][found][-1] if k < n and found.any() else 0.0, dtype=np.float32)
            dense[I[0][found]] = D[0][found]
        if self.options.windows:
            m = data.dense_windows.ntotal
            best_window = np.full(n, -1.0, dtype=np.float32)
            if m <= 3 * DENSE_CANDIDATES and len(data.window_vectors) == m == len(data.window_owner) and m:
                # every window is scored: its cosine kept for the highlights (window_cosines)
                window_cos = data.window_vectors @ q[0]
                owners, first = np.unique(data.window_owner, return_index=True)
                best_window[owners] = np.maximum.reduceat(window_cos, first)
            else:
                Dw, Iw = data.dense_windows.search(q, min(m, 3 * DENSE_CANDIDATES))
                ok = Iw[0] >= 0
                np.maximum.at(best_window, data.window_owner[Iw[0][ok]], Dw[0][ok])
            dense = np.maximum(dense, best_window)
        return Signals(question, resolved, query, verdict, lex_tokens, dense, lexical, bigram,
                       ceilings=ceilings, unknown=unknown, absent=absent, domain=domain, vector=q[0],
                       window_cos=window_cos)

    def _vector_free(self, query: Query, content: Query, exact: bool) -> tuple:
        """What a question's signals need that does not depend on its vector: the lexical query, the
        unknown words and domain features, and (every chunk scored) both BM25 passes."""
        lex_tokens, q_bigrams = self.lexical_query(content)
        unknown, domain = self.unknown_words(query), self.domain(lex_tokens)
        absent = self.absent_words(query)
        lexical = bigram = ceilings = None
        if exact:
            zeros = np.zeros(len(self.chunks), dtype=np.float32)
            lexical = np.asarray(self.data.bm25.get_scores(lex_tokens), dtype=np.float32) if lex_tokens else zeros
            bigram = np.asarray(self.data.bm25_bigrams.get_scores(q_bigrams), dtype=np.float32) if q_bigrams else zeros
            ceilings = self._ceilings(lex_tokens, q_bigrams)
        return lex_tokens, q_bigrams, unknown, absent, domain, lexical, bigram, ceilings

    def _candidate_signals(self, question, resolved, verdict, query, lex_tokens, q_bigrams, q, lut) -> "Signals":
        data = self.data
        q1 = q[0].astype(np.float32, copy=False)
        w_ids, g_ids = self.words.ids(lex_tokens), self.grams.ids(q_bigrams)
        row_ok = (lambda rows: lut[self.doc_code[rows]]) if lut is not None else None
        fixed = self._rows_of(lut) if lut is not None and lut.sum() < len(self.doc_ids) else None
        if fixed is not None and len(fixed) > FILTER_EXACT:
            fixed = None  # a broad filter: candidates from the searches, filtered
        window_rows = window_scores = None
        if fixed is not None:
            rows = fixed
            dense = data.vectors[rows] @ q1
            floor = None
            if self.options.windows and len(data.window_vectors) == len(data.window_owner):
                owner = data.window_owner
                lo, hi = np.searchsorted(owner, rows), np.searchsorted(owner, rows, side="right")
                has = hi > lo
                if has.any():
                    w_idx = np.concatenate([np.arange(a, b) for a, b in zip(lo[has], hi[has])])
                    wd = data.window_vectors[w_idx] @ q1
                    dense[has] = np.maximum(dense[has], np.maximum.reduceat(wd, np.cumsum(hi[has] - lo[has]) - (hi[has] - lo[has])))
        else:
            k = DENSE_CANDIDATES if lut is None else 3 * DENSE_CANDIDATES  # over-fetch, then filter
            D, I = data.dense.search(q, k)
            ok = I[0] >= 0
            hits, hit_d = I[0][ok].astype(np.int64), D[0][ok]
            floor = float(hit_d[-1]) if len(hit_d) else -1.0
            parts = [hits]
            if self.options.windows:
                Dw, Iw = data.dense_windows.search(q, 3 * k)
                okw = Iw[0] >= 0
                window_rows, window_scores = data.window_owner[Iw[0][okw]].astype(np.int64), Dw[0][okw]
                parts.append(window_rows)
            parts += [self.words.top(w_ids, LEXICAL_CANDIDATES, row_ok), self.grams.top(g_ids, LEXICAL_CANDIDATES, row_ok)]
            rows = np.unique(np.concatenate(parts))
            if row_ok is not None:
                rows = rows[row_ok(rows)]
            # the ANN hits' cosines (exact for IVF-Flat); a candidate the ANN did not return gets the
            # last hit's score, as every chunk outside the hits did before (no gather of its vector)
            dense = np.full(len(rows), floor, dtype=np.float32)
            at = np.searchsorted(rows, hits)
            keep = at < len(rows)
            keep[keep] = rows[at[keep]] == hits[keep]
            dense[at[keep]] = hit_d[keep]
            if window_rows is not None and len(rows):
                pos = np.searchsorted(rows, window_rows)
                pos[pos >= len(rows)] = len(rows) - 1
                keep = rows[pos] == window_rows
                np.maximum.at(dense, pos[keep], window_scores[keep])
        dense = dense.astype(np.float32, copy=False)
        lexical = self.words.score_rows(w_ids, rows)
        bigram = self.grams.score_rows(g_ids, rows)
        sample = self._sample  # the question's cosines over the library, whatever the filters (see features)
        sample_cos = data.vectors[sample] @ q1 if len(sample) >= 10 else dense
        if fixed is None or len(fixed) < len(self.chunks):
            # one more row for every chunk not retrieved: the dense floor, no lexical match
            rows = np.append(rows, -1)
            dense = np.append(dense, np.float32(floor if floor is not None else dense.min(initial=0.0)))
            lexical, bigram = np.append(lexical, np.float32(0)), np.append(bigram, np.float32(0))
        return Signals(question, resolved, query, verdict, lex_tokens, dense, lexical, bigram,
                       rows=rows, sample=np.asarray(sample_cos, dtype=np.float32),
                       ceilings=self._ceilings(lex_tokens, q_bigrams))

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.chunks)}

    def _remote_signals(self, question, resolved, verdict, query, lex_tokens, q_bigrams, q, filters) -> "Signals":
        """The candidates and their three signals from the remote index (filters applied inside its
        searches), laid out as _candidate_signals lays out its own: rows ascending, a last row -1
        for every chunk not retrieved. A hit this generation does not know (another replica's newer
        commit) is skipped."""
        k_dense = min(len(self.chunks), DENSE_CANDIDATES)
        k_lex = min(len(self.chunks), LEXICAL_CANDIDATES)
        hits = self.remote.signals(" ".join(lex_tokens), " ".join(q_bigrams), q[0], k_dense, k_lex, filters,
                                   windows=self.options.windows)
        row_of = self._row_of
        per = {}
        for name, h in hits.items():
            pairs = [(row_of[i], s) for i, s in zip(h.ids, h.scores) if i in row_of]
            per[name] = (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.float32))
        rows = np.unique(np.concatenate([r for r, _ in per.values()])) if per else np.zeros(0, dtype=np.int64)
        d_rows, d_scores = per["dense"]
        floor = float(d_scores.min()) if len(d_scores) else 0.0
        dense = np.full(len(rows), floor, dtype=np.float32)
        lexical, bigram = np.zeros(len(rows), dtype=np.float32), np.zeros(len(rows), dtype=np.float32)
        for arr, (r, sc) in ((dense, per["dense"]), (lexical, per["words"]), (bigram, per["grams"])):
            arr[np.searchsorted(rows, r)] = sc
        rows = np.append(rows, -1)
        dense = np.append(dense, np.float32(floor))
        lexical, bigram = np.append(lexical, np.float32(0)), np.append(bigram, np.float32(0))
        sample = d_scores if len(d_scores) >= 10 else dense[:-1]
        # Milvus' BM25 is the embedded one (same k1, b and scale), so the local ceilings apply
        return Signals(question, resolved, query, verdict, lex_tokens, dense, lexical, bigram,
                       rows=rows, sample=np.asarray(sample, dtype=np.float32),
                       ceilings=self._ceilings(lex_tokens, q_bigrams))

    def fuse(self, sig: "Signals", options: Options | None = None) -> np.ndarray:
        """The fused score of every chunk of the signals (every chunk, or the candidates: aligned
        with sig.rows), before filters."""
        opts = options or self.options
        english = sig.query.language == "en"
        w_lex = opts.w_lexical_en if english else opts.w_lexical
        w_bi = opts.w_lexical_en if english else opts.w_bigram
        score = np.zeros(len(sig.dense), dtype=np.float64)
        ceil = sig.ceilings if sig.ceilings and opts.lexical_floor > 0 else (None, None)
        for weight, x, used, top in ((opts.w_dense, sig.dense, opts.dense, None), (w_lex, sig.lexical, opts.lexical, ceil[0]),
                                     (w_bi, sig.bigram, opts.bigrams, ceil[1])):
            if not used:
                continue
            if opts.fusion == "rrf":
                score += np.where(x > 0, weight / (RRF_K + _ranks(x)), 0.0)
            else:
                score += weight * _minmax(x, None if top is None else opts.lexical_floor * top)
        if opts.prefer_region_year and sig.verdict.docs:
            preferred = self._doc_table(sig.verdict.docs)
            codes = self.doc_code if sig.rows is None else self.doc_code[np.maximum(sig.rows, 0)]
            hit = preferred[codes]
            if sig.rows is not None:
                hit &= sig.rows >= 0
            score = np.where(hit, score + opts.prefer, score)
        return score

    def features(self, sig: "Signals", best: int | None, allowed: np.ndarray, at: int | None = None,
                 typed: list[str] | None = None) -> dict:
        """What the answerability model sees. `allowed` is aligned with the signals' arrays; `at` is
        the best passage's position in them; `typed`: the texts of the best few passages."""
        if sig.rows is not None:
            allowed = allowed & (sig.rows >= 0)
        dense = np.sort(sig.dense[allowed])[::-1] if allowed.any() else np.zeros(1, dtype=np.float32)
        # the question's own cosine distribution is over the library, whatever the filters: a filter to one small
        # document (4 passages) made the best passage stand out of 4 cosines only, and a question its passage
        # answers was refused with the filter and answered without it (the model was fitted without filters)
        pool = sig.dense if sig.rows is None else sig.dense[sig.rows >= 0]
        every = np.sort(pool)[::-1] if len(pool) else dense
        spread = every if sig.sample is None else sig.sample
        unknown, words = sig.unknown if sig.unknown is not None else self.unknown_words(sig.query)
        absent, length, _ = sig.absent if sig.absent is not None else self.absent_words(sig.query)
        # how answerable the project's own questions most like this one were (qa.neighbours): 局长是谁 and
        # 怎么报名 are asked of policy documents and seldom answered by them. None without a bank
        nb = self.bank.answered(sig.vector) if self.bank is not None and self.options.neighbours else None
        # the same questions' linear model over the embedding (qa.neighbours, Bank.form): the forms answered
        form = self.bank.form(sig.vector) if self.bank is not None and self.options.neighbours else None
        return {
            "top_cosine": float(dense[0]),
            "cosine_margin": float(dense[0] - every[min(9, len(every) - 1)]),
            # how far the best passage stands out of this question's own cosine distribution
            "top_z": float((dense[0] - spread.mean()) / (spread.std() + 1e-6)),
            "coverage": self.coverage(sig.lex_tokens, best) if best is not None else 0.0,
            "unknown": unknown,
            # the earlier hand-calibrated rule as one input: a noun the corpus never uses, unless the match is close
            "unknown_noun": 1.0 if unknown >= 0.2 and float(dense[0]) < 0.90 else 0.0,
            "domain": sig.domain if sig.domain is not None else self.domain(sig.lex_tokens),
            "english": 1.0 if sig.query.language == "en" else 0.0,
            # how far the best passage's cosine is below the top one (the signals disagree on it)
            "dense_gap": float(sig.dense[at] - dense[0]) if at is not None else 0.0,
            # the question asks for an amount of money, a date, a weekday or a number to call …, and none of
            # the best passages holds one (校服多少钱一套 against passages without an amount); of a question
            # that asks for two (哪天开学，要交多少钱), one is enough
            "answer_type_missing": 1.0 if any(not any(holds_answer_type(t, x) for x in typed or ())
                                               for t in sig.query.answer_types) else 0.0,
            # words of any kind the library never uses: their share of the question's words, whether there is
            # one, and the question's length where there is (a long, chatty question has a few around its topic,
            # 女儿, 同事; a short one rests on it, 手机, 公积金). A question without one is not judged by its
            # length: short questions and follow-ups are as answerable as long ones
            "absent": absent,
            "absent_any": 1.0 if absent > 0 else 0.0,
            "absent_length": float(length) if absent > 0 else 0.0,
            # the share of the words the question asks about (lexical.focus_words: 小区 in 张謇小学的学区包括哪些
            # 小区) that the best passage does not say: a passage on the question's topic, silent on what it asks
            "focus_missing": self.focus_missing(sig.query, best),
            # the kind of answer asked for (多少名, 覆盖率是多少, 多少钱, 哪天) that the sentences of the best passage
            # saying the question's words do not give
            "sentence_type_missing": self.sentence_type_missing(sig.query, sig.lex_tokens, best),
            "neighbours": nb,
            "question_form": form,
            "words_not_in_corpus": words,
        }

    def rerank_features(self, sig: "Signals", score: np.ndarray, options: Options | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `score` of the best RERANK_CANDIDATES passages by fused score, highest first,
        ties in row order; their RERANK_FEATURES as a matrix). Only those few passages are looked at."""
        opts = options or self.options
        finite = np.flatnonzero(np.isfinite(score))
        if not len(finite):
            return finite, np.zeros((0, len(RERANK_FEATURES)))
        k = min(RERANK_CANDIDATES, len(finite))
        first = finite[np.argpartition(-score[finite], k - 1)[:k]] if len(finite) > k else finite
        kth = score[first].min()
        first = finite[score[finite] >= kth]  # ties at the cut: all of them, then the stable order decides
        order = first[np.lexsort((first, -score[first]))][:k]
        dense = sig.dense
        ceil = sig.ceilings if sig.ceilings and opts.lexical_floor > 0 else (None, None)

        def scaled(x, top):  # as fuse() scales a signal (min-max, lexical ones against their ceiling)
            lo, hi = float(x.min()), float(x.max())
            d = max(hi - lo, opts.lexical_floor * top if top is not None else 0.0)
            return (x[order] - lo) / d if d > 0 else np.zeros(len(order))

        dense_all = scaled(dense, None)
        lexical, bigram = scaled(sig.lexical, ceil[0]), scaled(sig.bigram, ceil[1])
        q_grams = set(bigrams(sig.query.text))
        q_idf = {t: self.idf.get(t, self.default_idf) for t in set(sig.lex_tokens)}
        q_total = sum(q_idf.values())
        X = np.empty((len(order), len(RERANK_FEATURES)))
        best_dense = float(dense[order].max())
        for n, i in enumerate(order):
            row = int(i) if sig.rows is None else int(sig.rows[i])
            tokens, grams, length = self._row_sets(row)
            X[n] = (score[i] - score[order[0]], dense_all[n], dense[i] - best_dense, lexical[n], bigram[n],
                    sum(q_idf[t] for t in tokens.intersection(q_idf)) / q_total if q_total else 0.0,
                    len(q_grams.intersection(grams)) / len(q_grams) if q_grams else 0.0,
                    math.log1p(length), 1.0 / (n + 1))
        return order, X

    def window_cosines(self, rows: list[int], vector: np.ndarray | None,
                       every: np.ndarray | None = None) -> list[list[tuple[int, int, float]] | None]:
        """For each chunk row: [start, end) of each of its sentence windows (qa.index.windows) and the
        window's cosine with the question's vector; None where the windows' vectors cannot be had.
        A replica's come from the remote index, in one query for all the rows. `every`: the cosine of
        every window, when the search has them (Signals.window_cos): read, not computed again."""
        data = self.data
        if vector is None or not rows:
            return [None] * len(rows)
        q = np.asarray(vector, dtype=np.float32)
        local = len(data.window_vectors) == len(data.window_owner) and len(data.window_owner) > 0
        fetched = {}
        if not local:
            get = getattr(self.remote, "window_vectors", None)
            if get is None:
                return [None] * len(rows)
            try:
                fetched = get([self.chunks[r].id for r in rows])
            except Exception:  # highlights fall back to words alone; the answer itself is unchanged
                return [None] * len(rows)
        out = []
        for row in rows:
            spans = _window_spans(self.chunks[row].text)
            if local:
                lo, hi = np.searchsorted(data.window_owner, [row, row + 1])
                if every is not None and len(every) == len(data.window_owner):
                    if hi - lo != len(spans):
                        out.append(None)
                        continue
                    out.append([(x, y, float(c)) for (x, y), c in zip(spans, every[lo:hi])])
                    continue
                vecs = data.window_vectors[lo:hi]
            else:
                vecs = fetched.get(self.chunks[row].id)
            if vecs is None or len(vecs) != len(spans):
                out.append(None)
                continue
            out.append([(x, y, float(c)) for (x, y), c in zip(spans, vecs @ q)])
        return out

    def _row_sets(self, row: int) -> tuple[frozenset, frozenset, int]:
        """(token set, character-bigram set, length) of chunk `row`, kept for the rows asked about
        (at most ROW_SETS of them: the dict starts again when full)."""
        got = self._sets.get(row)
        if got is None:
            if len(self._sets) >= ROW_SETS:
                self._sets = {}
            text = self.chunks[row].text
            got = self._sets[row] = (frozenset(self.data.tokens[row]), frozenset(bigrams(text)), len(text))
        return got

    def reranked(self, sig: "Signals", score: np.ndarray, options: Options | None = None) -> np.ndarray:
        """`score` with its best RERANK_CANDIDATES put in the second stage's order, above the rest
        (a copy; `score` itself when the stage is off)."""
        opts = options or self.options
        model = opts.rerank
        if not model or (sig.query.language == "en" and not opts.rerank_english):
            return score
        order, X = self.rerank_features(sig, score, options)
        if len(order) < 2:
            return score
        w = np.array([model["weights"][f] for f in RERANK_FEATURES])
        mu = np.array([model["mean"][f] for f in RERANK_FEATURES])
        sd = np.array([model["scale"][f] for f in RERANK_FEATURES])
        s = ((X - mu) / sd) @ w
        if opts.prefer_region_year and sig.verdict.docs:
            # the documents of the place and period the question names stay first: the stage puts passages in
            # order within them, and a closer passage of another district (招聘中小学编制教师131名, 武进区) no
            # longer comes before the one that answers for the district asked about (锡山区, 210名)
            codes = self.doc_code[order if sig.rows is None else np.maximum(sig.rows[order], 0)]
            hit = self._doc_table(sig.verdict.docs)[codes]
            s = s + hit * (float(s.max() - s.min()) + 1.0)
        out = score.copy()
        out[order] = float(score[order[0]]) + 1.0 + (s - s.min())
        return out

    def top(self, score: np.ndarray, top_k: int, rows: np.ndarray | None = None) -> list[int]:
        """Rows of the best chunks, highest first, skipping any that overlaps one already taken.
        `rows`: what score's entries are (Signals.rows); None when score holds every chunk."""
        pos = self._top_positions(score, top_k, rows)
        return [int(i) for i in pos] if rows is None else [int(rows[i]) for i in pos]

    def _top_positions(self, score: np.ndarray, top_k: int, rows: np.ndarray | None) -> list[int]:
        """Positions in `score` of the best non-overlapping chunks, ties in row order (as a stable
        sort of every chunk gives them). Only the best few are sorted (argpartition); if overlaps
        use them up, the rest are sorted too."""
        n = len(score)
        head = 4 * top_k + 32
        if n > 2 * head:
            kth = np.partition(score, n - head)[n - head]
            first = np.flatnonzero(score >= kth) if np.isfinite(kth) else np.flatnonzero(np.isfinite(score))
            order = first[np.lexsort((first, -score[first]))]
        else:
            first, order = None, np.argsort(-score, kind="stable")
        out = self._take(score, order, top_k, rows)
        if len(out) < top_k and first is not None and len(first) < np.isfinite(score).sum():
            out = self._take(score, np.argsort(-score, kind="stable"), top_k, rows)
        return out

    def _take(self, score, order, top_k, rows) -> list[int]:
        out: list[int] = []
        spans: dict[str, list[tuple[int, int]]] = {}
        for i in order:
            if not np.isfinite(score[i]):
                break
            c = self.chunks[i if rows is None else rows[i]]
            if any(c.start < b and a < c.end for a, b in spans.get(c.doc_id, [])):
                continue  # overlaps a chunk already returned
            spans.setdefault(c.doc_id, []).append((c.start, c.end))
            out.append(int(i))
            if len(out) >= top_k:
                break
        return out

    def search(self, question: str, top_k: int = 5, filters: dict | None = None,
               history: list[str] | None = None, signals: "Signals | None" = None) -> SearchResult:
        result = self._search(question, top_k, filters, history, signals)
        if history and signals is None and result.reason != "not_a_question":
            from .conversation import topic_switch

            # 「X呢？」: the earlier question asked of X, or X under the earlier scope. The first reading's answer
            # must say X; when its best passage does not and the second's does, the second is the answer
            switch = topic_switch(question, history, self.scope, self.says_all)
            if switch is not None and not self._says(result, switch[0]):
                sig = self.signals(switch[1], None, filters)
                sig.question = question
                other = self._search(question, top_k, filters, history, sig)
                if self._says(other, switch[0]) and (other.reason is None or result.reason is not None):
                    return other  # never an answer traded for a refusal
        if history and signals is None and result.resolved_question != question and result.reason == "low_relevance":
            from .conversation import is_followup

            # a question that says its own topic, leaned on the conversation only because the library uses all its
            # words (教师队伍建设有哪些举措？ after 学校食堂饭菜多少钱一份？), and refused when joined to it: asked on
            # its own it may be answered. A follow-up by its form (那…呢, 它, a few words) is never asked alone
            if not is_followup(question):
                alone = self._search(question, top_k, filters, None, None)
                if alone.reason is None:
                    return alone
        return result

    @staticmethod
    def _says(result: SearchResult, words: str) -> bool:
        """Whether the best passage of `result` holds every word of `words`."""
        from .lexical import tokenize

        text = result.candidates[0].chunk.text.lower() if result.candidates else ""
        return bool(text) and all(t in text for t in tokenize(words))

    def _search(self, question: str, top_k: int = 5, filters: dict | None = None,
                history: list[str] | None = None, signals: "Signals | None" = None) -> SearchResult:
        lut = self._allowed(filters, per_doc=True)  # checks the filters before any work
        sig = signals or self.signals(question, history, filters=filters)
        if sig.rows is None:
            allowed = lut[self.doc_code] if lut is not None else np.ones(len(self.chunks), dtype=bool)
        else:
            allowed = sig.rows >= 0
            if lut is not None:
                allowed &= lut[self.doc_code[np.maximum(sig.rows, 0)]]
        score = np.where(allowed, self.fuse(sig), -np.inf)
        head = self._top_positions(self.reranked(sig, score), max(top_k, TYPED_PASSAGES), sig.rows)
        pos = head[:top_k]
        rows = pos if sig.rows is None else [int(sig.rows[i]) for i in pos]
        picked, shown = [], math.inf
        for i, r in zip(pos, rows):
            # the fused score, never above the passage ranked before it (the second stage may have
            # put a passage of lower fused score first): scores fall with the rank, as users read them
            shown = min(shown, float(score[i]))
            picked.append(Candidate(self.chunks[r], shown, float(sig.dense[i]), float(sig.lexical[i])))
        best = rows[0] if rows else None
        typed = [self.chunks[i if sig.rows is None else int(sig.rows[i])].text for i in head[:TYPED_PASSAGES]]
        features = self.features(sig, best, allowed, pos[0] if pos else None, typed)
        probability = self.answerable(features)
        reason, message = None, ""
        from .conversation import greeting_reply, is_greeting
        from .query import is_contentless, is_wordless

        if is_greeting(question) or is_wordless(question) or is_contentless(sig.resolved or question):
            # 你好 / 好的，谢谢 / 😀 / "x" is not a question: say what can be asked instead of citing a passage
            titles = [m.get("title") or d for d, m in self.data.docs.items()]
            reason, message = "not_a_question", greeting_reply(question, titles)
        elif best is None:
            reason = "no_passages"
        elif self.options.scope and sig.verdict.reason:
            reason, message = sig.verdict.reason, sig.verdict.message
        elif probability < self.threshold:
            reason = "low_relevance"
        return SearchResult(
            question,
            picked,
            reason is not None,
            {"top_cosine": round(features["top_cosine"], 4), "unknown_words": round(features["unknown"], 4),
             "words_not_in_corpus": features["words_not_in_corpus"]},
            sig.lex_tokens,
            query=sig.query,
            reason=reason,
            message=message,
            probability=probability if reason in (None, "low_relevance") else 0.0,
            features=features,
            resolved_question=sig.resolved,
            vector=sig.vector,
            rows=[int(r) for r in rows],
            window_cos=sig.window_cos,
        )

    # -------------------------------------------------------- answerability
    @property
    def threshold(self) -> float:
        a = self.options.answerability
        return float(a["threshold"]) if a else 0.5

    def answerable(self, features: dict) -> float:
        """Calibrated probability that the best passages answer the question (logistic
        model fitted by bench/fit.py on the train split); without a fitted model, the
        old rule as a step: cosine ≥ 0.80 and few unknown nouns."""
        a = self.options.answerability
        if not a:
            ok = features["top_cosine"] >= 0.80 and not (features["top_cosine"] < 0.90 and features["unknown"] >= 0.2)
            return 0.75 if ok else 0.25
        # a feature the fitted model has and this one lacks counts as its training mean: it adds nothing
        z = a["bias"] + sum(w * (features[f] - a["mean"][f]) / a["scale"][f]
                            for f, w in a["weights"].items() if features.get(f) is not None)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def _codes_from_rows(data, n: int) -> tuple[list[str], np.ndarray] | None:
    """(document ids, the document code of every chunk) from a generation's rows by document, when they
    lay its documents out one after the other in the order of `data.docs` and cover all `n` chunks; else None."""
    rows = getattr(data, "rows", None)
    if not rows or rows.keys() != data.docs.keys() or list(rows) != list(data.docs):
        return None
    spans = np.fromiter((x for span in rows.values() for x in span), dtype=np.int64, count=2 * len(rows)).reshape(-1, 2)
    if spans[0, 0] != 0 or spans[-1, 1] != n or (spans[1:, 0] != spans[:-1, 1]).any() or (spans[:, 1] < spans[:, 0]).any():
        return None
    return list(rows), np.repeat(np.arange(len(rows), dtype=np.int32), spans[:, 1] - spans[:, 0])


def _window_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of the sentence windows qa.index.windows makes of a chunk's text, in its order."""
    from .index import WINDOW
    from .text import split_sentences

    spans, a, b = [], None, 0
    for s0, s1 in split_sentences(text):
        if a is not None and (b - a) + (s1 - s0) > WINDOW:
            spans.append((a, b))
            a = s0
        elif a is None:
            a = s0
        b = s1
    if a is not None:
        spans.append((a, b))
    return spans


def _date(meta: dict) -> str:
    """A document's date for issued_after: the date its header says it was issued; else the page's
    publication date when it falls in the document's own years; else the first day of its period."""
    years = meta.get("years") or []
    pub = meta.get("published") or ""
    if meta.get("issued"):
        return meta["issued"]
    if pub and (not years or int(pub[:4]) in years):
        return pub
    return f"{years[0]}-01-01" if years else pub


def _en_words(text: str) -> list[str]:
    from .lexical import _EN_STOP, _EN_WORD

    return [w for w in _EN_WORD.findall(text.lower()) if w not in _EN_STOP and len(w) >= 3]


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based rank of every element, highest first."""
    order = np.argsort(-x, kind="stable")
    r = np.empty(len(x), dtype=np.float64)
    r[order] = np.arange(1, len(x) + 1)
    return r


def _minmax(x: np.ndarray, span: float | None = None) -> np.ndarray:
    """(x - min) / (max - min); with `span`, divided by at least span: a lexical signal whose best
    chunk matches only a small part of what the question's words could score stays small."""
    lo, hi = float(x.min()), float(x.max())
    d = max(hi - lo, span or 0.0)
    return (x - lo) / d if d > 0 else np.zeros_like(x, dtype=np.float64)
