"""Train the query-side adapter (embeddings/query_adapter.py) on question → passage pairs
written from the documents, and measure it leave-one-document-out.

    python embeddings/adapter/train.py            # train on the train split's documents, write adapter.npz
    python embeddings/adapter/train.py --lodo     # also: for each document, train without it, score its eval questions

Training data (all written by the project, none from the dev file):
- embeddings/adapter/pairs_*.jsonl: synthetic questions, four per passage (two colloquial,
  one plain, one English), GPL/InPars style;
- tests/eval/questions_*.jsonl of the train split (their evidence locates the passage).
Only pairs whose document is in the train split of tests/eval/split.json are used for the
shipped adapter, so the test split stays unseen.

Loss: softmax over every chunk and sentence-window vector of the index (temperature TAU),
the positives being the target chunk and its windows; L2 pull of D towards 0, so the
adapter stays a correction of the model, not a replacement.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from embeddings.query_adapter import WEIGHTS, QueryAdapter, base_model  # noqa: E402
from qa.text import squash  # noqa: E402

HERE = Path(__file__).parent
TAU = 0.02
L2 = 1.0
EPOCHS = 150
LR = 2e-3
SEED = 0


def load_pairs(split: dict[str, str]) -> list[dict]:
    from qa.evaluate import load_questions, own_files

    rows = []
    for f in sorted(HERE.glob("pairs_*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                q = json.loads(line)
                if q.get("evidence"):
                    rows.append({"question": q["question"], "evidence": q["evidence"], "doc": q["doc"], "source": "synthetic"})
    for f in own_files():
        for q in load_questions(f):
            if q["evidence"] and q.get("doc"):
                rows.append({"question": q["question"], "evidence": q["evidence"], "doc": q["doc"], "source": "eval"})
    return rows


def targets(data, rows: list[dict]) -> list[dict]:
    """Attach the chunk row whose text holds the evidence (dropped when none does)."""
    texts = [squash(c.text) for c in data.chunks]
    docs = [c.doc_id for c in data.chunks]
    out = []
    for r in rows:
        want = squash(r["evidence"])
        hits = [i for i, (t, d) in enumerate(zip(texts, docs)) if d == r["doc"] and want in t]
        if hits:
            out.append({**r, "row": hits[0]})
    return out


def train(Q: np.ndarray, rows: list[int], data, epochs: int = EPOCHS, l2: float = L2, seed: int = SEED) -> np.ndarray:
    """D minimising the softmax loss of the target passages (chunk or one of its windows)."""
    import torch

    torch.manual_seed(seed)
    P = torch.tensor(np.vstack([data.vectors, data.window_vectors]), dtype=torch.float32)
    owner = np.concatenate([np.arange(len(data.vectors)), data.window_owner])
    pos = torch.tensor(np.array([owner == r for r in rows]), dtype=torch.bool)
    q = torch.tensor(Q, dtype=torch.float32)
    D = torch.zeros(Q.shape[1], Q.shape[1], requires_grad=True)
    opt = torch.optim.Adam([D], lr=LR)
    for _ in range(epochs):
        opt.zero_grad()
        x = q + q @ D
        x = x / x.norm(dim=1, keepdim=True)
        s = x @ P.T / TAU
        loss = (torch.logsumexp(s, 1) - torch.logsumexp(s.masked_fill(~pos, -1e9), 1)).mean() + l2 * (D ** 2).sum()
        loss.backward()
        opt.step()
    return D.detach().numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lodo", action="store_true", help="also report leave-one-document-out on the eval questions")
    ap.add_argument("--check", action="store_true", help="do not write adapter.npz")
    ap.add_argument("--docs", nargs="*", help="leave-one-document-out over these documents only (default: all)")
    ap.add_argument("--l2", type=float, default=L2)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args(argv)

    from qa.evaluate import load_split, own_files
    from qa.service import Service
    from qa.settings import Settings

    t0 = time.time()
    svc = Service.load(Settings())
    split = load_split(own_files()[0])
    rows = targets(svc.index, load_pairs(split))
    Q = svc.embedder.encode_queries([r["question"] for r in rows])
    train_docs = sorted(d for d, s in split.items() if s == "train")
    pick = [i for i, r in enumerate(rows) if r["doc"] in train_docs]
    D = train(Q[pick], [rows[i]["row"] for i in pick], svc.index, epochs=args.epochs, l2=args.l2)
    n_syn = sum(1 for i in pick if rows[i]["source"] == "synthetic")
    print(f"trained on {len(pick)} pairs ({n_syn} synthetic, {len(pick) - n_syn} eval train) of {train_docs}: "
          f"|D| {np.linalg.norm(D):.3f} ({time.time() - t0:.0f} s)")
    if not args.check:
        meta = {"model": base_model(svc.embedder.model_id), "documents": train_docs, "pairs": len(pick),
                "tau": TAU, "l2": args.l2, "epochs": args.epochs, "seed": SEED}
        QueryAdapter(D, meta["model"], meta).save()
        print(f"wrote {WEIGHTS.relative_to(ROOT)}")
    if args.lodo:
        lodo(svc, rows, Q, args.docs, epochs=args.epochs, l2=args.l2)
    return 0


def lodo(svc, rows, Q, only=None, epochs=EPOCHS, l2=L2) -> None:
    """For each document: train without any pair of it, score its eval questions (dense and fused)."""
    from qa.evaluate import load_questions, own_files
    from qa.retrieval import Options, Retriever

    evalq = [q for f in own_files() for q in load_questions(f) if q["evidence"] and q.get("doc")]
    docs = sorted({q["doc"] for q in evalq} & set(only or [q["doc"] for q in evalq]))
    tot = {"with": [], "without": []}
    for d in docs:
        pick = [i for i, r in enumerate(rows) if r["doc"] != d]
        D = train(Q[pick], [rows[i]["row"] for i in pick], svc.index, epochs=epochs, l2=l2)
        mine = [q for q in evalq if q["doc"] == d]
        for name, adapter in (("without", None), ("with", QueryAdapter(D, "", {}))):
            r = Retriever(svc.index, svc.embedder, options=Options.fitted(), texts=svc.sources, adapter=adapter)
            rr = []
            for q in mine:
                res = r.search(q["question"], top_k=10)
                want = squash(q["evidence"])
                rank = next((k for k, c in enumerate(res.candidates, 1)
                             if want in squash(svc.sources[c.chunk.doc_id][c.chunk.start : c.chunk.end])), None)
                rr.append(rank)
            tot[name] += rr
            print(f"  {d} {name:7} adapter: R@1 {_r(rr, 1):.3f} R@5 {_r(rr, 5):.3f} MRR {_mrr(rr):.3f} (n {len(rr)})", flush=True)
    for name, rr in tot.items():
        print(f"LODO {name:7} adapter: R@1 {_r(rr, 1):.3f} R@5 {_r(rr, 5):.3f} MRR@10 {_mrr(rr):.3f} (n {len(rr)})")


def _r(ranks, k):
    return sum(1 for x in ranks if x and x <= k) / max(1, len(ranks))


def _mrr(ranks):
    return sum(1 / x for x in ranks if x) / max(1, len(ranks))


if __name__ == "__main__":
    sys.exit(main())
