"""What the knowledge base covers, and whether a question asks about it.

Every document's metadata (region, city, years: extracted the same way for seeds
and uploads, so the scope grows with the library) is placed in the gazetteer
(惠山区 → 无锡市 → 江苏省), and the places and years its text names are kept too.

A question that names a place is in scope when one of the most specific places it
names is a document's region, one of the divisions that region lies in, or a place
some document's text names; a question that names years is in scope when a
document (among those the place leaves) covers or mentions one of them. Otherwise
the reply is "not in the corpus" with the reason and what the base does cover.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .query import Place, Query, gazetteer

_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")


@dataclass
class Verdict:
    reason: str | None  # None | out_of_scope_place | out_of_scope_period
    docs: set[str]  # documents the question's place/years point at (all when it names none)
    message: str = ""
    query: Query | None = None  # the query with only the places that count as places here


LISTED = 10  # the documents a "not in the corpus" reply names


class Scope:
    def __init__(self, docs: dict[str, dict], texts: dict[str, str]):
        """docs: doc_id -> metadata (title, region, city, years); texts: doc_id -> its cited text."""
        g = gazetteer()
        self.docs = docs
        self.codes: dict[str, set[str]] = {}  # doc -> its region's code and the divisions it lies in
        self.mentions: dict[str, set[str]] = {}  # doc -> codes of places its text names
        self.years: dict[str, set[int]] = {}  # its own period and every year its text names
        self.periods: dict[str, set[int]] = {}  # its own period
        self.labels: dict[str, str] = {}
        self.kb_names: set[str] = set()  # how documents name their own places (海门区, 海门, 南通市 …)
        corpus = []
        for d, meta in docs.items():
            text = texts.get(d, "")
            corpus.append(text)
            self.codes[d] = self._codes(meta)
            self.mentions[d] = {p.code for p in g.find(meta.get("title", "") + "\n" + text)}
            self.periods[d] = set(meta.get("years") or ())
            self.years[d] = self.periods[d] | {int(y) for y in _YEAR.findall(text)}
            self.labels[d] = _label(meta)
            for key in ("region", "city"):
                if meta.get(key):
                    self.kb_names.add(meta[key])
                    self.kb_names.add(meta[key][:-1])
        self._corpus = "\n".join(corpus)

    def _codes(self, meta: dict) -> set[str]:
        g = gazetteer()
        region, city = meta.get("region"), meta.get("city")
        found = g.find((city or "") + (region or "")) if region else g.find(city or "")
        if region:
            found = [p for p in found if p.name == region or p.said == region[:-1]] or found
        out: set[str] = set()
        for p in found:
            if city and p.level == "county" and city not in (g.names.get(p.ancestors[0]), None):
                continue  # 鼓楼区 of another city
            out.add(p.code)
            out.update(p.ancestors)
        return out

    def real_places(self, query: Query) -> list[Place]:
        """The places the question names, less short names this library uses as plain words
        (新建 in 新建改扩建 is not 新建区 of Nanchang)."""
        return [p for p in query.places if not (p.short and p.said not in self.kb_names and p.said in self._corpus)]

    def check(self, query: Query) -> Verdict:
        places = self.real_places(query)
        query = replace(query, places=tuple(places))
        docs = set(self.docs)
        if places:
            inner = {a for p in places for a in p.ancestors}
            specific = [p for p in places if p.code not in inner]
            docs = {d for d in docs if any(p.code in self.codes[d] or p.code in self.mentions[d] for p in specific)}
            if not docs:
                names = "、".join(dict.fromkeys(p.name for p in specific))
                if query.language == "en":
                    said = ", ".join(dict.fromkeys(p.said for p in specific))
                    return Verdict("out_of_scope_place", set(), f"These documents do not cover {said} ({names}). "
                                   f"{self.covered('en')}", query)
                return Verdict("out_of_scope_place", set(), f"知识库中没有关于{names}的文件。{self.covered()}", query)
        if query.years:
            # a question about a document of a year (2022年教育工作意见, 2021—2022学年度) needs a document
            # of that period; a question about a year (到2025年的目标) is answered by a document that names it
            about_document = bool(query.kinds) or any("学年" in p for p in query.periods)
            span = self.periods if about_document else self.years
            # a document of a kind and a year (2019年教育工作要点) is one of that kind, where the documents
            # left have any of it: a 工作意见 of 2018—2019 is not a 2019 工作要点. Where none of them is
            # of that kind, the kind was said loosely (惠山区2018—2019学年度教育工作要点 for its 工作意见)
            # and the period alone counts. Only a kind's full name counts here (工作要点, 专项规划): a bare 计划 or
            # 意见 is as often a plain word (2020年计划招聘多少名教师 is about a plan to hire, not a 工作计划).
            # A kind named in English is a translation, not a name: "the 2020 work plan" is what a reader
            # calls a 2020 工作要点 as well
            named = [k for k in query.kinds if len(k) >= 4] if query.language != "en" else []
            of_kind = {d for d in docs if self.of_kind(d, named)} if named else set()
            in_period = {d for d in (of_kind or docs) if set(query.years) & span[d]}
            if not in_period:
                when = "、".join(query.periods) or "、".join(f"{y}年" for y in query.years)
                where = "、".join(dict.fromkeys(p.name for p in places))
                kind = "、".join(named) if of_kind else ""
                if query.language == "en":
                    years = ", ".join(str(y) for y in query.years)
                    return Verdict("out_of_scope_period", set(), f"These documents do not cover {years}"
                                   f"{' for ' + where if where else ''}{' (' + kind + ')' if kind else ''}. "
                                   f"{self.covered('en')}", query)
                return Verdict("out_of_scope_period", set(), f"知识库中没有{where}{when}的{kind or '文件'}。{self.covered()}", query)
            docs = in_period
        return Verdict(None, docs if (places or query.years) else set(), "", query)

    def of_kind(self, doc: str, kinds) -> bool:
        """Whether the document is of one of the kinds a question names (要点 ~ 工作要点, 规划 ~ 专项规划)."""
        own = self.docs.get(doc, {}).get("kind") or ""
        return bool(own) and any(k in own or own in k for k in kinds)

    def covered(self, language: str = "zh") -> str:
        """What the library covers, for a "not in the corpus" reply: each distinct label once (seven uploads of
        one notice were listed seven times), at most LISTED of them, then how many documents there are in all
        (a reply listed every document of the library, however many)."""
        labels = list(dict.fromkeys(self.labels.values()))
        shown, more = labels[:LISTED], len(labels) - LISTED
        if language == "en":
            if not labels:
                return "There are no documents yet."
            return "They cover: " + "; ".join(shown) + (f"; and {more} more ({len(self.labels)} documents in all)." if more > 0 else ".")
        if not labels:
            return "知识库中还没有文件。"
        return "现有：" + "；".join(shown) + (f"；等，共{len(self.labels)}份文件。" if more > 0 else "。")


def _label(meta: dict) -> str:
    place = (meta.get("city") or "") + (meta.get("region") or "")
    years = meta.get("years") or []
    when = ""
    if years:
        when = f"{years[0]}年" if len(years) == 1 else f"{years[0]}—{years[-1]}年"
    title = meta.get("title", meta.get("doc_id", ""))
    return f"{title}（{place + '，' if place and place not in title else ''}{when}）" if when else title
