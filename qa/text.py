"""Character-level text helpers shared by corpus cleaning, chunking and answers.

A `Mapped` string is cleaned text that remembers, for every character, its
offset in the original file, so any slice of it can be cited exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Sentence ends: Chinese and ASCII terminators, then any closing quotes/brackets.
SENTENCE_END = re.compile(r"[。！？!?；;…]+[”’」』）)》\]】]*")
# Clause boundaries, used only when one sentence alone exceeds the hard cap.
CLAUSE_END = re.compile(r"[，,、：:]")

CN_NUM = "一二三四五六七八九十"
_CN_VALUES = {c: i for i, c in enumerate(CN_NUM, 1)}


def cn_to_int(s: str) -> int:
    """一..九十九 → int (only what headings use)."""
    if not s:
        raise ValueError("empty numeral")
    if s.isdigit():
        return int(s)
    if s == "十":
        return 10
    if s.startswith("十"):
        return 10 + _CN_VALUES[s[1]]
    if s.endswith("十"):
        return _CN_VALUES[s[0]] * 10
    if "十" in s:
        a, b = s.split("十")
        return _CN_VALUES[a] * 10 + _CN_VALUES[b]
    return _CN_VALUES[s]


def is_date(text: str) -> bool:
    """A calendar date YYYY-MM-DD (2020-02-30 and 2020-13-01 are not)."""
    import datetime

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def squash(s: str) -> str:
    """Remove all whitespace: the comparison form for evidence and citations."""
    return re.sub(r"\s+", "", s)


@dataclass(frozen=True)
class Mapped:
    """Cleaned text plus the original offset of each of its characters."""

    text: str
    offsets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.text) != len(self.offsets):
            raise ValueError("text and offsets differ in length")

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, item: slice) -> "Mapped":
        return Mapped(self.text[item], self.offsets[item])

    @property
    def start(self) -> int:
        return self.offsets[0]

    @property
    def end(self) -> int:
        return self.offsets[-1] + 1

    def strip(self) -> "Mapped":
        a, b = 0, len(self.text)
        while a < b and self.text[a].isspace():
            a += 1
        while b > a and self.text[b - 1].isspace():
            b -= 1
        return self[a:b]

    @staticmethod
    def join(parts: list["Mapped"], sep: str = "\n") -> "Mapped":
        """Join pieces; each separator char maps to the original char just after the previous piece."""
        text: list[str] = []
        offs: list[int] = []
        for i, p in enumerate(parts):
            if i and sep:
                text.append(sep)
                offs.extend([parts[i - 1].end - 1] * len(sep))
            text.append(p.text)
            offs.extend(p.offsets)
        return Mapped("".join(text), tuple(offs))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) spans of sentences covering `text` completely, in order."""
    spans = []
    pos = 0
    for m in SENTENCE_END.finditer(text):
        spans.append((pos, m.end()))
        pos = m.end()
    if pos < len(text):
        spans.append((pos, len(text)))
    # glue whitespace-only spans onto their neighbour
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and not text[a:b].strip():
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def file_sha256(path) -> str:
    """Checksum of a file, read in 1 MiB blocks (manifests of the model cache and the index)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
