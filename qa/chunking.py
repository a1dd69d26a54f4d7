"""Structure-aware paragraph chunks with section paths and exact source offsets.

Headings are recognised by their markers, ranked from the top:
    一、  >  （一）  >  1、 / 1. / 1 .  >  (1)  >  ①
A heading at the start of a paragraph is always taken. Inside a paragraph
(documents whose lines were joined, like a docx export) a marker counts only
right after a sentence end and only when it carries the next expected number of
its level, so "85.7%" or "2、3年" are never headings. The 一是…二是… / 一要…二要…
enumerations inside paragraphs are preferred split points and label the chunk.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .corpus import Document
from .records import Chunk
from .text import CLAUSE_END, Mapped, cn_to_int, split_sentences

CHUNKER_VERSION = "4"  # 2: markdown markup removed; 3: the header is a cited chunk; 4: its metadata (issuer, 文号, dates)
HEADER_SECTION = "文件信息"
TARGET = 350
HARD_CAP = 500
SEP = " › "

_CN = "一二三四五六七八九十"
# (rank, pattern); the number is group 1. Order matters: (一) before (1).
MARKERS = [
    (0, re.compile(rf"([{_CN}]{{1,3}})、")),
    (1, re.compile(rf"[（(]([{_CN}]{{1,3}})[）)]")),
    (2, re.compile(r"(\d{1,2})\s?[、.．](?![\d%])")),
    (3, re.compile(r"[（(](\d{1,2})[）)]")),
    (4, re.compile(r"([①-⑳])")),
]
INLINE_DIGIT = re.compile(r"(\d{1,2})\s?[、.．,，](?![\d%])")  # a docx export also writes "5,实施"
ENUM = re.compile(rf"([{_CN}]{{1,2}})[是要]")
AFTER_SENTENCE = re.compile(r"[。；;！？!?][”’」』）)]*\s*$")
AFTER_SENTENCE_REACH = 256  # closing quotes and spaces after a sentence's end, at most
TITLE_STOP = re.compile(r"[。；;！？!?，,：:]")
INLINE_TITLE = 16


def _number(rank: int, raw: str) -> int:
    if rank == 4:
        return ord(raw) - ord("①") + 1
    return cn_to_int(raw)


@dataclass
class _Heading:
    rank: int
    number: int
    label: str


def _match_marker(text: str, pos: int, inline: bool) -> tuple[int, int, int] | None:
    """(rank, number, end) of a heading marker at text[pos], or None."""
    for rank, pat in MARKERS:
        if inline and rank == 2:
            pat = INLINE_DIGIT
        m = pat.match(text, pos)
        if m:
            return rank, _number(rank, m.group(1)), m.end()
    return None


def _title(text: str, start: int, stop: int) -> str:
    """The heading's own words: up to the first sentence/clause mark, at most 40 chars."""
    seg = text[start:stop]
    m = TITLE_STOP.search(seg)
    t = seg[: m.start()] if m else seg
    return t.strip()[:40]


class _Structure:
    """Heading stack of one article, fed paragraph by paragraph."""

    def __init__(self) -> None:
        self.stack: list[_Heading] = []
        self.last: dict[int, int] = {}
        self.log: list[tuple[int, str]] = []  # every heading taken: (rank, label)

    def expected(self, rank: int, number: int) -> bool:
        return number == self.last.get(rank, 0) + 1

    def push(self, rank: int, number: int, label: str) -> None:
        while self.stack and self.stack[-1].rank >= rank:
            self.stack.pop()
        self.stack.append(_Heading(rank, number, label))
        self.last[rank] = number
        for r in list(self.last):
            if r > rank:
                del self.last[r]

    @property
    def path(self) -> str:
        return SEP.join(h.label for h in self.stack)

    @property
    def top(self) -> str:
        return self.stack[0].label if self.stack and self.stack[0].rank == 0 else ""


@dataclass
class _Unit:
    """A run of text under one section path: a paragraph or part of one."""

    text: Mapped
    section: str
    top: str
    paragraph: int
    heading_only: bool


def _segments(para: Mapped, st: _Structure, counter: list[int]) -> list[_Unit]:
    """Split a paragraph at headings, updating the structure; returns units in order."""
    text = para.text
    cuts: list[tuple[int, int, int, int]] = []  # (pos, rank, number, marker_end)
    m = _match_marker(text, 0, inline=False)
    if m:
        cuts.append((0, *m))
    for pos in range(1, len(text)):
        # the sentence end just before `pos`, looked for in the few characters before it: searched from the
        # paragraph's start, every position cost the whole paragraph so far (a 32,000-character line took 3.8 s
        # to chunk, a 1.9-million-character one held the writer for over 19 minutes)
        if not AFTER_SENTENCE.search(text, max(0, pos - AFTER_SENTENCE_REACH), pos) and not (
            cuts and pos - cuts[-1][3] <= 30 and cuts[-1][1] < 2
        ):
            continue
        m = _match_marker(text, pos, inline=True)
        if m and m[0] <= 2:
            cuts.append((pos, *m))
    # keep inline cuts only where the number is the next expected one (simulate the stack)
    sim = _Structure()
    sim.stack, sim.last = list(st.stack), dict(st.last)
    accepted = []
    for pos, rank, number, end in cuts:
        if pos == 0 or sim.expected(rank, number):
            accepted.append((pos, rank, number, end))
            sim.push(rank, number, "")
    units: list[_Unit] = []
    bounds = [c[0] for c in accepted] + [len(text)]
    if not accepted or accepted[0][0] > 0:
        bounds = [0] + bounds
        accepted = [None] + accepted
    for i, cut in enumerate(accepted):
        a, b = bounds[i], bounds[i + 1]
        seg = para[a:b].strip()
        if not len(seg):
            continue
        heading_only = False
        if cut is not None:
            _, rank, number, end = cut
            body = text[end:b].strip()
            heading_only = len(body) <= 80 and "。" not in body.rstrip("。")
            if heading_only and a == 0:
                title = body.rstrip("。；;，,：: ")
            else:
                title = _title(text, end, b)
                stop = TITLE_STOP.search(text, end, b)
                if a > 0 and (stop is None or stop.start() - end > INLINE_TITLE + 8):
                    title = title[:INLINE_TITLE] + "…"  # run-in heading: its end is not marked
            label = text[a:end].strip().replace(" ", "") + title
            st.push(rank, number, label)
            st.log.append((rank, label))
        counter[0] += 1
        units.append(_Unit(seg, st.path, st.top, counter[0], heading_only))
    return units


def _clauses(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """Split one over-long sentence at clause marks into pieces of at most TARGET chars."""
    cuts = [m.end() for m in CLAUSE_END.finditer(text, a, b)]
    out, start = [], a
    prev = None
    for c in cuts + [b]:
        if c - start > TARGET and prev is not None and prev > start:
            out.append((start, prev))
            start = prev
        prev = c
    out.append((start, b))
    final = []
    for x, y in out:  # no clause mark at all: hard cut, the only case a sentence is cut
        while y - x > HARD_CAP:
            final.append((x, x + TARGET))
            x += TARGET
        final.append((x, y))
    return final


def _split(unit: _Unit) -> list[tuple[int, int, str]]:
    """Sentence-aligned pieces of a long unit: (a, b, enumeration label)."""
    text = unit.text.text
    sents: list[tuple[int, int]] = []
    for a, b in split_sentences(text):
        sents.extend(_clauses(text, a, b) if b - a > HARD_CAP else [(a, b)])
    n = len(sents)
    # the enumeration item (一是… / 二要…) each sentence belongs to, and where items start
    starts_item = [bool(ENUM.match(text, a)) for a, _ in sents]
    labels_at, running = [], ""
    for (a, _), starts in zip(sents, starts_item):
        if starts:
            running = _title(text, a, len(text))
        labels_at.append(running)
    # dynamic programme: minimise squared deviation from TARGET, reward cuts at enumerations
    best = [math.inf] * (n + 1)
    back = [0] * (n + 1)
    best[0] = 0.0
    for i in range(1, n + 1):
        for j in range(i - 1, -1, -1):
            length = sents[i - 1][1] - sents[j][0]
            if length > HARD_CAP and j < i - 1:
                break
            cost = ((length - TARGET) / 100.0) ** 2
            if j > 0 and starts_item[j]:
                cost -= 1.0
            if best[j] + cost < best[i]:
                best[i], back[i] = best[j] + cost, j
    cuts = []
    i = n
    while i > 0:
        cuts.append((back[i], i))
        i = back[i]
    cuts.reverse()
    pieces = []
    for j, i in cuts:
        pieces.append((sents[j][0], sents[i - 1][1], labels_at[j]))
    return pieces


def chunk_document(doc: Document) -> list[Chunk]:
    chunks: list[Chunk] = []
    counter = [0]
    if doc.header is not None and len(doc.header.strip()):
        h = doc.header.strip()
        h = h if len(h) <= HARD_CAP else h[:HARD_CAP].strip()
        chunks.append(Chunk(id=f"{doc.doc_id}:{h.start}", doc_id=doc.doc_id, title=doc.title, section=HEADER_SECTION,
                            paragraph=0, start=h.start, end=h.end, text=h.text))
    for part in doc.parts:
        st = _Structure()
        units: list[_Unit] = []
        for para in part.paragraphs:
            units.extend(_segments(para, st, counter))
        units = _merge_small(units)
        for u in units:
            if len(u.text) <= HARD_CAP:
                pieces = [(0, len(u.text), "")]
            else:
                pieces = _split(u)
            for a, b, enum in pieces:
                piece = u.text[a:b].strip()
                if not len(piece):
                    continue
                section = u.section
                if enum and len(pieces) > 1:
                    section = f"{section}{SEP}{enum}" if section else enum
                chunks.append(
                    Chunk(
                        id=f"{doc.doc_id}:{piece.start}",
                        doc_id=doc.doc_id,
                        title=part.title or doc.title,
                        section=section,
                        paragraph=u.paragraph,
                        start=piece.start,
                        end=piece.end,
                        text=piece.text,
                    )
                )
    return chunks


def _joint(first: str, then: str) -> str:
    """The section of a heading-only unit joined to the next: the latter's when it is under the heading (一、总体 +
    its 1、…); for siblings (a list whose items 1、… 2、… are one short line each) the path they share, not the
    last item's."""
    if then == first or then.startswith(first + SEP) or not first:
        return then
    a, b = first.split(SEP), then.split(SEP)
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return SEP.join(a[:n])


def _merge_small(units: list[_Unit]) -> list[_Unit]:
    """Fold heading-only lines and tiny paragraphs into a neighbour of the same top-level section."""
    out: list[_Unit] = []
    carry: _Unit | None = None
    for u in units:
        if carry is not None:
            if carry.top == u.top and len(carry.text) + len(u.text) + 1 <= HARD_CAP or (
                carry.top == u.top and carry.heading_only
            ):
                section = _joint(carry.section, u.section) if carry.heading_only else u.section
                u = _Unit(Mapped.join([carry.text, u.text]), section, u.top, carry.paragraph, u.heading_only)
            else:
                out.append(carry)
            carry = None
        small = u.heading_only or len(u.text) < 40
        if small:
            carry = u
        else:
            out.append(u)
    if carry is not None:
        if out and out[-1].top == carry.top and len(out[-1].text) + len(carry.text) + 1 <= HARD_CAP:
            prev = out.pop()
            out.append(_Unit(Mapped.join([prev.text, carry.text]), prev.section, prev.top, prev.paragraph, False))
        else:
            out.append(carry)
    # a tiny unit that could not go forward (next one is another top section): fold it backwards
    merged: list[_Unit] = []
    for u in out:
        if (
            merged
            and len(u.text) < 40
            and not u.heading_only
            and merged[-1].top == u.top
            and len(merged[-1].text) + len(u.text) + 1 <= HARD_CAP
        ):
            prev = merged.pop()
            u = _Unit(Mapped.join([prev.text, u.text]), prev.section, prev.top, prev.paragraph, False)
        merged.append(u)
    return merged


def outline(doc: Document) -> list[list[tuple[int, str]]]:
    """Headings of each article, in order: (rank, label); rank 0 is 一、, 1 is （一）, 2 is 1、 …"""
    result = []
    counter = [0]
    for part in doc.parts:
        st = _Structure()
        for para in part.paragraphs:
            _segments(para, st, counter)
        result.append(st.log)
    return result


def chunk_corpus(docs: list[Document]) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d)]
