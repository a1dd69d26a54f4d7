"""Documents as people have them, end to end: a text PDF, a scanned PDF, a saved web page and a
.docx made here from seed passages, added with `qa add` and over `POST /documents` into a
knowledge base of their own (one small seed, the shared built model), then asked about.

Each answer's first passages must hold the right passage; its citation must reproduce the cited
text by the seeds' rule (squash(passage) == squash(source[start:end] less the removed spans));
PDF citations carry the right `page`, the scan's `ocr: true`; page headers and page numbers are
never cited; the web page's date and source and the .docx's notice header reach GET /documents.
Bad files get a clear 4xx and leave nothing stored."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
from fastapi.testclient import TestClient

from qa import ingest as ingest_mod
from qa.chunking import chunk_document
from qa.corpus import parse_document
from qa.settings import REPO_ROOT, Settings
from qa.text import squash
from test_documents import TOWN, make_docx
from test_formats import _page_images, typeset

SEEDS = REPO_ROOT / "seeds"
MODELS = REPO_ROOT / ".qa-data" / "test" / "models"
KEY = {"X-API-Key": "formats-key"}
RUNNING_HEADER = "海门区教育体育局（内部资料）"
TEXT_PDF, SCAN_PDF, WEB, DOCX = "海门计划.pdf", "武进扫描.pdf", "某区要点.html", "惠山意见.docx"


# ------------------------------------------------------------------ files made from the seeds
def _paras(seed: str) -> list[str]:
    text = next(SEEDS.glob(seed + "_*.txt")).read_text(encoding="utf-8")
    return [re.sub(r"\[bookmark:[^\]]*\]", "", l).strip() for l in text.splitlines() if l.strip()]


def _pages(paras: list[str], chars: int = 1150, n: int = 2) -> list[list[str]]:
    """Paragraphs in order, into n pages of at most `chars` characters (longer ones skipped)."""
    pages, cur = [], []
    for p in paras:
        if len(p) > chars:
            continue
        if sum(map(len, cur)) + len(p) > chars:
            pages.append(cur)
            cur = []
            if len(pages) == n:
                break
        cur.append(p)
    assert len(pages) == n
    return pages


def _typeset(pages: list[list[str]], title: str, author: str) -> bytes:
    """A PDF as bureaus print them: a running header and "- n -" page numbers, one list per page."""
    return typeset(pages, RUNNING_HEADER, title, author, footer="- {n} -")


def _scan(pdf_bytes: bytes) -> bytes:
    """Pages rendered to 150 dpi greyscale images and wrapped in a PDF again: no text layer."""
    images = _page_images(pdf_bytes, 150 / 72)
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=150)
    return buf.getvalue()


def _web_page(paras: list[str]) -> bytes:
    """Shaped like a district government site: menus, breadcrumbs, an info line with 来源/发布时间,
    share and print widgets, related links and a footer; GBK-encoded."""
    body = "\n".join(f"<p style='text-indent:2em'>{p}</p>" for p in paras)
    html = f"""<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">
<title>2020年某区教育工作要点_通知公告_某区人民政府</title><script>var _hmt = _hmt || [];</script></head><body>
<div class="top"><a href="/">首页</a> | <a href="/zwgk/">政务公开</a> | <a href="/bsfw/">办事服务</a></div>
<div class="crumb">当前位置：<a href="/">首页</a> &gt; <a href="/zwgk/">政务公开</a> &gt; <a href="/tzgg/">通知公告</a></div>
<div class="article"><h1 class="title">2020年某区教育工作要点</h1>
<div class="info"><span>来源：某区教育局</span> <span>发布时间：2020-03-10 09:30</span> <span>浏览次数：256</span></div>
<div class="content" id="zoom">{body}</div>
<div class="share">分享到：<a href="#">微信</a> <a href="#">微博</a></div>
<div class="tools"><a href="javascript:window.print()">【打印本页】</a> <a href="javascript:window.close()">【关闭窗口】</a></div></div>
<div class="related"><h3>相关文章</h3><ul><li><a href="/a/1.html">某区召开2020年教育工作会议</a></li></ul></div>
<div class="footer"><p>主办单位：某区人民政府办公室</p><p>苏ICP备05012345号</p></div></body></html>"""
    return html.encode("gb18030")


@pytest.fixture(scope="module")
def text_pdf() -> bytes:
    pages = _pages(_paras("004")[2:])  # after the title and the 来源 line
    pages[0].insert(0, "海门区教育体育局2024年工作计划")
    return _typeset(pages, "海门区教育体育局2024年工作计划", "南通市海门区教育体育局")


@pytest.fixture(scope="module")
def files(text_pdf) -> dict[str, bytes]:
    web = _paras("003")[4:12]  # the first article's title, its paragraphs and headings
    notice = next(SEEDS.glob("000_*.txt")).read_text(encoding="utf-8").splitlines()[:60]  # blank paragraphs too, as Word keeps them
    return {TEXT_PDF: text_pdf, WEB: _web_page(web), DOCX: make_docx(notice)}


# ------------------------------------------------------------------ the knowledge base
def _env(kb) -> dict:
    return dict(os.environ, QA_DATA_DIR=str(kb["data"]), QA_CORPUS_DIR=str(kb["corpus"]), QA_MODEL_CACHE=str(MODELS))


@pytest.fixture(scope="module")
def kb(tmp_path_factory, built, files):
    """One small seed; the .docx and the text PDF added with `qa add` (its own process) before the app starts."""
    root = tmp_path_factory.mktemp("formats")
    (root / "seeds").mkdir()
    (root / "seeds" / "town.txt").write_text(TOWN, encoding="utf-8")
    kb = {"data": root / "data", "corpus": root / "seeds", "in": root / "in"}
    kb["in"].mkdir()
    for name in (DOCX, TEXT_PDF):
        (kb["in"] / name).write_bytes(files[name])
    r = subprocess.run([sys.executable, "-m", "qa.cli", "add", str(kb["in"] / DOCX), str(kb["in"] / TEXT_PDF)],
                       env=_env(kb), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert re.search(r"added\s+海门计划\s+\(\d+ chunks\)", r.stdout) and re.search(r"added\s+惠山意见", r.stdout), r.stdout
    return kb


@pytest.fixture(scope="module")
def client(kb, files):
    """The app over that data dir (it loads what `qa add` committed); the web page uploaded over HTTP."""
    from server.app import create_app

    s = Settings(data_dir=kb["data"], corpus_dir=kb["corpus"], model_cache=MODELS, api_key=KEY["X-API-Key"])
    with TestClient(create_app(s, background=False)) as c:
        r = c.post("/documents", files={"file": (WEB, files[WEB])}, headers=KEY)
        assert r.status_code == 200, r.text
        assert r.json()["documents"][0]["status"] == "added"
        yield c


def _kept(doc, a: int, b: int) -> str:
    """doc.text[a:b] less the removed spans: what a citation may quote."""
    out, pos = [], a
    for r in sorted(doc.removed, key=lambda r: r.start):
        if r.end <= a or r.start >= b:
            continue
        out.append(doc.text[pos:max(r.start, pos)])
        pos = max(pos, r.end)
    out.append(doc.text[pos:b])
    return "".join(out)


def _ask(client, question: str, doc_id: str, must: str, within: int = 3) -> dict:
    """The first passage of `doc_id` containing `must`, which must be among the first `within`."""
    body = client.post("/ask", json={"question": question, "top_k": 5}).json()
    for p in body["passages"][:within]:
        if p["citation"]["doc_id"] == doc_id and must in squash(p["text"]):
            return p
    pytest.fail(f"{question}: no passage of {doc_id} with {must!r} in the top {within}: "
                + repr([(p["citation"]["doc_id"], p["text"][:30]) for p in body["passages"]]))


def _cites_exactly(client, p: dict, name: str, data: bytes):
    """The citation reproduces the passage: the slice the API serves is the stored text there, and
    that text less its removed spans is the passage (whitespace ignored). Returns the document."""
    c = p["citation"]
    doc = ingest_mod.ingest(name, data).document  # as it was ingested (converted files are cached)
    got = client.get(f"/documents/{c['doc_id']}", params={"start": c["start"], "end": c["end"]})
    assert got.status_code == 200, got.text
    assert got.json()["text"] == doc.text[c["start"]:c["end"]]
    assert squash(p["text"]) == squash(_kept(doc, c["start"], c["end"]))
    assert doc.text[c["start"]] == p["text"].lstrip()[0] and doc.text[c["end"] - 1] == p["text"].rstrip()[-1]
    return doc, got.json()


# ------------------------------------------------------------------ the converter's spans in parse_document
def test_spans_a_converter_removes_are_recorded_and_never_chunked():
    text = "海门区工作计划\n页眉文字\n一、总则\n1.全面推进学校建设，新建学校3所。\n- 2 -\n2.加强师资队伍建设。"
    a = text.index("页眉文字")
    b = text.index("- 2 -")
    doc = parse_document(text, "x", removed=[(a, a + 4, "header"), (b, b + 5, "page_number")])
    assert {(r.start, r.end, r.kind) for r in doc.removed} >= {(a, a + 4, "header"), (b, b + 5, "page_number")}
    chunks = chunk_document(doc)
    assert chunks and not any("页眉" in c.text or "- 2 -" in c.text for c in chunks)
    for c in chunks:  # offsets still point into the original text
        assert squash(c.text) == squash(_kept(doc, c.start, c.end))
    assert parse_document(text, "x").removed != doc.removed  # without spans, nothing of the kind is removed


# ------------------------------------------------------------------ each format, asked about
def test_a_text_pdf_added_with_qa_add_is_cited_with_its_page_and_never_cites_page_furniture(client, files):
    p = _ask(client, "海门区实验附小聚贤校区什么时候交付？", "海门计划", "交付实验附小聚贤校区")
    c = p["citation"]
    doc, sliced = _cites_exactly(client, p, TEXT_PDF, files[TEXT_PDF])
    pages = doc.metadata["pages"]
    assert len(pages) == 2 and pages[1][0] <= c["start"] < pages[1][1]
    assert c["page"] == 2 and "page_end" not in c and "ocr" not in c
    assert sliced["page"] == 2 and sliced["pages"] == pages and "ocr_pages" not in sliced
    kinds = {(doc.text[r.start:r.end], r.kind) for r in doc.removed if r.kind in ("header", "footer", "page_number")}
    assert kinds == {(RUNNING_HEADER, "header"), ("- 1 -", "page_number"), ("- 2 -", "page_number")}
    chunks = ingest_mod.ingest(TEXT_PDF, files[TEXT_PDF]).chunks
    assert not any(RUNNING_HEADER in ch.text or re.search(r"- \d -", ch.text) for ch in chunks)
    first = _ask(client, "海门区学前教育普及普惠区创建", "海门计划", "普及普惠")
    assert first["citation"]["page"] == 1


def test_a_docx_added_with_qa_add_is_cited_and_its_notice_header_is_its_metadata(client, files):
    p = _ask(client, "惠山区怎样拓展办学空间、化解入园难入学难？", "惠山意见", "放大现有教育资源存量")
    _cites_exactly(client, p, DOCX, files[DOCX])
    assert set(p["citation"]) == {"doc_id", "title", "section", "paragraph", "start", "end"}  # no pages: no page keys
    header = _ask(client, "惠教发[2018]50号是什么文件？", "惠山意见", "惠教发[2018]50号")
    _cites_exactly(client, header, DOCX, files[DOCX])
    meta = {d["doc_id"]: d for d in client.get("/documents").json()}["惠山意见"]
    assert meta["doc_number"] == "惠教发[2018]50号" and meta["issuer"] == "无锡市惠山区教育局"
    assert meta["issued"] == "2018-08-03" and meta["source"] == "upload"


def test_a_saved_web_page_uploaded_is_cited_and_its_date_and_source_are_listed(client, files):
    p = _ask(client, "某区如何提升青少年运动和健康水平？", "某区要点", "阳光体育运动")
    _cites_exactly(client, p, WEB, files[WEB])
    assert "page" not in p["citation"] and "ocr" not in p["citation"]
    meta = {d["doc_id"]: d for d in client.get("/documents").json()}["某区要点"]
    assert meta["published"] == "2020-03-10" and meta["publisher"] == "某区教育局"
    assert meta["title"] == "2020年某区教育工作要点"
    for junk in ("当前位置", "分享到", "打印本页", "主办单位", "ICP"):
        assert junk not in client.get("/documents/某区要点").json()["text"]
    listed = client.post("/ask", json={"question": "阳光体育运动", "filters": {"issued_after": "2020-01-01"}}).json()
    got = {q["citation"]["doc_id"] for q in listed["passages"]}
    assert "某区要点" in got and "惠山意见" not in got  # published 2020-03-10; the .docx was issued in 2018


@pytest.mark.slow
def test_a_scanned_pdf_uploaded_is_read_by_ocr_and_cited_with_page_and_ocr(client, files):
    pages = _pages(_paras("001"))
    scan = _scan(_typeset(pages, "2020年常州市武进区教育工作意见", "常州市武进区教育局"))
    r = client.post("/documents", files={"file": (SCAN_PDF, scan)}, headers=KEY)
    assert r.status_code == 200, r.text
    p = _ask(client, "武进区上半年要取缔多少家简易托幼机构？", "武进扫描", "简易托幼机构")
    c = p["citation"]
    doc, sliced = _cites_exactly(client, p, SCAN_PDF, scan)
    assert c["page"] == 2 and c["ocr"] is True and "53" in p["text"]
    assert doc.metadata["ocr_pages"] == [1, 2] and sliced["ocr_pages"] == [1, 2]
    assert not any(RUNNING_HEADER in ch.text for ch in ingest_mod.ingest(SCAN_PDF, scan).chunks)


# ------------------------------------------------------------------ bad files
def _stored(kb) -> set[str]:
    return {p.name for p in (kb["data"] / "documents").iterdir()}


def test_bad_files_get_a_clear_4xx_and_nothing_is_stored(client, kb, text_pdf, monkeypatch):
    fpdf = pytest.importorskip("fpdf")
    locked = fpdf.FPDF()
    locked.add_page()
    locked.set_font("helvetica", size=12)
    locked.cell(0, 10, "secret plan")
    locked.set_encryption(owner_password="owner", user_password="user")
    no_text = (
        "<html><head><title>首页</title></head><body><div class='nav'><a href='/'>首页</a> <a href='/zwgk/'>政务公开</a></div>"
        "<div class='footer'>主办单位：某区人民政府办公室</div></body></html>"
    ).encode()
    import qa.formats.ocr as ocr

    monkeypatch.setattr(ocr, "ocr_available", lambda: False)  # as if the OCR extra were not installed
    monkeypatch.setattr(ingest_mod, "_CONVERTED", OrderedDict())  # nothing remembered from earlier conversions
    scan = _scan(text_pdf)
    before_docs, before_files = client.get("/documents").json(), _stored(kb)
    for name, data, status, words in (
        ("locked.pdf", bytes(locked.output()), 422, "password"),
        ("scan.pdf", scan, 415, "pip install 'policy-qa[ocr]'"),
        ("index.html", no_text, 422, "no main text"),
        ("fake.pdf", b"%PDF-1.4 not really", 422, "not a readable PDF"),
    ):
        r = client.post("/documents", files={"file": (name, data)}, headers=KEY)
        assert r.status_code == status, (name, r.text)
        assert words in r.json()["error"]["message"] and name in r.json()["error"]["message"]
        assert client.get("/documents").json() == before_docs
        assert _stored(kb) == before_files


# ------------------------------------------------------------------ a conversion is made once
def test_a_converted_original_is_read_from_its_stored_conversion_and_leaves_with_it(client, kb, files, monkeypatch):
    """PDF reading and OCR happen once, at ingest: `qa add` stored the text PDF's conversion beside its original,
    and a new process reads that instead of converting again (here with every converter refusing); a damaged
    conversion is made again and stored again; a removed upload's conversion goes with its original."""
    import json

    import qa.formats as formats
    from qa.library import conversion_path, read_mirror, read_original

    s = Settings(data_dir=kb["data"], corpus_dir=kb["corpus"], model_cache=MODELS)
    doc_id, entry = next((k, e) for k, e in read_mirror(s).uploads.items() if e["name"] == TEXT_PDF)
    path = conversion_path(s, entry)
    assert path.is_file() and json.loads(path.read_bytes())["sha256"] == entry["sha256"]
    want = ingest_mod.ingest(TEXT_PDF, files[TEXT_PDF]).document.text

    def refuse(name, data):
        raise AssertionError(f"{name} converted again")

    with monkeypatch.context() as m:
        m.setattr(ingest_mod, "_CONVERTED", OrderedDict())  # a new process: nothing converted yet
        m.setattr(formats, "convert", refuse)
        assert read_original(s, doc_id, entry) == want
    path.write_bytes(b'{"version": 1, "sha256": "')  # damaged (a disk that filled up, an editor)
    monkeypatch.setattr(ingest_mod, "_CONVERTED", OrderedDict())
    assert read_original(s, doc_id, entry) == want
    assert json.loads(path.read_bytes())["sha256"] == entry["sha256"]  # made again, stored again

    page = _web_page(_paras("003")[12:18])
    r = client.post("/documents", files={"file": ("临时网页.html", page)}, headers=KEY)
    assert r.status_code == 200, r.text
    added = r.json()["documents"][0]["doc_id"]
    new_entry = read_mirror(s).uploads[added]
    original, conversion = kb["data"] / "documents" / new_entry["file"], conversion_path(s, new_entry)
    assert original.is_file() and conversion.is_file()
    assert client.delete(f"/documents/{added}", headers=KEY).status_code == 200
    assert not original.exists() and not conversion.exists()


def test_an_upload_whose_text_reads_differently_now_is_indexed_again(tmp_path, embedder, files, monkeypatch):
    """A converter whose output changed (a library upgrade, a better layout reader) would shift every citation
    of a document indexed from its old output. At the next start the upload's text is compared with the one
    its passages were cut from (its sha256 in the index) and the document is indexed again from the new text:
    its citations slice the text that is served. Simulated by editing the stored conversion."""
    import hashlib
    import json

    from qa.library import conversion_path, read_mirror
    from qa.service import Service

    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "town.txt").write_text(TOWN, encoding="utf-8")
    s = Settings(data_dir=tmp_path / "data", corpus_dir=tmp_path / "seeds", model_cache=MODELS)
    svc, _ = Service.load(s, embedder=embedder).add([(TEXT_PDF, files[TEXT_PDF])])
    doc_id, entry = next((k, e) for k, e in read_mirror(s).uploads.items() if e["name"] == TEXT_PDF)
    path = conversion_path(s, entry)
    stored = json.loads(path.read_bytes())
    shift = "说明：本文件由扫描件重新识别。\n"  # the new reading: a line more at the top, every offset moves
    stored["text"] = shift + stored["text"]
    stored["removed"] = [[a + len(shift), b + len(shift), w] for a, b, w in stored["removed"]]
    stored["pages"] = [[0 if i == 0 else a + len(shift), b + len(shift)] for i, (a, b) in enumerate(stored["pages"])]
    path.write_bytes(json.dumps(stored, ensure_ascii=False).encode("utf-8"))
    monkeypatch.setattr(ingest_mod, "_CONVERTED", OrderedDict())  # a new process

    again = Service.load(s, embedder=embedder)
    text = again.sources[doc_id]
    assert text.startswith(shift)
    assert again.index.docs[doc_id]["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    chunks = [c for c in again.index.chunks if c.doc_id == doc_id]
    assert chunks and all(text[c.start] == c.text.lstrip()[0] and text[c.end - 1] == c.text.rstrip()[-1] for c in chunks)
    body = again.ask("海门区2024年对清华北大录取人数的目标是多少？", top_k=5)
    p = next(p for p in body["passages"] if p["citation"]["doc_id"] == doc_id)
    assert squash(p["text"])[:20] in squash(text[p["citation"]["start"]:p["citation"]["end"]])


def test_uploads_of_every_encoding_stay_current_at_the_next_start(tmp_path, embedder, files):
    """The start-up check above re-indexes an upload only when its text changed: a UTF-8 file with a BOM and
    CRLF line ends, a GB18030 one, Markdown and a converted web page all read as they were indexed."""
    from qa import index as index_mod
    from qa.service import Service
    from qa.store import Store

    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "town.txt").write_text(TOWN, encoding="utf-8")
    s = Settings(data_dir=tmp_path / "data", corpus_dir=tmp_path / "seeds", model_cache=MODELS)
    uploads = [("甲县.txt", "\ufeff2025年甲县教育工作要点\r\n一、学前教育\r\n1.新建公办幼儿园3所。\r\n".encode("utf-8")),
               ("乙县.txt", "2025年乙县教育工作要点\n一、义务教育\n1.新组建教育集团2个。\n".encode("gb18030")),
               ("丙县.md", "# 丙县要点\n\n一、**学前**教育\n\n1. 新建幼儿园[两所](http://x)。\n".encode("utf-8")),
               (WEB, files[WEB])]
    Service.load(s, embedder=embedder).add(uploads)
    store = Store(s)
    data = index_mod.load(store.live_path())
    texts, current = store._current(data, embedder)
    assert current and len(texts) == 1 + len(uploads)
