"""Per-question cost that does not grow with the library (issue 14, part 4): the pieces the
retriever uses above EXACT_UP_TO chunks give the answers the whole-corpus computations give,
and the candidate path finds the right passages, filtered ones included."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from qa.postings import CorpusWords, Postings


@pytest.fixture(scope="session")
def service(settings):
    from qa.service import Service

    return Service.load(settings.model_copy(update={"answer_cache": 0}))


def test_postings_score_the_given_rows_as_bm25s_scores_every_chunk(service):
    data = service.index
    for bm25, tokens in ((data.bm25, ["学校", "教师", "学校", "普惠性", "没有这个词"]), (data.bm25_bigrams, ["学校", "教育", "幼儿"])):
        p = Postings(bm25)
        full = bm25.get_scores(tokens)
        rows = np.arange(0, len(data.chunks), 3)
        assert np.array_equal(p.score_rows(p.ids(tokens), rows), full[rows].astype(np.float32))
        best = set(np.argsort(-full)[:5].tolist())
        assert best <= set(p.top(p.ids(tokens), 20).tolist())


def test_idf_from_postings_is_the_idf_of_the_chunk_token_sets(service):
    r = service.retriever
    df = Counter(t for ts in service.index.tokens for t in set(ts))
    n = len(service.index.chunks)
    assert set(r.idf) == set(df)
    assert all(r.idf[t] == math.log(1 + (n - k + 0.5) / (k + 0.5)) for t, k in df.items())
    assert r.chunk_tokens[3] == set(service.index.tokens[3])


@pytest.mark.parametrize("word", ["研究生", "普惠性", "幼儿园", "区管校聘", "食堂", "医保", "工作要点", "惠山", "育局"])
def test_corpus_words_answer_what_a_substring_search_of_the_corpus_answers(service, word):
    chunks = service.index.chunks
    text = "\n".join(c.section + "\n" + c.text for c in chunks).lower()
    r = service.retriever
    assert (word in CorpusWords(chunks, r.words, r.grams)) == (word in text)


def test_integer_doc_codes_filter_as_doc_ids_did(service):
    r = service.retriever
    doc = sorted(service.index.docs)[1]
    mask = r._allowed({"doc_id": doc})
    assert np.array_equal(mask, np.array([c.doc_id == doc for c in r.chunks]))
    assert r._allowed(None).all()


def test_candidate_path_finds_the_passages_and_filters_inside_the_searches(service):
    r = service.retriever
    exact = r.search("普惠性幼儿园覆盖率", top_k=5)
    r.exact = False  # as above EXACT_UP_TO chunks: only candidates are scored
    try:
        sig = r.signals("普惠性幼儿园覆盖率")
        assert sig.rows is not None and len(sig.rows) == len(sig.dense) == len(sig.lexical) == len(sig.bigram)
        cand = r.search("普惠性幼儿园覆盖率", top_k=5)
        assert cand.candidates[0].chunk.id == exact.candidates[0].chunk.id
        for doc in sorted(service.index.docs):
            got = r.search("学校", top_k=3, filters={"doc_id": doc})
            assert got.candidates and all(c.chunk.doc_id == doc for c in got.candidates)
        score = r.fuse(sig)
        rows = r.top(np.where(sig.rows >= 0, score, -np.inf), 5, sig.rows)
        assert rows[0] == r.chunks.index(cand.candidates[0].chunk)
    finally:
        r.exact = True


def test_top_takes_the_best_of_a_long_score_array_in_stable_order(service):
    r = service.retriever
    rng = np.random.default_rng(0)
    score = np.round(rng.random(len(r.chunks)), 1)  # many ties
    order = [int(i) for i in np.argsort(-score, kind="stable")]
    top = r.top(score, 8)
    assert top[0] == order[0] and top == sorted(top, key=lambda i: (-score[i], i))
