"""Persisted indexes: FAISS (dense), bm25s over jieba tokens (lexical), the chunk
table, the library (which documents) and a manifest that says what was indexed.

Layout under <data_dir>/index/:
    CURRENT            name of the live generation (replaced atomically)
    LOCK               held (flock) by whoever writes a generation
    gen-<time>-<pid>/  chunks.jsonl, tokens.jsonl, docs.json, library.json,
                       vectors.npy, window_vectors.npy, window_owner.npy,
                       bm25/, bm25_bigrams/, manifest.json (with file checksums)
A new generation is written completely, checksummed, then CURRENT is switched
with os.replace, so a reader never sees half an index, and a writer killed at
any point leaves the last complete generation live. Vectors of documents that
did not change are copied from the previous generation, not re-embedded.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .chunking import CHUNKER_VERSION, chunk_document
from .corpus import Document
from .errors import QAError
from .library import Library, collect_garbage, load_documents, read_mirror, save_mirror
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
        raise IndexError_(f"index at {gen} has no readable manifest; run `qa index --rebuild`") from None
    f = gen / name
    if not f.is_file() or _sha256(f) != manifest.get("files", {}).get(name):
        raise IndexError_(f"index file {f} is corrupted (checksum mismatch); run `qa index --rebuild`")
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
def _vectors_from(previous: IndexData | None, doc: Document):
    """(chunks, tokens, vectors, window vectors, window owners relative to the doc) reused
    from the previous generation when the document is unchanged."""
    if previous is None or previous.docs.get(doc.doc_id, {}).get("sha256") != doc.sha256:
        return None
    rows = [i for i, c in enumerate(previous.chunks) if c.doc_id == doc.doc_id]
    if not rows:
        return None
    lo, hi = rows[0], rows[-1] + 1
    wmask = (previous.window_owner >= lo) & (previous.window_owner < hi)
    return (
        previous.chunks[lo:hi],
        previous.tokens[lo:hi],
        previous.vectors[lo:hi],
        previous.window_vectors[wmask],
        previous.window_owner[wmask] - lo,
    )


def build(settings, embedder, docs: list[Document], library: Library, previous: IndexData | None = None,
          progress: bool | None = None) -> Path:
    """Chunk, embed and index the documents into a new generation and switch CURRENT to it.
    Call under `writer_lock`. Documents unchanged since `previous` keep their vectors."""
    from .lexical import bigrams, tokenize

    from .log import stage

    index_dir = settings.index_dir
    index_dir.mkdir(parents=True, exist_ok=True)
    if previous is not None and not _same(previous.manifest, expected_manifest([], embedder.model_id, embedder.dim), REUSE_KEYS):
        previous = None  # embedded differently: nothing to reuse
    chunks, tokens, vec_parts, wvec_parts, owners = [], [], [], [], []
    fresh: list[tuple[int, list[Chunk]]] = []  # (position in parts, chunks) still to embed
    for d in docs:
        reused = _vectors_from(previous, d)
        if reused is None:
            cs = chunk_document(d)
            fresh.append((len(vec_parts), cs))
            vec_parts.append(None)
            wvec_parts.append(None)
            owners.append(None)
            chunks.append(cs)
            tokens.append([tokenize(f"{c.section} {c.text}") for c in cs])
        else:
            cs, ts, v, wv, wo = reused
            chunks.append(list(cs))
            tokens.append(list(ts))
            vec_parts.append(v)
            wvec_parts.append(wv)
            owners.append(wo)
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
        with stage(name, total=len(texts), unit="passages", bar=progress, label="embedding") as embedding:
            vecs = embedder.encode_passages(texts, stage=embedding)
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

    gen = index_dir / f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    tmp = index_dir / (".tmp-" + gen.name)
    tmp.mkdir()
    try:
        np.save(tmp / "vectors.npy", vectors)
        np.save(tmp / "window_vectors.npy", window_vectors)
        np.save(tmp / "window_owner.npy", window_owner)
        for name, vecs in (("dense.faiss", vectors), ("dense_windows.faiss", window_vectors)):
            if dense_kind(len(vecs)) != "flat":  # an ANN index is trained once and saved with the generation
                import faiss

                faiss.write_index(dense_index(vecs), str(tmp / name))
        _save_bm25(flat_tokens, tmp / "bm25")
        _save_bm25([bigrams(c.text) for c in flat_chunks], tmp / "bm25_bigrams")
        _write_lines(tmp / "chunks.jsonl", [c.to_dict() for c in flat_chunks])
        _write_lines(tmp / "tokens.jsonl", flat_tokens)
        counts = {}
        for c in flat_chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        meta = {
            d.doc_id: {**d.meta(), "chunks": counts.get(d.doc_id, 0), "chars": len(d.text), "sha256": d.sha256,
                       "source": "upload" if d.doc_id in library.uploads else "seed"}
            for d in docs
        }
        (tmp / "docs.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "library.json").write_text(json.dumps(library.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        manifest = expected_manifest(docs, embedder.model_id, dim)
        manifest["chunks"] = len(flat_chunks)
        manifest["documents"] = len(docs)
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        manifest["files"] = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        _fsync_tree(tmp)
        os.replace(tmp, gen)
        pointer = index_dir / f".CURRENT.{os.getpid()}"
        with open(pointer, "w") as f:
            f.write(gen.name)
            f.flush()
            os.fsync(f.fileno())
        os.replace(pointer, index_dir / "CURRENT")  # the commit point
        _fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    save_mirror(settings, library)
    _cleanup(index_dir, keep=gen)
    collect_garbage(settings, library)
    return gen


def _write_lines(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_bm25(tokens: list[list[str]], path: Path) -> None:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    retriever.save(str(path), show_progress=False)


def _cleanup(index_dir: Path, keep: Path) -> None:
    for p in index_dir.iterdir():
        if p.is_dir() and p != keep and (p.name.startswith("gen-") or p.name.startswith(".tmp-")):
            shutil.rmtree(p, ignore_errors=True)


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
        raise IndexError_(f"index at {path} has no readable manifest; run `qa index --rebuild`") from None
    if manifest.get("index_version") != INDEX_VERSION:
        raise IndexError_(f"index at {path} has an older layout (version {manifest.get('index_version')}); run `qa index`")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file() or _sha256(f) != digest:
                raise IndexError_(f"index file {f} is corrupted (checksum mismatch); run `qa index --rebuild`")
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
        raise IndexError_(f"index at {path} cannot be read ({str(e).splitlines()[0][:120]}); run `qa index --rebuild`") from None
    if not (len(vectors) == len(chunks) == len(tokens)) or len(window_vectors) != len(owner):
        raise IndexError_(f"index at {path} is inconsistent ({len(vectors)} vectors, {len(chunks)} chunks); run `qa index --rebuild`")
    return IndexData(path, manifest, chunks, tokens, docs, library, vectors, window_vectors, owner,
                     _dense_from(path / "dense.faiss", vectors), _dense_from(path / "dense_windows.faiss", window_vectors),
                     bm25, bm25_bigrams)


def ensure(settings, embedder, rebuild: bool = False, progress: bool | None = None) -> IndexData:
    """Load the live index, building or refreshing it when missing, stale or damaged.
    A refresh re-embeds only documents that changed; `rebuild` re-embeds everything."""
    if not rebuild:
        data, current = load_live(settings, embedder)
        if current:
            return data
    with writer_lock(settings):
        previous = None
        if not rebuild:
            previous, current = load_live(settings, embedder, quiet=True)  # another process may have just built it
            if current:
                return previous
        from .log import stage

        library = committed_library(settings)
        docs = load_documents(settings, library)
        with stage(f"indexing {len(docs)} documents into {settings.index_dir}"):
            gen = build(settings, embedder, docs, library, previous=previous, progress=progress)
        with stage("loading the new index"):
            return load(gen)


def load_live(settings, embedder, quiet: bool = False) -> tuple[IndexData | None, bool]:
    """(the live index, whether it matches the corpus and model). A stale but intact
    index is still returned, for its vectors; a damaged one is reported and dropped."""
    from .log import stage

    gen = current_generation(settings.index_dir)
    if gen is None:
        return None, False
    try:
        with stage(f"loading the index {gen.name}"):
            data = load(gen)
    except IndexError_ as e:
        if not quiet:
            from .log import configured, log

            message = f"{e.args[0].split('; run')[0]}; rebuilding"
            if configured():
                log.warning("%s", message)
            else:  # used as a library, without the CLI's logging: still say it
                print(f"qa: {message}", file=sys.stderr)
        return None, False
    docs = load_documents(settings, data.library)
    return data, _same(data.manifest, expected_manifest(docs, embedder.model_id, embedder.dim))
