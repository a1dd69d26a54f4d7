"""Checks the project's own question files: every line well-formed, every evidence
found (whitespace ignored) in the document it names, ids unique.

    python tests/eval/check.py tests/eval/*.jsonl
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = {p.stem: re.sub(r"\s+", "", p.read_text(encoding="utf-8")).lower() for p in (ROOT / "seeds").glob("*.txt")}


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s).lower()


def check(path: Path) -> list[str]:
    problems, ids = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            q = json.loads(line)
        except ValueError as e:
            problems.append(f"{where}: not JSON ({e})")
            continue
        if q.get("id") in ids:
            problems.append(f"{where}: duplicate id {q.get('id')}")
        ids.add(q.get("id"))
        for key in ("id", "kind"):
            if not isinstance(q.get(key), str):
                problems.append(f"{where}: '{key}' must be a string")
        if "messages" in q:
            msgs = q["messages"]
            if not msgs or msgs[-1].get("role") != "user":
                problems.append(f"{where}: messages must end with a user message")
        elif not isinstance(q.get("question"), str) or not q["question"].strip():
            problems.append(f"{where}: 'question' must be a non-empty string")
        ev, doc = q.get("evidence"), q.get("doc")
        if ev is None:
            # an everyday question far from every document (kind none-offtopic) imitates none of them
            if q.get("near") not in SEEDS and not (q.get("kind") == "none-offtopic" and q.get("near") is None):
                problems.append(f"{where}: an unanswerable question needs 'near' = one of {sorted(SEEDS)} "
                                "(or null, for kind none-offtopic)")
            continue
        if doc not in SEEDS:
            problems.append(f"{where}: 'doc' must be one of {sorted(SEEDS)}")
            continue
        if len(squash(ev)) < 6:
            problems.append(f"{where}: evidence too short (at least 6 characters)")
        if squash(ev) not in SEEDS[doc]:
            problems.append(f"{where}: evidence not found in {doc}: {ev[:40]}")
    return problems


def main(argv: list[str]) -> int:
    problems = [p for f in argv for p in check(Path(f))]
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
