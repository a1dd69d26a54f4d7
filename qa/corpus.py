"""Load policy documents and clean them without losing the way back.

Cleaning only ever *removes* characters of the original file; every kept
character remembers its original offset (see `Mapped`). What was removed is
recorded as `Removed` spans with a reason, so tests can check that every
non-space character of a file is either cited by a chunk or removed for a
stated reason.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import QAError
from .text import Mapped, squash


class CorpusError(QAError):
    """A document that cannot be read as text; the message says why and names the file."""


@dataclass(frozen=True)
class Removed:
    start: int
    end: int
    kind: str  # cruft | bookmark | page_number | cc | byline | title | markup; a converter's: header | footer | page_number


@dataclass(frozen=True)
class Part:
    """One article of a document (a file may hold several)."""

    title: str
    paragraphs: tuple[Mapped, ...]


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str  # the original decoded file text; citations index this
    title: str
    region: str | None
    city: str | None
    years: tuple[int, ...]
    kind: str
    parts: tuple[Part, ...]
    removed: tuple[Removed, ...] = field(repr=False)
    header: Mapped | None = field(default=None, repr=False)  # notice header / source line: cited, not removed
    metadata: dict = field(default_factory=dict)  # issuer, doc_number, issued, published, publisher (what the header says)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def meta(self) -> dict:
        return {
            "doc_id": self.doc_id,
            "title": self.title,
            "region": self.region,
            "city": self.city,
            "years": list(self.years),
            "kind": self.kind,
            **self.metadata,
        }


# ---------------------------------------------------------------- patterns
# Whole lines that are web-page furniture, never document content.
CRUFT_LINE = re.compile(
    r"^\s*(?:当前位置\s*[:：]"
    r"|.*(?:时间|发布时间)\s*[:：].*来源\s*[:：]"
    r"|来源\s*[:：].*(?:发布时间|字体|浏览|点击|累计)"
    r"|.*由会员分享.*"
    r"|.*(?:分享到|打印本页|关闭窗口|【字体|字体\s*[:：]\s*[\[【]).*"
    r")"
)
BOOKMARK = re.compile(r"\[bookmark:[^\]\n]*\]")
# Markdown uploads: heading hashes, list bullets and emphasis marks are markup, not text
MARKUP = re.compile(r"^\s{0,3}(?:#{1,6}\s+|[-*+]\s+|>\s*)|\*\*|__")
CC_LINE = re.compile(r"^\s*抄\s*送\s*[:：]")
# a page's own line about the document: 来源 / 发布时间 (metadata, kept and cited as the header)
SOURCE_LINE = re.compile(r"^\s*(?:.*(?:时间|发布时间)\s*[:：].*来源\s*[:：]|来源\s*[:：].*(?:发布时间|时间)\s*[:：])")
SOURCE_ONLY = re.compile(r"^(?:信息)?来源\s*[:：]\s*(\S{2,40})$")
SOURCE_TAIL = re.compile(r"\s*(?:累计次数|浏览次数|点击数|访问量|字体)\s*[:：].*$")
FULL_DOC_NUMBER = re.compile(r"[\u4e00-\u9fff]{1,10}[〔\[［(（]\s*(?:19|20)\d{2}\s*[〕\]］)）]\s*\d+\s*号")
CN_DATE = re.compile(r"((?:19|20)\d{2})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
ISO_DATE = re.compile(r"((?:19|20)\d{2})-(\d{1,2})-(\d{1,2})")
DOC_NUMBER = re.compile(r"[〔\[［(（]\s*(?:19|20)\d{2}\s*[〕\]］)）]\s*\d+\s*号")
TRANSMITTAL = re.compile(r"关于印发《(.+?)》的通知")
SHARED_TITLE = re.compile(r"《(.+?)(?:\.docx?|\.pdf|\.wps)?》由会员分享")
PAGE_PREFIX = re.compile(r"^(\d{1,3})、")
SENTENCE_END = re.compile(r"[。！？；;!?：:”’」』）)]\s*$")
BYLINE = re.compile(r"^\s*\S{2,24}(?:局|委员会|委|政府|办公室|中心)\s*$")
ARTICLE_TITLE = re.compile(r"^\s*(\S{4,40}?)(\d{1,2})\s*$")
HEADING_START = re.compile(
    r"^\s*(?:[一二三四五六七八九十]+、|[（(][一二三四五六七八九十\d]+[）)]|\d{1,2}\s?[、.．]|[①-⑳])"
)
TITLE_SUFFIX = re.compile(r"^[（(][^）)]{1,8}[）)]")
# a line that is only a date, with or without a label: 发布日期：2025年6月30日 under a notice's title, or the
# date under its signature (成文日期) at the end. Labelled 发布/时间 it is the publication date, else the issue date
DATE_LINE = re.compile(r"^\s*[（(]?\s*(?:(?P<label>发布日期|发布时间|印发日期|发文日期|成文日期|日期|时间)\s*[:：]\s*)?"
                       r"(?:(?P<y>(?:19|20)\d{2})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
                       r"|(?P<iy>(?:19|20)\d{2})[-/.](?P<im>\d{1,2})[-/.](?P<id>\d{1,2}))\s*[）)]?\s*$")

KINDS = ("工作意见", "专项规划", "工作要点", "工作计划", "实施方案", "通知", "规划", "意见", "要点", "计划")
FIVE_YEAR = {"十三五": (2016, 2020), "十四五": (2021, 2025), "十五五": (2026, 2030)}


# ------------------------------------------------------------------ loading
def decode(data: bytes, name: str) -> str:
    if not data.strip():
        raise CorpusError(f"{name}: the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{name}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None
    if "\x00" in text:
        raise CorpusError(f"{name}: looks like a binary file (NUL bytes), not text")
    return text


def load_document(path: str | Path, doc_id: str | None = None) -> Document:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"{path}: cannot be read ({e.strerror})") from None
    return parse_document(decode(data, path.name), doc_id or path.stem)


def load_corpus(directory: str | Path) -> list[Document]:
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusError(f"{directory}: corpus folder not found")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".txt", ".md") and p.is_file())
    if not files:
        raise CorpusError(f"{directory}: no .txt documents in the corpus folder")
    return [load_document(p) for p in files]


# ----------------------------------------------------------------- cleaning
def _lines(text: str) -> list[Mapped]:
    out = []
    for m in re.finditer(r"[^\n]*", text):
        if m.start() == m.end() and m.start() > 0 and text[m.start() - 1] != "\n":
            continue  # finditer's empty match right after a line
        a, b = m.start(), m.end()
        out.append(Mapped(text[a:b], tuple(range(a, b))))
    return out


def _drop(line: Mapped, pattern: re.Pattern, kind: str, removed: list[Removed]) -> Mapped:
    keep_text, keep_offs = [], []
    pos = 0
    for m in pattern.finditer(line.text):
        keep_text.append(line.text[pos : m.start()])
        keep_offs.extend(line.offsets[pos : m.start()])
        removed.append(Removed(line.offsets[m.start()], line.offsets[m.end() - 1] + 1, kind))
        pos = m.end()
    if pos == 0:
        return line
    keep_text.append(line.text[pos:])
    keep_offs.extend(line.offsets[pos:])
    return Mapped("".join(keep_text), tuple(keep_offs))


def _remove_line(line: Mapped, kind: str, removed: list[Removed]) -> None:
    s = line.strip()
    if len(s):
        removed.append(Removed(s.start, s.end, kind))


def _drop_spans(lines: list[Mapped], spans, text_len: int, removed: list[Removed]) -> list[Mapped]:
    """Delete the characters of the spans a converter marked as never cited (a PDF's page headers,
    footers and page numbers: whole lines kept in the text so offsets stay exact), each span
    recorded as `Removed` with the converter's reason."""
    gone = bytearray(text_len)
    for s in spans:
        a, b, kind = (s.start, s.end, s.kind) if isinstance(s, Removed) else s
        a, b = max(0, int(a)), min(text_len, int(b))
        if b > a:
            removed.append(Removed(a, b, str(kind)))
            gone[a:b] = b"\x01" * (b - a)
    out = []
    for l in lines:
        keep = [i for i, o in enumerate(l.offsets) if not gone[o]]
        if len(keep) == len(l):
            out.append(l)
        else:
            out.append(Mapped("".join(l.text[i] for i in keep), tuple(l.offsets[i] for i in keep)))
    return out


def parse_document(text: str, doc_id: str, removed: tuple | list = ()) -> Document:
    """`removed`: (start, end, reason) spans (or `Removed`) a converter marked as never cited;
    they are deleted first, by the same offset-preserving rule as the cleaning below."""
    spans, removed = removed, []
    lines = _lines(text)
    if spans:
        lines = _drop_spans(lines, spans, len(text), removed)
    lines = [_drop(_drop(l, BOOKMARK, "bookmark", removed), MARKUP, "markup", removed) for l in lines]
    shared_title = None

    # 1. web-page furniture, and a share-site line that names the document
    kept: list[Mapped] = []
    header: list[Mapped] = []
    for l in lines:
        if SOURCE_LINE.match(l.text) and not header:
            header.append(_drop(l, SOURCE_TAIL, "cruft", removed).strip())
        elif CRUFT_LINE.match(l.text):
            m = SHARED_TITLE.search(l.text)
            shared_title = shared_title or (m and m.group(1))
            _remove_line(l, "cruft", removed)
        else:
            kept.append(l)
    lines = kept

    # 2. 抄送 block: the line and its continuation lines up to the next blank line
    kept, in_cc = [], False
    for l in lines:
        if CC_LINE.match(l.text):
            in_cc = True
        elif in_cc and not l.text.strip():
            in_cc = False
        if in_cc:
            _remove_line(l, "cc", removed)
        else:
            kept.append(l)
    lines = kept

    # 3. an official notice wrapping the real document: drop everything up to the attached title
    nonempty = [l for l in lines if l.text.strip()]
    header_text = squash("".join(l.text for l in nonempty[:12]))
    notice = TRANSMITTAL.search(header_text)
    if notice and (nonempty[0].text.strip().endswith("文件") or DOC_NUMBER.search(header_text)):
        target = squash(notice.group(1))
        idx = next(
            (i for i, l in enumerate(lines) if squash(l.text) == target and i > lines.index(nonempty[0])),
            None,
        )
        if idx is not None:
            header = [l.strip() for l in lines[:idx] if l.text.strip()] + header
            lines = lines[idx:]

    # 4. a docx export with a page number at the start of every line: join the pages back
    # A numbered list (1、… 2、… one item a line) looks the same but for where its lines break: after a sentence,
    # where a page's number follows text cut anywhere (002: 40 of its 45 pages begin mid-sentence)
    nonempty = [l for l in lines if l.text.strip()]
    numbered = cut = 0
    for i, l in enumerate(nonempty):
        m = PAGE_PREFIX.match(l.text)
        if m and int(m.group(1)) == numbered + 1:
            numbered += 1
            cut += i > 0 and not SENTENCE_END.search(nonempty[i - 1].text)
    paginated = numbered >= 5 and numbered >= 0.8 * len(nonempty) and cut >= 0.3 * numbered
    if paginated:
        expected, pieces = 1, []
        for l in nonempty:
            m = PAGE_PREFIX.match(l.text)
            if m and int(m.group(1)) == expected:
                removed.append(Removed(l.offsets[0], l.offsets[m.end() - 1] + 1, "page_number"))
                l = l[m.end() :]
                expected += 1
            pieces.append(l)
        lines = [Mapped.join(pieces, sep="")]

    # 5. several articles in one file: short lines "<same stem>1", "<same stem>2", ...
    stems: dict[str, list[int]] = {}
    for i, l in enumerate(lines):
        m = ARTICLE_TITLE.match(l.text)
        if m and not HEADING_START.match(l.text):
            stems.setdefault(m.group(1), []).append(i)
    article_starts: list[int] = []
    collection_title = None
    for stem, idxs in stems.items():
        nums = [int(ARTICLE_TITLE.match(lines[i].text).group(2)) for i in idxs]
        if len(idxs) >= 2 and nums == list(range(1, len(nums) + 1)):
            article_starts, collection_title = idxs, stem
            break
    if article_starts:
        for l in lines[: article_starts[0]]:  # the page's own title, above the first article
            _remove_line(l, "cruft", removed)
        bounds = article_starts + [len(lines)]
        groups = [lines[bounds[i] : bounds[i + 1]] for i in range(len(article_starts))]
    else:
        groups = [lines]

    parts = [_make_part(g, shared_title, removed) for g in groups]
    parts = [p for p in parts if p.paragraphs]
    if not parts:
        raise CorpusError(f"{doc_id}: no text to cite besides a title (or only page headers, page numbers and site "
                          "menus, which are never cited)")
    title = collection_title or parts[0].title or doc_id
    region, city = _region(title, text)
    head = Mapped.join(sorted(header, key=lambda m: m.start), sep="\n") if header else None
    bylines = [text[r.start : r.end] for r in removed if r.kind == "byline"]
    metadata = _body_dates(_header_metadata(head.text if head else "", bylines), parts)
    years = _years(title, text)
    if not years and (metadata.get("issued") or metadata.get("published")):
        # a title without a year (关于做好暑期安全工作的通知): the year it was issued, else published
        years = (int((metadata.get("issued") or metadata["published"])[:4]),)
    return Document(
        doc_id=doc_id,
        text=text,
        title=title,
        region=region,
        city=city,
        years=years,
        kind=_kind(title),
        parts=tuple(parts),
        removed=tuple(sorted(removed, key=lambda r: r.start)),
        header=head,
        metadata=metadata,
    )


def _make_part(lines: list[Mapped], shared_title: str | None, removed: list[Removed]) -> Part:
    paras = [l.strip() for l in lines]
    paras = [p for p in paras if len(p)]
    title = ""
    if paras:
        first = paras[0]
        looks_like_title = (
            len(first) <= 60
            and not HEADING_START.match(first.text)
            and not re.search(r"[。；;，,：:]$", first.text)
            and "。" not in first.text
        )
        if looks_like_title:
            title = first.text
            removed.append(Removed(first.start, first.end, "title"))
            paras = paras[1:]
            if paras and len(paras[0]) <= 24 and BYLINE.match(paras[0].text):
                removed.append(Removed(paras[0].start, paras[0].end, "byline"))
                paras = paras[1:]
        elif shared_title and squash(first.text).startswith(squash(shared_title)):
            # the title runs into the body text (joined pages): cut it off, with a "(要点)" suffix
            n = _prefix_len(first.text, shared_title)
            m = TITLE_SUFFIX.match(first.text[n:])
            if m:
                n += m.end()
            title = first.text[:n].strip()
            removed.append(Removed(first.start, first.offsets[n - 1] + 1, "title"))
            paras[0] = first[n:].strip()
    if not title and shared_title:
        title = shared_title
    return Part(title=title, paragraphs=tuple(p for p in paras if len(p)))


def _prefix_len(text: str, prefix: str) -> int:
    """Length of the shortest prefix of `text` whose squashed form equals squash(prefix)."""
    want = squash(prefix)
    got = ""
    for i, ch in enumerate(text):
        if not ch.isspace():
            got += ch
        if got == want:
            return i + 1
    return 0


# ------------------------------------------------------------------ metadata
def _region(title: str, text: str) -> tuple[str | None, str | None]:
    region = None
    for m in re.finditer(r"([\u4e00-\u9fff]{2})区", title):
        name = m.group(1)
        if "某" in name:
            return None, None  # deliberately unnamed district
        region = name.removeprefix("市") + "区"
        break
    if region is None:
        # no 某某区 in the title: a county or county-level city the gazetteer knows (江阴市, 如东县), in its city
        from .query import gazetteer

        g = gazetteer()
        county = next((p for p in g.find(title) if p.level == "county"), None)
        if county is None:
            return None, None
        return county.name, g.names.get(county.code[:4] + "00")
    city = re.search(r"([\u4e00-\u9fff]{2})市" + region, title) or re.search(
        r"([\u4e00-\u9fff]{2})市" + region, text
    )
    if city:
        return region, city.group(1) + "市"
    # the document names no city: the gazetteer's, when only one district of the country has this name
    # (锡山区 lies in 无锡市; 鼓楼区 is in four cities and stays without one)
    from .query import gazetteer

    g = gazetteer()
    counties = [code for _, code, level in g.by_name.get(region, ()) if level == "county"]
    return region, (g.names.get(counties[0][:4] + "00") if len(counties) == 1 else None)


def _years(title: str, text: str) -> tuple[int, ...]:
    m = re.search(r"((?:19|20)\d{2})\s*[—–\-－~至]+\s*((?:19|20)\d{2})", title)
    if m:
        return tuple(range(int(m.group(1)), int(m.group(2)) + 1))
    for plan, (a, b) in FIVE_YEAR.items():
        if plan in title:
            return tuple(range(a, b + 1))
    years = sorted({int(y) for y in re.findall(r"((?:19|20)\d{2})年", title)})
    return tuple(years)


def _header_metadata(header: str, bylines: list[str]) -> dict:
    """What a document's header says about it: issuing body, document number (文号), the date
    it was issued and the page's publication date and source."""
    meta: dict = {}
    m = FULL_DOC_NUMBER.search(header)
    if m:
        meta["doc_number"] = re.sub(r"\s+", "", m.group(0))
    lines = [l.strip() for l in header.splitlines() if l.strip()]
    issuer = next((l[:-2] for l in lines if l.endswith("文件") and len(l) > 4), None)
    src = re.search(r"来源\s*[:：]\s*(\S+)", header)
    if src:
        meta["publisher"] = src.group(1)
    agency = src.group(1) if src and BYLINE.match(src.group(1)) else None  # a bureau, not a template website
    issuer = issuer or next((l for l in lines if BYLINE.match(l)), None) or agency or (bylines[0].strip() if bylines else None)
    if issuer:
        meta["issuer"] = issuer
    dates = CN_DATE.findall(header)
    if dates:
        y, mo, d = dates[-1]
        meta["issued"] = f"{int(y):04d}-{int(mo):02d}-{int(d):02d}"
    pub = re.search(r"(?:发布时间|时间)\s*[:：]\s*" + ISO_DATE.pattern, header)
    if pub:
        meta["published"] = f"{int(pub.group(1)):04d}-{int(pub.group(2)):02d}-{int(pub.group(3)):02d}"
    return meta


def _body_dates(meta: dict, parts: list["Part"]) -> dict:
    """The dates a document without a header gives in its own lines: a date line among the first three
    paragraphs (发布日期：2025年6月30日 under a Markdown notice's title) and the date under the signature, the
    last paragraph when it is only a date (2025年6月28日). What the header said stands."""
    paras = [p.text for part in parts[:1] for p in part.paragraphs]
    found: dict = {}
    for text, where in [(t, "top") for t in paras[:3]] + [(t, "end") for t in paras[-1:] if len(paras) > 3]:
        m = DATE_LINE.match(text)
        if not m:
            continue
        y, mo, d = (m.group("y"), m.group("m"), m.group("d")) if m.group("y") else (m.group("iy"), m.group("im"), m.group("id"))
        if not (1 <= int(mo) <= 12 and 1 <= int(d) <= 31):
            continue
        key = "published" if (m.group("label") or "").startswith(("发布", "时间")) else "issued"
        found.setdefault(key, f"{int(y):04d}-{int(mo):02d}-{int(d):02d}")
        if where == "end" and len(paras) > 4 and len(paras[-2]) <= 24 and BYLINE.match(paras[-2]):
            found["issuer"] = paras[-2].strip()  # the signature above the date: 锡山区教育局
    # a 来源 line and a document number on a line of their own under the title (来源：江阴市教育局, 澄教发〔2025〕12号)
    for line in (l.strip() for t in paras[:3] for l in t.splitlines()):
        src = SOURCE_ONLY.match(line)
        if src:
            found.setdefault("publisher", src.group(1))
            if BYLINE.match(src.group(1)):
                found.setdefault("issuer", src.group(1))
        elif FULL_DOC_NUMBER.fullmatch(line):
            found.setdefault("doc_number", re.sub(r"\s+", "", line))
    return {**found, **meta}


def _kind(title: str) -> str:
    for k in KINDS:
        if k in title:
            return k
    return "其他"
