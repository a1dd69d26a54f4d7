"""`qa eval`: Recall@k and MRR@10 of the evidence passage, no-answer recall and
false no-answers, over JSONL files of {"id", "question", "evidence", "kind"} or,
for conversations, {"id", "messages": [...], "evidence", "kind"} (the last user
message is asked with the earlier user messages as history).

A question is found at rank r when the r-th passage, or the source slice its
citation names, contains the evidence (whitespace ignored). `evidence: null`
means the right reply is no_answer.

The project's own questions carry the document they come from (`doc`, or `near`
for unanswerable ones); `tests/eval/split.json` assigns documents to train and
test, and the report shows both splits (anything fitted sees only train).
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


OWN = REPO_ROOT / "tests" / "eval"
DEV = REPO_ROOT.parent / "shared" / "eval" / "dev.jsonl"


def own_files(conversations: bool = False) -> list[Path]:
    """The project's own question files (and conversations)."""
    files = sorted(OWN.glob("questions_*.jsonl"))
    return files + ([OWN / "conversations.jsonl"] if conversations else [])


def default_files() -> list[Path]:
    return ([DEV] if DEV.is_file() else []) + own_files()


def load_split(path: Path) -> dict[str, str]:
    """doc_id -> 'train' | 'test', from split.json beside the question file (if any)."""
    f = Path(path).parent / "split.json"
    if not f.is_file():
        return {}
    spec = json.loads(f.read_text(encoding="utf-8"))
    return {d: name for name in ("train", "test") for d in spec.get(name, [])}


def load_questions(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()  # a BOM (Notepad, Excel) is not line 1's
    except OSError as e:
        raise QAError(f"{path}: cannot read question file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise QAError(f"{path}: not UTF-8") from None
    split = load_split(path)
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except ValueError:
            raise QAError(f"{path}:{n}: not a JSON object") from None
        if isinstance(q, dict) and isinstance(q.get("messages"), list):
            users = [m.get("content") for m in q["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            if not users or not all(isinstance(u, str) for u in users) or q["messages"][-1].get("role") != "user":
                raise QAError(f"{path}:{n}: 'messages' must end with a user message")
            q["question"], q["history"] = users[-1], users[:-1]
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) or "evidence" not in q:
            raise QAError(f"{path}:{n}: each line needs 'question' (string) and 'evidence' (string or null)")
        q.setdefault("id", f"{Path(path).stem}-{n}")
        q.setdefault("history", [])
        q["split"] = split.get(q.get("doc") or q.get("near"), "dev" if not split else "-")
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
        body = ask(retriever, q["question"], top_k=10, history=q.get("history") or None)
        rank = found_rank(body, q["evidence"], sources) if q["evidence"] is not None else None
        rows.append({**q, "rank": rank, "no_answer": body["no_answer"], "took_ms": body["took_ms"],
                     "confidence": body.get("confidence"), "reason": body.get("no_answer_reason")})
    return {"overall": _metrics(rows), "by_split": _by(rows, "split"), "by_kind": _by(rows, "kind"), "rows": rows}


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
        m["false_no_answer_rate"] = round(m["false_no_answers"] / len(ans), 4)
    if none:
        m["no_answer_recall"] = round(sum(1 for r in none if r["no_answer"]) / len(none), 4)
    return m


def format_report(report: dict, files: list[Path]) -> str:
    from .table import pad, table

    lines = ["files: " + ", ".join(str(f) for f in files)]
    splits = [k for k in report["by_split"] if k in ("train", "test")]
    if splits:
        lines.append("split by document (tests/eval/split.json): fitted on train only; test and dev were never fitted on")
    head = ["", "n", "R@1", "R@3", "R@5", "R@10", "MRR@10", "noans_recall", "false_noans"]

    def row(name, m):
        vals = [m["questions"], m.get("R@1"), m.get("R@3"), m.get("R@5"), m.get("R@10"), m.get("MRR@10"),
                m.get("no_answer_recall"), m.get("false_no_answers")]
        return [name] + ["-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)) for v in vals]

    rows = [row("overall", report["overall"])]
    rows += [row("split " + k, m) for k, m in report["by_split"].items()]
    rows += [row("  " + k, m) for k, m in report["by_kind"].items()]
    lines += table(head, rows, align="<" + ">" * (len(head) - 1))
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
            lines.append(f"  {pad(r['id'], 12)} {pad(what, 32)} {r['question'][:40]}")
    return "\n".join(lines)
