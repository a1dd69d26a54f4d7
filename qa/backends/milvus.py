"""Milvus as the store's index: one collection of chunks (fields, citation offsets, the dense
vector, and two BM25 sparse vectors Milvus generates itself), plus a small collection of the
documents it holds (doc_id -> sha256), so a sync is a diff, not a re-index.

    idx = MilvusIndex("/tmp/qa.db")            # Milvus Lite file, or "http://milvus:19530"
    idx.sync(data)                              # upsert changed documents, delete removed ones
    idx.search("…", vector, k=5, filters={"region": "海门区"})     # hybrid search (dense + BM25)
    idx.signals(words, grams, vector, k_dense, k_lexical, filters) # per-signal hits for qa.retrieval

Lexical signals: `words` is the chunk's section + text under Milvus' own `jieba` analyzer
(checked: milvus-lite 2.5.1 accepts {"tokenizer": "jieba"}; Milvus standalone needs ≥ 2.5.16
for the same); `grams` is the project's character bigrams, pre-tokenised and joined by
spaces under the whitespace analyzer. `analyzer="tokens"` uses the project's own jieba tokens
(user dictionary, stopwords) pre-tokenised for `words` too.

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
    return MilvusClient(**kw)


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
                                    analyzer=settings.milvus_analyzer)
            return _clients[key]

    # ------------------------------------------------------------ schema
    def ensure(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        c = self.client
        self.dim = dim
        if not c.has_collection(self.collection):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=512)
            s.add_field("doc_id", DataType.VARCHAR, max_length=256)
            s.add_field("title", DataType.VARCHAR, max_length=2048)
            s.add_field("section", DataType.VARCHAR, max_length=4096)
            s.add_field("paragraph", DataType.INT64)
            s.add_field("start", DataType.INT64)
            s.add_field("end", DataType.INT64)
            s.add_field("text", DataType.VARCHAR, max_length=8192)
            s.add_field("region", DataType.VARCHAR, max_length=128)
            s.add_field("region_base", DataType.VARCHAR, max_length=128)
            s.add_field("years", DataType.ARRAY, element_type=DataType.INT64, max_capacity=64)
            s.add_field("kind", DataType.VARCHAR, max_length=128)
            s.add_field("issued", DataType.VARCHAR, max_length=16)
            tok = {"tokenizer": "jieba"} if self.analyzer == "jieba" else {"tokenizer": "whitespace"}
            s.add_field("words", DataType.VARCHAR, max_length=16384, enable_analyzer=True, analyzer_params=tok)
            s.add_field("grams", DataType.VARCHAR, max_length=32768, enable_analyzer=True,
                        analyzer_params={"tokenizer": "whitespace"})
            s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
            s.add_field("sparse_words", DataType.SPARSE_FLOAT_VECTOR)
            s.add_field("sparse_grams", DataType.SPARSE_FLOAT_VECTOR)
            s.add_function(Function(name="bm25_words", function_type=FunctionType.BM25,
                                    input_field_names=["words"], output_field_names=["sparse_words"]))
            s.add_function(Function(name="bm25_grams", function_type=FunctionType.BM25,
                                    input_field_names=["grams"], output_field_names=["sparse_grams"]))
            ip = c.prepare_index_params()
            dense_params = {"M": 16, "efConstruction": 200} if self.index_type == "HNSW" else {}
            ip.add_index("dense", index_type=self.index_type, metric_type="IP", params=dense_params)
            ip.add_index("sparse_words", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            ip.add_index("sparse_grams", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            ip.add_index("doc_id", index_type="INVERTED") if not self.local else None
            c.create_collection(self.collection, schema=s, index_params=ip)
        if not c.has_collection(self.docs_collection):
            s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            s.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=256)
            s.add_field("sha256", DataType.VARCHAR, max_length=64)
            s.add_field("chunks", DataType.INT64)
            s.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
            ip = c.prepare_index_params()
            ip.add_index("v", index_type="FLAT", metric_type="L2")
            c.create_collection(self.docs_collection, schema=s, index_params=ip)
        c.load_collection(self.collection)
        c.load_collection(self.docs_collection)

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

    def sync(self, data) -> dict:
        """Make the collection hold exactly the generation's documents: documents whose sha256
        differs are replaced (delete by doc_id, insert their chunks), documents not in the
        generation are deleted. Vectors come from the generation: nothing is re-embedded."""
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
                rows = []
                for i, c in enumerate(data.chunks):
                    if c.doc_id not in todo:
                        continue
                    m = data.docs.get(c.doc_id, {})
                    region = m.get("region") or ""
                    words = " ".join(data.tokens[i]) if self.analyzer == "tokens" else f"{c.section} {c.text}"
                    rows.append({
                        "id": c.id, "doc_id": c.doc_id, "title": c.title[:600], "section": c.section[:1300],
                        "paragraph": int(c.paragraph), "start": int(c.start), "end": int(c.end), "text": c.text,
                        "region": region, "region_base": region[:-1] if region else "",
                        "years": [int(y) for y in m.get("years", [])][:64], "kind": m.get("kind") or "",
                        "issued": _date(m) or "", "words": words, "grams": " ".join(bigrams(c.text)),
                        "dense": data.vectors[i].astype(np.float32).tolist(),
                    })
                for k in range(0, len(rows), BATCH):
                    self.client.insert(self.collection, rows[k : k + BATCH])
                docs = [{"doc_id": d, "sha256": want[d], "chunks": int(data.docs[d].get("chunks", 0)), "v": [0.0, 0.0]}
                        for d in changed]
                for k in range(0, len(docs), BATCH):
                    self.client.upsert(self.docs_collection, docs[k : k + BATCH])
            return {"upserted": changed, "deleted": gone}

    def remove(self, doc_ids: list[str]) -> None:
        for k in range(0, len(doc_ids), 100):
            part = doc_ids[k : k + 100]
            expr = f"doc_id in [{', '.join(_lit(d) for d in part)}]"
            self.client.delete(self.docs_collection, filter=expr)
            self.client.delete(self.collection, filter=expr)

    def count(self) -> int:
        r = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(r[0]["count(*)"])

    # ----------------------------------------------------------- reads
    def _search(self, data, field: str, metric: str, limit: int, expr: str) -> Hits:
        r = self.client.search(self.collection, data=[data], anns_field=field, limit=max(1, min(limit, MAX_LIMIT)),
                               filter=expr, search_params={"metric_type": metric, "params": {}}, output_fields=[])
        hits = r[0] if r else []
        return Hits([h["id"] for h in hits], np.array([h["distance"] for h in hits], dtype=np.float32))

    def signals(self, words: str, grams: str, vector: np.ndarray, k_dense: int, k_lexical: int,
                filters: dict | None = None) -> dict[str, Hits]:
        """Each signal's best chunks inside the filters, with their own scores: dense (cosine),
        words (BM25), grams (BM25). The retriever fuses them as it fuses its own signals."""
        expr = expression(filters)
        out = {"dense": self._search(np.asarray(vector, dtype=np.float32).tolist(), "dense", "IP", k_dense, expr)}
        empty = Hits([], np.zeros(0, dtype=np.float32))
        out["words"] = self._search(words, "sparse_words", "BM25", k_lexical, expr) if words.strip() else empty
        out["grams"] = self._search(grams, "sparse_grams", "BM25", k_lexical, expr) if grams.strip() else empty
        return out

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

    def drop(self) -> None:
        for name in (self.collection, self.docs_collection):
            if self.client.has_collection(name):
                self.client.drop_collection(name)
