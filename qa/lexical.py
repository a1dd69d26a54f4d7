"""jieba tokens for BM25 and for picking highlight sentences.

A user dictionary of the domain's terms (普惠性, 优质均衡, 区管校聘, 双减 …) keeps
them whole; search-mode cutting also emits their parts, so a question that
says only 普惠 still meets 普惠性幼儿园.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
_lock = threading.Lock()
_ready = False
USE_USERDICT = True  # switched off only by the ablation benchmark
_WORD = re.compile(r"[\u4e00-\u9fff]|[a-z0-9]", re.I)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    return frozenset(w.strip() for w in (DATA / "stopwords.txt").read_text(encoding="utf-8").split() if w.strip())


def _jieba():
    global _ready
    import jieba

    with _lock:
        if not _ready:
            jieba.setLogLevel(60)
            jieba.initialize()
            if USE_USERDICT:
                jieba.load_userdict(str(DATA / "userdict.txt"))
            _ready = True
    return jieba


def tokenize(text: str) -> list[str]:
    jieba = _jieba()
    stop = stopwords()
    out = []
    for tok in jieba.lcut_for_search(text.lower()):
        tok = tok.strip()
        if tok and tok not in stop and _WORD.search(tok):
            out.append(tok)
    return out


def content_words(text: str) -> list[tuple[str, str]]:
    """(word, part of speech) of the question's content words, jieba precise mode."""
    import jieba.posseg as pseg

    _jieba()
    stop = stopwords()
    return [(w, tag) for w, tag in ((p.word.strip().lower(), p.flag) for p in pseg.lcut(text)) if w and w not in stop and _WORD.search(w)]


def bigrams(text: str) -> list[str]:
    """Character bigrams of the letters and digits: matches colloquial wording half-way
    (近视率 ~ 近视防控, 无证补习班 ~ 无证培训机构) where whole words differ."""
    t = "".join(ch for ch in text.lower() if ch.isalnum())
    return [t[i : i + 2] for i in range(len(t) - 1)]


@lru_cache(maxsize=1)
def synonyms() -> tuple[tuple[str, str], ...]:
    rows = []
    for line in (DATA / "synonyms.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            everyday, official = line.split("\t", 1)
            rows.append((everyday.strip(), official.strip()))
    return tuple(rows)


def expand(question: str) -> str:
    """The official terms for the everyday words a question uses ('' when none)."""
    return " ".join(official for everyday, official in synonyms() if everyday in question)
