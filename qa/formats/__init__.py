"""Documents as people have them: PDF, saved web pages and images of text → one text.

`convert(name, data)` turns the bytes of a .pdf, .html/.htm or image file into a
`Converted`: the text that is stored as the document's text and that citations
index (start/end are offsets into it), plus what a chunker must know about it:

- `removed`: spans of `text` that stay in the text (so every offset is exact) but
  are never cited — page headers, footers and bare page numbers of a PDF;
- `pages`: the character range of each page (page n is `pages[n - 1]`), so a
  citation can say which page it is on; `[]` for formats without pages;
- `ocr`: the text was recognised from an image, not read from the file;
- `metadata`: what the file itself says about the document (PDF info, the
  web page's <meta> tags and its 发布时间/来源 line).

Each line of `text` is one paragraph or heading (a PDF's wrapped lines are joined
back into paragraphs; 一、 （一） 1. headings stay on their own lines), so the
chunker reads it as it reads a .txt file.

The heavy libraries (pypdfium2, trafilatura, rapidocr) are imported only when a
file of their kind is converted: importing this module costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from ..errors import QAError

PDF = (".pdf",)
HTML = (".html", ".htm")
IMAGES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
EXTENSIONS = PDF + HTML + IMAGES
OCR_EXTRA = "pip install 'policy-qa[ocr]'"


class FormatError(QAError):
    """A file of a supported kind that holds no usable text (encrypted, empty, broken)."""

    status = 422


class OCRUnavailable(FormatError):
    """The file needs OCR (an image, a scanned PDF) and no OCR backend is installed."""

    status = 415


@dataclass(frozen=True)
class Converted:
    text: str  # the decoded text citations index; stored as the document's text
    removed: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, reason): kept for offsets, never cited
    pages: list[tuple[int, int]] = field(default_factory=list)  # character range of page n at index n-1; [] without pages
    ocr: bool = False  # the text was recognised from an image
    metadata: dict = field(default_factory=dict)  # title, published, source, issuer, … when the file says so

    def page_of(self, offset: int) -> int | None:
        """The 1-based page holding text[offset], or None for formats without pages."""
        for i, (a, b) in enumerate(self.pages):
            if a <= offset < b or (offset == b and i == len(self.pages) - 1):
                return i + 1
        return None


def convert(name: str, data: bytes) -> Converted | None:
    """Converted text for .pdf, .html/.htm, .png/.jpg/.jpeg/.tif/.tiff; None for any other
    extension (the caller decodes .txt/.md/.docx itself).

    Raises FormatError (422) for a file that cannot be read as its kind says (encrypted
    or broken PDF, web page without main text) and OCRUnavailable (415) for an image or a
    scanned PDF when no OCR backend is installed; each message names the file and the fix.
    """
    ext = PurePath(name).suffix.lower()
    if ext not in EXTENSIONS:
        return None
    if not data:
        raise FormatError(f"{name}: the file is empty")
    if ext in PDF:
        from .pdf import convert_pdf

        return convert_pdf(name, data)
    if ext in HTML:
        from .html import convert_html

        return convert_html(name, data)
    from .ocr import convert_image

    return convert_image(name, data)


__all__ = ["Converted", "FormatError", "OCRUnavailable", "convert", "EXTENSIONS", "OCR_EXTRA"]
