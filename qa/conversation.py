"""Follow-up questions in a conversation, made standalone before retrieval.

    ["武进区2020年新建改扩建多少所学校？"] + "那惠山区呢？"  ->  "惠山区新建改扩建多少所学校？"
    ["海门区今年对劳动教育有什么总体要求？"] + "具体怎么做？" -> "海门区 劳动教育 总体要求 具体怎么做？"
    ["惠山区申领的那个省级规划课题叫什么？"] + "它下面的子课题是怎么分工的？"
                                                        -> "惠山区 省级规划课题 它下面的子课题是怎么分工的？"

Deterministic and fast (a parse of each turn): a question is a follow-up when it
leans on the one before — it begins with 那/那么/还有/另外, ends with 呢, points back
(它, 这个, 该, 其, 上述 …; it, this, that, they), or says almost nothing of its own
once places, years and question words are taken away. A follow-up that names a new
place or period takes the earlier question's topic with the new place or period; a bare
year (那2021年呢？) keeps the earlier place too, while a period that names a document
(2018—2019学年度, 十四五, 2024年的计划) may point at another place's; any other follow-up
takes the earlier question's place, year and topic words. In a conversation, a question
that names no place, period or document, whose words the library all uses and not only as
everyday language does (`known`: Retriever.says_all), is asked of what the conversation is
about too (每所学校要覆盖多大范围？ after a question on 某区's 成人教育). A question with a
scope of its own is left alone. Greetings and thanks are left alone too.

The earlier turns are resolved first, so a chain of follow-ups keeps its topic.
`resolve` is the seam where a language model could rewrite questions later.

「X呢？」 with a topic X of its own is read two ways: the earlier question asked of X (幼儿园呢？ after
武进区2020年中小学备案聘用教师要招多少名？) or X under the earlier scope (成人教育呢？ after 某区's 托幼一体化).
`topic_switch` gives the second reading; the retriever takes it when the first reading's best passage does
not say X's words and the second's does.
"""
from __future__ import annotations

import re

from .query import EN_PLAN, parse

_LEAD = re.compile(r"^\s*(那么|那|还有|另外|再问|再说|然后|and|what about|how about)", re.I)
_TAIL = re.compile(r"(呢|呐)\s*[？?。.!！]*\s*$")
# the words that name a document's kind (the specific ones first: a regex alternation takes the first that matches)
_KIND_WORDS = "工作意见|工作计划|工作要点|专项规划|发展规划|规划|意见|计划|要点"
_KIND_SPECIFIC = "工作意见|工作计划|工作要点|专项规划|发展规划"
_KIND_GENERIC = "规划|意见|计划|要点"
# a short first clause that ends in 呢 (武进呢？有没有点名要支持的学校？ / 上一年呢，考得怎么样？): a follow-up too
_HEAD = re.compile(r"^([^，,？?。!！]{1,12}?)(?:呢|呐)\s*[，,？?。!！]\s*(?=\S)")
# what ties a question to a document without saying a topic: 那份学年意见里, 当年, 现在
_SCOPE_WORDS = re.compile(r"(?:那份|这份|该)?(?:教育)?(?:" + _KIND_WORDS + r")(?:里|中|上)?"
                          r"|当年|那年|那时候|那时|这学年|本学年|上学年|下学年|学年度|学年|现在|目前|如今")
# a year said relative to the earlier question's (去年呢？ after 海门区2024年…): made the year it names
_RELATIVE_ZH = re.compile(r"大前年|前年|去年|上一年|明年|下一年|后年")
_RELATIVE_ZH_SHIFT = {"大前年": -3, "前年": -2, "去年": -1, "上一年": -1, "明年": 1, "下一年": 1, "后年": 2}
_RELATIVE_EN = re.compile(r"\b(?:(?:the\s+)?(?:last|previous|prior)\s+year|the\s+year\s+before|(?:the\s+)?next\s+year"
                          r"|the\s+following\s+year|the\s+year\s+after)\b", re.I)
_POINT = re.compile(r"(它们|它|这个|这项|这些|这一|这种|这方面|该|此项|此|其|上述|前者|后者|那个|那项)|\b(it|its|this|that|these|those|they|them|there)\b", re.I)
_QUESTION = re.compile(
    r"(具体|怎么|怎样|如何|什么|哪些|哪个|哪|多少|几|是否|有没有|吗|呢|要求|措施|目标|做法|安排|规定|情况|内容|方面|还有|又|呢|那边|那里|这边|的|了|是|有|要|会|能|可以|呀|啊|吧|和|与|及|以及|请问|一下|说说|讲讲|介绍)"
)


_GREETING = re.compile(
    r"(?:(?:你好|您好|大家好|嗨|哈喽|哈啰|在吗|在不在|早上好|上午好|中午好|下午好|晚上好|早安|晚安|"
    r"hello|hi|hey|hallo|goodmorning|goodafternoon|goodevening|"
    r"谢谢|多谢|感谢|非常感谢|太感谢了|辛苦了|thanks|thankyou|thx|ty|cheers|好的|好|明白了|知道了|收到|ok|okay|"
    r"再见|拜拜|bye|goodbye)"
    r"(?:啊|呀|哈|哦|喔|呢|吗|了|啦|你|您|大家|alot|somuch|verymuch|there)*)+"
)
_PUNCT = re.compile(r"[\s,.!?~，。！？、～…:：;；'\"“”‘’()（）😀-🙏]+")


# questions about the service itself, not about the documents ("你是谁？", "你能做什么", "what can you do?")
_ABOUT_ME = re.compile(
    r"(?:请问)?(?:(?:你|您)(?:好)?(?:是谁|是什么|是啥|叫什么(?:名字)?|能(?:帮我)?(?:做|干)?(?:什么|啥)|会(?:做|干)?(?:什么|啥)|"
    r"有什么用|可以(?:帮我)?(?:做|干)?(?:什么|啥)|怎么用)|怎么用|如何使用|使用说明|帮助|"
    r"whoareyou|whatareyou|whatcanyoudo|whatdoyoudo|howdoiuseyou|howdoiusethis|help)"
    r"(?:啊|呀|呢|吗|了|please)*"
)


def is_greeting(text: str) -> bool:
    """Greetings and thanks alone ("你好！", "谢谢你", "hello", "thank you very much"), and questions
    about the service itself ("你是谁？", "你能做什么", "what can you do?"), after a greeting or not,
    nothing more."""
    t = _PUNCT.sub("", text.lower())
    if not 0 < len(t) <= 40:
        return False
    if _GREETING.fullmatch(t) is not None or _ABOUT_ME.fullmatch(t) is not None:
        return True
    # a greeting before the question about the service ("你好，你是谁？", "hi, what can you do?")
    return any(_GREETING.fullmatch(t[:i]) and _ABOUT_ME.fullmatch(t[i:]) for i in range(1, len(t)))


def _is_thanks(text: str) -> bool:
    return bool(re.search(r"谢|感谢|辛苦|thank|thx|cheers|\bty\b", text.lower()))


def greeting_reply(text: str, titles: list[str]) -> str:
    from .query import is_contentless, is_wordless

    if re.search(r"[A-Za-z]", text) and not re.search(r"[\u3400-\u9fff]", text):  # hello, thanks, what can you do?
        head = "Please ask a question in words (a topic, a target, a measure). " if is_contentless(text) else \
            "You're welcome! " if _is_thanks(text) else "Hello! "
        return "\n".join([
            head + "I answer questions about the education policy documents below with the passages that say it, each "
                   "cited (document, section, paragraph). Ask in Chinese or in English; the passages are in Chinese.",
            "",
            "Documents you can ask about:",
            *[f"- {t}" for t in titles],
            "",
            "For example: “What is Haimen's 2024 target for admissions to Tsinghua and Peking University?” Follow-ups "
            "work too: ask about Wujin, then “What about Huishan?”.",
        ])
    head = "请用文字提问。" if is_wordless(text) else "请说出要查询的内容（例如一项政策、指标或措施）。" if is_contentless(text) else "不客气！" if _is_thanks(text) else "你好！"
    lines = [
        head + "我是教育政策问答服务：用中文提问，我从下面这些政策文件里找出最相关的原文段落，每条都标明出处（文件、章节、段落）。",
        "",
        "可以查询的文件：",
        *[f"- {t}" for t in titles],
        "",
        "例如：“海门区2024年对清华北大录取人数的目标是多少？” 追问也可以，比如先问武进区，再问“那惠山区呢？”。",
    ]
    return "\n".join(lines)


def bare(text: str, query) -> str:
    """What a question says of its own: without places, years, question words and punctuation."""
    for p in query.places:
        text = text.replace(p.name, "").replace(p.said, "")
    text = re.sub(r"(?:19|20)\d{2}\s*(?:[—–\-~至到]\s*(?:19|20)?\d{2})?\s*(?:学年度|学年|年度|年)?", "", text)
    for plan in ("十三五", "十四五", "十五五", "今年", "去年", "明年"):
        text = text.replace(plan, "")
    text = _QUESTION.sub("", text)
    return re.sub(r"[\W_]+", "", text)


_UNNAMED = re.compile(r"(某|该|本|全)(区|市|县)")
# the kind of document a question names, taken out of what a single question searches (Retriever.content_query:
# fitted so) and of the topic a follow-up carries to another place; the latter (_DOCUMENT_NAMED) only where it names
# a document (那份规划, 意见里, 2020年要点, “十四五”规划, 滨湖区规划), not as the topic it also is (惠山区对学前教育有什么规划？)
_DOCUMENT = re.compile(r"(那份|这份|该)?(教育)?(" + _KIND_WORDS + r")(里|中|上)?")
_DOCUMENT_NAMED = re.compile(
    r"(?:那份|这份|该)?(?:教育)?(?:" + _KIND_SPECIFIC + r")(?:里|中|上)?"
    r"|(?:那份|这份|该)(?:教育)?(?:" + _KIND_GENERIC + r")(?:里|中|上)?|(?:教育)?(?:" + _KIND_GENERIC + r")(?:里|中|上)"
    r"|(?:(?<=[”\"」』年度五])|^)(?:教育)?(?:" + _KIND_GENERIC + r")")  # after a place, year or “十四五”
_EN_PLAN_SAID = re.compile(r"(?:\b(?:the|this|its)\s+)?(?:" + EN_PLAN.pattern + r")(?:\s+plans?)?(?:\s+period)?", re.I)


def strip_scope(text: str, query, places: bool, years: bool, topic: bool = False) -> str:
    """The question without what ties it to one document: its places (某区 too), its years
    and the kind of document it names (a switch to another place or year means another document).
    `topic`: the topic a follow-up carries to another place or period (document kinds only where they name one,
    without 请问 or the bare 呢？ a year-only turn leaves)."""
    if places:
        for p in sorted(query.places, key=lambda p: -len(p.said)):
            text = text.replace(p.name, "").replace(p.said, "")
        text = _UNNAMED.sub("", text)
    if years and query.language != "zh":  # the 14th Five-Year Plan (period)
        text = _EN_PLAN_SAID.sub("", text)
    if places or years:
        text = (_DOCUMENT_NAMED if topic else _DOCUMENT).sub("", text)
    if years:
        text = re.sub(r"(?:19|20)\d{2}\s*(?:[—–\-~至到]\s*(?:19|20)?\d{2})?\s*(?:学年度|学年|年度|年)?", "", text)
        for plan in ("十三五", "十四五", "十五五", "今年", "去年", "明年"):
            text = text.replace(plan, "")
    text = re.sub(r"[“\"「『]\s*[”\"」』]", "", text)  # quotes left empty
    if topic:
        text = re.sub(r"(?:^|(?<=[\s，,？?。]))(?:那么|那)?\s*(?:呢|呐)\s*[？?。.!！]*(?=\s|$)", "", text)  # 去年呢？ less its year
        text = re.sub(r"请问一下|请问|想问一下", "", text)
    return re.sub(r"^[\s，,、的在对里对于关于]+", "", text).strip()


def is_followup(question: str) -> bool:
    q = parse(question)
    if is_greeting(q.text):
        return False
    if _LEAD.search(q.text) or _TAIL.search(q.text) or _POINT.search(q.text) or _HEAD.search(q.text):
        return True
    if q.language == "en":
        return len(re.findall(r"[A-Za-z]{3,}", q.text)) <= 3
    return len(bare(_SCOPE_WORDS.sub("", q.text), q)) <= 3


_EN_YEARS = re.compile(r"\b(?:19|20)\d{2}(?:\s*[-–—]\s*(?:19|20)?\d{2})?\b")
_EN_LEAD = re.compile(r"^\s*(?:and|what about|how about|and what about|so|then)\b[\s,]*", re.I)


def _resolve_english(question: str, prev: str, q, p) -> str:
    """An English follow-up: a new place or year is put in place of the earlier question's (its topic
    kept: "What will Wujin District build in 2020?" + "What about Huishan?" -> "What will Huishan build?");
    otherwise the earlier question, then the follow-up."""
    if not (q.places or q.years):
        return f"{prev} {question}".strip()
    text = prev
    new_place = " ".join(dict.fromkeys(x.said for x in q.places))
    new_years = " ".join(dict.fromkeys(m.group(0) for m in _EN_YEARS.finditer(question)))
    olds = sorted(dict.fromkeys(x.said for x in p.places), key=len, reverse=True)
    if new_place:
        if olds:
            text = text.replace(olds[0], new_place, 1)
            for o in olds[1:]:
                text = text.replace(o, "")
        else:
            text = f"{text.rstrip('?？ ')} in {new_place}?"
    old_years = list(_EN_YEARS.finditer(text))
    if new_years:
        if old_years:
            text = text[: old_years[0].start()] + new_years + text[old_years[0].end():]
        else:
            text = f"{text.rstrip('?？ ')} in {new_years}?"
    elif new_place and old_years:  # a new place drops the old year, as in Chinese
        text = re.sub(r"(?:\b(?:in|for|during|of)\s+)?" + _EN_YEARS.pattern, "", text)
    extra = _english_rest(question, q)
    text = re.sub(r"\s+", " ", re.sub(r"\s+([?,.])", r"\1", text)).strip()
    return f"{text} {extra}".strip() if extra else text


def _english_rest(question: str, q) -> str:
    """What an English follow-up says beyond its place and year ("What about Haimen's primary schools?" ->
    "Haimen's"-less "primary schools"); empty for "What about Haimen?" or "And in 2021?"."""
    rest = _EN_LEAD.sub("", question)
    for x in q.places:
        rest = rest.replace(x.said, "")
    rest = _EN_YEARS.sub("", rest)
    rest = re.sub(r"'s\b|\b(what|how|about|in|for|the|there|then|of|and|is|are|specifically|district|city|county)\b"
                  r"|[?？.,!]", " ", rest, flags=re.I)
    return " ".join(rest.split())


def _english_after_chinese(question: str, prev: str, q, p) -> str:
    """An English follow-up to a Chinese question that names a new place or year: the Chinese question asked
    of it ("What about Haimen?" after 武进区新增市优质园几所？ -> 海门区新增市优质园几所？), whatever else the
    follow-up says kept after it; otherwise the earlier question, then the follow-up."""
    if not (q.places or q.years):
        return f"{prev} {question}".strip()
    # a new place drops the old place and year; a bare year moves the earlier place's question in time
    topic = strip_scope(p.text, p, places=bool(q.places), years=True, topic=True)
    where = "".join(dict.fromkeys(x.name for x in q.places))
    when = "".join(dict.fromkeys(f"{y}年" for y in q.years))
    extra = _english_rest(question, q)
    return f"{where}{when}{topic}{(' ' + extra) if extra else ''}".strip()


def _names_no_scope(q) -> bool:
    """A parsed question that names no place, period or document, and is not a greeting: in a conversation it
    is asked of what the conversation is about (每个孩子要学会几项？ after 滨湖区's 体育工作)."""
    return not (q.places or q.years or q.periods or q.kinds or _UNNAMED.search(q.text)) and not is_greeting(q.text)


def _absolute_years(question: str, year: int) -> str:
    """去年 / last year … of a follow-up as the year it means after a question about `year`."""
    question = _RELATIVE_ZH.sub(lambda m: f"{year + _RELATIVE_ZH_SHIFT[m.group(0)]}年", question)

    def english(m):
        said = m.group(0).lower()
        return str(year - 1 if any(w in said for w in ("last", "previous", "prior", "before")) else year + 1)

    return _RELATIVE_EN.sub(english, question)


def resolve(question: str, history: list[str], scope=None, known=None) -> str:
    """The standalone form of `question` given the earlier user questions (oldest first).
    `scope` (a qa.scope.Scope) drops short place names the library uses as plain words; `known(query)` says
    whether a parsed question that names no scope is about the library (Retriever.says_all)."""
    from .query import is_wordless

    history = [h for h in (history or []) if isinstance(h, str) and h.strip()][-6:]
    if not history or is_wordless(question):  # “？” or 😀 asks nothing of the earlier question
        return question
    q = parse(question)
    if not (is_followup(question) or (known is not None and _names_no_scope(q) and known(q))):
        return question
    prev = resolve(history[-1], history[:-1], scope, known)
    if is_greeting(prev):
        return question
    p = parse(prev)
    if len(p.years) == 1:
        moved = _absolute_years(question, p.years[0])
        if moved != question:
            question, q = moved, parse(moved)
    if scope is not None:
        from dataclasses import replace

        q = replace(q, places=tuple(scope.real_places(q)))
        p = replace(p, places=tuple(scope.real_places(p)))
    own = _LEAD.sub("", q.text)
    own = _HEAD.sub(r"\1 ", _TAIL.sub("", own)).strip(" ，,？?")
    if q.language == "en" and p.language == "en":
        return _resolve_english(question, prev, q, p)
    if q.language == "en":
        return _english_after_chinese(question, prev, q, p)
    if p.language == "en":
        return f"{prev} {question}".strip()
    if q.places or q.years or q.periods:
        # a new place or period: the earlier topic, asked of it (a new place drops the old year too). A bare
        # year (那2021年呢？) moves the earlier place's question in time; a period that names a document
        # (2018—2019学年度, 十四五, 2024年的计划) may switch to another place's document
        moves_in_time = not q.places and not q.periods and not q.kinds
        topic = strip_scope(p.text, p, places=bool(q.places) or (bool(q.years) and not moves_in_time), years=True,
                            topic=True)
        scope_words = "".join(dict.fromkeys([x.said for x in q.places]))
        when = "".join(dict.fromkeys(list(q.periods) or [f"{y}年" for y in q.years]))
        rest = strip_scope(own, q, places=True, years=True, topic=True)
        rest = "" if len(bare(rest, q)) == 0 else rest
        return f"{scope_words}{when}{topic}{(' ' + rest) if rest else ''}".strip()
    # same place and period: the earlier question's scope and topic, then the follow-up
    return f"{prev} {question}".strip()


# 「(那)X(方面|这块…)呢？」: X a topic of its own, not a question word, a period or a pointer back
_SWITCH = re.compile(r"^\s*(?:那么|那|还有|另外|再问|再说|然后)?\s*(.+?)\s*(?:这方面|方面|这一块|这块|这部分|部分|的话|问题|的情况|情况)?"
                     r"\s*(?:呢|呐|怎么样|如何|怎么说|又如何|又怎样)\s*[？?。.!！]*\s*$")
_NOT_A_TOPIC = re.compile(r"怎么|怎样|如何|什么|哪|多少|几|吗|是否|有没有|具体|学年|学期|年度|年|届|月")
_KIND_SAID = re.compile(_KIND_WORDS)


def topic_switch(question: str, history: list[str], scope=None, known=None) -> tuple[str, str] | None:
    """(X, X asked under the earlier question's place, period and document) for a Chinese 「X呢？」 follow-up
    that names no place or period of its own; None for any other question."""
    history = [h for h in (history or []) if isinstance(h, str) and h.strip()][-6:]
    if not history:
        return None
    q = parse(question)
    if q.places or q.years or q.periods or _POINT.search(q.text):
        return None
    # English follow-ups ("And for kindergarten teachers' certification?") read the same way changed no turn of
    # the 502 evaluated (the second reading's answer was refused, or its passage not shown to say X): not done
    if q.language != "zh":
        return None
    m = _SWITCH.match(q.text)
    if m is None:
        return None
    topic = m.group(1).strip(" ，,")
    if len(bare(topic, q)) < 2 or _NOT_A_TOPIC.search(topic):
        return None
    prev = resolve(history[-1], history[:-1], scope, known)
    if is_greeting(prev):
        return None
    p = parse(prev)
    places = scope.real_places(p) if scope is not None else p.places
    said = [x.said for x in places] + (list(p.periods) or [f"{y}年" for y in p.years])
    said += [m.group(0) for m in (_UNNAMED.search(p.text), _KIND_SAID.search(p.text)) if m is not None]
    return topic, f"{''.join(dict.fromkeys(said))}{topic}"
