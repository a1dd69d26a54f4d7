"""Persisted indexes: FAISS (dense), BM25 over jieba tokens and over character bigrams
(lexical), the chunk table, the library (which documents) and a manifest that says what
was indexed.

Layout under <data_dir>/index/:
    CURRENT            name of the live generation (replaced atomically); PREVIOUS: the fallback
    LOCK               held (flock) by whoever writes a generation
    gen-<time>-<pid>/  manifest.json (the segments it serves, its documents in row order,
                       file checksums), library.json, and at most one segment/ of its own:
                       chunks.jsonl, tokens.jsonl, docs.json, vectors.npy, window_vectors.npy,
                       window_owner.npy, words/ and grams/ (term counts + vocabulary; the BM25
                       weights are computed from them, bit for bit what bm25s.index gives),
                       manifest.json (with file checksums); dense*.faiss when the library is
                       large enough for an ANN index (trained once per generation)
A generation is a list of immutable segments: those of the generation before it that still
hold live documents (referenced by name, checked by their manifest's sha256, never copied)
plus one new segment with the documents this write embedded. So a write costs the changed
documents, not the library. Segments merge as they accumulate (MERGE_FACTOR of one size
class become one, a mostly-deleted segment is rewritten), so a library of any history stays
a few dozen segments and every row is rewritten O(log n) times.
This module only builds a generation folder (`stage`) and loads one (`load`); qa/store.py
owns the rest: the lock, the commit (rename + one atomic switch of CURRENT), the PREVIOUS
fallback and garbage collection (a generation folder stays while a live generation uses
its segment). Generations of the older, single-folder layout (version 3) still load, and
the first write on one turns it into a segment.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .chunking import CHUNKER_VERSION, chunk_document
from .corpus import Document
from .errors import QAError
from .library import Library, read_mirror
from .records import Chunk
from .text import file_sha256 as _sha256

INDEX_VERSION = "4"
READABLE = ("3", "4")  # 3: one folder of whole-library files, read (and written on) as one segment
MERGE_FACTOR = 10  # this many segments of one size class (rows, powers of 10) are merged into one
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


CORPUS_HASH = "sum256"  # how a manifest's corpus_hash is made (manifest "corpus_hash_kind"; before: one sha256 over all)


def _digest(doc_id: str, sha: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{doc_id}\0{sha}\0".encode()).digest(), "big")


def corpus_hash(docs: list[Document]) -> str:
    """What the corpus is, as one value: the sum modulo 2^256 of each document's sha256(doc_id, sha256), so a
    write updates it from the previous generation's by the documents it changed (`_corpus_hash`)."""
    return f"{sum(_digest(d.doc_id, d.sha256) for d in docs) % (1 << 256):064x}"


def _corpus_hash(previous, before: dict, now: dict, fresh: list[str]) -> str | None:
    """The corpus hash of a generation holding `now` (doc_id -> record with its sha256), from the previous one's
    (`before`) by the documents that left, came or changed: None when the previous one's is of another kind."""
    if previous is None or previous.manifest.get("corpus_hash_kind") != CORPUS_HASH:
        return None
    try:
        x = int(previous.manifest["corpus_hash"], 16)
    except (KeyError, TypeError, ValueError):
        return None
    for k in before.keys() - now.keys():
        x -= _digest(k, before[k]["sha256"])
    for k in fresh:
        if k in before:
            x -= _digest(k, before[k]["sha256"])
        x += _digest(k, now[k]["sha256"])
    return f"{x % (1 << 256):064x}"


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
    lex: tuple | None = None  # (Lexical words, Lexical bigrams): the term counts the two BM25 indexes come from
    rows: dict | None = None  # doc_id -> (first row, end row)
    segments: list | None = None  # [{"name", "docs", "rows", "live", "digest"}]; None: the older layout
    damaged: dict | None = None  # doc_id -> why, for the documents a partial load left out
    kept: list | None = None  # a `Kept` record of every document, in `docs` order (made by the write that staged it)


def expected_manifest(docs: list[Document], model_id: str, dim: int, corpus: str | None = None) -> dict:
    return {
        "index_version": INDEX_VERSION,
        "corpus_hash": corpus if corpus is not None else corpus_hash(docs),
        "corpus_hash_kind": CORPUS_HASH,
        "model_id": model_id,
        "dimension": dim,
        "chunker_version": CHUNKER_VERSION,
        "embed_template": EMBED_TEMPLATE,
        "window": WINDOW,
    }


def _same(a: dict, b: dict, keys=REUSE_KEYS + ("corpus_hash",)) -> bool:
    """Whether two manifests agree on `keys` (every readable layout embeds alike)."""
    return all((a.get(k) in READABLE and b.get(k) in READABLE) if k == "index_version" else a.get(k) == b.get(k)
               for k in keys)


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
    _check(gen, {name: _manifest(gen).get("files", {}).get(name)}, gen.name)
    return gen / name


def _live_segment_files(settings, name: str):
    """(generation manifest, [(segment entry, its manifest, the checked file `name`)]) of the
    live generation; None without an index; the older layout: (manifest, None)."""
    gen = current_generation(settings.index_dir)
    if gen is None:
        return None
    manifest = _manifest(gen)
    if "segments" not in manifest:
        return manifest, None
    out = []
    for entry in manifest["segments"]:
        folder, m = _segment_manifest(settings.index_dir, entry)
        _check(folder, {name: m.get("files", {}).get(name)}, f"{entry['name']}/segment")
        out.append((entry, m, folder / name))
    return manifest, out


def live_documents(settings) -> dict[str, dict] | None:
    """doc_id -> metadata of the live generation (seeds and uploads), without loading the
    model or the vectors; None when there is no index yet."""
    found = _live_segment_files(settings, "docs.json")
    if found is None:
        return None
    manifest, parts = found
    if parts is None:
        return json.loads(_live_file(settings, "docs.json").read_text(encoding="utf-8"))
    metas = {}
    for entry, _, f in parts:
        m = json.loads(f.read_text(encoding="utf-8"))
        metas.update({k: m[k] for k in entry["docs"]})
    return {k: metas[k] for k in manifest["order"] if k in metas}


def live_chunks(settings) -> list[Chunk] | None:
    """The chunks of the live generation, as they are cited; None when there is no index yet."""
    found = _live_segment_files(settings, "chunks.jsonl")
    if found is None:
        return None
    manifest, parts = found
    if parts is None:
        f = _live_file(settings, "chunks.jsonl")
        return [Chunk(**json.loads(line)) for line in f.read_text(encoding="utf-8").splitlines()]
    rows = {}
    for entry, m, f in parts:
        lines = f.read_text(encoding="utf-8").splitlines()
        for k in entry["docs"]:
            lo, hi = m["docs"][k]
            rows[k] = lines[lo:hi]
    return [Chunk(**json.loads(line)) for k in manifest["order"] if k in rows for line in rows[k]]


# -------------------------------------------------------------------- build
class Kept(NamedTuple):
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


def _span(previous: IndexData, doc_id: str) -> tuple[int, int] | None:
    """The rows of a document in a generation (its chunks are contiguous)."""
    rows = getattr(previous, "rows", None)
    if rows is None:
        rows = {}
        for i, c in enumerate(previous.chunks):
            lo, _ = rows.get(c.doc_id, (i, i))
            rows[c.doc_id] = (lo, i + 1)
        previous.rows = rows
    return rows.get(doc_id)


def _lexicals(previous: IndexData) -> tuple["Lexical", "Lexical"]:
    """A generation's term counts (words, bigrams); counted once from its tokens and texts
    when it was written before generations kept them."""
    from .lexical import bigrams

    if previous.lex is None:
        previous.lex = (Lexical.count(previous.tokens), Lexical.count(bigrams(c.text) for c in previous.chunks))
    return previous.lex


def build(settings, embedder, docs, library: Library, previous: IndexData | None = None,
          progress: bool | None = None) -> Path:
    """Build a generation and make it live (the store's commit); kept for callers of the
    old name. New code: `qa.store.Store(settings).transaction()`."""
    from .store import Store

    return Store(settings).commit_built(stage_generation(settings.index_dir, embedder, docs, library, previous, progress=progress),
                                        library, keep_previous=False)


def stage_generation(index_dir: Path, embedder, docs, library: Library, previous: IndexData | None = None,
                     progress: bool | None = None, chunked: dict | None = None, cancel=None) -> Path:
    """`stage`, for callers that only want the folder."""
    return stage(index_dir, embedder, docs, library, previous, progress=progress, chunked=chunked, cancel=cancel).path


def stage(index_dir: Path, embedder, docs, library: Library, previous: IndexData | None = None,
          progress: bool | None = None, chunked: dict | None = None, cancel=None) -> IndexData:
    """Chunk, embed and index `docs` into a new, complete, checksummed generation folder
    under `index_dir` (named .tmp-gen-…, not live: the store renames it and switches the
    pointer), and return it loaded (its `path` the staged folder). `docs` are Documents
    (chunked and embedded unless unchanged since `previous`) or `Kept` records (carried
    over from `previous`). `chunked`: doc_id -> chunks already made by the ingest path.
    `cancel()` returns a reason to stop, checked per batch.

    What a write costs does not grow with the library where it can be helped: unchanged
    documents' rows are carried over as a few contiguous runs (chunks, tokens, vectors,
    sentence windows, term counts) in memory and referenced on disk (their segments are
    not copied: only the new documents' rows are written, as one segment, see `_plan`),
    only the new documents are tokenised and counted, and the BM25 weights are computed
    from the counts in one vectorised pass. Nothing is read back after the write."""
    from .lexical import bigrams, tokenize
    from .log import stage as log_stage
    from .store import write_file

    index_dir.mkdir(parents=True, exist_ok=True)
    if previous is not None and not _same(previous.manifest, expected_manifest([], embedder.model_id, embedder.dim), REUSE_KEYS):
        previous = None  # embedded differently: nothing to reuse
    parts: list[tuple] = []  # ("prev", lo, hi): rows of `previous`, runs merged; ("new", i): fresh[i]
    fresh: list[list[Chunk]] = []
    metas: dict[str, dict] = {}
    counts: dict[str, int] = {}
    fresh_ids: list[str] = []  # embedded by this write
    before = previous.docs if previous is not None else {}
    prev_rows = None
    if previous is not None:
        _span(previous, "")  # the previous generation's rows by document (kept with it)
        prev_rows = previous.rows
    for d in docs:
        old = before.get(d.doc_id)
        if type(d) is Kept and old is d.meta and prev_rows is not None:
            span = prev_rows.get(d.doc_id)  # carried over as it was (every document but the written ones): its rows
        elif old is not None and old.get("sha256") == d.sha256:
            span = _span(previous, d.doc_id)
        else:
            span = None
        if span is None:
            fresh_ids.append(d.doc_id)
            if isinstance(d, Kept):
                raise IndexError_(f"{d.doc_id}: nothing to copy it from; run `qa index --rebuild`")
            cs = (chunked or {}).get(d.doc_id) or chunk_document(d)
            parts.append(("new", len(fresh)))
            fresh.append(cs)
            metas[d.doc_id] = {**d.meta(), "chars": len(d.text), "sha256": d.sha256}
            counts[d.doc_id] = len(cs)
        else:
            lo, hi = span
            if parts and parts[-1][0] == "prev" and parts[-1][2] == lo:
                parts[-1] = ("prev", parts[-1][1], hi)
            else:
                parts.append(("prev", lo, hi))
            metas[d.doc_id] = old  # shared with the previous generation, never changed in place
            counts[d.doc_id] = hi - lo
    if not any(counts.values()):
        raise IndexError_("the corpus has no text to index")

    new = [c for cs in fresh for c in cs]
    new_tokens = [tokenize(f"{c.section} {c.text}") for c in new]
    starts = np.cumsum([0] + [len(cs) for cs in fresh])
    dim = embedder.dim
    cvecs = np.zeros((0, dim), dtype=np.float32)
    wvecs, wowner = np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
    if new:
        wtexts, owner_list = [], []
        for row, c in enumerate(new):
            for w in windows(c):
                wtexts.append(embed_text(Chunk(**{**c.to_dict(), "text": w})))
                owner_list.append(row)
        kept = len(docs) - len(fresh)
        texts = [embed_text(c) for c in new] + wtexts
        name = (f"embedding {len(texts)} passages ({len(new)} chunks, {len(wtexts)} sentence windows) of {len(fresh)} "
                f"documents with {embedder.model_id}" + (f"; {kept} unchanged documents reused" if kept else ""))
        with log_stage(name, total=len(texts), unit="passages", bar=progress, label="embedding") as embedding:
            vecs = embedder.encode_passages(texts, stage=_Checked(embedding, cancel) if cancel else embedding)
        vecs = np.asarray(vecs, dtype=np.float32).reshape(-1, dim)
        cvecs, wvecs = vecs[: len(new)], vecs[len(new) :]
        wowner = np.asarray(owner_list, dtype=np.int64)

    words0, grams0 = _lexicals(previous) if previous is not None else (None, None)
    words_new = Lexical.count(new_tokens, words0)
    grams_new = Lexical.count((bigrams(c.text) for c in new), grams0)
    chunks, tokens, vparts, wparts, oparts, wtf, gtf = [], [], [], [], [], [], []
    row = 0
    for part in parts:
        if part[0] == "prev":
            _, lo, hi = part
            chunks.extend(previous.chunks[lo:hi])
            tokens.extend(previous.tokens[lo:hi])
            vparts.append(previous.vectors[lo:hi])
            wlo, whi = np.searchsorted(previous.window_owner, [lo, hi])  # owners are ascending
            wparts.append(previous.window_vectors[wlo:whi])
            oparts.append(previous.window_owner[wlo:whi] - lo + row)
            wtf.append(words0.tf[lo:hi])
            gtf.append(grams0.tf[lo:hi])
        else:
            a, b = int(starts[part[1]]), int(starts[part[1] + 1])
            lo, hi = a, b
            chunks.extend(new[a:b])
            tokens.extend(new_tokens[a:b])
            vparts.append(cvecs[a:b])
            wlo, whi = np.searchsorted(wowner, [a, b])
            wparts.append(wvecs[wlo:whi])
            oparts.append(wowner[wlo:whi] - a + row)
            wtf.append(words_new.tf[a:b])
            gtf.append(grams_new.tf[a:b])
        row += hi - lo
    vectors = np.ascontiguousarray(np.concatenate(vparts), dtype=np.float32).reshape(-1, dim)
    window_vectors = np.ascontiguousarray(np.concatenate(wparts), dtype=np.float32).reshape(-1, dim)
    window_owner = np.concatenate(oparts).astype(np.int64)
    words = Lexical.stack(words_new, wtf)
    grams = Lexical.stack(grams_new, gtf)
    rows, row, meta, records = {}, 0, {}, []
    uploads = library.uploads
    for d in docs:  # chunks are laid out in the order of `docs`
        k = d.doc_id
        n = counts[k]
        rows[k] = (row, row + n)
        row += n
        m, source = metas[k], "upload" if k in uploads else "seed"
        m = meta[k] = m if m.get("chunks") == n and m.get("source") == source else {**m, "chunks": n, "source": source}
        records.append(d if type(d) is Kept and d.meta is m else Kept(k, m))
    # segments are referenced by name inside one index folder: a previous generation elsewhere is copied from
    same_folder = previous is not None and Path(previous.path).parent.resolve() == index_dir.resolve()
    kept, written = _plan(previous.segments if same_folder else None, fresh_ids, rows, list(meta))

    gen = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    tmp = index_dir / (".tmp-" + gen)
    tmp.mkdir()
    try:
        digests: dict[str, str] = {}

        def put(name: str, data: bytes) -> None:
            write_file(tmp / name, data)
            digests[name] = hashlib.sha256(data).hexdigest()

        segments = list(kept)
        if written:
            segments.append(_write_segment(tmp / "segment", gen, written, rows, chunks, tokens, vectors,
                                           window_vectors, window_owner, words, grams, meta))
        dense = {}
        for name, vecs in (("dense.faiss", vectors), ("dense_windows.faiss", window_vectors)):
            dense[name] = dense_index(vecs)
            if dense_kind(len(vecs)) != "flat":  # an ANN index is trained once and saved with the generation
                import faiss

                put(name, faiss.serialize_index(dense[name]).tobytes())
        put("library.json", library.to_json())
        manifest = expected_manifest(docs, embedder.model_id, dim, corpus=_corpus_hash(previous, before, meta, fresh_ids))
        manifest["chunks"] = len(chunks)
        manifest["documents"] = len(docs)
        manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        manifest["order"] = [d.doc_id for d in docs]
        manifest["segments"] = segments
        manifest["files"] = dict(sorted(digests.items()))
        # one line: json's C encoder (an indented dump takes its pure-Python path, ~10x slower)
        write_file(tmp / "manifest.json", json.dumps(manifest, ensure_ascii=False))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    data = IndexData(tmp, manifest, chunks, tokens, meta, library, vectors, window_vectors, window_owner,
                     dense["dense.faiss"], dense["dense_windows.faiss"], words.bm25(), grams.bm25(), lex=(words, grams),
                     segments=segments)
    data.rows = rows
    data.kept = records
    return data


def _level(rows: int) -> int:
    return int(math.log10(max(rows, 1)))


def _plan(previous: list | None, fresh: list[str], rows: dict, order: list[str]) -> tuple[list[dict], list[str]]:
    """(segments carried over as they are, doc_ids of the one segment this write writes).
    The written segment holds the fresh documents, plus the live documents of segments it
    absorbs: every segment when the previous generation has none (older layout or first
    build), a segment mostly deleted (its live rows under half), and, as long as some size
    class holds MERGE_FACTOR segments with the written one among them, that class."""
    n = lambda ids: sum(rows[k][1] - rows[k][0] for k in ids)  # noqa: E731
    if previous is None:
        return [], list(order)
    live = set(order)
    kept, written, fresh_set = [], list(fresh), set(fresh)
    for seg in previous:
        if fresh_set.isdisjoint(seg["docs"]) and live.issuperset(seg["docs"]) and "live" in seg:
            kept.append(seg)  # untouched by this write (set operations in C: no loop over its documents)
            continue
        ids = [k for k in seg["docs"] if k in live and k not in fresh_set]
        if not ids:
            continue
        if 2 * n(ids) < seg["rows"]:
            written.extend(ids)  # mostly deleted: rewritten with the new rows, its dead rows dropped
            continue
        kept.append({**seg, "docs": ids, "live": n(ids)})
    while written:
        level = _level(n(written))
        same = [s for s in kept if _level(s["live"]) == level]
        if len(same) + 1 < MERGE_FACTOR:
            break
        for s in same:
            written.extend(s["docs"])
        kept = [s for s in kept if _level(s["live"]) != level]
    if len(written) <= 32:  # a small write: its few documents looked up in the order, no table of all of them
        return kept, sorted(written, key=order.index)
    position = {k: i for i, k in enumerate(order)}
    return kept, sorted(written, key=position.__getitem__)


def _write_segment(folder: Path, name: str, ids: list[str], rows: dict, chunks, tokens, vectors, window_vectors,
                   window_owner, words: "Lexical", grams: "Lexical", meta: dict) -> dict:
    """Write the rows of documents `ids` as one immutable segment; its entry for a manifest."""
    from .store import write_file

    take = np.concatenate([np.arange(*rows[k]) for k in ids]).astype(np.int64)
    spans, lo = {}, 0
    for k in ids:
        spans[k] = [lo, lo + rows[k][1] - rows[k][0]]
        lo = spans[k][1]
    wsel = np.concatenate([np.arange(*np.searchsorted(window_owner, rows[k])) for k in ids]).astype(np.int64)
    inv = np.full(len(chunks), -1, dtype=np.int64)
    inv[take] = np.arange(len(take))
    folder.mkdir()
    digests: dict[str, str] = {}

    def put(file: str, data) -> None:
        (folder / file).parent.mkdir(exist_ok=True)
        write_file(folder / file, data)
        digests[file] = hashlib.sha256(data).hexdigest()

    def npy(arr) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    put("vectors.npy", npy(np.ascontiguousarray(vectors[take])))
    put("window_vectors.npy", npy(np.ascontiguousarray(window_vectors[wsel])))
    put("window_owner.npy", npy(inv[window_owner[wsel]]))
    put("chunks.jsonl", "".join(json.dumps(chunks[i].to_dict(), ensure_ascii=False) + "\n" for i in take).encode())
    put("tokens.jsonl", "".join(json.dumps(tokens[i], ensure_ascii=False) + "\n" for i in take).encode())
    for sub, lex in (("words", words), ("grams", grams)):
        for file, digest in _save_bm25(lex.part(take), folder / sub).items():
            digests[f"{sub}/{file}"] = digest
    put("docs.json", json.dumps({k: meta[k] for k in ids}, ensure_ascii=False).encode())
    body = json.dumps({"name": name, "docs": spans, "files": dict(sorted(digests.items()))}, ensure_ascii=False).encode()
    write_file(folder / "manifest.json", body)
    return {"name": name, "docs": list(ids), "rows": len(take), "live": len(take), "digest": hashlib.sha256(body).hexdigest()}


def _rows(chunks) -> dict[str, tuple[int, int]]:
    rows: dict[str, tuple[int, int]] = {}
    for i, c in enumerate(chunks):  # a document's chunks are contiguous
        lo, _ = rows.get(c.doc_id, (i, i))
        rows[c.doc_id] = (lo, i + 1)
    return rows


def _save_bm25(lex: "Lexical", path: Path) -> dict[str, str]:
    """The term counts behind a BM25 index (its weights are computed from them when loaded):
    file name -> sha256."""
    return lex.save(path)


# ------------------------------------------------------- lexical (BM25) counts
K1, B = 1.5, 0.75  # bm25s' defaults (method "lucene"), as every generation was built with


class Lexical:
    """The term counts behind one BM25 index: a chunk x token matrix of counts (CSR, rows in
    chunk order) and its vocabulary. Kept with a generation so that a write carries the
    unchanged documents' rows over and counts only the new ones; the BM25 weights are then
    computed from the counts for the whole library at once (vectorised), exactly as
    bm25s.BM25.index computes them: IDF and the average length change with every document."""

    def __init__(self, vocab: list[str], tf, ids: dict[str, int] | None = None):
        self.vocab = vocab  # column -> token
        self.tf = tf  # scipy.sparse.csr_matrix, int32 counts
        self._ids = ids

    @property
    def ids(self) -> dict[str, int]:
        """token -> column (do not change it: copy)."""
        if self._ids is None:
            self._ids = {t: i for i, t in enumerate(self.vocab)}
        return self._ids

    @property
    def rows(self) -> int:
        return self.tf.shape[0]

    @classmethod
    def count(cls, token_lists, base: "Lexical | None" = None) -> "Lexical":
        """Count `token_lists` (one list per row) over a copy of `base`'s vocabulary, extended
        at its end with the tokens it lacks."""
        import scipy.sparse as sp

        vocab = list(base.vocab) if base is not None else []
        ids = dict(base.ids) if base is not None else {}
        indptr, cols, counts = [0], [], []
        for tokens in token_lists:
            row: dict[int, int] = {}
            for t in tokens:
                i = ids.get(t)
                if i is None:
                    i = ids[t] = len(vocab)
                    vocab.append(t)
                row[i] = row.get(i, 0) + 1
            cols.extend(row)
            counts.extend(row.values())
            indptr.append(len(cols))
        tf = sp.csr_matrix((np.asarray(counts, dtype=np.int32), np.asarray(cols, dtype=np.int32),
                            np.asarray(indptr, dtype=np.int64)), shape=(len(indptr) - 1, len(vocab)))
        return cls(vocab, tf, ids)

    def widen(self, n_vocab: int):
        """This matrix with `n_vocab` columns (a vocabulary extended at its end)."""
        import scipy.sparse as sp

        t = self.tf
        return sp.csr_matrix((t.data, t.indices, t.indptr), shape=(t.shape[0], n_vocab))

    @classmethod
    def stack(cls, base: "Lexical", parts) -> "Lexical":
        """Rows from several matrices over `vocab` (or a prefix of it), in order; tokens no
        row has any more are dropped from the vocabulary (as a rebuild would never see them)."""
        import scipy.sparse as sp

        vocab, ids = base.vocab, base.ids
        n = len(vocab)
        parts = [p for p in parts if p.shape[0]]
        if not parts:
            return cls([], sp.csr_matrix((0, 0), dtype=np.int32))
        tf = sp.vstack([sp.csr_matrix((p.data, p.indices, p.indptr), shape=(p.shape[0], n)) for p in parts],
                       format="csr", dtype=np.int32)
        df = np.bincount(tf.indices, minlength=n)
        if (df == 0).any():
            keep = df > 0
            lut = (np.cumsum(keep) - 1).astype(np.int32)
            tf = sp.csr_matrix((tf.data, lut[tf.indices], tf.indptr), shape=(tf.shape[0], int(keep.sum())))
            vocab, ids = [t for t, k in zip(vocab, keep) if k], None
        return cls(vocab, tf, ids)

    def bm25(self):
        """A bm25s.BM25 (lucene) over these counts, with the weights bm25s.index gives the
        same token lists (bit for bit: same formula, same float types, same order of operations)."""
        import bm25s

        tf = self.tf
        n, n_vocab = tf.shape
        counts = np.diff(tf.indptr)
        row = np.repeat(np.arange(n, dtype=np.int64), counts)
        lengths = np.bincount(row, weights=tf.data, minlength=n).astype(np.int64)  # len(tokens) of each row
        avg = lengths.mean() if n else np.float64(0)
        df = np.bincount(tf.indices, minlength=n_vocab)
        # math.log, as bm25s computes it, once per distinct document frequency, spread in one pass
        distinct, which = np.unique(df, return_inverse=True)
        logs = np.array([math.log(1 + (n - int(k) + 0.5) / (int(k) + 0.5)) if k else 0.0 for k in distinct.tolist()],
                        dtype=np.float64).astype(np.float32)
        idf = logs[which] if n_vocab else np.zeros(0, dtype=np.float32)
        t = tf.data.astype(np.float32).astype(np.float64)
        norm = K1 * ((1 - B) + B * lengths[row].astype(np.float64) / avg)
        weights = (idf[tf.indices].astype(np.float64) * (t / (norm + t))).astype(np.float32)
        csc = sp_csc(weights, tf.indices, tf.indptr, (n, n_vocab))
        model = bm25s.BM25(k1=K1, b=B, method="lucene")
        model.scores = {"data": csc[0], "indices": csc[1], "indptr": csc[2], "num_docs": n}
        vocab = dict(self.ids)  # token -> column, 0 … n_vocab - 1
        if "" not in vocab:
            vocab[""] = n_vocab
        model.vocab_dict = vocab
        model.unique_token_ids_set = set(range(len(vocab)))
        model.nonoccurrence_array = None
        return model

    def save(self, path: Path) -> dict[str, str]:
        """Write counts.npz and vocab.json into a new folder: file name -> sha256."""
        from .store import write_file

        path.mkdir()
        buf = io.BytesIO()
        np.savez(buf, data=self.tf.data, indices=self.tf.indices, indptr=self.tf.indptr,
                 shape=np.asarray(self.tf.shape, dtype=np.int64))
        files = {"counts.npz": buf.getvalue(), "vocab.json": json.dumps(self.vocab, ensure_ascii=False).encode()}
        for name, data in files.items():
            write_file(path / name, data)
        return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}

    def part(self, take: np.ndarray) -> "Lexical":
        """The rows `take`, over the vocabulary they use (in this vocabulary's order)."""
        import scipy.sparse as sp

        tf = self.tf[take]
        cols = np.unique(tf.indices)
        lut = np.full(self.tf.shape[1], -1, dtype=np.int32)
        lut[cols] = np.arange(len(cols), dtype=np.int32)
        tf = sp.csr_matrix((tf.data.astype(np.int32), lut[tf.indices], tf.indptr.astype(np.int64)),
                           shape=(len(take), len(cols)))
        return Lexical([self.vocab[c] for c in cols], tf)

    @classmethod
    def concat(cls, parts: list["Lexical"], take: np.ndarray | None = None) -> "Lexical":
        """The rows of several matrices, each over its own vocabulary, one after the other over
        the union of the vocabularies (first seen first); then only the rows `take`, with the
        tokens none of them has dropped."""
        import scipy.sparse as sp

        vocab: list[str] = []
        ids: dict[str, int] = {}
        mats = []
        for p in parts:
            lut = np.empty(len(p.vocab), dtype=np.int32)
            for j, t in enumerate(p.vocab):
                i = ids.get(t)
                if i is None:
                    i = ids[t] = len(vocab)
                    vocab.append(t)
                lut[j] = i
            mats.append((p.tf.data, lut[p.tf.indices] if len(lut) else p.tf.indices, p.tf.indptr, p.tf.shape[0]))
        mats = [sp.csr_matrix((d, c, q), shape=(r, len(vocab))) for d, c, q, r in mats if r]
        if not mats:
            return cls([], sp.csr_matrix((0, 0), dtype=np.int32))
        tf = sp.vstack(mats, format="csr", dtype=np.int32)
        if take is not None:
            tf = tf[take]
        return cls.stack(cls(vocab, tf, ids), [tf])

    @classmethod
    def load(cls, path: Path) -> "Lexical":
        import scipy.sparse as sp

        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        with np.load(path / "counts.npz") as z:
            shape = tuple(int(x) for x in z["shape"])
            tf = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
        if shape[1] != len(vocab):
            raise ValueError(f"{path.name}: {shape[1]} columns for {len(vocab)} tokens")
        return cls(vocab, tf)


def sp_csc(data: np.ndarray, cols: np.ndarray, indptr: np.ndarray, shape):
    """(data, row indices, column pointers) of the CSC form of a CSR matrix: rows ascending
    within each column, as bm25s lays its index out (int32 rows, int64 pointers)."""
    import scipy.sparse as sp

    csc = sp.csr_matrix((data, cols, indptr), shape=shape).tocsc()
    csc.sort_indices()
    return csc.data.astype(np.float32, copy=False), csc.indices.astype(np.int32, copy=False), csc.indptr.astype(np.int64)


# --------------------------------------------------------------------- load
# Index type by size (bench/scale.py, README "Scale"): exact search costs 1.1 ms at 20k
# vectors, 3.9 ms at 50k and 23 ms at 200k per query; IVF with nprobe 32 stays under
# 1 ms at 200k with recall@10 0.98, where HNSW (M 32, efSearch 128) fell to 0.75.
EXACT_UP_TO = 50_000
IVF_NPROBE = 32


def dense_kind(n: int) -> str:
    return "flat" if n <= EXACT_UP_TO else "ivf"


class Flat:
    """Exact inner-product search over the vectors in memory, answering as faiss' `search`
    does ((scores, rows), best first, rows -1 where fewer than k exist). faiss' flat index
    keeps a copy of every vector: building it copied the whole library's vectors at every
    write (1.2 ms of a small upload into 1,000 documents, issue 13) and doubled their memory.
    Here the search reads the generation's own array: one matrix product, `argpartition`,
    a sort of the k best (faster than faiss' flat index up to 10k vectors, 5.0 against
    4.2 ms at 50k; the same rows, scores within 1e-5: tests/test_retrieval.py)."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        n, k = len(self.vectors), max(0, int(k))
        D = np.full((len(q), k), -np.finfo(np.float32).max, dtype=np.float32)
        I = np.full((len(q), k), -1, dtype=np.int64)
        if not n or k <= 0:
            return D, I
        scores = q @ self.vectors.T
        take = min(k, n)
        for j, s in enumerate(scores):
            rows = np.argpartition(-s, take - 1)[:take] if take < n else np.arange(n)
            rows.sort()  # equal scores: the lower row first
            best = rows[np.argsort(-s[rows], kind="stable")]
            D[j, :take], I[j, :take] = s[best], best
        return D, I


def dense_index(vectors: np.ndarray):
    """Inner-product search over normalised vectors (cosine): exact up to EXACT_UP_TO
    vectors (`Flat`, over the array itself), faiss IVF (4·sqrt(n) lists, nprobe 32) above."""
    n, d = vectors.shape
    if dense_kind(n) == "flat":
        return Flat(vectors)
    import faiss

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


def _manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        raise IndexError_(f"index {path.name} has no readable manifest; run `qa index --rebuild`") from None
    if manifest.get("index_version") not in READABLE:
        raise IndexError_(f"index {path.name} has an older layout (version {manifest.get('index_version')}); run `qa index`")
    return manifest


def _check(folder: Path, files: dict, label: str) -> None:
    for name, digest in files.items():
        f = folder / name
        if not f.is_file() or _sha256(f) != digest:
            raise IndexError_(f"index file {label}/{name} is corrupted (checksum mismatch); run `qa index --rebuild`")


def _cannot(label: str, e: Exception) -> IndexError_:
    return IndexError_(f"index {label} cannot be read ({str(e).splitlines()[0][:120]}); run `qa index --rebuild`")


@dataclass
class _Segment:
    spans: dict  # doc_id -> [lo, hi) rows in the segment
    chunks: list
    tokens: list
    meta: dict
    vectors: np.ndarray
    window_vectors: np.ndarray
    window_owner: np.ndarray
    words: "Lexical"
    grams: "Lexical"


def _segment_manifest(index_dir: Path, entry: dict) -> tuple[Path, dict]:
    """A segment's folder and manifest, checked against the sha256 its generation recorded."""
    folder = index_dir / entry["name"] / "segment"
    label = f"{entry['name']}/segment"
    try:
        body = (folder / "manifest.json").read_bytes()
    except OSError:
        raise IndexError_(f"index segment {label} is missing; run `qa index --rebuild`") from None
    if hashlib.sha256(body).hexdigest() != entry.get("digest"):
        raise IndexError_(f"index file {label}/manifest.json is corrupted (checksum mismatch); run `qa index --rebuild`")
    try:
        return folder, json.loads(body)
    except ValueError as e:
        raise _cannot(label, e) from None


def _read_segment(index_dir: Path, entry: dict, verify: bool) -> _Segment:
    folder, m = _segment_manifest(index_dir, entry)
    label = f"{entry['name']}/segment"
    if verify:
        _check(folder, m.get("files", {}), label)
    try:
        seg = _Segment(
            spans={k: tuple(v) for k, v in m["docs"].items()},
            chunks=[Chunk(**json.loads(line)) for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()],
            tokens=[json.loads(line) for line in (folder / "tokens.jsonl").read_text(encoding="utf-8").splitlines()],
            meta=json.loads((folder / "docs.json").read_text(encoding="utf-8")),
            vectors=np.load(folder / "vectors.npy"),
            window_vectors=np.load(folder / "window_vectors.npy"),
            window_owner=np.load(folder / "window_owner.npy"),
            words=Lexical.load(folder / "words"),
            grams=Lexical.load(folder / "grams"),
        )
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise _cannot(label, e) from None
    n = len(seg.chunks)
    if not (len(seg.vectors) == len(seg.tokens) == seg.words.rows == seg.grams.rows == n) \
            or len(seg.window_vectors) != len(seg.window_owner) or any(k not in seg.spans for k in entry["docs"]):
        raise IndexError_(f"index segment {label} is inconsistent ({len(seg.vectors)} vectors, {n} chunks); "
                          "run `qa index --rebuild`")
    return seg


def load(path: Path, verify: bool = True, partial: bool = False) -> IndexData:
    """Load a generation (every file checked against its checksum unless `verify` is off).
    `partial`: a damaged segment does not fail the load; its documents are left out and
    listed in `damaged` (what a repair re-embeds while the rest serves)."""
    manifest = _manifest(path)
    if "segments" not in manifest:
        return _load_flat(path, manifest, verify)
    if verify:
        _check(path, manifest.get("files", {}), path.name)
    try:
        library = Library.from_dict(json.loads((path / "library.json").read_text(encoding="utf-8")))
        order, entries = list(manifest["order"]), list(manifest["segments"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise _cannot(path.name, e) from None
    segs: list[tuple[dict, _Segment]] = []
    damaged: dict[str, str] = {}
    for entry in entries:
        try:
            segs.append((entry, _read_segment(path.parent, entry, verify)))
        except IndexError_ as e:
            if not partial:
                raise
            why = e.args[0].split("; run")[0]
            damaged.update({k: why for k in entry["docs"]})
    where: dict[str, tuple[int, int, int]] = {}  # doc_id -> (segment, lo, hi) in the concatenated rows
    base = 0
    for entry, seg in segs:
        for k in entry["docs"]:
            lo, hi = seg.spans[k]
            where[k] = (len(where), base + lo, base + hi)
        base += len(seg.chunks)
    served = [k for k in order if k in where]
    if not served:
        raise IndexError_(f"index {path.name} has no readable segment; run `qa index --rebuild`")
    take = np.concatenate([np.arange(where[k][1], where[k][2]) for k in served]).astype(np.int64)
    all_chunks = [c for _, seg in segs for c in seg.chunks]
    all_tokens = [t for _, seg in segs for t in seg.tokens]
    chunks = [all_chunks[i] for i in take]
    tokens = [all_tokens[i] for i in take]
    vectors = np.ascontiguousarray(np.concatenate([seg.vectors for _, seg in segs])[take], dtype=np.float32)
    offsets = np.cumsum([0] + [len(seg.chunks) for _, seg in segs])
    owner = np.concatenate([seg.window_owner.astype(np.int64) + off for (_, seg), off in zip(segs, offsets)])
    wvecs = np.concatenate([seg.window_vectors for _, seg in segs])
    wsel = np.concatenate([np.arange(*np.searchsorted(owner, [where[k][1], where[k][2]])) for k in served]).astype(np.int64)
    inv = np.full(int(offsets[-1]), -1, dtype=np.int64)
    inv[take] = np.arange(len(take))
    window_owner = inv[owner[wsel]]
    window_vectors = np.ascontiguousarray(wvecs[wsel], dtype=np.float32)
    metas = {k: m for _, seg in segs for k, m in seg.meta.items()}
    docs = {k: {**metas[k], "source": "upload" if k in library.uploads else "seed"} for k in served}
    words = Lexical.concat([seg.words for _, seg in segs], take)
    grams = Lexical.concat([seg.grams for _, seg in segs], take)
    kept = [{**entry, "docs": [k for k in entry["docs"] if k in where]} for entry, _ in segs]
    data = IndexData(path, manifest, chunks, tokens, docs, library, vectors, window_vectors, window_owner,
                     _dense_from(path / "dense.faiss", vectors), _dense_from(path / "dense_windows.faiss", window_vectors),
                     words.bm25(), grams.bm25(), lex=(words, grams), segments=kept, damaged=damaged or None)
    data.rows = _rows(chunks)
    return data


def _load_flat(path: Path, manifest: dict, verify: bool) -> IndexData:
    """A generation of the older layout (version 3): whole-library files in one folder."""
    import bm25s

    if verify:
        _check(path, manifest.get("files", {}), path.name)
    try:
        chunks = [Chunk(**json.loads(line)) for line in (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
        tokens = [json.loads(line) for line in (path / "tokens.jsonl").read_text(encoding="utf-8").splitlines()]
        docs = json.loads((path / "docs.json").read_text(encoding="utf-8"))
        library = Library.from_dict(json.loads((path / "library.json").read_text(encoding="utf-8")))
        vectors = np.load(path / "vectors.npy")
        window_vectors = np.load(path / "window_vectors.npy")
        owner = np.load(path / "window_owner.npy")
        lex = None
        if (path / "bm25" / "counts.npz").is_file():  # term counts: the weights are computed here
            lex = (Lexical.load(path / "bm25"), Lexical.load(path / "bm25_bigrams"))
            if lex[0].rows != len(chunks) or lex[1].rows != len(chunks):
                raise ValueError(f"{lex[0].rows} rows of term counts for {len(chunks)} chunks")
            bm25, bm25_bigrams = lex[0].bm25(), lex[1].bm25()
        else:  # a generation written before the counts were kept: bm25s' own files
            bm25 = bm25s.BM25.load(str(path / "bm25"), show_progress=False, verbosity=0)
            bm25_bigrams = bm25s.BM25.load(str(path / "bm25_bigrams"), show_progress=False, verbosity=0)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
        raise _cannot(path.name, e) from None
    if not (len(vectors) == len(chunks) == len(tokens)) or len(window_vectors) != len(owner):
        raise IndexError_(f"index {path.name} is inconsistent ({len(vectors)} vectors, {len(chunks)} chunks); run `qa index --rebuild`")
    data = IndexData(path, manifest, chunks, tokens, docs, library, vectors, window_vectors, owner,
                     _dense_from(path / "dense.faiss", vectors), _dense_from(path / "dense_windows.faiss", window_vectors),
                     bm25, bm25_bigrams, lex=lex)
    data.rows = _rows(chunks)
    return data


def referenced(index_dir: Path, gen: Path) -> set[str]:
    """Names of the generation folders whose segments `gen` serves (its own included)."""
    manifest = json.loads((gen / "manifest.json").read_text())
    return {gen.name} | {e["name"] for e in manifest.get("segments", [])}


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
