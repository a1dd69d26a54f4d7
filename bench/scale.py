"""Scale study. By default: the embedded store's in-process /ask (the whole answer: query
parsing, scope, encode, retrieval, answerability, highlights) at 10k, 200k and 1M chunks,
p50/p99, memory per chunk, index build time and a query filtered to one small document.
`--faiss` adds the earlier study of FAISS alone: exact search against IVF and HNSW.

    python bench/scale.py [--ask-sizes 10000,200000,1000000] [--json]
    python bench/scale.py --faiss [--sizes 20000,50000,200000] [--real 4000] [--json]

The synthetic corpus for /ask: every chunk is 3-6 consecutive sentences of the seeds (their
text, offsets, jieba tokens and character bigrams, as the index would hold them), in
synthetic documents of 500 chunks whose metadata (region, city, years) copy a seed
document's; its vector is the normalised mean of its sentences' real embeddings plus
Gaussian noise, and it has one sentence window (its first two sentences). The BM25 indexes
are built directly as bm25s' own matrices (the same lucene weights bm25s.index computes,
checked against it on 2,000 chunks) and the IVF index is trained on 16 points per list, so
that 1M chunks build in minutes on 2 cores. `ask_p50_ms` maps each size to its p50.

For --faiss: chunks made of 3-6 consecutive sentences of the seeds, `--real` of them
embedded for real; the rest are synthetic, each a real chunk vector plus Gaussian noise of
the same spread as between real chunks, re-normalised (stated in the output). Queries are
the dev and project questions, embedded for real.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def corpus_vectors(emb, n_real: int, seed: int = 0) -> np.ndarray:
    from qa.corpus import load_corpus
    from qa.text import split_sentences
    from qa.chunking import chunk_corpus
    from qa.settings import Settings

    rng = np.random.default_rng(seed)
    sents = []
    for c in chunk_corpus(load_corpus(Settings().corpus_dir)):
        sents += [c.text[a:b] for a, b in split_sentences(c.text)]
    texts = []
    while len(texts) < n_real:
        i = int(rng.integers(0, len(sents) - 6))
        texts.append("".join(sents[i : i + int(rng.integers(3, 7))]))
    return emb.encode_passages(texts, batch_size=32)


def synthesize(real: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spread = float(np.std(real - real.mean(0)))
    base = real[rng.integers(0, len(real), n - len(real))]
    fake = base + rng.normal(0, spread, base.shape).astype(np.float32)
    fake /= np.linalg.norm(fake, axis=1, keepdims=True)
    return np.ascontiguousarray(np.vstack([real, fake]), dtype=np.float32)


def index_bytes(index) -> int:
    import faiss

    return len(faiss.serialize_index(index))


def measure(name, index, xb, xq, exact_ids, build_s):
    for _ in range(3):
        index.search(xq[:1], 10)
    lat = []
    ids = []
    for q in xq:
        t = time.perf_counter()
        _, I = index.search(q[None, :], 10)
        lat.append((time.perf_counter() - t) * 1000)
        ids.append(I[0])
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)]))
    return {"index": name, "n": len(xb), "build_s": round(build_s, 2), "p50_ms": round(float(np.median(lat)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "recall@10": round(recall, 4),
            "bytes_per_chunk": round(index_bytes(index) / len(xb), 1)}


def study(xb: np.ndarray, xq: np.ndarray) -> list[dict]:
    import faiss

    d = xb.shape[1]
    n = len(xb)
    rows = []
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(xb)
    _, exact = flat.search(xq, 10)
    rows.append(measure("Flat (exact)", flat, xb, xq, exact, time.perf_counter() - t))

    nlist = int(4 * np.sqrt(n))
    t = time.perf_counter()
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(xb[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
    ivf.add(xb)
    build = time.perf_counter() - t
    for nprobe in (8, 32):
        ivf.nprobe = nprobe
        rows.append(measure(f"IVF{nlist},nprobe={nprobe}", ivf, xb, xq, exact, build))

    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(xb)
    build = time.perf_counter() - t
    for ef in (64, 128):
        hnsw.hnsw.efSearch = ef
        rows.append(measure(f"HNSW32,efSearch={ef}", hnsw, xb, xq, exact, build))
    return rows


# ----------------------------------------------------------------- /ask at scale
DOC_CHUNKS = 500  # chunks per synthetic document


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SeedSentences:
    """The seeds' sentences: text, jieba tokens and bigrams (as ids) and real embeddings."""

    def __init__(self, emb, settings):
        from qa.chunking import chunk_corpus
        from qa.corpus import load_corpus
        from qa.lexical import bigrams, tokenize
        from qa.text import split_sentences

        docs = load_corpus(settings.corpus_dir)
        self.meta = [{"title": d.title, "region": d.region, "city": d.city, "years": list(d.years), "kind": d.kind}
                     for d in docs]
        self.text = []
        self.section = []
        for c in chunk_corpus(docs):
            for a, b in split_sentences(c.text):
                if c.text[a:b].strip():
                    self.text.append(c.text[a:b])
                    self.section.append(c.section)
        self.words = [tokenize(t) for t in self.text]
        self.grams = [bigrams(t) for t in self.text]
        self.vectors = emb.encode_passages(self.text, batch_size=32)


def _counts(token_lists: list[list[str]]):
    """(vocab, sentence x token count matrix) of a list of token lists."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, ts in enumerate(token_lists):
        for t in ts:
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(token_lists), len(vocab)))
    m.sum_duplicates()
    return vocab, m


def bm25_from_counts(tf, vocab: dict[str, int], k1: float = 1.5, b: float = 0.75):
    """A bm25s.BM25 (lucene) whose matrices are computed here from a chunk x token count matrix:
    the same weights bm25s.index gives, without its per-token Python loop over 10^8 tokens."""
    import bm25s

    tf = tf.tocsr()
    n = tf.shape[0]
    lengths = np.asarray(tf.sum(axis=1)).ravel()
    avg = float(lengths.mean())
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
    norm = (k1 * (1 - b + b * lengths / avg)).astype(np.float32)
    row = np.repeat(np.arange(n), np.diff(tf.indptr))
    data = tf.data.astype(np.float32)
    tf.data = idf[tf.indices] * data / (data + norm[row])
    del row, data
    csc = tf.tocsc()
    csc.sort_indices()
    model = bm25s.BM25(k1=k1, b=b, method="lucene")
    model.scores = {"data": csc.data.astype(np.float32), "indices": csc.indices.astype(np.int32),
                    "indptr": csc.indptr, "num_docs": n}
    model.vocab_dict = dict(vocab)
    model.nonoccurrence_array = None  # lucene has none
    return model


class LazyTokens:
    """tokens[i] of a synthetic chunk: its sentences' tokens, made when asked for."""

    def __init__(self, sent_tokens, starts, lens):
        self.s, self.starts, self.lens = sent_tokens, starts, lens

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        a = int(self.starts[i])
        return [t for j in range(a, a + int(self.lens[i])) for t in self.s[j]]


def ivf_index(vectors: np.ndarray, quantizer_from=None):
    """IVF-Flat as qa.index builds it above EXACT_UP_TO (4·sqrt(n) lists, nprobe 32), trained on 16
    points per list; a window index reuses the chunk index's centroids."""
    import faiss

    from qa.index import IVF_NPROBE

    n, d = vectors.shape
    nlist = max(1, int(4 * np.sqrt(n)))
    if quantizer_from is not None:
        q = faiss.IndexFlatIP(d)
        q.add(faiss.extract_index_ivf(quantizer_from).quantizer.reconstruct_n(0, quantizer_from.nlist))
        index = faiss.IndexIVFFlat(q, d, quantizer_from.nlist, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        index.cp.min_points_per_centroid = 16
        sample = np.random.default_rng(0).choice(n, min(n, 16 * nlist), replace=False)
        index.train(vectors[np.sort(sample)])
    index.nprobe = IVF_NPROBE
    index.add(vectors)
    return index


def synthetic_index(seed: SeedSentences, n: int, rng_seed: int = 0):
    """An IndexData of n synthetic chunks (see the module's docstring)."""
    from scipy import sparse

    from qa.index import EXACT_UP_TO, IndexData, dense_index
    from qa.library import Library
    from qa.records import Chunk

    rng = np.random.default_rng(rng_seed)
    S = len(seed.text)
    lens = rng.integers(3, 7, n)
    starts = rng.integers(0, S - 6, n)
    inc = sparse.csr_matrix((np.ones(int(lens.sum()), dtype=np.float32),
                             (np.repeat(np.arange(n), lens), np.concatenate([np.arange(a, a + k) for a, k in zip(starts, lens)]))),
                            shape=(n, S))
    # chunks and documents
    docs, chunks = {}, []
    seed_len = np.array([len(t) for t in seed.text])
    for j in range((n + DOC_CHUNKS - 1) // DOC_CHUNKS):
        m = seed.meta[j % len(seed.meta)]
        doc_id = f"syn-{j:06d}"
        title = f"{m.get('title', doc_id)}（合成{j}）"
        docs[doc_id] = {**m, "title": title, "doc_id": doc_id, "chunks": min(DOC_CHUNKS, n - j * DOC_CHUNKS)}
        pos = 0
        for i in range(j * DOC_CHUNKS, min(n, (j + 1) * DOC_CHUNKS)):
            a, k = int(starts[i]), int(lens[i])
            text = "".join(seed.text[a : a + k])
            chunks.append(Chunk(f"{doc_id}#{i - j * DOC_CHUNKS}", doc_id, title, seed.section[a], i - j * DOC_CHUNKS + 1,
                                pos, pos + len(text), text))
            pos += len(text) + 1
    # BM25 of words and bigrams
    wv, wm = _counts(seed.words)
    gv, gm = _counts(seed.grams)
    wtf = inc @ wm
    bm25 = bm25_from_counts(wtf, wv)
    inv = {i: t for t, i in wv.items()}
    totals = np.asarray(wtf.sum(axis=0)).ravel()
    term_counts = {inv[i]: int(c) for i, c in enumerate(totals) if c}
    del wtf
    bm25_bigrams = bm25_from_counts(inc @ gm, gv)
    # vectors: mean of the sentences' real vectors + noise; one window of the first two sentences
    vectors = np.ascontiguousarray(inc @ seed.vectors, dtype=np.float32)
    for a in range(0, n, 100_000):
        part = vectors[a : a + 100_000]
        part += rng.standard_normal(part.shape, dtype=np.float32) * np.float32(0.02)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    windows = seed.vectors[starts] + seed.vectors[starts + 1]
    windows /= np.linalg.norm(windows, axis=1, keepdims=True)
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    owner = np.arange(n, dtype=np.int64)
    if n <= EXACT_UP_TO:
        dense, dense_windows = dense_index(vectors), dense_index(windows)
    else:
        dense = ivf_index(vectors)
        dense_windows = ivf_index(windows, quantizer_from=dense)
    data = IndexData(Path("/nonexistent"), {"synthetic": n}, chunks, LazyTokens(seed.words, starts, lens), docs,
                     Library(), vectors, windows, owner, dense, dense_windows, bm25, bm25_bigrams)
    data.term_counts = term_counts
    return data


def check_bm25(seed: SeedSentences, n: int = 2000) -> float:
    """Largest difference between bm25_from_counts and bm25s.index on the same synthetic chunks."""
    import bm25s

    rng = np.random.default_rng(5)
    docs = []
    for _ in range(n):
        a, k = int(rng.integers(0, len(seed.text) - 6)), int(rng.integers(3, 7))
        docs.append([t for j in range(a, a + k) for t in seed.words[j]])
    ref = bm25s.BM25()
    ref.index(docs, show_progress=False)
    vocab, m = _counts(docs)
    ours = bm25_from_counts(m, vocab)
    q = seed.words[7][:3] + seed.words[99][:2]
    return float(np.abs(ref.get_scores(q) - ours.get_scores(q)).max())


def ask_study(sizes: list[int], n_questions: int = 200, progress=print) -> dict:
    import faiss

    from bench.bench import questions
    from embeddings import Embedder
    from qa.retrieval import Retriever
    from qa.service import Service
    from qa.settings import Settings

    settings = Settings().model_copy(update={"answer_cache": 0})
    emb = Embedder(settings, progress=False)
    t = time.perf_counter()
    seed = SeedSentences(emb, settings)
    progress(f"seed sentences: {len(seed.text)} embedded in {time.perf_counter() - t:.0f} s")
    bm25_diff = check_bm25(seed)
    qs = questions()
    qs = [qs[i] for i in np.random.default_rng(1).choice(len(qs), min(n_questions, len(qs)), replace=False)]
    out = {"ask_p50_ms": {}, "ask_p99_ms": {}, "filtered_p50_ms": {}, "bytes_per_chunk": {}, "build_s": {},
           "filtered_found_own_doc": {}}
    rows = []
    for n in sizes:
        import gc

        gc.collect()
        before = rss_mb()
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        data = synthetic_index(seed, n)
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)  # one query at a time, as /ask runs it
        retriever = Retriever(data, emb, no_answer_threshold=settings.no_answer_threshold, texts={})
        svc = Service(settings, emb, data, retriever, {})
        for q in qs[:20]:
            svc.ask(q)  # warm-up: per-generation structures (scope, no-answer vocabulary, impact lists)
        gc.collect()
        mem = (rss_mb() - before) * 1024 * 1024 / n
        lat = []
        for q in qs:
            t = time.perf_counter()
            svc.ask(q)
            lat.append((time.perf_counter() - t) * 1000)
        small = sorted(data.docs)[len(data.docs) // 2]
        flat, own = [], 0
        for q in qs[:50]:
            t = time.perf_counter()
            body = svc.ask(q, filters={"doc_id": small})
            flat.append((time.perf_counter() - t) * 1000)
            own += bool(body["passages"]) and all(p["citation"]["doc_id"] == small for p in body["passages"])
        row = {"n": n, "build_s": round(build, 1), "p50_ms": round(float(np.median(lat)), 2),
               "p99_ms": round(float(np.percentile(lat, 99)), 2), "filtered_p50_ms": round(float(np.median(flat)), 2),
               "filtered_found_own_doc": f"{own}/50", "bytes_per_chunk": round(mem), "path": "exact" if retriever.exact else "candidates"}
        rows.append(row)
        for k, key in (("ask_p50_ms", "p50_ms"), ("ask_p99_ms", "p99_ms"), ("filtered_p50_ms", "filtered_p50_ms"),
                       ("bytes_per_chunk", "bytes_per_chunk"), ("build_s", "build_s"),
                       ("filtered_found_own_doc", "filtered_found_own_doc")):
            out[k][n] = row[key]
        progress(f"{n:>8} chunks ({row['path']}): build {row['build_s']:6.1f} s · /ask p50 {row['p50_ms']:6.2f} ms, "
                 f"p99 {row['p99_ms']:6.2f} ms · filtered to one document p50 {row['filtered_p50_ms']:6.2f} ms "
                 f"(passages only from it: {row['filtered_found_own_doc']}) · {row['bytes_per_chunk']} B/chunk")
        del svc, retriever, data
    p = out["ask_p50_ms"]
    if len(sizes) > 1:
        out["p50_ratio_largest_over_smallest"] = round(p[sizes[-1]] / p[sizes[0]], 2)
    out["rows"] = rows
    out["questions"] = len(qs)
    out["note"] = (f"synthetic corpus: chunks of 3-6 consecutive seed sentences ({len(seed.text)} sentences, real "
                   f"embeddings, chunk vector = mean + N(0, 0.02) noise), {DOC_CHUNKS} chunks per document; BM25 "
                   f"matrices built directly (max |Δ| to bm25s.index {bm25_diff:.2g}); {emb.backend}; one query at a time, "
                   f"faiss 1 thread; p50/p99 over {len(qs)} project questions, uncached")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ask-sizes", default="10000,200000,1000000", help="chunk counts of the /ask study")
    ap.add_argument("--questions", type=int, default=200, help="questions timed per size")
    ap.add_argument("--faiss", action="store_true", help="the FAISS-only study instead")
    ap.add_argument("--sizes", default="20000,50000,200000", help="sizes of the FAISS study")
    ap.add_argument("--real", type=int, default=4000, help="FAISS study: chunks embedded for real; the rest are synthetic")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.faiss:
        return faiss_main(args)
    sizes = [int(s) for s in args.ask_sizes.split(",")]
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    out = ask_study(sizes, args.questions, progress=say)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(out["note"])
        if "p50_ratio_largest_over_smallest" in out:
            print(f"p50 at {sizes[-1]} / p50 at {sizes[0]}: {out['p50_ratio_largest_over_smallest']}")
    return 0


def faiss_main(args) -> int:

    import faiss

    from bench.bench import questions
    from embeddings import Embedder
    from qa.settings import Settings

    faiss.omp_set_num_threads(1)  # one query at a time, as /ask runs it; the other core serves another request
    emb = Embedder(Settings(), progress=False)
    t = time.perf_counter()
    real = corpus_vectors(emb, args.real)
    embed_s = time.perf_counter() - t
    xq = emb.encode_queries(questions())
    sizes = [int(s) for s in args.sizes.split(",")]
    xall = synthesize(real, max(sizes))
    rows = []
    for n in sizes:
        rows += study(xall[:n], xq)
        if not args.json:
            for r in rows[-5:]:
                print(f"{r['n']:>7} {r['index']:24} build {r['build_s']:7.2f} s  p50 {r['p50_ms']:7.3f} ms  "
                      f"p99 {r['p99_ms']:7.3f} ms  recall@10 {r['recall@10']:.4f}  {r['bytes_per_chunk']:7.1f} B/chunk", flush=True)
    note = f"{args.real} real chunk embeddings ({embed_s:.0f} s, {emb.backend}); the rest synthetic (real vector + noise)"
    if args.json:
        print(json.dumps({"note": note, "rows": rows}))
    else:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
