"""Persisted indexes: FAISS (dense), bm25s over jieba tokens (lexical), the chunk
table, the library (which documents) and a manifest that says what was indexed.

Layout under <data_dir>/index/:
    CURRENT            name of the live generation (replaced atomically)
    LOCK               held (flock) by whoever writes a generation
    gen-<time>-<pid>/  chunks.jsonl, tokens.jsonl, docs.json, library.json,
                       vectors.npy, window_vectors.npy, window_owner.npy,
                       bm25/, bm25_bigrams/, manifest.json (with file checksums)
This module only builds a generation folder (`stage_generation`) and loads one
(`load`); qa/store.py owns the rest: the lock, the commit (rename + one atomic
switch of CURRENT), the PREVIOUS fallback and garbage collection. Chunks, tokens
and vectors of documents that did not change are copied from the previous
generation, not re-read, re-parsed or re-embedded.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .chunking import CHUNKER_VERSION, chunk_document
from .corpus import Document
from .errors import QAError
from .library import Library, read_mirror
from .records import Chunk
from .text import file_sha256 as _sha256

INDEX_VERSION = "3"
EMBED_TEMPLATE = "{text}"  # what is embedded (heading context measured: it hurt, see README)
WINDOW = 120  # sentence windows inside a chunk, embedded too: a chunk scores by its best window
REUSE_KEYS = ("index_version", "model_id", "dimension", "chunker_version", "embed_template", "window")


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
    tokens: list[list[str]]  # jieba tokens of each chunk (section + text), as BM25 saw them
    docs: dict[str, dict]  # doc_id -> metadata (+ chunk count, sha256)
    library: Library
    vectors: np.ndarray  # chunk embeddings, row = chunk
    window_vectors: np.ndarray
    window_owner: np.ndarray  # window -> chunk row
    dense: object  # faiss.Index over chunks
    dense_windows: object  # faiss.Index over sentence windows
    bm25: object  # bm25s.BM25 over jieba tokens
    bm25_bigrams: object  # bm25s.BM25 over character bigrams


def expected_manifest(docs: list[Document], model_id: str, dim: int) -> dict:
    return {
        "index_version": INDEX_VERSION,
        "corpus_hash": corpus_hash(docs),
        "model_id": model_id,
        "dimension": dim,
        "chunker_version": CHUNKER_VERSION,
        "embed_template": EMBED_TEMPLATE,
        "window": WINDOW,
    }


def _same(a: dict, b: dict, keys=REUSE_KEYS + ("corpus_hash",)) -> bool:
    return all(a.get(k) == b.get(k) for k in keys)


# ---------------------------------------------------------------- locations
def current_generation(index_dir: Path) -> Path | None:
    try:
        name = (index_dir / "CURRENT").read_text().strip()
    except OSError:
        return None
    path = index_dir / name
    return path if name and path.is_dir() else None


_thread_lock = threading.Lock()


@contextmanager
def writer_lock(settings):
    """One writer at a time, across threads and processes (flock dies with its process)."""
    index_dir = settings.index_dir
    index_dir.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(index_dir / "LOCK", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def committed_library(settings) -> Library:
    """The library of the live generation; the mirror when that cannot be read."""
    gen = current_generation(settings.index_dir)
    if gen is not None:
        try:
            manifest = json.loads((gen / "manifest.json").read_text())
            f = gen / "library.json"
            if _sha256(f) == manifest.get("files", {}).get("library.json"):
                return Library.from_dict(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    return read_mirror(settings)


def _live_file(settings, name: str) -> Path | None:
    """A file of the live generation, checked against its manifest; None without an index."""
    gen = current_generation(settings.index_dir)
    if gen is None:
        return None
    try:
        manifest = json.loads((gen / "manifest.json").read_text())
    except (OSError, ValueError):
        raise IndexError_(f"index {gen.name} has no readable manifest; run `qa index --rebuild`") from None
    f = gen / name
    if not f.is_file() or _sha256(f) != manifest.get("files", {}).get(name):
        raise IndexError_(f"index file {gen.name}/{name} is corrupted (checksum mismatch); run `qa index --rebuild`")
    return f


def live_documents(settings) -> dict[str, dict] | None:
    """doc_id -> metadata of the live generation (seeds and uploads), without loading the
    model or the vectors; None when there is no index yet."""
    f = _live_file(settings, "docs.json")
    return None if f is None else json.loads(f.read_text(encoding="utf-8"))


def live_chunks(settings) -> list[Chunk] | None:
    """The chunks of the live generation, as they are cited; None when there is no index yet."""
    f = _live_file(settings, "chunks.jsonl")
    if f is None:
        return None
    return [Chunk(**json.loads(line)) for line in f.read_text(encoding="utf-8").splitlines()]


# -------------------------------------------------------------------- build
@dataclass(frozen=True)
class Kept:
    """A document of the previous generation carried over unchanged: no text, no parsing,
    its chunks, tokens and vectors are copied (what makes a write cost one document)."""

    doc_id: str
    meta: dict

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]


class Cancelled(QAError):
    status = 408


class _Checked:
    """The embedding stage, checked for cancellation (client gone, deadline passed) per batch."""

    def __init__(self, inner, cancel):
        self.inner, self.cancel = inner, cancel

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)
        if self.cancel is not None:
            why = self.cancel()
            if why:
                raise Cancelled(why)


def _vectors_from(previous: IndexData | None, doc):
    """(chunks, tokens, vectors, window vectors, window owners relative to the doc) reused
    from the previous generation when the document is unchanged."""
    if previous is None or previous.docs.get(doc.doc_id, {}).get("sha256") != doc.sha256:
        return None
    span = previous.rows.get(doc.doc_id) if hasattr(previous, "rows") else None
    if span is None:
        rows = [i for i, c in enumerate(previous.chunks) if c.doc_id == doc.doc_id]
        if not rows:
            return None
        span = (rows[0], rows[-1] + 1)
    lo, hi = span
    wlo, whi = np.searchsorted(previous.window_owner, [lo, hi])  # owners are ascending
    return (
        previous.chunks[lo:hi],
        previous.tokens[lo:hi],
        previous.vectors[lo:hi],
        previous.window_vectors[wlo:whi],
        previous.window_owner[wlo:whi] - lo,
    )


def build(settings, embedder, docs, library: Library, previous: IndexData | None = None,
          progress: bool | None = None) -> Path:
    """Build a generation and make it live (the store's commit); kept for callers of the
    old name. New code: `qa.store.Store(settings).transaction()`."""
    from .store import Store

    return Store(settings).commit_built(stage_generation(settings.index_dir, embedder, docs, library, previous, progress=progress),
                                        library, keep_previous=False)


def stage_generation(index_dir: Path, embedder, docs, library: Library, previous: IndexData | None = None,
          progress: bool | None = None, chunked: dict | None = None, cancel=None) -> Path:
    """Chunk, embed and index `docs` into a new, complete, checksummed generation folder
    under `index_dir` (named .tmp-gen-…, not live: the store renames it and switches the
    pointer). `docs` are Documents (chunked and embedded unless unchanged since
    `previous`) or `Kept` records (copied from `previous`). `chunked`: doc_id -> chunks
    already made by the ingest path. `cancel()` returns a reason to stop, checked per batch."""
    from .lexical import bigrams, tokenize
    from .log import stage as log_stage
    from .store import write_file

    index_dir.mkdir(parents=True, exist_ok=True)
    if previous is not None and not _same(previous.manifest, expected_manifest([], embedder.model_id, embedder.dim), REUSE_KEYS):
        previous = None  # embedded differently: nothing to reuse
    chunks, tokens, vec_parts, wvec_parts, owners, metas = [], [], [], [], [], {}
    fresh: list[tuple[int, list[Chunk]]] = []  # (position in parts, chunks) still to embed
    for d in docs:
        reused = _vectors_from(previous, d)
        if reused is None:
            if isinstance(d, Kept):
                raise IndexError_(f"{d.doc_id}: nothing to copy it from; run `qa index --rebuild`")
            cs = (chunked or {}).get(d.doc_id) or chunk_document(d)
            fresh.append((len(vec_parts), cs))
            vec_parts.append(None)
            wvec_parts.append(None)
            owners.append(None)
            chunks.append(cs)
            tokens.append([tokenize(f"{c.section} {c.text}") for c in cs])
            metas[d.doc_id] = {**d.meta(), "chars": len(d.text), "sha256": d.sha256}
        else:
            cs, ts, v, wv, wo = reused
            chunks.append(list(cs))
            tokens.append(list(ts))
            vec_parts.append(v)
            wvec_parts.append(wv)
            owners.append(wo)
            metas[d.doc_id] = dict(previous.docs[d.doc_id])
    if not any(chunks):
        raise IndexError_("the corpus has no text to index")
    if fresh:
        new = [c for _, cs in fresh for c in cs]
        wtexts, wowner = [], []
        for row, c in enumerate(new):
            for w in windows(c):
                wtexts.append(embed_text(Chunk(**{**c.to_dict(), "text": w})))
                wowner.append(row)
        kept = len(docs) - len(fresh)
        texts = [embed_text(c) for c in new] + wtexts
        name = (f"embedding {len(texts)} passages ({len(new)} chunks, {len(wtexts)} sentence windows) of {len(fresh)} "
                f"documents with {embedder.model_id}" + (f"; {kept} unchanged documents reused" if kept else ""))
        with log_stage(name, total=len(texts), unit="passages", bar=progress, label="embedding") as embedding:
            vecs = embedder.encode_passages(texts, stage=_Checked(embedding, cancel) if cancel else embedding)
        cvecs, wvecs = vecs[: len(new)], vecs[len(new) :]
        wowner = np.asarray(wowner, dtype=np.int64)
        row = 0
        for pos, cs in fresh:
            sel = (wowner >= row) & (wowner < row + len(cs))
            vec_parts[pos] = cvecs[row : row + len(cs)]
            wvec_parts[pos] = wvecs[sel]
            owners[pos] = wowner[sel] - row
            row += len(cs)
    offset, owner_all = 0, []
    for cs, wo in zip(chunks, owners):
        owner_all.append(wo + offset)
        offset += len(cs)
    flat_chunks = [c for cs in chunks for c in cs]
    flat_tokens = [t for ts in tokens for t in ts]
    dim = embedder.dim
    vectors = np.ascontiguousarray(np.concatenate(vec_parts), dtype=np.float32).reshape(-1, dim)
    window_vectors = np.ascontiguousarray(np.concatenate(wvec_parts), dtype=np.float32).reshape(-1, dim)
    window_owner = np.concatenate(owner_all).astype(np.int64)

    gen = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    tmp = index_dir / (".tmp-" + gen)
    tmp.mkdir()
    try:
        for name, arr in (("vectors.npy", vectors), ("window_vectors.npy", window_vectors), ("window_owner.npy", window_owner)):
            buf = io.BytesIO()
            np.save(buf, arr)
            write_file(tmp / name, buf.getvalue())
        for name, vecs in (("dense.faiss", vectors), ("dense_windows.faiss", window_vectors)):
            if dense_kind(len(vecs)) != "flat":  # an ANN index is trained once and saved with the generation
                import faiss

                write_file(tmp / name, faiss.serialize_index(dense_index(vecs)).tobytes())
        _save_bm25(flat_tokens, tmp / "bm25")
        _save_bm25([bigrams(c.text) for c in flat_chunks], tmp / "bm25_bigrams")
        write_file(tmp / "chunks.jsonl", "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in flat_chunks))
        write_file(tmp / "tokens.jsonl", "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in flat_tokens))
        counts = {}
        for c in flat_chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        meta = {d.doc_id: {**metas[d.doc_id], "chunks": counts.get(d.doc_id, 0),
                           "source": "upload" if d.doc_id in library.uploads else "seed"} for d in docs}
        write_file(tmp / "docs.json", json.dumps(meta, ensure_ascii=False, indent=1))
        write_file(tmp / "library.json", json.dumps(library.to_dict(), ensure_ascii=False, indent=1))
        manifest = expected_manifest(docs, embedder.model_id, dim)
        manifest["chunks"] = len(flat_chunks)
        manifest["documents"] = len(docs)
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        manifest["files"] = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_file(tmp / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _save_bm25(tokens: list[list[str]], path: Path) -> None:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    retriever.save(str(path), show_progress=False)


# --------------------------------------------------------------------- load
# Index type by size (bench/scale.py, README "Scale"): exact search costs 1.1 ms at 20k
# vectors, 3.9 ms at 50k and 23 ms at 200k per query; IVF with nprobe 32 stays under
# 1 ms at 200k with recall@10 0.98, where HNSW (M 32, efSearch 128) fell to 0.75.
EXACT_UP_TO = 50_000
IVF_NPROBE = 32


def dense_kind(n: int) -> str:
    return "flat" if n <= EXACT_UP_TO else "ivf"


def dense_index(vectors: np.ndarray):
    """Inner-product search over normalised vectors (cosine): exact up to EXACT_UP_TO
    vectors, IVF (4·sqrt(n) lists, nprobe 32) above."""
    import faiss

    n, d = vectors.shape
    if dense_kind(n) == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants ~39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = IVF_NPROBE
    index.add(vectors)
    return index


def _dense_from(path: Path, vectors: np.ndarray):
    """The saved ANN index when the generation has one (trained once, at build), else built here."""
    import faiss

    if dense_kind(len(vectors)) != "flat" and path.is_file():
        index = faiss.read_index(str(path))
        if index.ntotal == len(vectors):
            faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
            return index
    return dense_index(vectors)


def load(path: Path, verify: bool = True) -> IndexData:
    import bm25s

    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        raise IndexError_(f"index {path.name} has no readable manifest; run `qa index --rebuild`") from None
    if manifest.get("index_version") != INDEX_VERSION:
        raise IndexError_(f"index {path.name} has an older layout (version {manifest.get('index_version')}); run `qa index`")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file() or _sha256(f) != digest:
                raise IndexError_(f"index file {path.name}/{name} is corrupted (checksum mismatch); run `qa index --rebuild`")
    try:
        chunks = [Chunk(**json.loads(line)) for line in (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
        tokens = [json.loads(line) for line in (path / "tokens.jsonl").read_text(encoding="utf-8").splitlines()]
        docs = json.loads((path / "docs.json").read_text(encoding="utf-8"))
        library = Library.from_dict(json.loads((path / "library.json").read_text(encoding="utf-8")))
        vectors = np.load(path / "vectors.npy")
        window_vectors = np.load(path / "window_vectors.npy")
        owner = np.load(path / "window_owner.npy")
        bm25 = bm25s.BM25.load(str(path / "bm25"), show_progress=False, verbosity=0)
        bm25_bigrams = bm25s.BM25.load(str(path / "bm25_bigrams"), show_progress=False, verbosity=0)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise IndexError_(f"index {path.name} cannot be read ({str(e).splitlines()[0][:120]}); run `qa index --rebuild`") from None
    if not (len(vectors) == len(chunks) == len(tokens)) or len(window_vectors) != len(owner):
        raise IndexError_(f"index {path.name} is inconsistent ({len(vectors)} vectors, {len(chunks)} chunks); run `qa index --rebuild`")
    data = IndexData(path, manifest, chunks, tokens, docs, library, vectors, window_vectors, owner,
                     _dense_from(path / "dense.faiss", vectors), _dense_from(path / "dense_windows.faiss", window_vectors),
                     bm25, bm25_bigrams)
    rows: dict[str, tuple[int, int]] = {}
    for i, c in enumerate(chunks):  # a document's chunks are contiguous
        lo, _ = rows.get(c.doc_id, (i, i))
        rows[c.doc_id] = (lo, i + 1)
    data.rows = rows
    return data


def ensure(settings, embedder, rebuild: bool = False, progress: bool | None = None) -> IndexData:
    """Load the live index, building or refreshing it when missing, stale or damaged (the
    store's `open`). A refresh re-embeds only documents that changed; `rebuild` re-embeds everything."""
    from .store import Store

    return Store(settings).open(embedder, rebuild=rebuild, progress=progress).data


def load_live(settings, embedder, quiet: bool = False) -> tuple[IndexData | None, bool]:
    """(the live index, whether it is current: same seeds and model, originals intact);
    (None, False) when there is none or it is damaged."""
    from .store import Store

    store = Store(settings)
    gen = store.live_path()
    if gen is None:
        return None, False
    try:
        data = load(gen)
    except IndexError_:
        return None, False
    return data, store._current(data, embedder)[1]


def live_quarantine(settings) -> dict[str, str]:
    """Uploads of the live generation that are not served, with why: those quarantined
    at its commit and those whose original went bad since (missing, changed, undecodable)."""
    from .store import Store

    f = _live_file(settings, "library.json")
    if f is None:
        return {}
    library = Library.from_dict(json.loads(f.read_text(encoding="utf-8")))
    return {**library.quarantined, **Store(settings).verify(library)}
