"""Saved web pages → the page's main text, by trafilatura.

Why trafilatura: the best-scoring maintained main-text extractor in the published
benchmarks (ScrapingHub, its own evaluation), with justext/readability as built-in
fallbacks; it drops navigation, breadcrumbs, share widgets and footers, keeps headings
and paragraphs as separate lines, decodes GBK/GB2312 pages by their declared or
detected charset, and extracts dates with htmldate.

The way back to offsets is the simplest one: the extracted main text *is* the
document's text (stored and cited); the page's HTML is not kept. Lines that are
still page furniture after extraction (当前位置/您的位置 breadcrumbs, 分享到/打印本页/
关闭窗口 widgets) are left out of it. Metadata comes first from the <meta> tags
Chinese government sites write (ArticleTitle, PubDate, ContentSource, SiteName),
then from the page's own “发布时间：… 来源：…” line, then from trafilatura.
"""
from __future__ import annotations

import copy
import re

from . import Converted, FormatError

MIN_CHARS = 20  # less main text than this (non-space characters): the page has no main text

FURNITURE = re.compile(
    r"^\s*(?:当前位置|您的位置|您现在的位置|你的位置|所在位置)\s*[:：]"
    r"|^\s*首页\s*[>＞›»/]"
    r"|分享到|打印本页|关闭窗口|【\s*打印\s*】|【\s*关闭\s*】|扫一扫在手机|收藏本页|返回顶部"
    r"|^\s*(?:版权所有|主办单位|承办单位|网站标识码|技术支持|联系我们)\s*[:：]?|ICP备|公网安备"
)
BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "section", "article", "form", "br"}
TABLE_PARTS = {"table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption"}
META_KEYS = {
    "title": ("articletitle", "title", "og:title", "dc.title"),
    "published": ("pubdate", "publishdate", "firstpublishedtime", "article:published_time", "dc.date", "date", "publish_date"),
    "source": ("contentsource", "source", "dc.publisher"),
    "site": ("sitename", "og:site_name"),
    "issuer": ("author", "dc.creator"),
    "description": ("description",),
}
DATE = re.compile(r"((?:19|20)\d{2})\s*[-年./]\s*(\d{1,2})\s*[-月./]\s*(\d{1,2})")
PUBLISHED_LINE = re.compile(r"(?:发布时间|发布日期|发文日期|成文日期|日期|时间)\s*[:：]\s*((?:19|20)\d{2}\s*[-年./]\s*\d{1,2}\s*[-月./]\s*\d{1,2})")
SOURCE_LINE = re.compile(r"(?:来源|信息来源|发布机构|发文机关)\s*[:：]\s*([^\s|｜:：]{2,40})")


def _squash(text: str | None) -> str:
    from ..text import squash

    return squash(text or "")


def _chars(text: str | None) -> int:
    return len(_squash(text))


_SHORT = None


def _short_pages():
    """trafilatura's settings without the floor below which it hands a page to its fallbacks."""
    global _SHORT
    if _SHORT is None:
        from trafilatura.settings import use_config

        cfg = use_config()
        cfg.set("DEFAULT", "MIN_EXTRACTED_SIZE", str(MIN_CHARS))
        _SHORT = cfg
    return _SHORT


def _iso(value: str | None) -> str | None:
    m = DATE.search(value or "")
    if not m:
        return None
    y, mo, d = (int(g) for g in m.groups())
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}"


def _meta_tags(tree) -> dict:
    found: dict[str, str] = {}
    for el in tree.iter("meta"):
        key = (el.get("name") or el.get("property") or el.get("itemprop") or "").strip().lower()
        value = (el.get("content") or "").strip()
        if key and value and key not in found:
            found[key] = value
    out: dict = {}
    for field, keys in META_KEYS.items():
        for k in keys:
            if found.get(k):
                out[field] = found[k]
                break
    if "published" in out:
        iso = _iso(out["published"])
        if iso:
            out["published"] = iso
        else:
            del out["published"]
    return out


def _headline(tree) -> str | None:
    """The article's own heading: the first <h1>, else the first title-classed element or <h2>, that reads
    like a title (4-100 characters, not page furniture)."""
    for xp in ("//h1", "//*[contains(@class,'title') or contains(@class,'bt') or contains(@id,'title')]", "//h2"):
        for el in tree.xpath(xp):
            if el.tag in ("title", "meta", "head"):
                continue
            t = re.sub(r"\s+", " ", "".join(el.itertext())).strip()
            if 4 <= len(t) <= 100 and not FURNITURE.search(t):
                return t
    return None


def _normalise_blocks(tree) -> None:
    """Tables used for page layout (as older government sites are built) become divs, so that the
    extractor sees blocks instead of one data table holding the whole page. A table is layout when
    a cell holds block elements or when it has a single column; tables of text cells stay tables."""
    layout = []
    for table in list(tree.iter("table")):
        if table.getparent() is None:
            continue
        text = "".join(table.itertext()).strip()
        links = "".join(t for a in table.iter("a") for t in a.itertext()).strip()
        if text and len(links) >= 0.6 * len(text):  # a menu laid out as a table
            table.getparent().remove(table)
            continue
        rows = [tr for tr in table.iter("tr") if next(tr.iterancestors("table"), None) is table]
        cells = [c for tr in rows for c in tr if c.tag in ("td", "th")]
        single_column = all(sum(1 for c in tr if c.tag in ("td", "th")) <= 1 for tr in rows)
        blocky = any(d.tag in BLOCKS for c in cells for d in c.iterdescendants() if isinstance(d.tag, str))
        if single_column or blocky:
            layout.extend(
                el
                for el in [table, *table.iterdescendants()]
                if isinstance(el.tag, str)
                and el.tag in TABLE_PARTS
                and (el is table or next(el.iterancestors("table"), None) is table)
            )
    for el in layout:  # renamed after all are found: a renamed table is no longer an ancestor "table"
        el.tag = "div"
    # a div holding only inline content is a paragraph: trafilatura drops bare-text divs (and the
    # heading before them) that follow <p> paragraphs, as the end of many articles is written
    for el in tree.iter("div"):
        if "".join(el.itertext()).strip() and not any(
            isinstance(d.tag, str) and d.tag in BLOCKS for d in el.iterdescendants()
        ):
            el.tag = "p"


def convert_html(name: str, data: bytes) -> Converted:
    import trafilatura
    from lxml import etree
    from trafilatura.utils import load_html

    tree = load_html(data)
    if tree is None:
        raise FormatError(f"{name}: not a readable web page")
    meta = _meta_tags(tree)
    # before extraction, which prunes the tree: the page's own "发布时间：… 来源：…" line, anywhere in the page (it is often outside the article)
    page_text = " ".join(t.strip() for t in tree.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]") if t.strip())
    m = PUBLISHED_LINE.search(page_text)
    if m and "published" not in meta:
        meta["published"] = _iso(m.group(1))
    m = SOURCE_LINE.search(page_text)
    if m and "source" not in meta:
        meta["source"] = m.group(1)
    headline = _headline(tree)
    _normalise_blocks(tree)

    def extract(page, config=None):
        return trafilatura.bare_extraction(page, with_metadata=True, include_comments=False, include_tables=True,
                                           include_images=False, include_links=False, deduplicate=False, config=config)

    try:
        # a page of less main text than trafilatura's MIN_EXTRACTED_SIZE (250 characters) goes to its fallback
        # extractors, whose baseline puts every text node on a line of its own: 学校<b>6所</b>，总投资 became
        # three lines, cutting the sentence that answers 几所. The main extractor without that floor is taken
        # when it keeps the same text (a page it reads well); else what the fallback found
        short = extract(copy.deepcopy(tree), _short_pages())
        doc = extract(tree)
    except (ValueError, etree.LxmlError) as e:
        raise FormatError(f"{name}: the web page cannot be parsed ({e})") from None
    if short is not None and short.text:
        found = _chars(doc.text) if doc is not None and doc.text else 0
        if headline and _squash(headline) in _squash(doc.text if doc is not None else "") \
                and _squash(headline) not in _squash(short.text):
            found -= _chars(headline)  # the heading is put back below either way
        if _chars(short.text) >= 0.9 * found:
            doc = short
    text = (doc.text if doc is not None else "") or ""
    lines = [l.strip() for l in text.splitlines()]
    lines = [l for l in lines if l and not FURNITURE.search(l)]
    if headline and lines and re.sub(r"\s", "", headline) not in re.sub(r"\s", "", "".join(lines[:3])):
        lines.insert(0, headline)  # the extractor took the body without the heading above it
    text = "\n".join(lines)
    if len(re.sub(r"\s", "", text)) < MIN_CHARS:
        raise FormatError(
            f"{name}: no main text found in the web page (only navigation, links or scripts); "
            "save the article page itself, or copy its text into a .txt file"
        )

    if headline and "title" not in meta:
        meta["title"] = headline
    if doc is not None:
        if doc.title and "title" not in meta:
            meta["title"] = doc.title
        if doc.date and "published" not in meta and _iso(doc.date):
            meta["published"] = _iso(doc.date)
        if doc.sitename and "site" not in meta:
            meta["site"] = doc.sitename
        if doc.url:
            meta.setdefault("url", doc.url)
    meta = {k: v for k, v in meta.items() if v}
    return Converted(text=text, removed=[], pages=[], ocr=False, metadata=meta)
