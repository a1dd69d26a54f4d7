"""Corpus cleaning and chunking on the real seeds.

The citation rule, stated precisely: for every chunk c of document d,
    squash(c.text) == squash(kept(d, c.start, c.end))
where kept() is d.text[start:end] with every character inside a recorded
`Removed` span deleted, and squash() deletes all whitespace. The first and last
characters of the chunk are exactly d.text[c.start] and d.text[c.end - 1].
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from qa.chunking import HEADER_SECTION, HARD_CAP, chunk_document, outline
from qa.corpus import CorpusError, load_corpus, load_document, parse_document
from qa.settings import REPO_ROOT
from qa.text import split_sentences, squash

SEEDS = REPO_ROOT / "seeds"
SHARED = REPO_ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def docs():
    return {d.doc_id: d for d in load_corpus(SEEDS)}


@pytest.fixture(scope="module")
def chunks(docs):
    return {doc_id: chunk_document(d) for doc_id, d in docs.items()}


def removed_mask(doc) -> list[bool]:
    mask = [False] * len(doc.text)
    for r in doc.removed:
        for i in range(r.start, r.end):
            mask[i] = True
    return mask


def kept(doc, mask, a, b) -> str:
    return "".join(ch for i, ch in enumerate(doc.text[a:b], a) if not mask[i])


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared seeds not beside the checkout")
def test_seeds_are_byte_identical_to_shared():
    names = sorted(p.name for p in SHARED.glob("*.txt"))
    assert names == sorted(p.name for p in SEEDS.glob("*.txt"))
    for n in names:
        assert (SEEDS / n).read_bytes() == (SHARED / n).read_bytes(), n


def test_metadata_derived_from_text(docs):
    meta = {k: (d.title, d.region, d.years, d.kind) for k, d in docs.items()}
    assert meta["000_eaec54ca81dddf17"] == ("无锡市惠山区2018—2019学年度教育工作意见", "惠山区", (2018, 2019), "工作意见")
    assert meta["001_c94d74ce0abaca2b"] == ("2020年常州市武进区教育工作意见", "武进区", (2020,), "工作意见")
    t, region, years, kind = meta["002_d8b7d3eb7f9ecd3f"]
    assert t.startswith("滨湖区“十四五”教育事业高质量发展专项规划") and region == "滨湖区"
    assert years == (2021, 2022, 2023, 2024, 2025) and kind == "专项规划"
    assert meta["003_699d69580ee34bfa"] == ("2020年某区教育工作要点", None, (2020,), "工作要点")
    assert meta["004_6f03f12d06f5859c"] == ("海门区教育体育局2024年工作计划", "海门区", (2024,), "工作计划")
    assert docs["000_eaec54ca81dddf17"].city == "无锡市" and docs["004_6f03f12d06f5859c"].city == "南通市"


def test_a_district_named_without_its_city_gets_the_gazetteers_unless_several_cities_have_one(tmp_path):
    for name, city in (("2025年锡山区教育工作要点", "无锡市"), ("2025年鼓楼区教育工作要点", None)):  # 鼓楼区: four cities
        f = tmp_path / f"{name}.md"
        f.write_text(f"# {name}\n\n一、学前教育\n1. 新建公办幼儿园4所，新增学位1200个。\n", encoding="utf-8")
        d = load_document(f)
        assert (d.region, d.city) == (name[5:8], city)


def test_003_holds_two_articles_each_with_its_title(docs, chunks):
    d = docs["003_699d69580ee34bfa"]
    assert [p.title for p in d.parts] == ["2020年某区教育工作要点1", "2020年某区教育工作要点2"]
    titles = [c.title for c in chunks[d.doc_id]]
    assert titles.count("2020年某区教育工作要点2") > 10
    # the second article restarts its numbering: its first section is its own 一、
    second = [c for c in chunks[d.doc_id] if c.title.endswith("2")]
    assert any(c.section.startswith("一、坚持红色领航") for c in second)


def test_every_chunk_cites_its_exact_source(docs, chunks):
    for doc_id, cs in chunks.items():
        d = docs[doc_id]
        mask = removed_mask(d)
        for c in cs:
            assert 0 <= c.start < c.end <= len(d.text)
            assert c.text[0] == d.text[c.start] and c.text[-1] == d.text[c.end - 1], c.id
            assert squash(c.text) == squash(kept(d, mask, c.start, c.end)), c.id


def test_nothing_lost_nothing_doubled(docs, chunks):
    """Every non-space character of a file is cited by exactly one chunk or removed for a stated reason."""
    for doc_id, cs in chunks.items():
        d = docs[doc_id]
        mask = removed_mask(d)
        owner = [0] * len(d.text)
        for c in cs:
            for i in range(c.start, c.end):
                owner[i] += 1
        for i, ch in enumerate(d.text):
            if ch.isspace():
                continue
            if mask[i]:
                assert owner[i] <= 1
                continue
            assert owner[i] == 1, f"{doc_id}@{i} {d.text[max(0, i - 10):i + 10]!r} cited {owner[i]} times"


def test_every_body_sentence_lands_in_exactly_one_chunk(docs, chunks):
    for doc_id, d in docs.items():
        spans = [(c.start, c.end) for c in chunks[doc_id]]
        n_sentences = 0
        for part in d.parts:
            for para in part.paragraphs:
                for a, b in split_sentences(para.text):
                    if not para.text[a:b].strip() or b - a > HARD_CAP:
                        continue
                    s = para[a:b].strip()
                    n_sentences += 1
                    inside = [sp for sp in spans if sp[0] <= s.start and s.end <= sp[1]]
                    assert len(inside) == 1, f"{doc_id}: sentence {s.text[:30]!r} in {len(inside)} chunks"
        assert n_sentences > 50


def test_no_artifact_survives(chunks):
    artifacts = re.compile(
        r"\[bookmark|由会员分享|当前位置|以智范文网|来源\s*[:：]|字体\s*[:：]|抄送|惠教发|印发给你们|要点思路总体要求2篇"
    )
    for cs in chunks.values():
        for c in cs:
            if c.section == HEADER_SECTION:
                continue  # the document's header is cited on purpose (see the header test)
            assert not artifacts.search(c.text), (c.id, artifacts.search(c.text).group())
    # docx page numbers are gone and the words they split are whole again
    joined = "".join(c.text for c in chunks["002_d8b7d3eb7f9ecd3f"])
    assert "区政府履行教育职责考评" in joined
    assert "坚持“四有好教师”标准" in joined
    d_pages = [c for c in chunks["002_d8b7d3eb7f9ecd3f"] if re.search(r"\n\d+、", c.text)]
    assert d_pages == []


def test_chunk_sizes_and_top_level_boundaries(chunks):
    top_marker = re.compile(r"(?:^|[。；;\n])\s*[一二三四五六七八九十]+、")
    for cs in chunks.values():
        for c in cs:
            assert len(c.text) <= HARD_CAP, c.id
            for m in top_marker.finditer(c.text):
                assert m.start() == 0, f"{c.id} crosses a top-level section at {m.start()}"
    lengths = [len(c.text) for cs in chunks.values() for c in cs]
    assert sorted(lengths)[len(lengths) // 2] <= 360  # the median aims at ~350


def test_section_paths(chunks):
    sections = {c.section for cs in chunks.values() for c in cs}
    assert "三、着眼公平，在高位均衡、优质发展上求突破 › 2、加快推进学前教育改革发展" in sections
    assert any(s.startswith("一、质量提升的基点在学校") and s.endswith("› 二是聚力升等创优") for s in sections)
    assert any("› 5,实施“树优创名”校本提升行动" in s for s in sections)  # a docx heading written with a comma


EXPECTED_HEADINGS = {  # counted by reading the documents: (top-level, second-level, third-level) per article
    "000_eaec54ca81dddf17": [(6, 0, 36)],
    "001_c94d74ce0abaca2b": [(6, 0, 25)],
    "002_d8b7d3eb7f9ecd3f": [(3, 5, 14)],
    "003_699d69580ee34bfa": [(8, 0, 32), (5, 0, 19)],
    "004_6f03f12d06f5859c": [(3, 0, 15)],
}


@pytest.mark.parametrize("doc_id", sorted(EXPECTED_HEADINGS))
def test_heading_counts(docs, doc_id):
    got = [tuple(sum(1 for r, _ in part if r == rank) for rank in (0, 1, 2)) for part in outline(docs[doc_id])]
    assert got == EXPECTED_HEADINGS[doc_id]


# ----------------------------------------------------------------- bad input
def test_empty_file_is_a_clear_error(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"  \n\n")
    with pytest.raises(CorpusError, match="empty"):
        load_document(p)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    p = tmp_path / "gbk.txt"
    p.write_bytes("教育工作要点".encode("gb18030"))
    with pytest.raises(CorpusError, match="UTF-8"):
        load_document(p)


def test_file_without_headings_still_chunks_with_exact_citations(tmp_path):
    body = "学校要加强体育锻炼，保证学生每天运动一小时。" * 30 + "\n" + "家长应当配合学校做好安全教育。" * 3
    p = tmp_path / "plain.txt"
    p.write_text(body, encoding="utf-8")
    d = load_document(p)
    cs = chunk_document(d)
    assert len(cs) >= 2 and all(c.section == "" and len(c.text) <= HARD_CAP for c in cs)
    assert squash("".join(c.text for c in cs)) == squash(body)
    for c in cs:
        assert squash(d.text[c.start : c.end]) == squash(c.text)


def test_cli_reports_bad_corpus_in_one_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    r = subprocess.run(
        [sys.executable, "-m", "qa.cli", "--corpus", str(tmp_path), "chunks"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "bad.txt" in r.stderr and "Traceback" not in r.stderr


def test_cli_chunks_json_has_exactly_the_chunk_fields():
    import json

    r = subprocess.run(
        [sys.executable, "-m", "qa.cli", "chunks", "--doc", "001_c94d74ce0abaca2b", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 28
    assert all(list(row) == ["id", "doc_id", "title", "section", "paragraph", "start", "end", "text"] for row in rows)
    src = Path(SEEDS / "001_c94d74ce0abaca2b.txt").read_text(encoding="utf-8")
    assert all(squash(src[r["start"] : r["end"]]).endswith(squash(r["text"])[-10:]) for r in rows)


def test_the_header_is_cited_and_read_as_metadata(docs, chunks):
    """The notice header of 000 and the source line of 004 are kept: one cited chunk each,
    and what they say (文号, issuing body, dates) is the document's metadata."""
    head = [c for c in chunks["000_eaec54ca81dddf17"] if c.section == HEADER_SECTION]
    assert len(head) == 1 and head[0].paragraph == 0 and head[0].start == 0
    assert "惠教发[2018]50号" in head[0].text and "2018年8月3日" in head[0].text and "抄送" not in head[0].text
    m = docs["000_eaec54ca81dddf17"].meta()
    assert (m["doc_number"], m["issuer"], m["issued"]) == ("惠教发[2018]50号", "无锡市惠山区教育局", "2018-08-03")
    m = docs["004_6f03f12d06f5859c"].meta()
    assert (m["issuer"], m["published"], m["publisher"]) == ("南通市海门区教育体育局", "2024-07-15", "南通市海门区教育体育局")
    (h4,) = [c for c in chunks["004_6f03f12d06f5859c"] if c.section == HEADER_SECTION]
    assert "发布时间:2024-07-15" in h4.text and "字体" not in h4.text  # the page furniture after it is still removed
    m = docs["003_699d69580ee34bfa"].meta()
    assert m["published"] == "2022-12-15" and "issuer" not in m  # a template website is a source, not an issuer
    assert not [c for c in chunks["001_c94d74ce0abaca2b"] if c.section == HEADER_SECTION]



@pytest.mark.parametrize("text, meta, years", [
    ("滨湖区体质监测通知\n发布时间：2025-06-20\n各学校：\n请做好学生体质监测工作。\n监测时间为9月。\n", {"published": "2025-06-20"}, (2025,)),
    ("关于开展读书节活动的通知\n各学校：\n开展读书节活动。\n时间为4月。\n地点在各校。\n某区教育局\n（2023年4月1日）\n",
     {"issued": "2023-04-01", "issuer": "某区教育局"}, (2023,)),
    ("2024年某县招生通知\n日期：2025-13-40\n正文一段。\n正文二段。\n正文三段。\n", {}, (2024,)),  # no such date; the title's year
    ("某县招生通知\n正文说2025年3月1日起报名。\n正文二段。\n", {}, ()),  # a date inside a sentence is not the document's
])
def test_a_document_without_a_header_gives_the_dates_its_own_lines_state(text, meta, years):
    d = parse_document(text, "x")
    assert d.metadata == meta and d.years == years


def test_a_numbered_list_one_item_a_line_is_not_a_paginated_export(docs):
    """Found by a user test: a notice of 5 or more items 1、… 2、…, one a line, was taken for a docx export with a
    page number at the start of every line: the numbers were removed as page numbers, the lines joined into one,
    and the title (so the region and year) and the date line were lost. 002 is such an export (40 of its 45
    pages begin mid-sentence) and stays one."""
    items = ["全面落实“双减”政策，作业总量公示率达到100%。", "每所学校配备专职心理健康教师不少于1名。", "中小学体育课时每周不少于3节。",
             "开展“阅读进校园”活动，生均藏书不少于40册。", "推进劳动教育，每周劳动课不少于1课时。", "教师年度培训不少于72学时。"]
    text = "梁溪区2025年教育重点工作清单\n\n发布时间：2025-02-10\n\n" + "\n\n".join(f"{i}、{t}" for i, t in enumerate(items, 1))
    doc = parse_document(text, "liangxi_list")
    assert doc.title == "梁溪区2025年教育重点工作清单" and doc.region == "梁溪区" and doc.years == (2025,)
    assert doc.metadata.get("published") == "2025-02-10" and not [r for r in doc.removed if r.kind == "page_number"]
    chunks = chunk_document(doc)
    assert all(f"{i}、" in "".join(c.text for c in chunks) for i in range(1, 7))
    # the items' passage is cited under the section they share, not under the last item
    assert not any(c.section.startswith("6、") for c in chunks)
    assert [r for r in docs["002_d8b7d3eb7f9ecd3f"].removed if r.kind == "page_number"]


@pytest.mark.parametrize("title, region, city", [
    ("江阴市教育局关于做好2025年义务教育招生入学工作的通知", "江阴市", "无锡市"),  # a county-level city
    ("如东县2025年教育工作要点", "如东县", "南通市"),
    ("2020年常州市武进区教育工作意见", "武进区", "常州市"),
    ("南京市2025年教育工作要点", None, None),  # a prefecture-level city is no document's district
    ("2020年某区教育工作要点", None, None),
])
def test_a_documents_place_is_its_county_level_division(title, region, city):
    """Found by a user test: only a 某某区 in the title was read as the document's place, so a notice of 江阴市 had
    none (region filters found nothing, the “not in these documents” reply listed it without a place)."""
    doc = parse_document(f"{title}\n\n一、总体要求\n\n全面落实立德树人根本任务，推进教育优质均衡发展。", "notice")
    assert (doc.region, doc.city) == (region, city)


def test_a_source_line_and_a_document_number_under_the_title_are_read():
    """Found by a user test: 来源：江阴市教育局 and 澄教发〔2025〕12号, each on a line of its own under the title (no
    page header, no transmittal notice), gave no publisher and no doc_number."""
    text = ("江阴市教育局关于做好2025年义务教育招生入学工作的通知\n\n发布时间：2025-04-18\n来源：江阴市教育局\n澄教发〔2025〕12号\n\n"
            "各镇（街道）教育办、各中小学：\n\n为进一步规范义务教育招生入学工作，现就有关事项通知如下。\n\n一、招生对象\n\n"
            "具有本市户籍的适龄儿童少年。")
    meta = parse_document(text, "jiangyin").metadata
    assert meta["doc_number"] == "澄教发〔2025〕12号" and meta["publisher"] == "江阴市教育局"
    assert meta["issuer"] == "江阴市教育局" and meta["published"] == "2025-04-18"
    site = parse_document("惠山区2026年教育信息化工作要点\n\n来源：以智范文网\n\n一、基础设施\n\n推进千兆校园网络建设。", "site")
    assert site.metadata.get("publisher") == "以智范文网" and "issuer" not in site.metadata  # a website is no issuer


def test_a_title_alone_is_refused_in_words_a_user_reads():
    with pytest.raises(CorpusError, match="no text to cite besides a title"):  # was: "… removing page furniture"
        parse_document("江阴市通知\n", "oneline")
