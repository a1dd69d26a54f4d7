"""`qa eval`: Recall@k and MRR@10 of the evidence passage, no-answer recall and
false no-answers, over JSONL files of {"id", "question", "evidence", "kind"}.

A question is found at rank r when the r-th passage, or the source slice its
citation names, contains the evidence (whitespace ignored). `evidence: null`
means the right reply is no_answer.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .answer import ask
from .errors import QAError
from .settings import REPO_ROOT
from .text import squash

KS = (1, 3, 5, 10)


def default_files() -> list[Path]:
    files = []
    dev = REPO_ROOT.parent / "shared" / "eval" / "dev.jsonl"
    if dev.is_file():
        files.append(dev)
    files.append(REPO_ROOT / "tests" / "questions.jsonl")
    return files


def load_questions(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise QAError(f"{path}: cannot read question file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise QAError(f"{path}: not UTF-8") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except ValueError:
            raise QAError(f"{path}:{n}: not a JSON object") from None
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) or "evidence" not in q:
            raise QAError(f"{path}:{n}: each line needs 'question' (string) and 'evidence' (string or null)")
        q.setdefault("id", f"{Path(path).stem}-{n}")
        q.setdefault("kind", "unknown")
        q["file"] = str(path)
        out.append(q)
    return out


def found_rank(body: dict, evidence: str, sources: dict[str, str]) -> int | None:
    want = squash(evidence)
    for p in body["passages"]:
        c = p["citation"]
        if want in squash(p["text"]) or want in squash(sources[c["doc_id"]][c["start"] : c["end"]]):
            return p["rank"]
    return None


def evaluate(retriever, questions: list[dict], sources: dict[str, str]) -> dict:
    rows = []
    for q in questions:
        body = ask(retriever, q["question"], top_k=10)
        rank = found_rank(body, q["evidence"], sources) if q["evidence"] is not None else None
        rows.append({**q, "rank": rank, "no_answer": body["no_answer"], "took_ms": body["took_ms"]})
    return {"overall": _metrics(rows), "by_kind": _by(rows, "kind"), "rows": rows}


def _by(rows, key):
    groups = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    return {k: _metrics(v) for k, v in sorted(groups.items())}


def _metrics(rows) -> dict:
    ans = [r for r in rows if r["evidence"] is not None]
    none = [r for r in rows if r["evidence"] is None]
    m = {"questions": len(rows), "answerable": len(ans), "unanswerable": len(none)}
    if ans:
        for k in KS:
            m[f"R@{k}"] = round(sum(1 for r in ans if r["rank"] and r["rank"] <= k) / len(ans), 4)
        m["MRR@10"] = round(sum(1 / r["rank"] for r in ans if r["rank"]) / len(ans), 4)
        m["false_no_answers"] = sum(1 for r in ans if r["no_answer"])
    if none:
        m["no_answer_recall"] = round(sum(1 for r in none if r["no_answer"]) / len(none), 4)
    return m


def format_report(report: dict, files: list[Path]) -> str:
    lines = ["files: " + ", ".join(str(f) for f in files)]
    head = ["", "n", "R@1", "R@3", "R@5", "R@10", "MRR@10", "noans_rec", "false_noans"]
    lines.append(f"{head[0]:14}" + "".join(f"{h:>11}" for h in head[1:]))

    def row(name, m):
        vals = [m["questions"], m.get("R@1"), m.get("R@3"), m.get("R@5"), m.get("R@10"), m.get("MRR@10"),
                m.get("no_answer_recall"), m.get("false_no_answers")]
        return f"{name:14}" + "".join(f"{'-' if v is None else v:>11}" for v in vals)

    lines.append(row("overall", report["overall"]))
    for k, m in report["by_kind"].items():
        lines.append(row("  " + k, m))
    misses = [
        r
        for r in report["rows"]
        if (r["evidence"] is not None and (r["rank"] != 1 or r["no_answer"])) or (r["evidence"] is None and not r["no_answer"])
    ]
    if misses:
        lines.append("not at rank 1, or the wrong no-answer call:")
        for r in misses:
            if r["evidence"] is None:
                what = "answered (should be no_answer)"
            else:
                what = f"rank {r['rank']}" + (", flagged no_answer" if r["no_answer"] else "")
            lines.append(f"  {r['id']:10} {what:24} {r['question'][:40]}")
    return "\n".join(lines)
