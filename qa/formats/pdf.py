"""PDF → text with pages, by PDFium (pypdfium2).

Why pypdfium2: PDFium is the engine of Chrome's PDF viewer, shipped as a binary
wheel (no system libraries), fast (C++, ~100x pdfminer.six on CJK text), robust with
the CID fonts and ToUnicode maps of Chinese office PDFs, gives every character's box
(what reading order, header/footer and paragraph detection need), and renders pages
to bitmaps — which the OCR of scanned pages needs anyway. One dependency for both.

A page with (almost) no text but an image on it is a scan: it is rendered and OCR'd
when an OCR backend is installed (`policy-qa[ocr]`), else the conversion fails with
a message naming the extra.
"""
from __future__ import annotations

import re
import threading
from datetime import datetime

from . import OCR_EXTRA, Converted, FormatError, OCRUnavailable
from .layout import Line, Page, assemble

MIN_PAGE_CHARS = 5  # fewer non-space characters than this on a page with an image: a scan
OCR_SCALE = 2.0  # 144 dpi: 1684 px for an A4 height; recognition is no better above, only slower
MAX_PAGES = 2000
MAX_OCR_PAGES = 200  # ~3-10 s a page on two cores
# PDFium is not thread-safe (pypdfium2's documentation): a server converting two uploads at once
# must not call into it from two threads. Recognition (onnxruntime) runs outside this lock.
PDFIUM_LOCK = threading.RLock()


def _lines(textpage) -> list[Line]:
    """PDFium's characters → lines (split where PDFium breaks lines), with loose boxes, y downward
    relative to the top of the page (the caller flips)."""
    import pypdfium2.raw as raw

    n = raw.FPDFText_CountChars(textpage)
    out: list[Line] = []
    chars: list[str] = []
    box: list[float] | None = None
    prev: tuple[str, float, float] | None = None
    rect = raw.FS_RECTF()

    def end() -> None:
        nonlocal chars, box
        text = "".join(chars)
        if text.strip() and box is not None:
            out.append(Line(text, box[0], -box[3], box[2], -box[1]))
        chars, box = [], None

    i = 0
    while i < n:
        code = raw.FPDFText_GetUnicode(textpage, i)
        if 0xD800 <= code < 0xDC00 and i + 1 < n:  # a surrogate pair (characters beyond the BMP)
            low = raw.FPDFText_GetUnicode(textpage, i + 1)
            ch = chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
            i += 1
        else:
            ch = chr(code) if code and code not in (0xFFFE, 0xFFFF) else ""
        idx, i = i, i + 1
        if ch in ("\r", "\n"):
            end()
            continue
        if not ch:
            continue
        if raw.FPDFText_IsGenerated(textpage, idx) == 1 or ch.isspace():
            if chars and not chars[-1].isspace():
                chars.append(" ")
            continue
        if not raw.FPDFText_GetLooseCharBox(textpage, idx, rect):
            continue
        l, r, b, t = rect.left, rect.right, rect.bottom, rect.top
        if prev and prev[0] == ch and abs(prev[1] - l) < 1 and abs(prev[2] - b) < 1:
            continue  # the same glyph drawn twice at the same place (fake bold): read once
        prev = (ch, l, b)
        chars.append(ch)
        box = [l, b, r, t] if box is None else [min(box[0], l), min(box[1], b), max(box[2], r), max(box[3], t)]
    end()
    return out


def _has_image(page) -> bool:
    import pypdfium2.raw as raw

    return any(True for _ in page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=2))


def _date(value: str) -> str | None:
    m = re.match(r"D:(\d{4})(\d{2})?(\d{2})?", value or "")
    if not m:
        return None
    try:
        return datetime(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)).date().isoformat()
    except ValueError:
        return None


def _metadata(pdf) -> dict:
    try:
        info = pdf.get_metadata_dict(skip_empty=True)
    except Exception:  # a broken info dictionary is no reason to refuse the text
        return {}
    meta: dict = {}
    title = re.sub(r"^Microsoft (?:Word|PowerPoint|Excel) - ", "", info.get("Title", "")).strip()
    if title:
        meta["title"] = title
    for src, dst in (("Author", "author"), ("Subject", "subject"), ("Keywords", "keywords"), ("Creator", "creator")):
        if info.get(src, "").strip():
            meta[dst] = info[src].strip()
    created = _date(info.get("CreationDate", ""))
    if created:
        meta["created"] = created
    modified = _date(info.get("ModDate", ""))
    if modified:
        meta["modified"] = modified
    return meta


def convert_pdf(name: str, data: bytes) -> Converted:
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as e:
            if getattr(e, "err_code", None) == raw.FPDF_ERR_PASSWORD:
                raise FormatError(
                    f"{name}: the PDF is password-protected; save an unprotected copy (print to PDF) and upload that"
                ) from None
            raise FormatError(f"{name}: not a readable PDF ({e})") from None
    try:
        with PDFIUM_LOCK:
            n = len(pdf)
            if n == 0:
                raise FormatError(f"{name}: the PDF has no pages")
            if n > MAX_PAGES:
                raise FormatError(f"{name}: {n} pages; at most {MAX_PAGES} are read")
            pages: list[Page] = []
            scans: list[int] = []
            for i in range(n):
                page = pdf[i]
                width, height = page.get_size()
                textpage = page.get_textpage()
                lines = _lines(textpage)
                textpage.close()
                for l in lines:  # PDF space has y upward from the bottom: make it downward from the top
                    l.top, l.bottom = l.top + height, l.bottom + height
                if sum(len(l.text.strip()) for l in lines) < MIN_PAGE_CHARS and _has_image(page):
                    scans.append(i)
                pages.append(Page(lines, width, height))
                page.close()
            meta = _metadata(pdf)
        if scans:
            from .ocr import ocr_available, recognise

            if not ocr_available():
                what = "has no text layer" if len(scans) == n else f"has scanned pages ({', '.join(str(i + 1) for i in scans)})"
                raise OCRUnavailable(f"{name}: the PDF {what} and no OCR backend is installed; install it with {OCR_EXTRA}")
            if len(scans) > MAX_OCR_PAGES:
                raise FormatError(
                    f"{name}: {len(scans)} scanned pages; at most {MAX_OCR_PAGES} are read by OCR in one upload (split the file)"
                )
            for i in scans:
                with PDFIUM_LOCK:  # render under the lock, recognise outside it
                    page = pdf[i]
                    bitmap = page.render(scale=OCR_SCALE)
                    img = bitmap.to_numpy().copy()
                    bitmap.close()
                    page.close()
                pages[i] = Page(recognise(img), img.shape[1], img.shape[0])
    finally:
        with PDFIUM_LOCK:
            pdf.close()
    out = assemble(pages)
    if len(re.sub(r"\s", "", out.text)) < MIN_PAGE_CHARS:
        raise FormatError(f"{name}: no text found in the PDF (neither a text layer nor recognisable scanned text)")
    if scans and len(scans) < len(pages):
        meta["ocr_pages"] = [i + 1 for i in scans]
    return Converted(text=out.text, removed=out.removed, pages=out.pages, ocr=bool(scans), metadata=meta)
