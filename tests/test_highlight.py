"""Highlights: the sentence of a passage that answers the question, chosen by shared words and by
how close in meaning its sentence window is (qa/answer.py), on the real seeds with the real model."""
from __future__ import annotations

import numpy as np

import qa.answer as answer_mod
from qa.evaluate import load_questions, own_files
from qa.index import windows


def test_window_spans_are_the_windows_the_index_embedded(seeds_service):
    r = seeds_service.retriever
    q = seeds_service.embedder.encode_queries(["普惠性幼儿园覆盖率"])[0]
    rows = list(range(len(r.chunks)))
    got = r.window_cosines(rows, q)
    owner = np.asarray(r.data.window_owner)
    for row, spans in zip(rows, got):
        text = r.chunks[row].text
        assert spans is not None
        assert [text[a:b] for a, b, _ in spans] == windows(r.chunks[row])
        assert np.allclose([c for _, _, c in spans], r.data.window_vectors[owner == row] @ q, atol=1e-6)


def test_the_highlight_is_the_sentence_closest_in_meaning_when_words_do_not_tell(seeds_service):
    """A colloquial question shares no word with the sentence that answers it; the highlight is
    that sentence, not the one sharing 孩子 or 学校."""
    body = seeds_service.ask("孩子一年下来起码得看几本闲书才行？", top_k=10)
    hit = [p for p in body["passages"] if "课外书" in p["text"] and "两本" in p["text"]]
    assert hit, [p["text"][:40] for p in body["passages"]]
    assert "两本" in hit[0]["highlight"], hit[0]["highlight"]


def test_a_highlight_that_takes_a_heading_and_its_first_sentence_is_a_slice_of_the_passage(seeds_service):
    """A bare heading is highlighted with the sentence after it; the two were joined without the line break
    between them (三、…建设11.深化人事制度改革。), a string in no passage, so a client could not find and mark it."""
    body = seeds_service.ask("武进区怎样加强教师队伍建设？", top_k=5)
    joined = [p for p in body["passages"] if p["highlight"].startswith("三、提振师道尊严")]
    assert joined, [p["highlight"][:30] for p in body["passages"]]
    assert "建设\n11." in joined[0]["highlight"]
    for p in body["passages"]:
        assert p["highlight"].rstrip("…") in p["text"], p["highlight"]


def test_dense_windows_make_highlights_hold_the_answer_more_often_on_unseen_documents(seeds_service, bench_script):
    """The test split (documents nothing was chosen on): measured 0.857 -> 0.908 of highlights holding
    at least half of the evidence (the weight was chosen on the train split)."""
    bench = bench_script("highlight")
    questions = [q for f in own_files() for q in load_questions(f) if q.get("split") == "test"]
    shipped = answer_mod.HIGHLIGHT_DENSE
    assert shipped > 0
    with_dense = bench.measure(seeds_service.retriever, questions)["all"]
    try:
        answer_mod.HIGHLIGHT_DENSE = 0.0
        words_only = bench.measure(seeds_service.retriever, questions)["all"]
    finally:
        answer_mod.HIGHLIGHT_DENSE = shipped
    assert with_dense[0] > 100
    assert with_dense[1] >= words_only[1] + 0.03, (with_dense, words_only)
