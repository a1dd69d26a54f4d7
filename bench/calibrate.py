"""Calibrate the no-answer thresholds on question files (default: dev + tests/questions.jsonl).

For every question it records the top dense cosine and the share of its content
words that are nouns the corpus never mentions, then searches the thresholds of
qa.retrieval for the most unanswerable questions caught while wrongly refusing
as few answerable ones as possible (at most 2 per 50); the cosine threshold is put
in the middle of the range that does so, for the widest margin both ways. Prints the chosen values;
they are then written into qa/retrieval.py by hand, with the figures in the README.
"""
from __future__ import annotations

import itertools
import sys

import numpy as np

from qa.evaluate import default_files, load_questions
from qa.service import Service
from qa.settings import Settings


def main() -> None:
    args = sys.argv[1:]
    budget_arg = None
    if "--budget" in args:
        i = args.index("--budget")
        budget_arg = int(args[i + 1])
        del args[i : i + 2]
    files = args or default_files()
    qs = [q for f in files for q in load_questions(f)]
    svc = Service.load(Settings())
    feats = []
    for q in qs:
        r = svc.retriever.search(q["question"], top_k=1)
        feats.append((r.confidence["top_cosine"], r.confidence["unknown_nouns"], q["evidence"] is None))
    cos = np.array([f[0] for f in feats])
    unk = np.array([f[1] for f in feats])
    none = np.array([f[2] for f in feats])
    budget = budget_arg if budget_arg is not None else max(1, round(2 * (~none).sum() / 50))
    results = {}
    for floor, c, u in itertools.product(np.arange(0.78, 0.85, 0.005), np.arange(0.85, 0.95, 0.0025), np.arange(0.1, 0.6, 0.05)):
        na = (cos < floor) | ((cos < c) & (unk >= u - 1e-9))
        caught, false = int((na & none).sum()), int((na & ~none).sum())
        if false <= budget:
            results[(round(floor, 3), round(c, 4), round(u, 2))] = (caught, false)
    top = max(v[0] for v in results.values())
    # the lowest floor and the fewest false no-answers among the best; the cosine mid-range
    floor = min(k[0] for k, v in results.items() if v[0] == top)
    fewest = min(v[1] for k, v in results.items() if v[0] == top and k[0] == floor)
    ok = [k for k, v in results.items() if v == (top, fewest) and k[0] == floor]
    u = min(k[2] for k in ok)
    cs = sorted(k[1] for k in ok if k[2] == u)
    c = (cs[0] + cs[-1]) / 2
    caught, false = top, fewest
    print(f"cosine threshold feasible from {cs[0]:.4f} to {cs[-1]:.4f}")
    print(f"questions {len(qs)} (unanswerable {none.sum()}), false no-answer budget {budget}")
    print(f"NO_ANSWER_FLOOR = {floor:.3f}\nNO_ANSWER_COSINE = {c:.4f}\nNO_ANSWER_UNKNOWN = {u:.2f}")
    print(f"caught {caught}/{none.sum()} unanswerable, {false} false no-answers")
    for (cs, uk, n), q in sorted(zip(feats, qs), key=lambda t: t[0][0])[:12]:
        print(f"  {'NONE' if n else '    '} cos {cs:.4f} unknown {uk:.2f}  {q['question'][:30]}")


if __name__ == "__main__":
    main()
