"""Milvus as the store's index: one collection of chunks (fields, citation offsets, the dense
vector, and two BM25 sparse vectors Milvus generates itself), one of the chunks' sentence
windows (their vectors, the owner chunk's id and the filter fields), plus a small collection of
the documents it holds (doc_id -> sha256), so a sync is a diff, not a re-index.

    idx = MilvusIndex("/tmp/qa.db")            # Milvus Lite file, or "http://milvus:19530"
    idx.sync(data)                              # upsert changed documents, delete removed ones
    idx.search("…", vector, k=5, filters={"region": "海门区"})     # hybrid search (dense + BM25)
    idx.signals(words, grams, vector, k_dense, k_lexical, filters) # per-signal hits for qa.retrieval

Lexical signals: `words` is the chunk's section + text under Milvus' own `jieba` analyzer
(checked: milvus-lite 2.5.1 accepts {"tokenizer": "jieba"}; Milvus standalone needs ≥ 2.5.16
for the same); `grams` is the project's character bigrams, pre-tokenised and joined by
spaces under the whitespace analyzer. `analyzer="tokens"` uses the project's own jieba tokens
(user dictionary, stopwords) pre-tokenised for `words` too.

Dense signal: as the embedded store's, a chunk scores by the better of its own vector and its best
sentence window (qa/index.py WINDOW): the windows collection is searched beside the chunks and
each window's cosine goes to its owner chunk. BM25 uses the embedded store's k1 and b
(qa/index.py K1, B): Milvus' BM25 differs from bm25s' "lucene" variant only by the constant factor
k1 + 1, which `signals` divides out, so the scores are the embedded store's to float precision
(with `analyzer="tokens"`, the same tokens; measured: the same ranks on the dev file).

The collections carry the layout they were made with in their description (`SCHEMA`, analyzer,
k1, b); a collection made with another layout (an older version, another analyzer) is dropped
and the generation mirrored again in full: it is derived data.

Dense index: FLAT for Milvus Lite (it has FLAT/IVF/AUTOINDEX only), HNSW for a server
(`index_type=None` picks by URI). Filters are Milvus expressions: doc_id, region, year, kind,
issued_after. pymilvus is imported lazily (an optional extra: `pip install -e '.[milvus]'`).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import QAError

_clients: dict[tuple, "MilvusIndex"] = {}
_clients_lock = threading.Lock()
BATCH = 256
MAX_LIMIT = 16384  # Milvus' largest topk
SCHEMA = "qa-milvus/4"  # chunks (+ tokens) + sentence windows + documents (+ metadata, texts) + version; bump when the layout changes
TEXT_PART = 16_000  # characters of a document's text per row (at most 48 kB of UTF-8: inside VARCHAR's 65,535 bytes)
# windows searched: 3 per dense candidate, and at least 3,000, as the embedded store (3 x DENSE_CANDIDATES in
# qa/retrieval.py): a small library has all its windows scored, whatever k the retriever asks for
WINDOWS_PER_CHUNK, MIN_WINDOWS = 3, 3000


def _client(uri: str, token: str | None, db: str | None):
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise QAError("QA_STORE=milvus needs pymilvus (and milvus-lite for a local file): "
                      "pip install -e '.[milvus]'") from None
    kw = {"uri": uri}
    if token:
        kw["token"] = token
    if db and db != "default":
        kw["db_name"] = db
    try:
        return MilvusClient(**kw)
    except Exception as e:  # unreachable server, bad token or database: one line, not a traceback
        from ..errors import NotReady

        why = getattr(e, "message", None) or str(e).splitlines()[0]
        raise NotReady(f"cannot connect to Milvus at {uri} ({why[:200]}); check QA_MILVUS_URI / QA_MILVUS_TOKEN / QA_MILVUS_DB") from None


def close_all() -> None:
    """Close every index this process opened (tests; a service shutting down)."""
    with _clients_lock:
        opened = list(_clients.values())
    for idx in opened:
        idx.close()


def _lit(s: str) -> str:
    return json.dumps(str(s), ensure_ascii=False)


def expression(filters: dict | None) -> str:
    """The Milvus boolean expression of the service's filters ("" for none)."""
    if not filters:
        return ""
    parts = []
    if filters.get("doc_id") is not None:
        ids = filters["doc_id"] if isinstance(filters["doc_id"], list) else [filters["doc_id"]]
        parts.append(f"doc_id in [{', '.join(_lit(i) for i in ids)}]")
    if filters.get("region") is not None:
        r = _lit(filters["region"])
        parts.append(f"(region == {r} or region_base == {r})")
    if filters.get("year") is not None:
        parts.append(f"array_contains(years, {int(filters['year'])})")
    if filters.get("kind") is not None:
        parts.append(f"kind == {_lit(filters['kind'])}")
    if filters.get("issued_after") is not None:
        parts.append(f"issued >= {_lit(filters['issued_after'])}")
    return " and ".join(parts)


@dataclass
class Hits:
    ids: list[str]
    scores: np.ndarray


class MilvusIndex:
    def __init__(self, uri: str, token: str | None = None, db: str | None = None, collection: str = "qa_chunks",
                 dim: int | None = None, index_type: str | None = None, analyzer: str = "jieba"):
        self.uri, self.collection, self.dim = uri, collection, dim
        self.docs_collection = collection + "_docs"
        self.windows_collection = collection + "_windows"
        self.texts_collection = collection + "_texts"  # each document's decoded text: what citations slice
        self.kb_collection = collection + "_kb"  # one row: the version of the knowledge base (the writer's generation)
        self.local = not uri.startswith(("http://", "https://", "tcp://", "grpc://"))
        self.index_type = index_type or ("FLAT" if self.local else "HNSW")
        self.analyzer = analyzer
        self.client = _client(uri, token, db)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "MilvusIndex":
        """One client per (uri, db, collection) in a process: Milvus Lite opens its file once."""
        uri = settings.milvus_uri or str(settings.data_dir / "milvus.db")
        key = (uri, settings.milvus_db, settings.milvus_collection)
        with _clients_lock:
            if key not in _clients:
                _clients[key] = cls(uri, settings.milvus_token, settings.milvus_db, settings.milvus_collection,
                                    index_type=getattr(settings, "milvus_index", None), analyzer=settings.milvus_analyzer)
            return _clients[key]

    # ------------------------------------------------------------ schema
    @property
    def layout(self) -> str:
        """What the collections' description records: a collection made otherwise is remade."""
        from ..index import B, K1

        return f"{SCHEMA} analyzer={self.analyzer} k1={K1} b={B}"

    def _filter_fields(self, s, DataType) -> None:
        s.add_field("doc_id", DataType.VARCHAR, max_length=256)
        s.add_field("region", DataType.VARCHAR, max_length=128)
        s.add_field("region_base", DataType.VARCHAR, max_length=128)
        s.add_field("years", DataType.ARRAY, element_type=DataType.INT64, max_capacity=64)
        s.add_field("kind", DataType.VARCHAR, max_length=128)
        s.add_field("issued", DataType.VARCHAR, max_length=16)

    def _dense_index(self, ip, field: str) -> None:
        dense_params = {"M": 16, "efConstruction": 200} if self.index_type == "HNSW" else {}
        ip.add_index(field, index_type=self.index_type, metric_type="IP", params=dense_params)
        if not self.local:
            ip.add_index("doc_id", index_type="INVERTED")

    def _outdated(self) -> bool:
        """Some collection exists but was made with another layout (or one is missing)."""
        c = self.client
        names = self._names
        present = [n for n in names if c.has_collection(n)]
        if not present:
            return False
        if len(present) < len(names):
            return True
        return any((c.describe_collection(n).get("description") or "") != self.layout for n in names)

    @property
    def _names(self) -> tuple[str, ...]:
        return (self.collection, self.windows_collection, self.docs_collection, self.texts_collection, self.kb_collection)

    def _small(self, name: str, key: str, fields) -> None:
        """A small collection keyed by a VARCHAR `key` (Milvus wants a vector field in every collection)."""
        from pymilvus import DataType, MilvusClient

        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=self.layout)
        s.add_field(key, DataType.VARCHAR, is_primary=True, max_length=600)
        for args in fields:
            s.add_field(*args[:2], **args[2] if len(args) > 2 else {})
        s.add_field("v", DataType.FLOAT_VECTOR, dim=2)
        ip = self.client.prepare_index_params()
        ip.add_index("v", index_type="FLAT", metric_type="L2")
        self.client.create_collection(name, schema=s, index_params=ip)

    def ensure(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        from ..index import B, K1

        c = self.client
        self.dim = dim
        if self._outdated():
            self.drop()  # derived data: the next sync mirrors the whole generation again
        if not c.has_collection(self.collection):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=self.layout)
            s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
            s.add_field("title", DataType.VARCHAR, max_length=2048)
            s.add_field("section", DataType.VARCHAR, max_length=4096)
            s.add_field("paragraph", DataType.INT64)
            s.add_field("start", DataType.INT64)
            s.add_field("end", DataType.INT64)
            s.add_field("text", DataType.VARCHAR, max_length=8192)
            self._filter_fields(s, DataType)
            tok = {"tokenizer": "jieba"} if self.analyzer == "jieba" else {"tokenizer": "whitespace"}
            s.add_field("words", DataType.VARCHAR, max_length=16384, enable_analyzer=True, analyzer_params=tok)
            s.add_field("grams", DataType.VARCHAR, max_length=32768, enable_analyzer=True,
                        analyzer_params={"tokenizer": "whitespace"})
            s.add_field("tokens", DataType.VARCHAR, max_length=65535)  # JSON list: the chunk's own jieba tokens
            s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
            s.add_field("sparse_words", DataType.SPARSE_FLOAT_VECTOR)
            s.add_field("sparse_grams", DataType.SPARSE_FLOAT_VECTOR)
            s.add_function(Function(name="bm25_words", function_type=FunctionType.BM25,
                                    input_field_names=["words"], output_field_names=["sparse_words"]))
            s.add_function(Function(name="bm25_grams", function_type=FunctionType.BM25,
                                    input_field_names=["grams"], output_field_names=["sparse_grams"]))
            ip = c.prepare_index_params()
            self._dense_index(ip, "dense")
            bm25 = {"bm25_k1": K1, "bm25_b": B}
            ip.add_index("sparse_words", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=bm25)
            ip.add_index("sparse_grams", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=bm25)
            c.create_collection(self.collection, schema=s, index_params=ip)
        if not c.has_collection(self.windows_collection):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=self.layout)
            s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=600)
            s.add_field("chunk_id", DataType.VARCHAR, max_length=512)
            self._filter_fields(s, DataType)
            s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
            ip = c.prepare_index_params()
            self._dense_index(ip, "dense")
            c.create_collection(self.windows_collection, schema=s, index_params=ip)
        if not c.has_collection(self.docs_collection):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=self.layout)
            s.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=256)
            s.add_field("sha256", DataType.VARCHAR, max_length=64)
            s.add_field("chunks", DataType.INT64)
            s.add_field("meta", DataType.VARCHAR, max_length=65535)  # JSON: the generation's docs.json entry
            s.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
            ip = c.prepare_index_params()
            ip.add_index("v", index_type="FLAT", metric_type="L2")
            c.create_collection(self.docs_collection, schema=s, index_params=ip)
        if not c.has_collection(self.texts_collection):
            self._small(self.texts_collection, "id", [("doc_id", DataType.VARCHAR, {"max_length": 256}),
                                                       ("part", DataType.INT64), ("text", DataType.VARCHAR, {"max_length": 65535})])
        if not c.has_collection(self.kb_collection):
            self._small(self.kb_collection, "key", [("value", DataType.VARCHAR, {"max_length": 4096})])
        for name in self._names:
            c.load_collection(name)

    # ------------------------------------------------------------ writes
    def documents(self) -> dict[str, str]:
        """doc_id -> sha256 of what the collection holds."""
        out = {}
        it = self.client.query_iterator(self.docs_collection, batch_size=1000, filter='doc_id != ""',
                                        output_fields=["doc_id", "sha256"])
        try:
            while True:
                rows = it.next()
                if not rows:
                    break
                out.update({r["doc_id"]: r["sha256"] for r in rows})
        finally:
            it.close()
        return out

    def sync(self, data, texts=None) -> dict:
        """Make the collection hold exactly the generation's documents: documents whose sha256
        differs are replaced (delete by doc_id, insert their chunks and their decoded text, from
        `texts`: a dict, or a function of the doc_ids that returns one), documents not in the generation are deleted; then the knowledge base's
        version becomes the generation's name (what replicas poll). Vectors come from the
        generation: nothing is re-embedded."""
        from ..lexical import bigrams
        from ..retrieval import _date

        with self._lock:
            self.ensure(int(data.vectors.shape[1]))
            have = self.documents()
            want = {d: m.get("sha256", "") for d, m in data.docs.items()}
            gone = [d for d in have if d not in want]
            changed = [d for d in want if have.get(d) != want[d]]
            if gone or changed:
                self.remove(gone + changed)
            if changed:
                todo = set(changed)
                rows, windows = [], []
                owner = np.asarray(data.window_owner)
                first = np.searchsorted(owner, np.arange(len(data.chunks) + 1))  # owner rows ascending
                for i, c in enumerate(data.chunks):
                    if c.doc_id not in todo:
                        continue
                    m = data.docs.get(c.doc_id, {})
                    region = m.get("region") or ""
                    where = {"doc_id": c.doc_id, "region": region, "region_base": region[:-1] if region else "",
                             "years": [int(y) for y in m.get("years", [])][:64], "kind": m.get("kind") or "",
                             "issued": _date(m) or ""}
                    words = " ".join(data.tokens[i]) if self.analyzer == "tokens" else f"{c.section} {c.text}"
                    rows.append({
                        "id": c.id, "title": c.title[:600], "section": c.section[:1300],
                        "paragraph": int(c.paragraph), "start": int(c.start), "end": int(c.end), "text": c.text,
                        **where, "words": words, "grams": " ".join(bigrams(c.text)),
                        "tokens": json.dumps(list(data.tokens[i]), ensure_ascii=False),
                        "dense": data.vectors[i].astype(np.float32).tolist(),
                    })
                    for j, w in enumerate(range(first[i], first[i + 1])):
                        windows.append({"id": f"{c.id}#w{j}", "chunk_id": c.id, **where,
                                        "dense": data.window_vectors[w].astype(np.float32).tolist()})
                for k in range(0, len(rows), BATCH):
                    self.client.insert(self.collection, rows[k : k + BATCH])
                for k in range(0, len(windows), BATCH):
                    self.client.insert(self.windows_collection, windows[k : k + BATCH])
                docs = [{"doc_id": d, "sha256": want[d], "chunks": int(data.docs[d].get("chunks", 0)),
                         "meta": json.dumps(data.docs[d], ensure_ascii=False), "v": [0.0, 0.0]} for d in changed]
                got = texts(changed) if callable(texts) else {d: (texts or {})[d] for d in changed if d in (texts or {})}
                parts = [{"id": f"{d}#{n}", "doc_id": d, "part": n, "text": t[a : a + TEXT_PART], "v": [0.0, 0.0]}
                         for d in changed if (t := got.get(d)) is not None
                         for n, a in enumerate(range(0, max(1, len(t)), TEXT_PART))]
                for k in range(0, len(parts), BATCH):
                    self.client.insert(self.texts_collection, parts[k : k + BATCH])
                for k in range(0, len(docs), BATCH):
                    self.client.upsert(self.docs_collection, docs[k : k + BATCH])
            version = getattr(getattr(data, "path", None), "name", None)
            if version and (gone or changed or self.version() != version):
                self.client.upsert(self.kb_collection, [{"key": "version", "value": version, "v": [0.0, 0.0]}])
            return {"upserted": changed, "deleted": gone}

    def version(self) -> str | None:
        """The knowledge base's version (the generation last synced), None before the first sync:
        one primary-key lookup, cheap enough to poll."""
        try:
            r = self.client.get(self.kb_collection, ids=["version"], output_fields=["value"])
        except Exception:  # no collection yet (nothing synced), or the server is away: no version
            return None
        return r[0]["value"] if r else None

    def texts(self, doc_ids: list[str] | None = None) -> dict[str, str]:
        """doc_id -> the document's decoded text, as synced (what a replica slices citations from)."""
        expr = 'doc_id != ""' if doc_ids is None else f"doc_id in [{', '.join(_lit(d) for d in doc_ids)}]"
        parts: dict[str, list] = {}
        for r in self._all(self.texts_collection, ["doc_id", "part", "text"], expr):
            parts.setdefault(r["doc_id"], []).append((r["part"], r["text"]))
        return {d: "".join(t for _, t in sorted(ps)) for d, ps in parts.items()}

    def remove(self, doc_ids: list[str]) -> None:
        for k in range(0, len(doc_ids), 100):
            part = doc_ids[k : k + 100]
            expr = f"doc_id in [{', '.join(_lit(d) for d in part)}]"
            self.client.delete(self.docs_collection, filter=expr)
            self.client.delete(self.texts_collection, filter=expr)
            self.client.delete(self.windows_collection, filter=expr)
            self.client.delete(self.collection, filter=expr)

    def _all(self, collection: str, fields: list[str], expr: str) -> list[dict]:
        out = []
        it = self.client.query_iterator(collection, batch_size=1000, filter=expr, output_fields=fields)
        try:
            while True:
                rows = it.next()
                if not rows:
                    break
                out.extend(rows)
        finally:
            it.close()
        return out

    def records(self) -> tuple[list, list[list[str]], dict[str, dict]]:
        """(chunks, their tokens, doc_id -> metadata) as the collection holds them, read back
        without the local generation: what a replica with no index of its own would serve
        from (chunks ordered by document, then offset). Titles and sections longer than the
        fields hold come back cut (600 / 1300 characters)."""
        docs = self.metadata()
        chunks, tokens = self.chunks_of(list(docs))
        return chunks, tokens, docs

    def metadata(self) -> dict[str, dict]:
        """doc_id -> the document's metadata (its sha256 included), as last synced."""
        return {r["doc_id"]: json.loads(r["meta"]) for r in self._all(self.docs_collection, ["doc_id", "meta"], 'doc_id != ""')}

    def chunks_of(self, doc_ids: list[str]) -> tuple[list, list[list[str]]]:
        """(chunks, their tokens) of these documents, in the order given, each by offset."""
        from ..records import CHUNK_FIELDS, Chunk

        rows = []
        for d in doc_ids:  # by document (at most max_document_chunks each: inside Milvus' 16,384 query window);
            # pymilvus 2.5's query iterator cannot read this collection back from Milvus Lite 2.5.1 (its ARRAY field)
            part = self.client.query(self.collection, filter=f"doc_id == {_lit(d)}", output_fields=[*CHUNK_FIELDS, "tokens"],
                                     limit=MAX_LIMIT)
            rows += sorted(part, key=lambda r: (r["start"], r["end"]))
        chunks = [Chunk(**{k: r[k] for k in CHUNK_FIELDS}) for r in rows]
        return chunks, [json.loads(r["tokens"]) for r in rows]

    def snapshot(self, dim: int, previous=None):
        """What the collection holds as an index.IndexData, for a replica that keeps no
        generation of its own: the chunks (by document id, then offset, as a generation lays
        them out), their tokens and the documents' metadata, with the lexical statistics the
        retriever's ceilings, IDF and no-answer vocabulary need computed from those tokens
        (the same counts the writer's generation holds). No vectors: the dense signal is Milvus'.
        `previous` (the replica's last snapshot): only the documents whose sha256 changed are
        read from Milvus again; the others' chunks and tokens are taken from it."""
        from pathlib import Path

        from ..index import IndexData, Lexical, _rows
        from ..lexical import bigrams
        from ..library import Library

        version = self.version()
        docs = self.metadata()
        docs = {d: docs[d] for d in sorted(docs)}
        rows = getattr(previous, "rows", None) or {}
        kept = {d for d, m in docs.items() if d in rows and previous.docs.get(d, {}).get("sha256") == m.get("sha256")}
        read = self.chunks_of([d for d in docs if d not in kept])
        fresh: dict[str, tuple[list, list]] = {}
        for c, t in zip(*read):
            fresh.setdefault(c.doc_id, ([], []))
            fresh[c.doc_id][0].append(c)
            fresh[c.doc_id][1].append(t)
        chunks, tokens = [], []
        for d in docs:  # by document id, each by offset (as chunks_of gives them and a generation lays them out)
            if d in kept:
                lo, hi = rows[d]
                chunks += previous.chunks[lo:hi]
                tokens += previous.tokens[lo:hi]
            elif d in fresh:
                chunks += fresh[d][0]
                tokens += fresh[d][1]
        words = Lexical.count(tokens)
        grams = Lexical.count(bigrams(c.text) for c in chunks)
        none = np.zeros((0, dim), dtype=np.float32)
        manifest = {"version": version, "store": "milvus", "chunks": len(chunks), "documents": len(docs)}
        data = IndexData(Path(f"milvus-{version or 'empty'}"), manifest, chunks, tokens, docs, Library(), none, none,
                         np.zeros(0, dtype=np.int64), None, None, words.bm25(), grams.bm25(), lex=(words, grams))
        data.rows = _rows(chunks)
        return data

    def count(self) -> int:
        r = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(r[0]["count(*)"])

    # ----------------------------------------------------------- reads
    def _search(self, data, field: str, metric: str, limit: int, expr: str, collection: str | None = None,
                output: list[str] | None = None):
        r = self.client.search(collection or self.collection, data=[data], anns_field=field,
                               limit=max(1, min(limit, MAX_LIMIT)), filter=expr,
                               search_params={"metric_type": metric, "params": {}}, output_fields=output or [])
        hits = r[0] if r else []
        if output:
            return hits
        return Hits([h["id"] for h in hits], np.array([h["distance"] for h in hits], dtype=np.float32))

    def window_vectors(self, chunk_ids: list[str]) -> dict[str, np.ndarray]:
        """chunk id -> its sentence windows' vectors, in window order (ids end in #w<j>)."""
        if not chunk_ids:
            return {}
        rows = self.client.query(self.windows_collection, filter=f"chunk_id in [{', '.join(_lit(i) for i in chunk_ids)}]",
                                 output_fields=["id", "chunk_id", "dense"])
        per: dict[str, list] = {}
        for r in rows:
            per.setdefault(r["chunk_id"], []).append((int(r["id"].rsplit("#w", 1)[1]), r["dense"]))
        return {c: np.asarray([v for _, v in sorted(ws)], dtype=np.float32) for c, ws in per.items()}

    def dense(self, vector: np.ndarray, k: int, expr: str = "", windows: bool = True) -> Hits:
        """The best chunks by cosine, each scored by the better of its own vector and its best
        sentence window (the embedded store's dense signal): the chunks' k best and the windows'
        max(WINDOWS_PER_CHUNK * k, MIN_WINDOWS) best, a window's cosine going to its owner chunk."""
        v = np.asarray(vector, dtype=np.float32).tolist()
        chunks = self._search(v, "dense", "IP", k, expr)
        if not windows:
            return chunks
        best = dict(zip(chunks.ids, chunks.scores.tolist()))
        n = max(WINDOWS_PER_CHUNK * k, MIN_WINDOWS)
        for h in self._search(v, "dense", "IP", n, expr, self.windows_collection, ["chunk_id"]):
            cid, d = h["entity"]["chunk_id"], float(h["distance"])
            if d > best.get(cid, -np.inf):
                best[cid] = d
        order = sorted(best.items(), key=lambda kv: -kv[1])
        return Hits([i for i, _ in order], np.array([d for _, d in order], dtype=np.float32))

    def signals(self, words: str, grams: str, vector: np.ndarray, k_dense: int, k_lexical: int,
                filters: dict | None = None, windows: bool = True) -> dict[str, Hits]:
        """Each signal's best chunks inside the filters, with their own scores: dense (cosine, the
        better of the chunk and its best sentence window), words (BM25), grams (BM25). The
        retriever fuses them as it fuses its own signals."""
        expr = expression(filters)
        out = {"dense": self.dense(vector, k_dense, expr, windows=windows)}
        empty = Hits([], np.zeros(0, dtype=np.float32))
        out["words"] = self._bm25(words, "sparse_words", k_lexical, expr) if words.strip() else empty
        out["grams"] = self._bm25(grams, "sparse_grams", k_lexical, expr) if grams.strip() else empty
        return out

    def _bm25(self, text: str, field: str, k: int, expr: str) -> Hits:
        """BM25 hits on bm25s' scale (the embedded store's): Milvus' scores divided by k1 + 1, so
        that a score means the same on both backends (not only its rank and min-max)."""
        from ..index import K1

        h = self._search(text, field, "BM25", k, expr)
        return Hits(h.ids, h.scores / np.float32(K1 + 1))

    def search(self, query_text: str, query_vector: np.ndarray, k: int = 5, filters: dict | None = None,
               ranker: str = "rrf", weights: tuple[float, float, float] = (1.0, 0.5, 0.5)) -> list[dict]:
        """Milvus hybrid search (dense + BM25 over words + BM25 over bigrams) fused by Milvus
        (RRF, or weighted): the chunks with their fields and the fused score."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        from ..lexical import bigrams

        expr = expression(filters) or None
        n = max(k * 4, 50)
        reqs = [AnnSearchRequest([np.asarray(query_vector, dtype=np.float32).tolist()], "dense",
                                 {"metric_type": "IP"}, n, expr=expr),
                AnnSearchRequest([query_text], "sparse_words", {"metric_type": "BM25"}, n, expr=expr)]
        g = " ".join(bigrams(query_text))
        if g:
            reqs.append(AnnSearchRequest([g], "sparse_grams", {"metric_type": "BM25"}, n, expr=expr))
        ranker_ = RRFRanker(60) if ranker == "rrf" else WeightedRanker(*weights[: len(reqs)])
        r = self.client.hybrid_search(self.collection, reqs, ranker_, limit=k,
                                      output_fields=["doc_id", "title", "section", "paragraph", "start", "end", "text"])
        return [{"id": h["id"], "score": float(h["distance"]), **h["entity"]} for h in (r[0] if r else [])]

    def close(self) -> None:
        """Let go of the collection: the client's connection and, for a Milvus Lite file, the
        local server process that holds the file (Milvus Lite lets one process open a file: a
        second service can open it once the first has closed it)."""
        with _clients_lock:
            for key in [k for k, v in _clients.items() if v is self]:
                del _clients[key]
        try:
            self.client.close()
        finally:
            if self.local:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)

    def drop(self) -> None:
        for name in self._names:
            if self.client.has_collection(name):
                self.client.drop_collection(name)
