"""Quality of the Milvus backend against the embedded one, measured in one process with the same
code, the same model and the same generation (retrieval code that changes between two runs
cannot make the two backends look different):

    QA_DATA_DIR=.qa-data/test python -m qa.backends.compare ../shared/eval/dev.jsonl
    QA_DATA_DIR=.qa-data/test python -m qa.backends.compare tests/eval/questions_*.jsonl --split test

The Milvus side is a Milvus Lite file in a temporary folder (or --uri), mirrored from the
embedded generation by the store's own sync. Prints R@1/R@5/MRR@10/no-answer recall/false
no-answers of both, their differences, and the questions whose rank or no-answer call differ.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

METRICS = ("R@1", "R@5", "MRR@10", "no_answer_recall", "false_no_answers")


def services(settings, uri: str, analyzer: str, embedder=None):
    """(embedded, milvus) services over the same generation and model."""
    from ..service import Service

    emb = Service.load(settings, progress=False, embedder=embedder)
    mil_settings = settings.model_copy(update={"store": "milvus", "milvus_uri": uri, "milvus_analyzer": analyzer})
    mil = Service.load(mil_settings, progress=False, embedder=emb.embedder)
    return emb, mil


def compare(emb, mil, questions: list[dict]) -> dict:
    """Both backends' metrics over `questions`, and the questions they answer differently."""
    from ..evaluate import evaluate

    a = evaluate(emb.retriever, questions, emb.sources)
    b = evaluate(mil.retriever, questions, mil.sources)
    differ = [{"id": x["id"], "question": x["question"], "embedded": [x["rank"], x["no_answer"]],
               "milvus": [y["rank"], y["no_answer"]]}
              for x, y in zip(a["rows"], b["rows"]) if (x["rank"], x["no_answer"]) != (y["rank"], y["no_answer"])]
    return {"embedded": a["overall"], "milvus": b["overall"], "differ": differ}


def format_result(r: dict) -> str:
    from ..table import table

    rows = []
    for name in ("embedded", "milvus"):
        rows.append([name] + [_fmt(r[name].get(m)) for m in METRICS])
    rows.append(["milvus - embedded"] + [_fmt(_sub(r["milvus"].get(m), r["embedded"].get(m)), sign=True) for m in METRICS])
    lines = table(["backend", *METRICS], rows, align="<" + ">" * len(METRICS))
    lines.append(f"questions: {r['embedded']['questions']}; answered differently: {len(r['differ'])}")
    lines += [f"  {d['id']}: embedded rank/no_answer {d['embedded']}, milvus {d['milvus']}  {d['question'][:40]}"
              for d in r["differ"]]
    return "\n".join(lines)


def _sub(a, b):
    return None if a is None or b is None else a - b


def _fmt(v, sign: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:+d}" if sign else str(v)
    return f"{v:+.3f}" if sign else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    from ..evaluate import default_files, load_questions
    from ..settings import load_settings

    p = argparse.ArgumentParser(prog="python -m qa.backends.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="question files (default: the dev file and tests/eval/questions_*.jsonl)")
    p.add_argument("--split", choices=["train", "test", "dev"])
    p.add_argument("--analyzer", choices=["jieba", "tokens"], default=None,
                   help="the Milvus words analyzer (default: QA_MILVUS_ANALYZER)")
    p.add_argument("--uri", help="a Milvus URI (default: a Milvus Lite file in a temporary folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")  # milvus-lite 2.5 imports pkg_resources
    settings = load_settings(store="embedded")
    files = [Path(f) for f in args.files] or default_files()
    questions = [q for f in files for q in load_questions(f)]
    if args.split:
        questions = [q for q in questions if q["split"] == args.split]
    with tempfile.TemporaryDirectory() as tmp:
        emb, mil = services(settings, args.uri or str(Path(tmp) / "compare.db"),
                            args.analyzer or settings.milvus_analyzer)
        r = compare(emb, mil, questions)
    r["files"], r["split"], r["analyzer"] = [str(f) for f in files], args.split, args.analyzer or settings.milvus_analyzer
    print(json.dumps(r, ensure_ascii=False, indent=1) if args.json else format_result(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
