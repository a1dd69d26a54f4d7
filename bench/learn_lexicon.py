"""Learn everyday → official wording from question → passage pairs written from the
documents, instead of listing it by hand.

    python bench/learn_lexicon.py            # learn from the train split's documents, write qa/data/lexicon.tsv
    python bench/learn_lexicon.py --lodo     # also: leave-one-document-out, with and without the lexicon

For every training pair, the question's content words that its passage does not
contain are aligned with the passage's words that the question does not contain.
A pair (everyday word w, passage word v) is kept when it is seen in at least MIN_PAIRS
different pairs and v is far more frequent in the passages of w's questions than in
the corpus (pointwise mutual information ≥ MIN_PMI); each w keeps its best TOP words.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import os

MIN_PAIRS = int(os.environ.get("LEX_MIN_PAIRS", 3))
MIN_PMI = float(os.environ.get("LEX_MIN_PMI", 2.0))
TOP = int(os.environ.get("LEX_TOP", 2))
OUT = ROOT / "qa" / "data" / "lexicon.tsv"


def pairs(svc, docs: set[str]):
    """(question content words, passage words) of the training pairs of `docs`."""
    from embeddings.adapter.train import load_pairs, targets  # noqa: E402
    from qa.lexical import content_words, tokenize
    from qa.query import normalise

    out = []
    for r in targets(svc.index, load_pairs({})):
        if r["doc"] not in docs:
            continue
        text = normalise(r["question"])
        if not any("\u4e00" <= ch <= "\u9fff" for ch in text):
            continue  # English questions go through the dictionary instead
        q = {w for w, tag in content_words(text) if len(w) >= 2 and tag[:1] in ("n", "v", "a") and not tag.startswith("nr")}
        c = set(svc.retriever.chunk_tokens[r["row"]])
        out.append((q - c, {v for v in c - set(tokenize(text)) if len(v) >= 2}))
    return out


def learn(svc, docs: set[str]) -> dict[str, list[str]]:
    data = pairs(svc, docs)
    n_chunks = len(svc.index.chunks)
    df = Counter(v for ts in svc.retriever.chunk_tokens for v in set(ts))
    seen = Counter()
    co = defaultdict(Counter)
    for q, c in data:
        for w in q:
            seen[w] += 1
            for v in c:
                co[w][v] += 1
    lex = {}
    for w, vs in co.items():
        if seen[w] < MIN_PAIRS:
            continue
        scored = []
        for v, k in vs.items():
            if k < MIN_PAIRS:
                continue
            pmi = math.log((k / seen[w]) / (df[v] / n_chunks))
            if pmi >= MIN_PMI:
                scored.append((pmi * k, v))
        if scored:
            lex[w] = [v for _, v in sorted(scored, reverse=True)[:TOP]]
    return lex


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lodo", action="store_true")
    ap.add_argument("--check", action="store_true", help="do not write qa/data/lexicon.tsv")
    args = ap.parse_args(argv)
    from qa.evaluate import load_split, own_files
    from qa.service import Service
    from qa.settings import Settings

    svc = Service.load(Settings())
    split = load_split(own_files()[0])
    train_docs = {d for d, s in split.items() if s == "train"}
    lex = learn(svc, train_docs)
    print(f"{len(lex)} everyday words learned from the pairs of {sorted(train_docs)}")
    if not args.check:
        lines = ["# learned by bench/learn_lexicon.py from question -> passage pairs of the train documents; do not edit by hand"]
        lines += [f"{w}\t{' '.join(vs)}" for w, vs in sorted(lex.items())]
        OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {OUT.relative_to(ROOT)}")
    if args.lodo:
        lodo(svc, split)
    return 0


def lodo(svc, split) -> None:
    from qa.evaluate import load_questions, own_files
    from qa.retrieval import Options, Retriever
    from qa.text import squash

    evalq = [q for f in own_files() for q in load_questions(f) if q["evidence"] and q.get("doc")]
    docs = sorted({q["doc"] for q in evalq} & set(os.environ.get("LEX_DOCS", "").split() or [q["doc"] for q in evalq]))
    tot = defaultdict(list)
    for d in docs:
        lex = learn(svc, set(docs) - {d})
        for name, opts in (("hand list", Options.fitted(learned=None)), ("learned", Options.fitted(synonyms=False, learned=lex)),
                           ("both", Options.fitted(learned=lex)), ("neither", Options.fitted(synonyms=False, learned=None))):
            r = Retriever(svc.index, svc.embedder, options=opts, texts=svc.sources)
            for q in evalq:
                if q["doc"] != d:
                    continue
                res = r.search(q["question"], top_k=10)
                want = squash(q["evidence"])
                rank = next((k for k, c in enumerate(res.candidates, 1)
                             if want in squash(svc.sources[c.chunk.doc_id][c.chunk.start : c.chunk.end])), None)
                tot[name].append((q["kind"], rank))
    for name, rows in tot.items():
        rr = [x for _, x in rows]
        para = [x for k, x in rows if k == "paraphrase"]
        f = lambda xs, k: sum(1 for x in xs if x and x <= k) / max(1, len(xs))  # noqa: E731
        mrr = lambda xs: sum(1 / x for x in xs if x) / max(1, len(xs))  # noqa: E731
        print(f"LODO {name:10}: R@1 {f(rr, 1):.3f} R@5 {f(rr, 5):.3f} MRR@10 {mrr(rr):.3f} | paraphrase R@5 {f(para, 5):.3f} MRR {mrr(para):.3f}")


if __name__ == "__main__":
    sys.exit(main())
