"""The knowledge base people maintain: the seed documents, plus uploads, minus removals.

What a generation of the index covers is its *library*: which uploads it holds
(each an original file, stored write-once under <data_dir>/documents/ by content
hash), which seeds were removed, and which uploads are quarantined (their original
went missing, fails its sha256 or no longer decodes: listed, not served). The
library is saved inside the generation, so the index's CURRENT pointer is the one
commit point for documents and index together (see qa/store.py, which owns every
change). A mirror of the last committed library is kept in documents/library.json
for recovery when a generation is damaged.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import CorpusError, Document, load_corpus, parse_document
from .ingest import (  # noqa: F401  (the one ingest path; re-exported for callers of the old names)
    CONVERTED_SUFFIX,
    DOC_ID,
    MAX_DOCX_UNPACKED,
    TEXT_EXTENSIONS as EXTENSIONS,
    TooLarge,
    decode_stored,
    decode_text,
    doc_id_for,
    docx_text,
    stored_document,
)


@dataclass
class Library:
    uploads: dict[str, dict] = field(default_factory=dict)  # doc_id -> {file, name, sha256, bytes, added_at}
    removed: list[str] = field(default_factory=list)  # seed doc_ids taken out of the corpus
    quarantined: dict[str, str] = field(default_factory=dict)  # upload doc_id -> why it is not served

    # doc_id -> (entry, its JSON): an entry is encoded once, not at every commit (shared by copies)
    _encoded: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"uploads": self.uploads, "removed": sorted(set(self.removed)), "quarantined": self.quarantined}

    def to_json(self) -> bytes:
        """json.dumps(to_dict(), ensure_ascii=False), with each upload entry encoded only once
        (a commit costs the entries it changed, not the library)."""
        parts, cache = [], self._encoded
        for k, entry in self.uploads.items():
            hit = cache.get(k)
            if hit is None or hit[0] is not entry:
                hit = cache[k] = (entry, json.dumps(k, ensure_ascii=False) + ": " + json.dumps(entry, ensure_ascii=False))
            parts.append(hit[1])
        rest = json.dumps({"removed": sorted(set(self.removed)), "quarantined": self.quarantined}, ensure_ascii=False)
        return ('{"uploads": {' + ", ".join(parts) + "}, " + rest[1:]).encode()

    @classmethod
    def from_dict(cls, d: dict) -> "Library":
        return cls(dict(d.get("uploads", {})), list(d.get("removed", [])), dict(d.get("quarantined", {})))

    def copy(self) -> "Library":
        """A copy a transaction may change: its entries are shared (a change replaces an entry, never edits one)."""
        return Library(dict(self.uploads), list(self.removed), dict(self.quarantined), self._encoded)


def documents_dir(settings) -> Path:
    return settings.data_dir / "documents"


def blob_path(settings, entry: dict) -> Path:
    path = (documents_dir(settings) / entry["file"]).resolve()
    if path.parent != documents_dir(settings).resolve():
        raise CorpusError(f"library entry {entry['file']!r} points outside the documents folder")
    return path


def conversion_path(settings, entry: dict) -> Path:
    """Where a stored original's conversion is kept (a PDF's, a web page's, a scan's text): beside it."""
    return blob_path(settings, entry).with_name(entry["file"] + CONVERTED_SUFFIX)


def read_original(settings, doc_id: str, entry: dict) -> str:
    """The decoded text of a stored original, checked against its recorded sha256. The
    CorpusError says why it cannot be served, without the data directory's path."""
    try:
        path = blob_path(settings, entry)
        data = path.read_bytes()
    except OSError:
        raise CorpusError(f"the original of {doc_id!r} is missing; add the document again or remove it") from None
    if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CorpusError(f"the original of {doc_id!r} was changed on disk (sha256 mismatch); add the document again "
                          "or remove it")
    try:
        return decode_stored(data, doc_id, Path(entry["file"]).suffix, stored=conversion_path(settings, entry))
    except CorpusError as e:
        raise CorpusError(f"the original of {doc_id!r} cannot be decoded ({str(e).split(': ', 1)[-1]}); add the document "
                          "again or remove it") from None


def upload_text(settings, doc_id: str, entry: dict) -> str:  # the old name
    return read_original(settings, doc_id, entry)


def seed_documents(settings) -> list[Document]:
    return load_corpus(settings.corpus_dir) if settings.corpus_dir else []


def seed_ids(settings) -> set[str]:
    try:
        return {d.doc_id for d in seed_documents(settings)}
    except CorpusError:
        return set()


def load_documents(settings, library: Library, texts: dict[str, str] | None = None) -> list[Document]:
    """The corpus a library describes, read from every original (a full rebuild; a write
    reuses the live generation instead): seeds not removed, with uploads added (an upload
    with a seed's id replaces that seed). Quarantined uploads are left out."""
    seeds = seed_documents(settings)
    docs = {d.doc_id: d for d in seeds if d.doc_id not in library.removed and d.doc_id not in library.uploads}
    for doc_id, entry in library.uploads.items():
        if doc_id in library.quarantined:
            continue
        text = texts[doc_id] if texts and doc_id in texts else read_original(settings, doc_id, entry)
        ext = Path(entry["file"]).suffix.lower()
        if ext in EXTENSIONS:
            docs[doc_id] = parse_document(text, doc_id)
        else:  # a converted file (PDF, web page, image): its removed spans and pages come with it
            docs[doc_id] = stored_document(blob_path(settings, entry).read_bytes(), doc_id, ext,
                                           stored=conversion_path(settings, entry))
    return [docs[k] for k in sorted(docs)]


def read_mirror(settings) -> Library:
    try:
        return Library.from_dict(json.loads((documents_dir(settings) / "library.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return Library()
