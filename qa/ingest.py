"""One ingest path, bytes → a parsed document, for seeds and uploads alike.

`ingest(name, data, limits)` validates the file name once (→ the document id),
decodes the bytes once (qa.formats for PDF/HTML/images when that package is
present, else .txt/.md in UTF-8, GB18030 or UTF-16, or .docx), parses and chunks
the text once, and checks the limits on extracted characters and chunks before
anything is embedded. Its `Ingested` record is what the store commits: nothing
downstream reads or decodes the bytes again.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import unicodedata
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

from .corpus import CorpusError, Document, parse_document
from .errors import QAError

TEXT_EXTENSIONS = (".txt", ".md", ".docx")
DOC_ID = re.compile(r"^[\w\u3000-\u303f\uff00-\uffef（）《》·()\-.]{1,80}$")
MAX_DOCX_UNPACKED = 50 * 1024 * 1024  # a .docx is a zip: refuse bombs before unpacking
# scripts a document id may mix with Han characters; any two *other* scripts together (Latin with
# Cyrillic or Greek look-alikes: "000_eаec", Cyrillic а) are refused
_NEUTRAL = {"DIGIT", "LOW", "HYPHEN-MINUS", "FULL", "LEFT", "RIGHT", "MIDDLE", "IDEOGRAPHIC", "CJK"}


class TooLarge(QAError):
    status = 413


def _formats():
    try:
        from . import formats
    except ImportError:  # the converters are optional: .txt/.md/.docx need none
        return None
    return formats


def extensions() -> tuple[str, ...]:
    f = _formats()
    return TEXT_EXTENSIONS + tuple(e for e in (getattr(f, "EXTENSIONS", ()) if f else ()) if e not in TEXT_EXTENSIONS)


# ------------------------------------------------------------------ names
def _script(ch: str) -> str | None:
    """The script of a letter (LATIN, CYRILLIC, GREEK, …); None for Han, digits, marks, punctuation."""
    if not ch.isalpha() or "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
        return None
    name = unicodedata.name(ch, "")
    first = name.split(" ")[0]
    return None if first in _NEUTRAL or not first else first


def doc_id_for(filename: str) -> tuple[str, str]:
    """(doc_id, extension) for a file name. The id is the name without its extension,
    NFKC-folded (full-width ０００ is 000, so a look-alike of a seed *is* that seed), its spaces '_';
    names that could point anywhere but at a plain file, and ids mixing look-alike
    scripts (Latin with Cyrillic or Greek), are refused."""
    if not isinstance(filename, str) or not filename.strip():
        raise QAError("the upload has no file name")
    raw = filename
    if any(c in raw for c in "/\\\0") or any(unicodedata.category(c) in ("Cc", "Cf") for c in raw):
        raise QAError(f"file name {raw[:80]!r} contains a path separator or control characters; send a plain file name")
    name = unicodedata.normalize("NFKC", raw)
    if any(c in name for c in "/\\\0"):  # ／ folds to /
        raise QAError(f"file name {raw[:80]!r} contains a path separator; send a plain file name")
    stem, dot, ext = name.rpartition(".")
    # spaces are '_' (my notice 2025.txt -> my_notice_2025); full-width brackets fold to ( ), which an id may hold
    stem = re.sub(r"\s+", "_", stem.strip())
    ext = (dot + ext).lower()
    allowed = extensions()
    if not dot or ext not in allowed:
        raise QAError(f"file {raw[:80]!r}: only {', '.join(allowed)} documents can be added")
    if stem.startswith(".") or not DOC_ID.match(stem):
        raise QAError(
            f"file name {raw[:80]!r} cannot be a document id: use 1-80 letters, digits, Chinese characters, spaces, "
            "brackets, '-', '_' or '.', not starting with '.'"
        )
    scripts = {s for s in map(_script, stem) if s}
    if len(scripts) > 1:
        raise QAError(f"file name {raw[:80]!r} mixes {' and '.join(sorted(scripts)).lower()} letters (a look-alike of "
                      "another id?); rename it with letters of one script")
    return stem, ext


# --------------------------------------------------------------- decoding
def decode_text(data: bytes, name: str) -> str:
    """.txt/.md bytes → text: UTF-8 (with or without BOM), UTF-16 (BOM or plainly UTF-16 text), GB18030."""
    if not data.strip():
        raise CorpusError(f"{name}: the file is empty")
    candidates: list[str] = []
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        candidates = ["utf-16"]
    elif b"\0" in data[:65536]:
        if len(data) % 2 == 0:
            # no BOM: UTF-16 text has most of its zero bytes (the high byte of ASCII characters) on one side of
            # each pair, odd positions little-endian, even ones big-endian; zero bytes on both sides are
            # binary data (b"abc\0\0def" decodes to 扡c搀晥 otherwise), and the result must read as text
            head = data[:65536]
            odd = head[1::2].count(0)
            even = head[0::2].count(0)
            candidates = ["utf-16-le"] if odd >= 3 * even else ["utf-16-be"] if even >= 3 * odd else []
    elif data[:4] in (b"PK\x03\x04", b"%PDF") or data[:2] == b"\xd0\xcf":
        candidates = []
    else:
        candidates = ["utf-8-sig", "gb18030"]
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if not text.strip():
            raise CorpusError(f"{name}: the file is empty (only white space)")
        if _plausible(text):
            return text
    if not candidates or candidates[0].startswith("utf-16"):
        raise CorpusError(f"{name}: looks like a binary file, not text (send .docx as .docx, or UTF-8/GB18030/UTF-16 text)")
    raise CorpusError(f"{name}: cannot be decoded as UTF-8, UTF-16 or GB18030 text; save it as UTF-8")


def _plausible(text: str) -> bool:
    """Mostly readable characters: CJK, ASCII, punctuation, whitespace. Random bytes
    decoded as GB18030 come out as rare symbols and private-use characters instead."""
    body = [c for c in text if not c.isspace()]
    if not body:
        return False
    bad = sum(1 for c in body if unicodedata.category(c) in ("Cc", "Co", "Cs", "Cn"))
    common = sum(1 for c in body if c.isascii() or "\u4e00" <= c <= "\u9fff" or unicodedata.category(c).startswith("P")
                 or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef")
    return bad <= 0.01 * len(body) and common >= 0.8 * len(body)


def docx_text(data: bytes, name: str, max_chars: int | None = None) -> str:
    """Paragraphs (and table rows, cells joined by tabs) of a .docx in body order.
    python-docx does the WordprocessingML reading; its XML parser resolves no entities."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if sum(i.file_size for i in z.infolist()) > MAX_DOCX_UNPACKED:
                raise TooLarge(f"{name}: unpacks to more than {MAX_DOCX_UNPACKED // 2**20} MiB")
    except zipfile.BadZipFile:
        raise CorpusError(f"{name}: not a valid .docx file (not a zip archive)") from None
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        lines, size = [], 0
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    lines.append("\t".join(cell.text.strip() for cell in row.cells))
            else:
                lines.append(block.text)
            size += len(lines[-1]) + 1
            if max_chars is not None and size > max_chars:  # stop reading: the text is over the limit anyway
                raise TooLarge(f"{name}: more than {max_chars} characters of text (limit QA_MAX_DOCUMENT_CHARS)")
    except QAError:
        raise
    except Exception as e:  # python-docx raises assorted errors (KeyError, ValueError, lxml's) for broken files
        raise CorpusError(f"{name}: not a readable .docx file ({type(e).__name__})") from None
    text = "\n".join(lines).strip("\n")
    if not text.strip():
        raise CorpusError(f"{name}: the document has no text")
    return text


_CONVERTED: "OrderedDict[tuple[str, str], object]" = OrderedDict()
_CONVERTED_KEEP = 16
_CONVERTED_LOCK = threading.Lock()


# A converted original's text (a PDF's, a web page's, a scan's OCR) is stored beside it, so that a new process
# reads it instead of converting again: OCR costs ~15 s a page here, and every start reads each original's text
CONVERTED_SUFFIX = ".converted.json"
CONVERTER_VERSION = 1  # raise it when a converter's output changes: the stored conversions are then made again


def converted_bytes(converted, sha256: str) -> bytes:
    """A conversion as stored beside its original (one JSON line, tied to the original's sha256)."""
    return json.dumps({"version": CONVERTER_VERSION, "sha256": sha256, "text": converted.text,
                       "removed": [list(r) for r in converted.removed], "pages": [list(p) for p in converted.pages],
                       "ocr": bool(converted.ocr), "metadata": converted.metadata},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _stored_conversion(path: Path, sha256: str):
    """The conversion stored at `path` for the original of that sha256; None when there is none, or it
    is damaged, of another original or of another converter version (then it is made again)."""
    try:
        d = json.loads(path.read_bytes())
        if d.get("version") != CONVERTER_VERSION or d.get("sha256") != sha256 or not isinstance(d.get("text"), str):
            return None
        from .formats import Converted

        return Converted(text=d["text"], removed=[(int(a), int(b), str(w)) for a, b, w in d["removed"]],
                         pages=[(int(a), int(b)) for a, b in d["pages"]], ocr=bool(d["ocr"]),
                         metadata=dict(d["metadata"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _convert(f, name: str, data: bytes, stored: Path | None = None):
    """qa.formats.convert, remembered by (content hash, extension) for a few files: a stored
    original is decoded again when it is verified and when it is re-parsed (a rebuild), and
    a scanned PDF should be recognised once per process, not each time. `stored`: where the
    conversion of a stored original is kept on disk (read there; written there when made)."""
    sha = hashlib.sha256(data).hexdigest()
    key = (sha, name.rpartition(".")[2].lower())
    with _CONVERTED_LOCK:
        hit = _CONVERTED.get(key)
        if hit is not None:
            _CONVERTED.move_to_end(key)
            return hit
    converted = _stored_conversion(stored, sha) if stored is not None else None
    if converted is None:
        converted = f.convert(name, data)
        if converted is not None and stored is not None:
            from .store import atomic_write

            try:
                atomic_write(stored, converted_bytes(converted, sha))
            except (OSError, TypeError, ValueError):
                pass  # a read-only or full disk (or metadata JSON cannot hold): converted again next time
    if converted is not None:
        with _CONVERTED_LOCK:
            _CONVERTED[key] = converted
            while len(_CONVERTED) > _CONVERTED_KEEP:
                _CONVERTED.popitem(last=False)
    return converted


def decode(name: str, data: bytes, max_chars: int | None = None, stored: Path | None = None):
    """(text, converted or None): the converters of qa.formats first, then .txt/.md/.docx.
    `stored`: where a stored original's conversion is kept (see _convert)."""
    f = _formats()
    try:
        converted = _convert(f, name, data, stored) if f is not None else None
    except QAError:
        raise
    except Exception as e:  # a converter's library failing on a hostile file is a 4xx, never a 500
        raise CorpusError(f"{name}: cannot be read as {name.rpartition('.')[2].upper()} ({type(e).__name__})") from None
    if converted is not None:
        text = converted.text
    elif name.lower().endswith(".docx"):
        text = docx_text(data, name, max_chars)
    else:
        text = decode_text(data, name)
    if not text.strip():
        raise CorpusError(f"{name}: the document has no text")
    if max_chars is not None and len(text) > max_chars:
        raise TooLarge(f"{name}: {len(text)} characters of text, more than the limit of {max_chars} (QA_MAX_DOCUMENT_CHARS)")
    return text, converted


# ----------------------------------------------------------------- ingest
@dataclass(frozen=True)
class Limits:
    max_chars: int | None = None  # extracted characters per document
    max_chunks: int | None = None  # chunks per document

    @classmethod
    def of(cls, settings) -> "Limits":
        return cls(getattr(settings, "max_document_chars", None), getattr(settings, "max_document_chunks", None))


@dataclass(frozen=True)
class Ingested:
    """A file read once: its id, bytes, decoded text, parsed document and chunks."""

    doc_id: str
    name: str
    ext: str
    data: bytes = field(repr=False)
    document: Document = field(repr=False)
    chunks: list = field(repr=False)
    converted: object = field(default=None, repr=False)

    @property
    def sha256(self) -> str:  # of the bytes: what the stored original is checked against
        return hashlib.sha256(self.data).hexdigest()

    @property
    def text(self) -> str:
        return self.document.text


def ingest(name: str, data: bytes, limits: Limits = Limits()) -> Ingested:
    from .chunking import chunk_document

    doc_id, ext = doc_id_for(name)
    text, converted = decode(name, data, limits.max_chars)
    doc = parse(text, doc_id, converted)
    chunks = chunk_document(doc)
    if not chunks:
        raise CorpusError(f"{name}: the document has no text to cite")
    if limits.max_chunks is not None and len(chunks) > limits.max_chunks:
        raise TooLarge(f"{name}: {len(chunks)} passages, more than the limit of {limits.max_chunks} per document "
                       "(QA_MAX_DOCUMENT_CHUNKS); split the document")
    return Ingested(doc_id, name, ext, data, doc, chunks, converted)


def parse(text: str, doc_id: str, converted=None) -> Document:
    """The document of a decoded text. For a converted file (PDF, web page, image): the converter's
    removed spans (page headers, footers, numbers) are never cited, its page ranges and OCR'd pages
    are kept with the document's metadata (`pages`: [start, end) of page n at n-1, `ocr_pages`:
    1-based), and what the file says about itself fills the header fields the text leaves empty."""
    if converted is None:
        return parse_document(text, doc_id)
    doc = parse_document(text, doc_id, removed=converted.removed)
    meta = {**file_metadata(converted.metadata), **doc.metadata}  # the document's own header wins
    if converted.pages:
        meta["pages"] = [[int(a), int(b)] for a, b in converted.pages]
        ocr_pages = converted.metadata.get("ocr_pages") or (
            list(range(1, len(converted.pages) + 1)) if converted.ocr else [])
        if ocr_pages:
            meta["ocr_pages"] = [int(p) for p in ocr_pages]
    elif converted.ocr:
        meta["ocr_pages"] = [1]
    return replace(doc, metadata=meta)


def file_metadata(meta: dict) -> dict:
    """A converter's metadata in the document's header fields: a web page's 来源 (or its site name)
    is the `publisher`, its 发布时间 `published`; an issuing body named by the page or the PDF's
    author is the `issuer` only when it reads as a body (…局, …委员会, …政府), not a person's login."""
    from .corpus import BYLINE, ISO_DATE

    out: dict = {}
    publisher = meta.get("source") or meta.get("site")
    if isinstance(publisher, str) and publisher.strip():
        out["publisher"] = publisher.strip()
    published = meta.get("published")
    if isinstance(published, str) and ISO_DATE.fullmatch(published.strip()):
        out["published"] = published.strip()
    for key in ("issuer", "author"):
        v = meta.get(key)
        if isinstance(v, str) and BYLINE.match(v) and len(v.strip()) <= 24:
            out["issuer"] = v.strip()
            break
    return out


def stored_document(data: bytes, doc_id: str, ext: str, stored: Path | None = None) -> Document:
    """The document of a stored original, parsed as it was at ingest (a rebuild re-reads it).
    `stored`: its conversion kept beside it (CONVERTED_SUFFIX)."""
    text, converted = decode(doc_id + ext, data, stored=stored)
    return parse(text, doc_id, converted)


def decode_stored(data: bytes, doc_id: str, ext: str, stored: Path | None = None) -> str:
    """The text of a stored original (what its citations index), decoded as it was at ingest."""
    return decode(doc_id + ext, data, stored=stored)[0]
