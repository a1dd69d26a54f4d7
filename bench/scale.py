"""Scale study: FAISS exact search against IVF and HNSW on a synthetic corpus of up
to 200k chunks. Prints build time, search latency (one query at a time, as /ask
does), recall@10 against exact search, and memory per chunk.

    python bench/scale.py [--sizes 20000,50000,200000] [--real 4000] [--json]

The corpus: chunks made of 3-6 consecutive sentences of the seeds. `--real` of them
are embedded with the serving model for real; the rest are synthetic, each a real
chunk vector plus Gaussian noise of the same spread as between real chunks,
re-normalised (stated in the output). Queries are the dev and project questions,
embedded for real.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,50000,200000")
    ap.add_argument("--real", type=int, default=4000, help="chunks embedded for real; the rest are synthetic")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

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
