"""What each retrieval component adds, measured with `qa eval`'s scoring.

    python bench/ablation.py [FILE.jsonl]      (default: ../shared/eval/dev.jsonl)
    python bench/ablation.py --split test      the project's own questions of the test split
                                               (option variants only; add --full for the two index rebuilds)

Option-only variants share the index; "heading context in embeddings" and
"no user dictionary" build their own index beside it (removed afterwards).
"""
from __future__ import annotations

import json
import subprocess
import sys
import shutil
from pathlib import Path

from qa import index as index_mod
from qa.evaluate import evaluate, load_questions
from qa.library import Library, load_documents
from qa.retrieval import Options, Retriever
from qa.service import Service
from qa.settings import REPO_ROOT, Settings

F = Options.fitted
VARIANTS = {
    "BM25 (jieba words) only": F(dense=False, windows=False, bigrams=False, synonyms=False, prefer_region_year=False, bilingual=False),
    "dense only (whole chunks)": F(windows=False, lexical=False, bigrams=False, synonyms=False, prefer_region_year=False),
    "dense, chunk or best window": F(lexical=False, bigrams=False, synonyms=False, prefer_region_year=False),
    "RRF fusion, all signals": F(fusion="rrf"),
    "weighted, no bigram BM25": F(bigrams=False),
    "weighted, no sentence windows": F(windows=False),
    "weighted, no region/year preference": F(prefer_region_year=False),
    "weighted, no synonym lexicon": F(synonyms=False),
    "no English→Chinese dictionary (CC-CEDICT)": F(bilingual=False),
    "no scope check (place/period)": F(scope=False),
    "scope words kept in the question searched": F(scope_query="off"),
    "scope words left out of the lexical query only": F(scope_query="lexical"),
    "documents the question names preferred by +0.5 (was), not first": F(prefer=0.5),
    "lexical signals min-max only (no ceiling)": F(lexical_floor=0.0),
    "answerability: the earlier hand-set rule, not the fitted model": Options(),
    "full (default)": F(),
}


def row(name: str, m: dict) -> str:
    return f"| {name} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['MRR@10']:.3f} | {m.get('no_answer_recall', 0):.2f} | {m['false_no_answers']} |"


def main() -> None:
    argv = sys.argv[1:]
    split = argv[argv.index("--split") + 1] if "--split" in argv else None
    args = [a for a in argv if not a.startswith("--") and a != split]
    if split:
        from qa.evaluate import own_files

        dev = own_files()
        qs = [q for f in dev for q in load_questions(f) if q["split"] == split]
    else:
        dev = Path(args[0]) if args else REPO_ROOT.parent / "shared" / "eval" / "dev.jsonl"
        qs = load_questions(dev)
    if "--no-userdict" in sys.argv:  # child process: jieba without the domain dictionary
        from qa import lexical

        lexical.USE_USERDICT = False
        s = Settings(index_name="ablation-no-userdict")
        try:
            svc = Service.load(s, progress=False)
            print(json.dumps(evaluate(svc.retriever, qs, svc.sources)["overall"]))
        finally:
            shutil.rmtree(s.index_dir, ignore_errors=True)
        return
    print(f"file: {dev} ({len(qs)} questions{', split ' + split if split else ''})\n")
    print("| variant | R@1 | R@5 | MRR@10 | no-answer recall | false no-answers |")
    print("|---|---|---|---|---|---|")
    settings = Settings()
    svc = Service.load(settings)
    for name, opts in VARIANTS.items():
        r = Retriever(svc.index, svc.embedder, options=opts, texts=svc.sources)
        print(row(name, evaluate(r, qs, svc.sources)["overall"]), flush=True)
    if split and "--full" not in argv:
        return
    # heading context: embed the chunk text alone (its own index)
    s2 = Settings(index_name="ablation-headings")
    saved = index_mod.EMBED_TEMPLATE
    try:
        index_mod.EMBED_TEMPLATE = "{title} {section}\n{text}"
        lib = Library()
        data = index_mod.load(index_mod.build(s2, svc.embedder, load_documents(s2, lib), lib, progress=False))
        r = Retriever(data, svc.embedder)
        print(row("full, plus title and section path in embeddings", evaluate(r, qs, svc.sources)["overall"]), flush=True)
    finally:
        index_mod.EMBED_TEMPLATE = saved
        shutil.rmtree(s2.index_dir, ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, str(dev), "--no-userdict"], capture_output=True, text=True)
    if out.returncode == 0:
        print(row("full, no jieba user dictionary", json.loads(out.stdout.strip().splitlines()[-1])))
    else:
        print("| full, no jieba user dictionary | failed: " + out.stderr.strip().splitlines()[-1] + " |")


if __name__ == "__main__":
    main()
