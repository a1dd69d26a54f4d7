"""How often the highlight holds the answer: for every answerable question whose evidence is in one
of the five passages returned, whether the highlight of that passage covers at least half of the
evidence's character bigrams. By split (train: where the weight was chosen; test; the blind set)
and for paraphrases and English questions, for each weight of the sentence windows' cosine
(qa.answer.HIGHLIGHT_DENSE; 0 = words and bigrams alone).

    python bench/highlight.py [--weights 0 10 30 100]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def covered(evidence: str, highlight: str) -> bool:
    from qa.text import squash

    ev, h = squash(evidence), squash(highlight.rstrip("…"))
    eb = {ev[i : i + 2] for i in range(len(ev) - 1)}
    hb = {h[i : i + 2] for i in range(len(h) - 1)}
    return len(eb & hb) / max(1, len(eb)) >= 0.5


def measure(retriever, questions) -> dict:
    """{"all"|kind: (questions looked at, share whose highlight holds the answer)}."""
    from qa.answer import answer
    from qa.text import squash

    seen = defaultdict(lambda: [0, 0])
    for q in questions:
        if not q.get("evidence"):
            continue
        reply = answer(retriever, q["question"], 5, None, q.get("history") or None)
        ev = squash(q["evidence"])
        for p in reply.passages:
            if ev in squash(p.text):
                ok = covered(q["evidence"], p.highlight)
                for key in ("all", q.get("kind")):
                    seen[key][0] += 1
                    seen[key][1] += ok
                break
    return {k: (n, round(h / n, 3)) for k, (n, h) in seen.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 10.0, 30.0, 100.0])
    args = ap.parse_args(argv)

    import qa.answer as answer_mod
    from qa.evaluate import load_questions, own_files
    from qa.service import Service
    from qa.settings import Settings

    svc = Service.load(Settings())
    own = [q for f in own_files() for q in load_questions(f)]
    sets = {"train": [q for q in own if q.get("split") == "train"], "test": [q for q in own if q.get("split") == "test"],
            "blind": load_questions(ROOT / "tests" / "eval" / "blind_1.jsonl")}
    shipped = answer_mod.HIGHLIGHT_DENSE
    try:
        for w in args.weights:
            answer_mod.HIGHLIGHT_DENSE = w
            parts = []
            for name, qs in sets.items():
                m = measure(svc.retriever, qs)
                parts.append(f"{name} {m['all'][1]:.3f} (n {m['all'][0]}; paraphrase {m.get('paraphrase', (0, 0))[1]:.2f}, "
                             f"English {m.get('english', (0, 0))[1]:.2f})")
            print(f"weight {w:g}{' (shipped)' if w == shipped else ''}: " + " · ".join(parts), flush=True)
    finally:
        answer_mod.HIGHLIGHT_DENSE = shipped
    return 0


if __name__ == "__main__":
    sys.exit(main())
