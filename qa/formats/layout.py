"""Positioned lines of pages → one text with paragraphs, page ranges and removed furniture.

Shared by the PDF reader (lines from PDFium's character boxes) and OCR (lines from
the recogniser's boxes). Coordinates are per page with y growing downward.

Reading order: lines are grouped into rows (vertical overlap) and rows are read
top to bottom, each row left to right. Page furniture: rows among the first/last
two of a page, in its top/bottom 15%, whose text (digits ignored) repeats on at
least half of the pages (two at least) are headers/footers; bare page numbers
("3", "- 3 -", "第3页", "3/12") there are page numbers even on a single page.
Wrapped lines are joined back into paragraphs: a row that reaches the right margin
continues into the next row when that one starts at the left margin, is not a
heading (一、 （一） 1. (1) ①) and sits at normal line spacing; across a page break
too, when the page's last row also ends mid-sentence (the break's footer and header
are then written after the paragraph). Each paragraph and each furniture row is one
line of the text, so offsets stay exact and the chunker reads the text as it reads
a .txt file.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass

HEADING_START = re.compile(
    r"^\s*(?:[一二三四五六七八九十]+、|[（(][一二三四五六七八九十\d]+[）)]|\d{1,2}\s?[、.．](?![\d%])|[①-⑳]|第[一二三四五六七八九十百\d]+[章节条部分])"
)
PAGE_NUMBER = re.compile(
    r"^[-—–－~·•\s]*(?:第\s*)?\d{1,4}(?:\s*页)?(?:\s*[/／]\s*\d{1,4}|\s*共\s*\d{1,4}\s*页)?[-—–－~·•\s]*$"
    r"|^(?:page|p\.)\s*\d{1,4}(?:\s*of\s*\d{1,4})?$",
    re.IGNORECASE,
)
ZONE = 0.15  # headers/footers live in the top/bottom 15% of a page
EDGE_ROWS = 2  # ... among its first/last two rows


@dataclass
class Line:
    text: str
    x0: float
    top: float
    x1: float
    bottom: float

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass
class Page:
    lines: list[Line]
    width: float
    height: float


@dataclass
class Assembled:
    text: str
    removed: list[tuple[int, int, str]]
    pages: list[tuple[int, int]]


def rows(lines: list[Line]) -> list[Line]:
    """Lines sharing a row (vertical overlap ≥ half the smaller height) merged left to right,
    rows top to bottom."""
    lines = sorted((l for l in lines if l.text.strip()), key=lambda l: (l.top, l.x0))
    groups: list[list[Line]] = []
    for l in lines:
        if groups:
            g = groups[-1]
            top, bottom = min(x.top for x in g), max(x.bottom for x in g)
            overlap = min(bottom, l.bottom) - max(top, l.top)
            if overlap >= 0.5 * min(bottom - top, l.height):
                g.append(l)
                continue
        groups.append([l])
    out = []
    for g in groups:
        g.sort(key=lambda l: l.x0)
        text = g[0].text.strip()
        for prev, l in zip(g, g[1:]):
            gap = l.x0 - prev.x1
            sep = " " if gap > 0.5 * min(prev.height, l.height) else ""
            text += sep + l.text.strip()
        out.append(Line(text, min(l.x0 for l in g), min(l.top for l in g), max(l.x1 for l in g), max(l.bottom for l in g)))
    return out


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", text))


def furniture(pages: list[list[Line]], heights: list[float]) -> dict[tuple[int, int], str]:
    """(page index, row index) → "header" | "footer" | "page_number" for the rows that are page furniture."""
    top_cands: list[list[int]] = []
    bottom_cands: list[list[int]] = []
    for rs, h in zip(pages, heights):
        top_cands.append([i for i in range(min(EDGE_ROWS, len(rs))) if rs[i].bottom <= ZONE * h])
        bottom_cands.append([i for i in range(max(0, len(rs) - EDGE_ROWS), len(rs)) if rs[i].top >= (1 - ZONE) * h])
    need = max(2, math.ceil(0.5 * len(pages)))
    out: dict[tuple[int, int], str] = {}
    for cands, reason in ((top_cands, "header"), (bottom_cands, "footer")):
        counts: dict[str, int] = {}
        for p, idxs in enumerate(cands):
            for k in {_key(pages[p][i].text) for i in idxs}:
                counts[k] = counts.get(k, 0) + 1
        for p, idxs in enumerate(cands):
            for i in idxs:
                text = pages[p][i].text.strip()
                if PAGE_NUMBER.match(text):
                    out[(p, i)] = "page_number"
                elif counts.get(_key(text), 0) >= need:
                    out[(p, i)] = reason
    return out


def _joiner(a: str, b: str) -> str:
    """What goes between two wrapped lines of one paragraph: nothing in Chinese, a space between words."""
    if a and b and a[-1].isascii() and a[-1].isalnum() and b[0].isascii() and b[0].isalnum():
        return " "
    return ""


def _geometry(body: list[Line]) -> tuple[float, float, float]:
    """(left margin, right margin, median row height) of a page's body rows."""
    return min(l.x0 for l in body), max(l.x1 for l in body), statistics.median(l.height for l in body)


def paragraphs(body: list[Line]) -> list[str]:
    """Rows of one page's body → paragraphs (wrapped rows joined)."""
    if not body:
        return []
    left, right, size = _geometry(body)
    out: list[str] = [body[0].text.strip()]
    for prev, cur in zip(body, body[1:]):
        text = cur.text.strip()
        joins = (
            prev.x1 >= right - 1.5 * size  # the previous row runs to the right margin
            and cur.x0 <= left + 0.8 * size  # this one has no first-line indent
            and cur.top - prev.bottom <= 1.2 * size  # ordinary line spacing
            and abs(cur.height - prev.height) <= 0.25 * size  # same type size
            and not HEADING_START.match(text)
        )
        if joins:
            out[-1] += _joiner(out[-1], text) + text
        else:
            out.append(text)
    return out


SENTENCE_END = "。！？!?；;：:…”’」』）)"  # a row ending so ends its paragraph, however far it runs


def continues(last: Line, last_body: list[Line], first: Line, first_body: list[Line]) -> bool:
    """Whether the last body row of a page runs on into the first body row of the next: it reaches the
    right margin and ends mid-sentence, and the next page's row starts at the left margin (no first-line
    indent), in the same type size, not as a heading. A paragraph cut by a page break is one paragraph."""
    _, right, size = _geometry(last_body)
    left_next, _, size_next = _geometry(first_body)
    text = first.text.strip()
    return (
        last.x1 >= right - 1.5 * size
        and not last.text.rstrip().endswith(tuple(SENTENCE_END))
        and first.x0 <= left_next + 0.8 * size_next
        and abs(first.height - last.height) <= 0.25 * max(size, size_next)
        and not HEADING_START.match(text)
    )


def assemble(pages: list[Page]) -> Assembled:
    """The text of all pages: one paragraph or furniture row per line, pages separated by a newline.
    A paragraph a page break cuts (`continues`) is written as one line: the page's footer and the next
    page's header follow it, and the next page's range starts where the paragraph goes on."""
    page_rows = [rows(p.lines) for p in pages]
    furn = furniture(page_rows, [p.height for p in pages])
    # each page as items: ("para", text) or (reason, text) for furniture, in reading order
    items: list[list[tuple[str, str]]] = []
    bodies: list[list[Line]] = []
    for p, rs in enumerate(page_rows):
        out: list[tuple[str, str]] = []
        body: list[Line] = []
        run: list[Line] = []
        for i, r in enumerate(rs):
            reason = furn.get((p, i))
            if reason:
                out += [("para", t) for t in paragraphs(run)]
                run = []
                out.append((reason, r.text.strip()))
            else:
                run.append(r)
                body.append(r)
        out += [("para", t) for t in paragraphs(run)]
        items.append(out)
        bodies.append(body)

    lines: list[str] = []
    kinds: list[str] = []  # per line: "para", or the furniture's reason (header, footer, page_number)
    starts: list[tuple[int, int]] = []  # per page: (line, offset in it) where the page's text starts
    ends: list[tuple[int, int] | None] = []  # per page: where it ends; None: where the next page starts
    carried: list[tuple[str, str]] = []  # the furniture after a cut paragraph: written after the paragraph ends

    def put(kind: str, text: str) -> None:
        lines.append(text)
        kinds.append(kind)

    for p, its in enumerate(items):
        if carried:  # this page's first paragraph goes on where the last line stopped
            k = next(k for k, x in enumerate(its) if x[0] == "para")
            head, para, its = its[:k], its[k][1], its[k + 1:]
            lines[-1] += _joiner(lines[-1], para)
            starts.append((len(lines) - 1, len(lines[-1])))
            lines[-1] += para
            for reason, text in carried + head:
                put(reason, text)
            carried = []
        else:
            starts.append((len(lines), 0))
        last = max((k for k, x in enumerate(its) if x[0] == "para"), default=None)
        runs_on = (last is not None and p + 1 < len(items) and any(x[0] == "para" for x in items[p + 1])
                   and bool(bodies[p]) and bool(bodies[p + 1])
                   and continues(bodies[p][-1], bodies[p], bodies[p + 1][0], bodies[p + 1]))
        for kind, text in its[: last + 1] if runs_on else its:
            put(kind, text)
        if runs_on:
            carried = list(its[last + 1:])
            ends.append(None)
        else:
            if len(lines) == starts[-1][0] and starts[-1][1] == 0:  # an empty page: an empty line, an empty range
                put("para", "")
            ends.append((len(lines) - 1, len(lines[-1])))
    offset, at = 0, []
    for line in lines:
        at.append(offset)
        offset += len(line) + 1
    removed = [(at[i], at[i] + len(t), k) for i, (t, k) in enumerate(zip(lines, kinds)) if k != "para"]
    page_starts = [at[li] + off for li, off in starts]
    page_ends = [at[e[0]] + e[1] if e is not None else page_starts[n + 1] for n, e in enumerate(ends)]
    return Assembled("\n".join(lines), removed, list(zip(page_starts, page_ends)))
