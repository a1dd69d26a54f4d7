"""qa.formats on real files made here: a two-page text PDF typeset from seed 004 with a CJK
font (running header, page numbers), the same pages scanned (rendered to images and wrapped
in a PDF again), one page as a PNG, a saved web page shaped like the seeds' source sites
(breadcrumbs, share widgets, footer, GBK), and the bad files users send (encrypted PDF,
PDF with no text, scans without OCR, a page with no main text)."""
from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from qa.errors import QAError
from qa.formats import Converted, FormatError, OCRUnavailable, convert

SEED = Path(__file__).resolve().parent.parent / "seeds" / "004_6f03f12d06f5859c.txt"
HEADER = "南通市海门区教育体育局文件"
PAGE_CHARS = 1250  # source characters per page: two pages from the seed's first ~2,500


def squash(s: str) -> str:
    return re.sub(r"\s", "", s)


def kept(c: Converted, a: int = 0, b: int | None = None) -> str:
    """text[a:b] less the removed spans: what a chunker may cite."""
    b = len(c.text) if b is None else b
    out, pos = [], a
    for s, e, _ in sorted(c.removed):
        if e <= a or s >= b:
            continue
        out.append(c.text[pos:max(s, pos)])
        pos = max(pos, e)
    out.append(c.text[pos:b])
    return "".join(out)


def overlap(got: str, want: str) -> float:
    """Share of the wanted characters (with multiplicity) that were recognised."""
    g, w = Counter(squash(got)), Counter(squash(want))
    return sum((g & w).values()) / sum(w.values())


# ------------------------------------------------------------------ fixtures made here
def _cjk_font() -> Path | None:
    paths: list[str] = []
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True).stdout
        paths = [l.split(":")[0].strip() for l in out.splitlines() if l.strip()]
    paths += [str(p) for p in Path("/usr/share/fonts").glob("**/*CJK*")] if Path("/usr/share/fonts").is_dir() else []
    regular = [p for p in paths if "Regular" in p and "Sans" in p] + paths
    for p in regular:
        if p.lower().endswith((".ttf", ".otf", ".ttc")) and Path(p).is_file():
            return Path(p)
    return None


@pytest.fixture(scope="module")
def source_pages() -> list[list[str]]:
    """The seed's first paragraphs, split at paragraph boundaries into two pages of ~1,250 characters."""
    paras = [l.strip() for l in SEED.read_text(encoding="utf-8").splitlines() if l.strip()]
    pages: list[list[str]] = [[], []]
    page = 0
    for p in paras:
        if sum(len(x) for x in pages[page]) + len(p) > PAGE_CHARS:
            if page == 1 or not pages[0]:
                continue  # too long for what is left: the next one may fit
            page = 1
        pages[page].append(p)
    assert pages[0] and pages[1]
    return pages


def _bureau_pdf(header: str, title: str, author: str, footer: str):
    """An A4 FPDF as bureaus print: a running header, page numbers in the footer (`footer` with {n}), a CJK
    font, automatic page breaks (skips the test when the machine has no CJK font)."""
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (a dev dependency) writes the test PDFs")
    font = _cjk_font()
    if font is None:
        pytest.skip("no CJK font on this machine (install fonts-noto-cjk) to typeset the test PDF")

    class Doc(fpdf.FPDF):
        def header(self):
            self.set_font("cjk", size=9)
            self.cell(0, 5, header, align="C")
            self.set_font("cjk", size=11)
            self.set_y(28)

        def footer(self):
            self.set_y(-15)
            self.set_font("cjk", size=9)
            self.cell(0, 5, footer.format(n=self.page_no()), align="C")

    pdf = Doc(format="A4")
    kw = {"collection_font_number": 2} if font.suffix.lower() == ".ttc" else {}  # Noto CJK: JP, KR, SC, …
    pdf.add_font("cjk", fname=str(font), **kw)
    pdf.set_auto_page_break(True, margin=22)
    pdf.set_title(title)
    pdf.set_author(author)
    return pdf


def typeset(pages: list[list[str]], header: str, title: str, author: str, footer: str = "— {n} —") -> bytes:
    """A PDF as bureaus print them, one list of paragraphs per page: a running header, page numbers
    in the footer, first-line indents, a CJK font (skips the test when the machine has none)."""
    pdf = _bureau_pdf(header, title, author, footer)
    for page in pages:
        pdf.add_page()
        for para in page:
            pdf.multi_cell(0, 7, "\u3000\u3000" + para, new_x="LMARGIN", new_y="NEXT")  # first-line indent, as 公文 have
    assert pdf.page_no() == len(pages), "each list of paragraphs must typeset to exactly one page"
    return bytes(pdf.output())


@pytest.fixture(scope="module")
def text_pdf(source_pages) -> bytes:
    return typeset(source_pages, HEADER, "海门区教育体育局2024年工作计划", "南通市海门区教育体育局")


def _page_images(pdf_bytes: bytes, scale: float):
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(pdf_bytes)
    try:
        return [pdf[i].render(scale=scale).to_pil().convert("L") for i in range(len(pdf))]
    finally:
        pdf.close()


@pytest.fixture(scope="module")
def scanned_pdf(text_pdf) -> bytes:
    """The text PDF as a scanner makes it: each page an image (150 dpi greyscale), no text layer."""
    images = _page_images(text_pdf, 150 / 72)
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=150)
    return buf.getvalue()


def _mixed_pdf(text_pdf: bytes, scanned_pdf: bytes) -> bytes:
    """Page 1 with its text layer, page 2 scanned: a signed page scanned back into a report."""
    import pypdfium2 as pdfium

    out, a, b = pdfium.PdfDocument.new(), pdfium.PdfDocument(text_pdf), pdfium.PdfDocument(scanned_pdf)
    out.import_pages(a, [0])
    out.import_pages(b, [1])
    buf = io.BytesIO()
    out.save(buf)
    for d in (out, a, b):
        d.close()
    return buf.getvalue()


@pytest.fixture(scope="module")
def offline_ocr(scanned_pdf, text_pdf):
    """OCR results, made with every socket refused and rapidocr's downloader disabled (the models
    must come from the wheel): the scanned PDF, a PDF whose second page is scanned, and the top
    half of page 2 as a PNG."""
    pytest.importorskip("rapidocr", reason="the OCR extra: pip install 'policy-qa[ocr]'")
    import rapidocr.utils.download_file as dl

    import qa.formats.ocr as ocr

    def refuse(*a, **k):
        raise AssertionError(f"network access during OCR: {a}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(dl.DownloadFile, "run", classmethod(lambda cls, *a, **k: refuse("download", *a)))
        mp.setattr(ocr, "_engine", None)  # built here, under the refusal
        scanned = convert("scan.pdf", scanned_pdf)
        mixed = convert("mixed.pdf", _mixed_pdf(text_pdf, scanned_pdf))
        page2 = _page_images(text_pdf, 1.5)[1]
        png = io.BytesIO()
        page2.crop((0, 0, page2.width, page2.height // 2)).save(png, format="PNG")
        image = convert("page2.png", png.getvalue())
    return {"scanned": scanned, "mixed": mixed, "image": image}


# ------------------------------------------------------------------ text PDF
def test_text_pdf_gives_the_source_text_page_by_page_with_header_and_page_numbers_removed(text_pdf, source_pages):
    c = convert("plan.pdf", text_pdf)
    assert not c.ocr
    assert squash(kept(c)) == squash("".join(p for page in source_pages for p in page))
    assert len(c.pages) == 2
    for (a, b), page in zip(c.pages, source_pages):
        assert squash(kept(c, a, b)) == squash("".join(page))
    assert c.pages[0][0] == 0 and c.pages[1][1] == len(c.text) and c.pages[0][1] < c.pages[1][0]
    reasons = {(c.text[s:e], r) for s, e, r in c.removed}
    assert reasons == {(HEADER, "header"), ("— 1 —", "page_number"), ("— 2 —", "page_number")}
    assert sum(1 for _, _, r in c.removed if r == "header") == 2
    for s, e, r in c.removed:  # each removed span lies inside its page and is a whole line
        assert any(a <= s and e <= b for a, b in c.pages)
        assert (s == 0 or c.text[s - 1] == "\n") and (e == len(c.text) or c.text[e] == "\n")


def test_text_pdf_keeps_one_paragraph_per_line_and_headings_on_their_own_lines(text_pdf, source_pages):
    c = convert("plan.pdf", text_pdf)
    lines = [squash(l) for l in kept(c).splitlines() if l.strip()]
    assert lines == [squash(p) for page in source_pages for p in page]
    assert any(l.startswith("一、") for l in lines) and any(l.startswith("1.") for l in lines)


def test_text_pdf_metadata_comes_from_the_pdf_info(text_pdf):
    c = convert("plan.pdf", text_pdf)
    assert c.metadata["title"] == "海门区教育体育局2024年工作计划"
    assert c.metadata["author"] == "南通市海门区教育体育局"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", c.metadata["created"])
    assert c.page_of(c.pages[1][0]) == 2 and c.page_of(0) == 1


# ------------------------------------------------------------------ scans and images (OCR)
@pytest.mark.slow
def test_scanned_pdf_is_read_by_ocr_offline_close_to_the_source_with_pages(offline_ocr, source_pages):
    c = offline_ocr["scanned"]
    assert c.ocr and "ocr_pages" not in c.metadata
    assert len(c.pages) == 2
    for (a, b), page in zip(c.pages, source_pages):
        assert overlap(kept(c, a, b), "".join(page)) >= 0.9
    # the running header and the page numbers are furniture in a scan too; headings keep their lines
    assert {r for _, _, r in c.removed} >= {"page_number"}
    assert not any(HEADER in l for l in kept(c).splitlines())
    assert any(l.startswith("一、") for l in kept(c).splitlines())


@pytest.mark.slow
def test_a_pdf_with_one_scanned_page_reads_that_page_by_ocr_and_says_which(offline_ocr, source_pages):
    c = offline_ocr["mixed"]
    assert c.ocr and c.metadata["ocr_pages"] == [2] and len(c.pages) == 2
    (a1, b1), (a2, b2) = c.pages
    assert squash(kept(c, a1, b1)) == squash("".join(source_pages[0]))  # the text layer, exactly
    assert overlap(kept(c, a2, b2), "".join(source_pages[1])) >= 0.9


@pytest.mark.slow
def test_an_image_of_a_page_is_read_by_ocr(offline_ocr, source_pages):
    c = offline_ocr["image"]
    assert c.ocr and len(c.pages) == 1 and c.pages[0] == (0, len(c.text))
    got = kept(c)
    assert len(squash(got)) >= 0.3 * len(squash("".join(source_pages[1])))  # the top half of the page
    assert overlap("".join(source_pages[1]), got) >= 0.9  # what was recognised is the page's text


def test_the_ocr_models_are_the_files_inside_the_wheel():
    pytest.importorskip("rapidocr", reason="the OCR extra: pip install 'policy-qa[ocr]'")
    import rapidocr

    from qa.formats.ocr import model_files

    root = Path(rapidocr.__file__).parent
    for path in model_files().values():
        assert path.is_file() and root in path.parents


def test_a_scan_without_an_ocr_backend_is_a_415_that_names_the_extra(scanned_pdf, monkeypatch):
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # as if the extra were not installed
    for name, data in (("scan.pdf", scanned_pdf), ("page.png", _png_of_text())):
        with pytest.raises(OCRUnavailable) as e:
            convert(name, data)
        assert e.value.status == 415 and "pip install 'policy-qa[ocr]'" in str(e.value) and name in str(e.value)


def _png_of_text() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (200, 60), 255)
    ImageDraw.Draw(img).text((10, 20), "page 1", fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ bad PDFs
def test_an_encrypted_pdf_is_a_422_that_says_so():
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (a dev dependency) writes the test PDFs")
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(0, 10, "secret plan")
    pdf.set_encryption(owner_password="owner", user_password="user")
    with pytest.raises(FormatError) as e:
        convert("locked.pdf", bytes(pdf.output()))
    assert e.value.status == 422 and "password" in str(e.value) and "locked.pdf" in str(e.value)


def test_a_pdf_with_nothing_on_it_and_a_broken_pdf_are_422():
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (a dev dependency) writes the test PDFs")
    pdf = fpdf.FPDF()
    pdf.add_page()
    with pytest.raises(FormatError, match="no text") as e:
        convert("blank.pdf", bytes(pdf.output()))
    assert e.value.status == 422 and not isinstance(e.value, OCRUnavailable)
    with pytest.raises(FormatError, match="not a readable PDF"):
        convert("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF")
    with pytest.raises(FormatError, match="empty"):
        convert("empty.pdf", b"")


# ------------------------------------------------------------------ web pages
def _web_page(paragraphs: list[str], with_meta: bool = True, charset: str = "gb2312") -> bytes:
    meta = (
        '<meta name="ArticleTitle" content="海门区教育体育局2024年工作计划">'
        '<meta name="PubDate" content="2024-07-15 10:27">'
        '<meta name="ContentSource" content="南通市海门区教育体育局">'
        '<meta name="SiteName" content="南通市海门区人民政府">'
        if with_meta
        else ""
    )
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    html = f"""<!DOCTYPE html>
<html><head><meta http-equiv="Content-Type" content="text/html; charset={charset}">{meta}
<title>海门区教育体育局2024年工作计划_通知公告_南通市海门区人民政府</title>
<script>var _hmt = _hmt || []; function share(x) {{ return x; }}</script></head>
<body>
<div class="top"><a href="/">首页</a> | <a href="/zwgk/">政务公开</a> | <a href="/hdjl/">互动交流</a> | <a href="/bsfw/">办事服务</a>
<form><input name="q"><button>搜索</button></form></div>
<div class="nav"><ul><li><a href="/">网站首页</a></li><li><a href="/xxgk/">信息公开</a></li><li><a href="/tzgg/">通知公告</a></li><li><a href="/zcjd/">政策解读</a></li></ul></div>
<div class="crumb">当前位置：<a href="/">首页</a> &gt; <a href="/zwgk/">政务公开</a> &gt; <a href="/tzgg/">通知公告</a></div>
<div class="article">
<h1 class="title">海门区教育体育局2024年工作计划</h1>
<div class="info"><span>来源：南通市海门区教育体育局</span> <span>发布时间：2024-07-15 10:27</span> <span>累计次数：1024</span> <span>字体：[<a>大</a> <a>中</a> <a>小</a>]</span></div>
<div class="content" id="zoom">
{body}
</div>
<div class="share">分享到：<a href="#" onclick="share('wx')">微信</a> <a href="#">微博</a> <a href="#">QQ空间</a></div>
<div class="tools"><a href="javascript:window.print()">【打印本页】</a> <a href="javascript:window.close()">【关闭窗口】</a></div>
</div>
<div class="related"><h3>相关文章</h3><ul><li><a href="/a/1.html">海门区召开2024年教育工作会议</a></li><li><a href="/a/2.html">区教体局开展师德师风专项检查</a></li></ul></div>
<div class="footer"><p>主办单位：南通市海门区人民政府办公室 承办：海门区大数据管理局</p>
<p>网站标识码：3206840001 苏ICP备05012345号 苏公网安备 32068402000123号</p><p>地址：海门区北京中路1号 电话：0513-12345678</p></div>
</body></html>"""
    return html.encode(charset if charset != "gb2312" else "gb18030")


def test_a_saved_web_page_gives_its_main_text_without_breadcrumbs_widgets_or_footer(source_pages):
    paras = source_pages[0]
    c = convert("plan.html", _web_page(paras))
    assert not c.ocr and c.pages == [] and c.removed == []
    lines = [squash(l) for l in c.text.splitlines()]
    for p in paras:  # every paragraph, whole, on a line of its own
        assert squash(p) in lines
    assert any(l.startswith("一、") for l in lines)
    for junk in ("当前位置", "政务公开", "分享到", "微博", "打印本页", "关闭窗口", "主办单位", "ICP备", "相关文章", "搜索", "_hmt"):
        assert junk not in c.text, junk
    assert c.metadata["published"] == "2024-07-15"
    assert c.metadata["source"] == "南通市海门区教育体育局"
    assert c.metadata["title"] == "海门区教育体育局2024年工作计划"


def test_a_web_page_without_meta_tags_takes_its_date_and_source_from_the_info_line(source_pages):
    c = convert("plan.htm", _web_page(source_pages[1], with_meta=False, charset="utf-8"))
    assert c.metadata["published"] == "2024-07-15"
    assert c.metadata["source"] == "南通市海门区教育体育局"
    assert squash("".join(source_pages[1])) in squash(c.text)


def test_a_table_laid_out_web_page_gives_its_heading_paragraphs_and_closing_section(source_pages):
    """Older government sites lay the whole page out in nested tables, with bare-text divs at the end."""
    paras = [p for page in source_pages for p in page][:6]
    body = "".join(f"<p style='text-indent:2em'>{p}</p>" for p in paras)
    page = f"""<html><head><meta charset="utf-8"><title>惠山区教育局</title></head><body>
<table width="100%"><tr><td><a href="/">首页</a></td><td><a href="/a">机构概况</a></td><td><a href="/b">政务公开</a></td></tr></table>
<table width="980"><tr><td class="dqwz">您现在的位置：<a>首页</a> &gt;&gt; <a>通知公告</a></td></tr>
<tr><td align="center"><h2>关于印发工作意见的通知</h2></td></tr>
<tr><td align="center">发布日期：2018年08月03日　　信息来源：惠山区教育局　　浏览次数：312</td></tr>
<tr><td id="content">{body}<h3>五、工作措施</h3><div>（一）加强党建。要把政治建设摆在首位，推动全面从严治党向纵深发展，持续深化作风建设。</div></td></tr>
<tr><td>【<a href="javascript:print()">打印本页</a>】【<a href="javascript:close()">关闭窗口</a>】</td></tr></table>
<table><tr><td>版权所有：无锡市惠山区教育局 地址：惠山区政和大道 苏ICP备12345678号</td></tr></table></body></html>"""
    c = convert("notice.html", page.encode())
    lines = c.text.splitlines()
    assert lines[0] == "关于印发工作意见的通知" == c.metadata["title"]
    assert [squash(l) for l in lines[1 : 1 + len(paras)]] == [squash(p) for p in paras]
    assert lines[-2:] == ["五、工作措施", "（一）加强党建。要把政治建设摆在首位，推动全面从严治党向纵深发展，持续深化作风建设。"]
    for junk in ("首页", "您现在的位置", "打印本页", "版权所有", "ICP"):
        assert junk not in c.text, junk
    assert c.metadata["published"] == "2018-08-03" and c.metadata["source"] == "惠山区教育局"


def test_a_short_web_page_keeps_bold_and_linked_words_inside_their_sentence():
    """A page of less main text than trafilatura's floor (250 characters) went to its fallback, which put every
    text node on a line of its own: 学校<b>6所</b>，总投资 was three lines and 海门区2025年新建几所学校 was refused."""
    page = ("<html><head><meta charset='utf-8'><title>海门区2025年新建学校项目公示</title></head><body>"
            "<h1>海门区2025年新建学校项目公示</h1><p>发布时间：2025-05-10</p>"
            "<p>2025年海门区计划新建东洲实验小学、临江新区幼儿园等学校<b>6所</b>，总投资约<strong>12亿元</strong>。</p>"
            "<p>另有<a href='/x'>改扩建项目</a>3个，<span>年内</span>完工<em>2个</em>。</p>"
            "<div class='share'><a href='/p'>打印本页</a></div></body></html>").encode()
    c = convert("page.html", page)
    assert c.text.splitlines() == ["海门区2025年新建学校项目公示", "发布时间：2025-05-10",
                                   "2025年海门区计划新建东洲实验小学、临江新区幼儿园等学校6所，总投资约12亿元。",
                                   "另有改扩建项目3个，年内完工2个。"]
    assert c.metadata["published"] == "2025-05-10"


def test_a_web_page_with_no_main_text_is_a_422():
    page = (
        "<html><head><title>首页</title><script>location.href='/index.html'</script></head><body>"
        "<div class='nav'><a href='/'>首页</a> <a href='/zwgk/'>政务公开</a> <a href='/tzgg/'>通知公告</a></div>"
        "<div class='footer'>主办单位：南通市海门区人民政府办公室</div></body></html>"
    ).encode()
    with pytest.raises(FormatError, match="no main text") as e:
        convert("index.html", page)
    assert e.value.status == 422


# ------------------------------------------------------------------ the entry point
def test_other_extensions_are_left_to_the_caller_and_errors_are_qa_errors():
    assert convert("plan.txt", "一、总则".encode()) is None
    assert convert("plan.docx", b"PK\x03\x04") is None
    assert convert("notes.md", b"# x") is None
    assert issubclass(FormatError, QAError) and issubclass(OCRUnavailable, FormatError)


def test_importing_the_converters_loads_no_heavy_library():
    code = (
        "import sys, qa.formats; "
        "print(sorted(m for m in ('pypdfium2', 'trafilatura', 'rapidocr', 'lxml', 'numpy', 'PIL', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------ a paragraph a page break cuts
def test_a_paragraph_cut_by_a_page_break_is_one_paragraph_and_furniture_stays_out_of_it():
    """Paragraphs flowed as a word processor flows them: the page breaks where the page is full, in the middle
    of a paragraph, whose next line starts the next page at the left margin. The converted text holds that
    paragraph on one line (the chunker's paragraph), the next page's range starts inside it, and the page
    number and the running header of the break are still removed spans, written after it, never cited."""
    paras = [l.strip() for l in SEED.read_text(encoding="utf-8").splitlines() if len(l.strip()) > 60]
    pdf = _bureau_pdf(HEADER, "海门区教育体育局2024年工作计划", "南通市海门区教育体育局", "- {n} -")
    pdf.add_page()
    written = []
    for para in paras:  # until the third page has begun: two page breaks, wherever they fall
        pdf.multi_cell(0, 7, "\u3000\u3000" + para, new_x="LMARGIN", new_y="NEXT")
        written.append(para)
        if pdf.page_no() >= 3:
            break
    c = convert("flowed.pdf", bytes(pdf.output()))
    assert len(c.pages) >= 2
    lines = c.text.split("\n")
    # every paragraph written is one line of the text, the ones the page breaks cut too
    for para in written[:-1]:
        assert any(squash(para) == squash(line) for line in lines), para[:30]
    cut = [(a, b) for a, b in c.pages[1:] if a > 0 and c.text[a - 1] != "\n"]
    assert cut, "no page break fell inside a paragraph: the test lays out nothing to join"
    for a, _ in cut:
        line_start, line_end = c.text.rfind("\n", 0, a) + 1, c.text.find("\n", a)
        assert not any(s < line_end and line_start < e for s, e, _ in c.removed)  # no furniture inside it
    reasons = Counter(r for _, _, r in c.removed)
    assert reasons["page_number"] == len(c.pages) and reasons["header"] == len(c.pages)
    assert all(HEADER not in kept(c, a, b) and not re.search(r"- \d -", kept(c, a, b)) for a, b in c.pages)
