"""Persisted indexes: FAISS (dense), bm25s over jieba tokens (lexical), the chunk
table and a manifest that says what was indexed.

Layout under <data_dir>/index/:
    CURRENT            name of the live generation (replaced atomically)
    gen-<time>-<pid>/  chunks.jsonl, docs.json, dense.faiss, bm25/, manifest.json
A new generation is written completely, checksummed, then CURRENT is switched
with os.replace, so a reader never sees half an index.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .chunking import CHUNKER_VERSION, chunk_document
from .corpus import Document, load_corpus
from .errors import QAError
from .records import Chunk
from .text import file_sha256 as _sha256

INDEX_VERSION = "2"
EMBED_TEMPLATE = "{text}"  # what is embedded (heading context measured: it hurt, see README)
WINDOW = 120  # sentence windows inside a chunk, embedded too: a chunk scores by its best window


class IndexError_(QAError):
    status = 503


def embed_text(chunk: Chunk, template: str | None = None) -> str:
    return (template or EMBED_TEMPLATE).format(title=chunk.title, section=chunk.section, text=chunk.text)


def windows(chunk: Chunk, width: int = WINDOW) -> list[str]:
    """Runs of whole sentences of at most ~width characters covering the chunk."""
    from .text import split_sentences

    out, cur = [], ""
    for a, b in split_sentences(chunk.text):
        s = chunk.text[a:b]
        if cur and len(cur) + len(s) > width:
            out.append(cur)
            cur = s
        else:
            cur += s
    if cur:
        out.append(cur)
    return out


def corpus_hash(docs: list[Document]) -> str:
    h = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.doc_id):
        h.update(d.doc_id.encode() + b"\0" + d.sha256.encode() + b"\0")
    return h.hexdigest()



@dataclass
class IndexData:
    path: Path
    manifest: dict
    chunks: list[Chunk]
    docs: dict[str, dict]  # doc_id -> metadata (+ chunk count)
    dense: object  # faiss.Index over chunks
    dense_windows: object  # faiss.Index over sentence windows
    window_owner: np.ndarray  # window -> chunk row
    bm25: object  # bm25s.BM25 over jieba tokens
    bm25_bigrams: object  # bm25s.BM25 over character bigrams


def expected_manifest(settings, docs: list[Document], model_id: str, dim: int) -> dict:
    return {
        "index_version": INDEX_VERSION,
        "corpus_hash": corpus_hash(docs),
        "model_id": model_id,
        "dimension": dim,
        "chunker_version": CHUNKER_VERSION,
        "embed_template": EMBED_TEMPLATE,
        "window": WINDOW,
    }


def _same(a: dict, b: dict) -> bool:
    keys = ("index_version", "corpus_hash", "model_id", "dimension", "chunker_version", "embed_template", "window")
    return all(a.get(k) == b.get(k) for k in keys)


def current_generation(index_dir: Path) -> Path | None:
    try:
        name = (index_dir / "CURRENT").read_text().strip()
    except OSError:
        return None
    path = index_dir / name
    return path if name and path.is_dir() else None


def build(settings, embedder, docs: list[Document] | None = None, progress: bool | None = None) -> Path:
    """Chunk, embed and index the corpus into a new generation; switch CURRENT to it."""
    import faiss

    from .lexical import bigrams, tokenize

    show = sys.stderr.isatty() if progress is None else progress
    docs = docs if docs is not None else load_corpus(settings.corpus_dir)
    chunks = [c for d in docs for c in chunk_document(d)]
    if not chunks:
        raise IndexError_("the corpus has no text to index")
    index_dir = settings.index_dir
    index_dir.mkdir(parents=True, exist_ok=True)
    gen = index_dir / f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    tmp = index_dir / (".tmp-" + gen.name)
    tmp.mkdir()
    try:
        if show:
            print(f"embedding {len(chunks)} chunks of {len(docs)} documents with {embedder.model_id}", file=sys.stderr)
        vecs = embedder.encode_passages([embed_text(c) for c in chunks], progress=show)
        dense = faiss.IndexFlatIP(vecs.shape[1])
        dense.add(vecs)
        faiss.write_index(dense, str(tmp / "dense.faiss"))
        texts, owner = [], []
        for row, c in enumerate(chunks):
            for w in windows(c):
                texts.append(embed_text(Chunk(**{**c.to_dict(), "text": w})))
                owner.append(row)
        if show:
            print(f"embedding {len(texts)} sentence windows", file=sys.stderr)
        wvecs = embedder.encode_passages(texts, progress=show)
        dw = faiss.IndexFlatIP(wvecs.shape[1])
        dw.add(wvecs)
        faiss.write_index(dw, str(tmp / "dense_windows.faiss"))
        np.save(tmp / "window_owner.npy", np.asarray(owner, dtype=np.int64))
        _save_bm25([tokenize(f"{c.section} {c.text}") for c in chunks], tmp / "bm25")
        _save_bm25([bigrams(c.text) for c in chunks], tmp / "bm25_bigrams")
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
        counts = {}
        for c in chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        meta = {d.doc_id: {**d.meta(), "chunks": counts.get(d.doc_id, 0), "chars": len(d.text)} for d in docs}
        (tmp / "docs.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        manifest = expected_manifest(settings, docs, embedder.model_id, embedder.dim)
        manifest["chunks"] = len(chunks)
        manifest["documents"] = len(docs)
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        manifest["files"] = {
            str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        os.replace(tmp, gen)
        pointer = index_dir / f".CURRENT.{os.getpid()}"
        pointer.write_text(gen.name)
        os.replace(pointer, index_dir / "CURRENT")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _cleanup(index_dir, keep=gen)
    return gen


def _save_bm25(tokens: list[list[str]], path: Path) -> None:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    retriever.save(str(path), show_progress=False)


def _cleanup(index_dir: Path, keep: Path) -> None:
    for p in index_dir.iterdir():
        if p.is_dir() and p != keep and (p.name.startswith("gen-") or p.name.startswith(".tmp-")):
            shutil.rmtree(p, ignore_errors=True)


def load(path: Path, verify: bool = True) -> IndexData:
    import bm25s
    import faiss

    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        raise IndexError_(f"index at {path} has no readable manifest; run `qa index --rebuild`") from None
    if verify:
        for name, digest in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file() or _sha256(f) != digest:
                raise IndexError_(f"index file {f} is corrupted (checksum mismatch); run `qa index --rebuild`")
    if manifest.get("index_version") != INDEX_VERSION:
        raise IndexError_(f"index at {path} has an older layout (version {manifest.get('index_version')}); run `qa index`")
    try:
        chunks = [Chunk(**json.loads(line)) for line in (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
        docs = json.loads((path / "docs.json").read_text(encoding="utf-8"))
        dense = faiss.read_index(str(path / "dense.faiss"))
        dense_windows = faiss.read_index(str(path / "dense_windows.faiss"))
        owner = np.load(path / "window_owner.npy")
        bm25 = bm25s.BM25.load(str(path / "bm25"), show_progress=False, verbosity=0)
        bm25_bigrams = bm25s.BM25.load(str(path / "bm25_bigrams"), show_progress=False, verbosity=0)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise IndexError_(f"index at {path} cannot be read ({str(e).splitlines()[0][:120]}); run `qa index --rebuild`") from None
    if dense.ntotal != len(chunks) or dense_windows.ntotal != len(owner):
        raise IndexError_(f"index at {path} is inconsistent ({dense.ntotal} vectors, {len(chunks)} chunks); run `qa index --rebuild`")
    return IndexData(path, manifest, chunks, docs, dense, dense_windows, owner, bm25, bm25_bigrams)


def ensure(settings, embedder, rebuild: bool = False, progress: bool | None = None) -> IndexData:
    """Load the current index, building or refreshing it when missing or stale."""
    docs = load_corpus(settings.corpus_dir)
    want = expected_manifest(settings, docs, embedder.model_id, embedder.dim)
    gen = current_generation(settings.index_dir)
    if gen is not None and not rebuild:
        try:
            current = json.loads((gen / "manifest.json").read_text())
        except (OSError, ValueError):
            current = {}
        if _same(current, want):
            try:
                return load(gen)
            except IndexError_ as e:  # corrupted: the corpus is the source of truth, rebuild from it
                print(f"qa: {e}; rebuilding", file=sys.stderr)
    gen = build(settings, embedder, docs=docs, progress=progress)
    return load(gen)
