"""The knowledge base people maintain: the seed documents, plus uploads, minus removals.

What a generation of the index covers is its *library*: which uploads it holds
(each an original file, stored write-once under <data_dir>/documents/ by content
hash) and which seeds were removed. The library is saved inside the generation,
so the index's CURRENT pointer is the one commit point for documents and index
together: a process killed in the middle of an update leaves the last complete
generation, and every original it cites, untouched. A mirror of the last
committed library is kept in documents/library.json for recovery when a
generation is damaged.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import CorpusError, Document, load_corpus, parse_document
from .errors import QAError

EXTENSIONS = (".txt", ".md", ".docx")
DOC_ID = re.compile(r"^[\w\u3000-\u303f\uff00-\uffef（）《》·\-.]{1,80}$")
MAX_DOCX_UNPACKED = 50 * 1024 * 1024  # a .docx is a zip: refuse bombs before unpacking


class TooLarge(QAError):
    status = 413


@dataclass
class Library:
    uploads: dict[str, dict] = field(default_factory=dict)  # doc_id -> {file, name, sha256, bytes, added_at}
    removed: list[str] = field(default_factory=list)  # seed doc_ids taken out of the corpus

    def to_dict(self) -> dict:
        return {"uploads": self.uploads, "removed": sorted(set(self.removed))}

    @classmethod
    def from_dict(cls, d: dict) -> "Library":
        return cls(dict(d.get("uploads", {})), list(d.get("removed", [])))

    def copy(self) -> "Library":
        return Library.from_dict(json.loads(json.dumps(self.to_dict())))


def documents_dir(settings) -> Path:
    return settings.data_dir / "documents"


# ------------------------------------------------------------ uploaded files
def doc_id_for(filename: str) -> tuple[str, str]:
    """(doc_id, extension) for an upload name. The id is the name without its
    extension; names that could point anywhere but at a plain file are refused."""
    name = unicodedata.normalize("NFC", filename or "")
    if not name.strip():
        raise QAError("the upload has no file name")
    if any(c in name for c in "/\\\0") or any(unicodedata.category(c) == "Cc" for c in name):
        raise QAError(f"file name {name[:80]!r} contains a path separator or control characters; send a plain file name")
    stem, dot, ext = name.rpartition(".")
    ext = (dot + ext).lower()
    if not dot or ext not in EXTENSIONS:
        raise QAError(f"file {name[:80]!r}: only {', '.join(EXTENSIONS)} documents can be added")
    if stem.startswith(".") or not DOC_ID.match(stem):
        raise QAError(
            f"file name {name[:80]!r} cannot be a document id: use 1-80 letters, digits, Chinese characters, '-', '_' or '.', "
            "not starting with '.'"
        )
    return stem, ext


def decode_upload(data: bytes, filename: str) -> str:
    """The decoded text of an uploaded original; citations index this text."""
    _, ext = doc_id_for(filename)
    if ext == ".docx":
        return docx_text(data, filename)
    return decode_text(data, filename)


def decode_text(data: bytes, name: str) -> str:
    if not data.strip():
        raise CorpusError(f"{name}: the file is empty")
    if b"\0" in data[:65536] or data[:4] in (b"PK\x03\x04", b"%PDF") or data[:2] == b"\xd0\xcf":
        raise CorpusError(f"{name}: looks like a binary file, not text (send .docx as .docx, or UTF-8/GB18030 text)")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _plausible(text):
            return text
    raise CorpusError(f"{name}: cannot be decoded as UTF-8 or GB18030 text; save it as UTF-8")


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


def docx_text(data: bytes, name: str) -> str:
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
        lines = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    lines.append("\t".join(cell.text.strip() for cell in row.cells))
            else:
                lines.append(block.text)
    except Exception as e:  # python-docx raises assorted errors (KeyError, ValueError, lxml's) for broken files
        raise CorpusError(f"{name}: not a readable .docx file ({type(e).__name__})") from None
    text = "\n".join(lines).strip("\n")
    if not text.strip():
        raise CorpusError(f"{name}: the document has no text")
    return text


# -------------------------------------------------------------- the corpus
def blob_path(settings, entry: dict) -> Path:
    path = (documents_dir(settings) / entry["file"]).resolve()
    if path.parent != documents_dir(settings).resolve():
        raise CorpusError(f"library entry {entry['file']!r} points outside the documents folder")
    return path


def store_blob(settings, data: bytes, ext: str) -> str:
    """Write an original once, named by its content hash; return the file name."""
    digest = hashlib.sha256(data).hexdigest()
    folder = documents_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    name = digest + ext
    final = folder / name
    if not final.exists():
        tmp = folder / f".tmp-{name}.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    return name


def upload_entry(settings, data: bytes, filename: str) -> tuple[str, dict, Document]:
    """Validate and parse an upload, store its original; nothing is committed yet."""
    doc_id, ext = doc_id_for(filename)
    text = decode_upload(data, filename)
    doc = parse_document(text, doc_id)
    entry = {
        "file": store_blob(settings, data, ext),
        "name": filename,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "added_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return doc_id, entry, doc


def load_documents(settings, library: Library) -> list[Document]:
    """The corpus a library describes: seeds not removed, with uploads added (an
    upload with a seed's id replaces that seed)."""
    seeds = load_corpus(settings.corpus_dir) if settings.corpus_dir else []
    docs = {d.doc_id: d for d in seeds if d.doc_id not in library.removed and d.doc_id not in library.uploads}
    for doc_id, entry in library.uploads.items():
        docs[doc_id] = parse_document(upload_text(settings, doc_id, entry), doc_id)
    return [docs[k] for k in sorted(docs)]


def upload_text(settings, doc_id: str, entry: dict) -> str:
    """The decoded text of a stored original (what its citations index)."""
    path = blob_path(settings, entry)
    try:
        data = path.read_bytes()
    except OSError:
        raise CorpusError(f"the original of {doc_id!r} ({path}) is missing; add the document again") from None
    return decode_upload(data, doc_id + path.suffix)


def source_texts(settings, library: Library) -> dict[str, str]:
    """doc_id -> the decoded text citations index, without parsing the documents."""
    from .corpus import decode

    texts = {}
    if settings.corpus_dir and settings.corpus_dir.is_dir():
        for p in sorted(settings.corpus_dir.iterdir()):
            if p.suffix in (".txt", ".md") and p.is_file() and p.stem not in library.removed:
                texts[p.stem] = decode(p.read_bytes(), p.name)
    for doc_id, entry in library.uploads.items():
        texts[doc_id] = upload_text(settings, doc_id, entry)
    return texts


def seed_ids(settings) -> set[str]:
    try:
        return {d.doc_id for d in load_corpus(settings.corpus_dir)}
    except CorpusError:
        return set()


def save_mirror(settings, library: Library) -> None:
    folder = documents_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".library.json.{os.getpid()}"
    tmp.write_text(json.dumps(library.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "library.json")


def read_mirror(settings) -> Library:
    try:
        return Library.from_dict(json.loads((documents_dir(settings) / "library.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return Library()


def collect_garbage(settings, keep: Library) -> None:
    """Delete originals no committed library refers to (and stale temporary files)."""
    folder = documents_dir(settings)
    if not folder.is_dir():
        return
    wanted = {e["file"] for e in keep.uploads.values()}
    for p in folder.iterdir():
        if p.name == "library.json" or p.name in wanted or not p.is_file():
            continue
        if p.name.startswith(".tmp-") and time.time() - p.stat().st_mtime < 3600:
            continue  # an upload in flight in another process
        p.unlink(missing_ok=True)
