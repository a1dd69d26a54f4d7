"""From retrieved chunks to the reply: highlights, an extractive answer with [n]
markers, and the /ask body. The server and the CLI both call `ask()`."""
from __future__ import annotations

import math
import time
from bisect import bisect_right

from .lexical import bigram_set as _bigrams
from .lexical import sentence_sets as _sentences
from .reply import Answer, Citation, Passage, QueryInfo
from .retrieval import Retriever, SearchResult

NO_ANSWER_TEXT = "未在现有文件中找到与该问题直接相关的内容。以下段落相关度较低，仅供参考。"
NO_PASSAGES_TEXT = "所选范围内没有文件段落（filters 排除了全部文件）。请放宽或去掉筛选条件再问。"
NO_PASSAGES_TEXT_EN = "No passage is within the chosen filters (they leave out every document); widen or drop them."
NO_ANSWER_TEXT_EN = ("These documents do not answer this question directly. The passages below are less relevant, "
                     "for reference only.")
MAX_HIGHLIGHT = 160
HIGHLIGHT_DENSE = 30.0  # weight of a sentence window's cosine below the passage's best, in choosing the highlight (bench/highlight.py, chosen on train)


def highlight(retriever: Retriever, question: str, q_tokens: list[str], text: str, _question: tuple | None = None,
              windows: list[tuple[int, int, float]] | None = None) -> str:
    """The sentence (or two adjacent ones) of `text` that best answers the question: the words and
    bigrams it shares with the question, and (`windows`: Retriever.window_cosines) how close in
    meaning the sentence window holding it is, against the passage's closest window.
    `_question`: what `_question_features` gives, when one question highlights several passages."""
    feats = _sentences(text)
    if not feats:
        return text[:MAX_HIGHLIGHT]
    sents = [f[0] for f in feats]
    q_set, q_idf, q_bi = _question if _question is not None else _question_features(retriever, question, q_tokens)
    near = [0.0] * len(feats)
    if windows and len(windows) > 1 and HIGHLIGHT_DENSE:
        top, pos = max(c for _, _, c in windows), 0
        for i, s in enumerate(sents):
            at = text.find(s, pos)
            if at < 0:
                break
            pos = at + len(s)
            near[i] = next((c for a, b, c in windows if a <= at < b), top) - top
    best, best_score = 0, -math.inf
    for i, (s, toks, bis) in enumerate(feats):
        lex = sum(q_idf[t] for t in q_set & toks)
        bi = len(q_bi & bis) / (len(q_bi) or 1)
        score = lex + 3.0 * bi - 0.002 * len(s) + HIGHLIGHT_DENSE * near[i]
        if score > best_score:
            best, best_score = i, score
    out = sents[best]
    if len(out) < 20 and best + 1 < len(sents):  # a bare heading: take the sentence that follows too
        # as the passage says them, the line break between them kept: a highlight is a slice of the passage's
        # text that a client can find in it and mark (joined, 建设11.深化… was in no passage)
        at = text.find(out)
        nxt = text.find(sents[best + 1], at + len(out)) if at >= 0 else -1
        out = text[at: nxt + len(sents[best + 1])] if nxt >= 0 else out + sents[best + 1]
    return out if len(out) <= MAX_HIGHLIGHT else out[: MAX_HIGHLIGHT - 1] + "…"


def _question_features(retriever: Retriever, question: str, q_tokens: list[str]) -> tuple[set, dict, set]:
    """The question's side of highlighting, once per question: its tokens, their IDF, its bigrams."""
    q_set = set(q_tokens)
    return q_set, {t: retriever.idf.get(t, retriever.default_idf) for t in q_set}, _bigrams(question)


def page_of(meta: dict | None, start: int, end: int) -> dict:
    """`page` (1-based, where the passage starts), `page_end` (where it ends, when another page) and
    `ocr: true` (when a cited page was recognised from an image) for a document with pages; {}
    for one without (.txt, .docx, web pages), so their citations keep exactly their keys."""
    pages = (meta or {}).get("pages")
    if not pages:
        return {}
    starts = [a for a, _ in pages]
    first = max(1, bisect_right(starts, start))
    last = max(first, bisect_right(starts, max(start, end - 1)))
    out: dict = {"page": first}
    if last != first:
        out["page_end"] = last
    ocr = set((meta or {}).get("ocr_pages") or ())
    if ocr & set(range(first, last + 1)):
        out["ocr"] = True
    return out


# what the documents were searched for and do not give, when the question asks for that kind of answer
_MISSING = {"money": ("具体金额", "an amount of money"), "day": ("具体日期", "a date"), "date": ("具体时间", "a date"),
            "weekday": ("具体是星期几", "a day of the week"), "phone": ("电话号码", "a telephone number"),
            "score": ("具体分数", "a score"), "age": ("具体年龄", "an age"), "clock": ("具体时刻", "a time of day"),
            "address": ("具体地址", "an address"), "papers": ("所需的材料或证件", "the papers required"),
            "names": ("具体名称或名单", "the names")}


def compose(result: SearchResult, highlights: list[str]) -> str:
    if result.no_answer and result.message:
        return result.message
    en = result.query is not None and result.query.language == "en"
    if result.no_answer and result.reason == "low_relevance" and result.features.get("answer_type_missing"):
        # 校服多少钱一套: say what is missing (no passage gives an amount), not only that nothing matched
        what = [_MISSING[t][1 if en else 0] for t in result.query.answer_types if t in _MISSING]
        if what:
            if en:
                return (f"These documents do not give {' or '.join(what)} for this question. The passages below are "
                        "less relevant, for reference only.")
            return f"现有文件中没有找到该问题问的{'或'.join(what)}。以下段落相关度较低，仅供参考。"
    if not result.candidates:  # the filters leave no passage: there is nothing below to refer to
        return NO_PASSAGES_TEXT_EN if en else NO_PASSAGES_TEXT
    if result.no_answer:
        return NO_ANSWER_TEXT_EN if en else NO_ANSWER_TEXT
    parts = [f"{highlights[0]}[1]"]
    top = result.candidates[0].score
    for n, (c, h) in enumerate(zip(result.candidates[1:3], highlights[1:3]), start=2):
        if c.score >= 0.85 * top and h not in highlights[:n - 1]:
            parts.append(f"{h}[{n}]")
    return "\n".join(parts)


def ask(retriever: Retriever, question: str, top_k: int = 5, filters: dict | None = None,
        history: list[str] | None = None) -> dict:
    """The /ask response body (see DEVELOPERS.md): the typed `Answer` as a plain dict."""
    return answer(retriever, question, top_k, filters, history).model_dump()


def answer(retriever: Retriever, question: str, top_k: int = 5, filters: dict | None = None,
           history: list[str] | None = None) -> Answer:
    """The reply as typed records (qa.reply)."""
    t0 = time.perf_counter()
    result = retriever.search(question, top_k=top_k, filters=filters, history=history)
    asked = result.query.text if result.query else question
    qf = _question_features(retriever, asked, result.query_tokens)
    near = retriever.window_cosines(result.rows, result.vector, result.window_cos) if HIGHLIGHT_DENSE and result.rows else []
    near = near or [None] * len(result.candidates)
    highlights = [highlight(retriever, asked, result.query_tokens, c.chunk.text, qf, w)
                  for c, w in zip(result.candidates, near)]
    scale = retriever.max_score
    passages = []
    for rank, (c, h) in enumerate(zip(result.candidates, highlights), start=1):
        ch = c.chunk
        citation = Citation(doc_id=ch.doc_id, title=ch.title, section=ch.section, paragraph=ch.paragraph,
                            start=ch.start, end=ch.end, **page_of(retriever.data.docs.get(ch.doc_id), ch.start, ch.end))
        passages.append(Passage(rank=rank, score=round(min(1.0, c.score / scale), 4), text=ch.text, highlight=h,
                                citation=citation))
    reply = Answer(
        question=question,
        answer=compose(result, highlights),
        no_answer=result.no_answer,
        no_answer_reason=result.reason,
        confidence=round(result.probability, 4),
        query=QueryInfo(**result.query.to_dict()) if result.query else None,
        resolved_question=result.resolved_question or question,
        passages=passages,
        took_ms=0.0,
    )
    reply.took_ms = round((time.perf_counter() - t0) * 1000, 1)
    return reply
