"""Incremental writes (issue 13): a write carries the unchanged documents over and counts
only the new ones, and what it builds is exactly what `qa index --rebuild` builds from the
same library: the same chunks, tokens, BM25 weights (bit for bit) and the same rankings."""
from __future__ import annotations

import json
import shutil

import bm25s
import numpy as np
import pytest

from qa import index as index_mod
from qa import manage
from qa.lexical import bigrams
from qa.service import Service
from qa.settings import REPO_ROOT, Settings
from qa.text import file_sha256

TEST_DATA = REPO_ROOT / ".qa-data" / "test"
PLACES = "甲乙丙丁戊己庚辛壬癸"


def county(i: int, extra: str = "") -> bytes:
    place = PLACES[i % 10] + PLACES[(i // 10) % 10] + "县"
    return (f"2025年{place}教育工作要点\n一、学前教育\n1.新建公办幼儿园{i % 7 + 1}所，新增学位{100 + i}个。{extra}\n"
            f"二、义务教育\n1.推进集团化办学，新组建教育集团{i % 5 + 1}个，课后服务参与率{90 + i % 10}%。\n").encode()


def weights(model) -> dict[str, tuple[list[int], bytes]]:
    """token -> (ascending rows, float32 weights as bytes) of a bm25s index: its contents,
    whatever ids its vocabulary happens to give the tokens."""
    s, inv = model.scores, {i: t for t, i in model.vocab_dict.items()}
    out = {}
    for tid in range(len(s["indptr"]) - 1):
        a, b = int(s["indptr"][tid]), int(s["indptr"][tid + 1])
        out[inv[tid]] = (s["indices"][a:b].tolist(), s["data"][a:b].tobytes())
    return out


def test_bm25_from_counts_is_bm25s_bit_for_bit(settings):
    data = index_mod.load(index_mod.current_generation(settings.index_dir))
    for tokens in (data.tokens, [bigrams(c.text) for c in data.chunks]):
        ref = bm25s.BM25()
        ref.index(tokens, show_progress=False)
        ours = index_mod.Lexical.count(tokens).bm25()
        assert weights(ours) == weights(ref)
        assert set(ours.vocab_dict) == set(ref.vocab_dict)
        for q in (tokens[3][:6], tokens[10][:3] + ["没有这个词"], tokens[0][:1] * 2):
            assert np.array_equal(ours.get_scores(q), ref.get_scores(q))


@pytest.fixture
def library(tmp_path, embedder):
    """The seeds' index copied, then written to one small change at a time."""
    shutil.copytree(TEST_DATA / "index", tmp_path / "index")
    return Settings(data_dir=tmp_path, model_cache=TEST_DATA / "models")


QUESTIONS = ["甲乙县新增学位多少", "新组建教育集团", "普惠性幼儿园覆盖率", "课后服务参与率", "招聘新教师", "丙县幼儿园",
             "义务教育集团化办学"]


def _ranking(svc: Service) -> list[list[tuple[str, float]]]:
    return [[(p["citation"]["doc_id"] + ":" + str(p["citation"]["paragraph"]), p["score"])
             for p in svc.ask(q, top_k=10)["passages"]] for q in QUESTIONS]


class OneByOne:
    """The embedder, one passage per call: int8 activations are quantised per batch, so a passage's
    vector depends a little on the passages batched with it (cosine ≥ 0.99, not bit for bit); one
    at a time, what a write embeds is what a rebuild embeds, so the two can be compared exactly."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_passages(self, texts, stage=None, **kw):
        out = []
        for t in texts:
            out.append(np.asarray(self.inner.encode_passages([t], **kw), dtype=np.float32).reshape(1, -1))
            if stage is not None:
                stage.advance(1)
        return np.concatenate(out) if out else np.zeros((0, self.inner.dim), dtype=np.float32)


def test_incremental_writes_build_what_a_rebuild_builds(tmp_path, embedder):
    s = Settings(data_dir=tmp_path, model_cache=TEST_DATA / "models")
    embedder = OneByOne(embedder)
    svc = Service.load(s, embedder=embedder)  # the seeds, embedded one passage at a time
    svc, _ = svc.add([(f"c{i}.txt", county(i)) for i in range(3)])  # several at once
    for i in range(3, 6):  # one at a time
        svc, _ = svc.add([(f"c{i}.txt", county(i))])
    svc, res = svc.add([("c1.txt", county(1, "托育服务覆盖率达到60%。"))])  # replaced: new tokens, old ones gone
    assert res[0]["status"] == "replaced"
    svc = svc.remove("c4")  # tokens only c4 had leave the vocabulary
    svc = svc.remove("003_699d69580ee34bfa")  # a seed hidden
    inc = svc.index
    assert inc.lex is not None and index_mod.load(inc.path).lex is not None  # counts kept in the generation

    # what was built in memory is what the generation holds on disk
    disk = index_mod.load(inc.path)
    assert disk.chunks == inc.chunks and disk.tokens == inc.tokens and disk.docs == inc.docs
    assert weights(disk.bm25) == weights(inc.bm25) and weights(disk.bm25_bigrams) == weights(inc.bm25_bigrams)
    assert np.array_equal(disk.vectors, inc.vectors) and np.array_equal(disk.window_owner, inc.window_owner)

    ranking = _ranking(svc)
    rebuilt = Service.load(s, embedder=embedder, rebuild=True)  # `qa index --rebuild`: every document read and embedded
    full = rebuilt.index
    assert full.path != inc.path and set(full.docs) == set(inc.docs)
    assert full.chunks == inc.chunks and full.tokens == inc.tokens
    assert {k: {**m} for k, m in full.docs.items()} == inc.docs
    assert weights(full.bm25) == weights(inc.bm25)
    assert weights(full.bm25_bigrams) == weights(inc.bm25_bigrams)
    # the corpus hash each write updated by the documents it changed (added, replaced, removed) is the rebuild's
    assert inc.manifest["corpus_hash"] == full.manifest["corpus_hash"]
    assert inc.manifest["corpus_hash_kind"] == full.manifest["corpus_hash_kind"] == index_mod.CORPUS_HASH
    assert set(full.bm25.vocab_dict) == set(inc.bm25.vocab_dict)
    assert np.array_equal(full.window_owner, inc.window_owner)
    # a rebuild embeds every passage again: the same vectors
    assert np.allclose(full.vectors, inc.vectors, atol=1e-6) and np.allclose(full.window_vectors, inc.window_vectors, atol=1e-6)
    assert np.array_equal(full.segments[0]["docs"], sorted(full.docs)) and len(full.segments) == 1  # one segment
    again = _ranking(rebuilt)
    for a, b in zip(ranking, again):
        assert [x for x, _ in a] == [x for x, _ in b]
        assert np.allclose([y for _, y in a], [y for _, y in b], atol=1e-4)


def test_a_write_reuses_rows_and_does_not_read_the_library_back(library, embedder, monkeypatch):
    s = library
    data, _ = manage.add(s, embedder, [("c1.txt", county(1))], progress=False)

    def no_load(*a, **k):
        raise AssertionError("a write read its generation back")

    monkeypatch.setattr(index_mod, "load", no_load)
    data2, _ = manage.add(s, embedder, [("c2.txt", county(2))], progress=False, live=data)
    assert data2.path.name != data.path.name and data2.path.is_dir()
    rows = data2.rows["c1"]
    assert data2.chunks[rows[0] : rows[1]] == data.chunks[data.rows["c1"][0] : data.rows["c1"][1]]
    lo, hi = data.rows["c1"]
    assert np.array_equal(data2.vectors[rows[0] : rows[1]], data.vectors[lo:hi])


def _older_layout(data, gen, counts: bool) -> None:
    """Write `data` as a generation of the older, single-folder layout (version 3): whole-library
    files, and the term counts (`counts`) or, older still, bm25s' own files."""
    import io

    gen.mkdir()
    files = {
        "chunks.jsonl": "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in data.chunks).encode(),
        "tokens.jsonl": "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in data.tokens).encode(),
        "docs.json": json.dumps(data.docs, ensure_ascii=False).encode(),
        "library.json": json.dumps(data.library.to_dict(), ensure_ascii=False).encode(),
    }
    for name, arr in (("vectors.npy", data.vectors), ("window_vectors.npy", data.window_vectors),
                      ("window_owner.npy", data.window_owner)):
        buf = io.BytesIO()
        np.save(buf, arr)
        files[name] = buf.getvalue()
    for name, body in files.items():
        (gen / name).write_bytes(body)
    for sub, rows in (("bm25", data.tokens), ("bm25_bigrams", [bigrams(c.text) for c in data.chunks])):
        if counts:
            index_mod.Lexical.count(rows).save(gen / sub)
        else:
            ref = bm25s.BM25()
            ref.index(rows, show_progress=False)
            ref.save(str(gen / sub))
    manifest = {k: v for k, v in data.manifest.items() if k not in ("segments", "order", "files")}
    manifest["index_version"] = "3"
    manifest["files"] = {str(f.relative_to(gen)): file_sha256(f) for f in sorted(gen.rglob("*")) if f.is_file()}
    (gen / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))


@pytest.mark.parametrize("counts", [True, False])
def test_a_generation_of_the_older_layout_is_read_and_written_on_from(library, embedder, counts):
    """Generations of the single-folder layout (version 3: with term counts, or with bm25s' own
    files from before those) still load and serve, and the next write turns them into a segment."""
    s = library
    seeds = index_mod.load(index_mod.current_generation(s.index_dir))
    gen = s.index_dir / "gen-20250101000000-1-1"
    _older_layout(seeds, gen, counts)
    (s.index_dir / "CURRENT").write_text(gen.name)
    old = index_mod.load(gen)
    assert old.segments is None and (old.lex is not None) == counts and old.chunks == seeds.chunks
    svc = Service.load(s, embedder=embedder)
    assert svc.index.path == gen  # current as it is: not rewritten at start
    assert svc.ask("普惠性幼儿园覆盖率")["passages"][0]["citation"]["doc_id"] == "000_eaec54ca81dddf17"
    data, _ = manage.add(s, embedder, [("c1.txt", county(1))], progress=False, live=svc.index)
    assert data.lex is not None and len(data.segments) == 1 and set(data.segments[0]["docs"]) == set(data.docs)
    assert np.array_equal(data.vectors[: len(seeds.vectors)], seeds.vectors)  # carried over, not embedded again
    ref = bm25s.BM25()
    ref.index(data.tokens, show_progress=False)
    assert weights(data.bm25) == weights(ref)
    assert index_mod.load(data.path).chunks == data.chunks


# ------------------------------------------------------------- segments
class Counting:
    """The embedder, counting the passages it is given."""

    def __init__(self, inner):
        self.inner, self.passages = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_passages(self, texts, **kw):
        self.passages += len(texts)
        return self.inner.encode_passages(texts, **kw)


def _files(folder) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_write_writes_only_the_new_document_and_references_the_rest(library, embedder):
    """What a small upload writes does not grow with the library: its generation holds one
    segment with the new document's rows, and names the earlier segments, whose files stay
    as they were (same inode, never rewritten)."""
    s = library
    svc = Service.load(s, embedder=embedder)
    svc, _ = svc.add([(f"c{i}.txt", county(i)) for i in range(8)])
    before = {e["name"]: _files(s.index_dir / e["name"]) for e in svc.index.segments}
    sizes = []
    for i in (20, 21):
        svc, _ = svc.add([(f"c{i}.txt", county(i))])
        gen = svc.index.path
        seg = json.loads((gen / "segment" / "manifest.json").read_text())
        assert list(seg["docs"]) == [f"c{i}"]  # only the new document's rows
        assert sum(1 for _ in (gen / "segment" / "chunks.jsonl").open()) == svc.index.docs[f"c{i}"]["chunks"]
        sizes.append(sum(p.stat().st_size for p in (gen / "segment").rglob("*") if p.is_file()))
    assert max(sizes) < 40_000  # a few kB of vectors and counts, not the library's megabytes
    for name, files in before.items():  # earlier segments: referenced, untouched
        assert name in {e["name"] for e in svc.index.segments}
        assert _files(s.index_dir / name) == files
    disk = index_mod.load(svc.index.path)
    assert disk.chunks == svc.index.chunks and np.array_equal(disk.vectors, svc.index.vectors)


def test_segments_merge_and_deleted_rows_go_and_it_is_still_what_a_rebuild_builds(tmp_path, embedder, monkeypatch):
    s = Settings(data_dir=tmp_path, model_cache=TEST_DATA / "models")
    embedder = OneByOne(embedder)
    monkeypatch.setattr(index_mod, "MERGE_FACTOR", 3)
    svc = Service.load(s, embedder=embedder)
    for i in range(7):
        svc, _ = svc.add([(f"c{i}.txt", county(i))])
        assert len(svc.index.segments) <= 1 + 2 * 3  # a few per size class, never one per write
    held = [k for e in svc.index.segments for k in e["docs"]]
    assert sorted(held) == sorted(svc.index.docs)  # every document in exactly one segment
    for i in range(7):  # a segment with its rows mostly deleted is rewritten without them
        svc = svc.remove(f"c{i}")
    assert all(2 * e["live"] >= e["rows"] for e in svc.index.segments)
    svc, _ = svc.add([("c9.txt", county(9)), ("c8.txt", county(8, "托育服务覆盖率达到60%。"))])
    svc = svc.remove("001_c94d74ce0abaca2b")
    inc = svc.index
    disk = index_mod.load(inc.path)
    assert disk.chunks == inc.chunks and disk.tokens == inc.tokens and disk.docs == inc.docs
    assert weights(disk.bm25) == weights(inc.bm25) and weights(disk.bm25_bigrams) == weights(inc.bm25_bigrams)
    assert np.array_equal(disk.vectors, inc.vectors) and np.array_equal(disk.window_vectors, inc.window_vectors)
    assert np.array_equal(disk.window_owner, inc.window_owner)
    ranking = _ranking(svc)
    full = Service.load(s, embedder=embedder, rebuild=True)
    assert full.index.chunks == inc.chunks and full.index.tokens == inc.tokens
    assert weights(full.index.bm25) == weights(inc.bm25) and weights(full.index.bm25_bigrams) == weights(inc.bm25_bigrams)
    assert [[x for x, _ in a] for a in _ranking(full)] == [[x for x, _ in a] for a in ranking]
    live = {e["name"] for e in full.index.segments} | {p.name for p in (full.index.path, )}
    previous = index_mod.referenced(s.index_dir, s.index_dir / (s.index_dir / "PREVIOUS").read_text().strip()) \
        if (s.index_dir / "PREVIOUS").exists() else set()
    assert {p.name for p in s.index_dir.iterdir() if p.name.startswith("gen-")} == live | previous  # the rest collected


def test_a_damaged_segment_shared_with_the_previous_generation_costs_its_documents_only(library, embedder):
    """Both live generations serve the segment (so the fallback is no help): the other documents
    serve at once and only the damaged segment's documents are embedded again."""
    from qa.store import Store

    s = library
    svc = Service.load(s, embedder=embedder)
    svc, _ = svc.add([("c0.txt", county(0))])  # the copied seeds' generation (older layout) becomes a segment
    svc, _ = svc.add([("c1.txt", county(1)), ("c2.txt", county(2))])
    shared = svc.index.path
    svc, _ = svc.add([("c3.txt", county(3))])
    svc, _ = svc.add([("c4.txt", county(4))])
    assert shared.name in {e["name"] for e in svc.index.segments}
    assert shared.name in index_mod.referenced(s.index_dir, Store(s).previous_path())
    with open(shared / "segment" / "vectors.npy", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x7f" * 8)
    with pytest.raises(index_mod.IndexError_, match="corrupted"):
        index_mod.load(svc.index.path)
    opened = Store(s).open(embedder, progress=False, wait=False)
    assert "2 documents are embedded again" in opened.rebuilding
    assert set(opened.data.docs) == set(svc.index.docs) - {"c1", "c2"} and set(opened.data.damaged) == {"c1", "c2"}
    counting = Counting(embedder)
    repaired = Store(s).open(counting, progress=False).data
    assert set(repaired.docs) == set(svc.index.docs)
    c1 = sum(len(index_mod.windows(c)) + 1 for c in repaired.chunks if c.doc_id in ("c1", "c2"))
    assert counting.passages == c1  # c1 and c2's chunks and windows, nothing else
    assert index_mod.load(index_mod.current_generation(s.index_dir)).docs == repaired.docs
