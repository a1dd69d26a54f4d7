"""The OpenAI-compatible chat as chat frontends use it: follow-ups resolved against earlier turns,
citations as `url_citation` annotations that open the document view, frontend background tasks,
greetings, "Continue response", refused options, real token counts, big bodies; then the official
`openai` client against a live server for a 25-turn chat with tool definitions, and the chat page
in headless Chromium for a two-turn conversation."""
from __future__ import annotations

import json
import shutil
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.chat import HISTORY_TURNS, is_greeting

WUJIN = "武进区2020年新建改扩建多少所学校？"
HUISHAN_FOLLOW_UP = "那惠山区呢？"
TITLES = {"无锡市惠山区2018—2019学年度教育工作意见", "2020年常州市武进区教育工作意见", "海门区教育体育局2024年工作计划"}

# Open WebUI 0.12's background task prompts, in their shape (a "### Task:" prompt asking for JSON)
TITLE_PROMPT = """### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- The title should clearly represent the main theme or subject of the conversation.
- Write the title in the chat's primary language; default to English if multilingual.
### Output:
JSON format: { "title": "your concise title here" }
### Chat History:
<chat_history>
USER: 海门区2024年对清华北大录取人数的目标是多少？
ASSISTANT: 海门中学清华北大录取不少于8人。[1]
</chat_history>"""
TAGS_PROMPT = """### Task:
Generate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more specific subtopic tags.
### Output:
JSON format: { "tags": ["tag1", "tag2", "tag3"] }
### Chat History:
<chat_history>
USER: 零作业日
ASSISTANT: …
</chat_history>"""
FOLLOW_UP_PROMPT = """### Task:
Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next in this conversation as a **user**.
### Output:
JSON format: { "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }
### Chat History:
<chat_history>
USER: 普惠性幼儿园覆盖率
ASSISTANT: …
</chat_history>"""


def tool_definitions(n: int = 36) -> list[dict]:
    """About 25 KB of function tools, as Open WebUI attaches to every request."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": f"Tool number {i}: " + "searches, fetches and summarises things for the user. " * 10,
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string", "description": "what to look for"},
                                   "limit": {"type": "integer", "description": "how many results"}},
                    "required": ["query"],
                },
            },
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings, background=False)) as c:
        yield c


def chat(client, messages, **kw):
    return client.post("/v1/chat/completions", json={"model": "policy-qa", "messages": messages, **kw})


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def sse(r) -> list[dict]:
    lines = [line for line in r.text.splitlines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


# ------------------------------------------------------------- follow-ups
def test_follow_up_is_resolved_against_the_earlier_question(client):
    r = chat(client, [user(WUJIN), assistant("……[1]"), user(HUISHAN_FOLLOW_UP)])
    body = r.json()
    assert r.status_code == 200, body
    assert "惠山区" in body["resolved_question"] and body["reply_kind"] == "answer"
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("检索：" + body["resolved_question"])  # what was searched, shown when it differs
    assert body["passages"][0]["citation"]["title"] == "无锡市惠山区2018—2019学年度教育工作意见"


def test_an_english_chat_gets_english_labels(client):
    """The sources list and the search line were labelled 来源 and 检索 for a reader who asked in English."""
    first = "How many teachers will Wujin District recruit in 2020?"
    body = chat(client, [user(first), assistant("……[1]"), user("What about Huishan?")]).json()
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("Searched: " + body["resolved_question"]) and body["no_answer"]  # no count for Huishan
    assert "\nClosest passages (not an answer):\n- [1] " in content
    assert "来源：" not in content and "检索：" not in content and "参考段落" not in content
    assert "Sources:\n- [1] " in chat(client, [user("What is the zero homework day?")]).json()["choices"][0]["message"]["content"]
    assert "\n来源：\n- [1] " in chat(client, [user("零作业日")]).json()["choices"][0]["message"]["content"]
    # an English follow-up to a Chinese question is searched in Chinese, and still labelled in English
    body = chat(client, [user("惠山区学前教育有什么目标？"), assistant("……[1]"), user("What about Haimen?")]).json()
    content = body["choices"][0]["message"]["content"]
    assert content.startswith("Searched: ") and "\nSources:\n" in content and "来源：" not in content


def test_a_reply_the_documents_do_not_give_lists_no_sources_as_if_they_did(client):
    """Every “not in these documents” chat reply ended with the sources list, header lines of other places'
    documents included, which readers took for evidence; and the sources were lines joined by single line
    breaks, one paragraph in a CommonMark client."""
    content = chat(client, [user("香港有冇類似政策？")]).json()["choices"][0]["message"]["content"]
    assert "来源：" not in content and "[1]" not in content  # another place: nothing to list
    body = chat(client, [user("学校食堂饭菜多少钱一份？")]).json()
    content = body["choices"][0]["message"]["content"]
    assert body["no_answer_reason"] == "low_relevance" and "来源：" not in content
    assert "\n参考段落（不是答案）：\n- [1] " in content and body["passages"]
    answered = chat(client, [user("普惠性幼儿园覆盖率")]).json()["choices"][0]["message"]["content"]
    items = answered.split("来源：\n", 1)[1].split("\n")
    assert len(items) >= 2 and all(line.startswith("- [") for line in items)


def test_self_contained_question_has_no_search_line(client):
    body = chat(client, [user("零作业日")]).json()
    assert body["resolved_question"] == "零作业日"
    assert not body["choices"][0]["message"]["content"].startswith("检索：")


def test_ask_accepts_history_and_reports_the_resolved_question(client):
    r = client.post("/ask", json={"question": HUISHAN_FOLLOW_UP, "history": [WUJIN]})
    body = r.json()
    assert r.status_code == 200 and "惠山区" in body["resolved_question"]
    assert body["passages"][0]["citation"]["doc_id"] == "000_eaec54ca81dddf17"
    alone = client.post("/ask", json={"question": HUISHAN_FOLLOW_UP}).json()
    assert alone["resolved_question"] == HUISHAN_FOLLOW_UP
    for bad in ({"question": "x", "history": "武进区"}, {"question": "x", "history": [1]}, {"question": "x", "history": ["a"] * 101}):
        r = client.post("/ask", json=bad)
        assert r.status_code == 422 and r.json()["error"]["message"]


def test_only_the_last_user_turns_are_used_and_counted(client, settings):
    from tokenizers import Tokenizer

    from embeddings.convert import ensure_default_model

    turns = [f"第{i}个问题：海门区学校{i}" for i in range(30)]
    messages = []
    for t in turns:
        messages += [user(t), assistant("很长的回答。" * 200)]
    messages += [{"role": "system", "content": "你是助手。" * 2000}, user("零作业日")]
    body = chat(client, messages).json()
    tok = Tokenizer.from_file(str(ensure_default_model(settings.models_dir) / "tokenizer.json"))
    tok.no_truncation()
    used = turns[-HISTORY_TURNS:] + ["零作业日"]
    expected = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in used)
    assert body["usage"]["prompt_tokens"] == expected
    reply = body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == len(tok.encode(reply, add_special_tokens=False).ids) > 0
    assert body["usage"]["total_tokens"] == expected + body["usage"]["completion_tokens"]


# -------------------------------------------------------------- citations
def test_every_cited_passage_is_an_annotation_on_its_marker(client):
    body = chat(client, [user("海门区2024年对清华北大录取人数的目标是多少？")]).json()
    message = body["choices"][0]["message"]
    content, notes = message["content"], message["annotations"]
    assert len(notes) == len(body["passages"]) == 5
    for n, (note, p) in enumerate(zip(notes, body["passages"]), start=1):
        cite = note["url_citation"]
        assert note["type"] == "url_citation"
        assert content[cite["start_index"] : cite["end_index"]] == f"[{n}]"
        c = p["citation"]
        assert cite["title"].startswith(c["title"]) and (not c["section"] or cite["title"].endswith(c["section"]))
        url = urlsplit(cite["url"])
        assert url.scheme == "http" and url.netloc == "testserver" and url.path == f"/view/{c['doc_id']}"
        assert parse_qs(url.query) == {"start": [str(c["start"])], "end": [str(c["end"])]}
    page = client.get(urlsplit(notes[0]["url_citation"]["url"]).path)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_stream_puts_annotations_on_the_final_delta_and_usage_last(client):
    r = chat(client, [user("普惠性幼儿园覆盖率")], stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse(r)
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    final, usage = chunks[-2], chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop" and final["passages"]
    notes = final["choices"][0]["delta"]["annotations"]
    assert notes and all(content[a["url_citation"]["start_index"] : a["url_citation"]["end_index"]].startswith("[") for a in notes)
    assert usage["choices"] == [] and usage["usage"]["prompt_tokens"] > 0 and usage["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    plain = sse(chat(client, [user("普惠性幼儿园覆盖率")], stream=True))
    assert plain[-1]["choices"][0]["finish_reason"] == "stop" and "usage" not in plain[-1]


def test_document_view_page_is_static_and_xss_safe(client):
    r = client.get("/view/004_6f03f12d06f5859c", params={"start": 0, "end": 17})
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    page = r.text
    assert "../documents/" in page and "<mark" not in page.split("<script>")[0].split("<style>")[0]
    assert "textContent" in page and "innerHTML" not in page and "http://" not in page and "https://" not in page
    assert "scrollIntoView" in page


# ------------------------------------------------ what frontends also send
def test_continue_response_gets_an_empty_continuation(client):
    first = chat(client, [user("零作业日")]).json()["choices"][0]["message"]["content"]
    body = chat(client, [user("零作业日"), assistant(first)]).json()
    assert body["choices"][0]["message"]["content"] == "" and body["choices"][0]["finish_reason"] == "stop"
    assert body["reply_kind"] == "continuation" and body["passages"] == []
    chunks = sse(chat(client, [user("零作业日"), assistant(first)], stream=True))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == ""


@pytest.mark.parametrize(
    "prompt, check",
    [
        (TITLE_PROMPT, lambda v: set(v) == {"title"} and "海门区" in v["title"] and len(v["title"]) <= 24),
        (TAGS_PROMPT, lambda v: set(v) == {"tags"} and v["tags"] and all(isinstance(t, str) for t in v["tags"])),
        (FOLLOW_UP_PROMPT, lambda v: v == {"follow_ups": []}),
        ('### Task:\nSuggest queries.\n### Output:\nStrictly return in JSON format: {"queries": ["query1", "query2"]}\n<chat_history>\nUSER: 双减\n</chat_history>',
         lambda v: v == {"queries": []}),
    ],
)
def test_frontend_task_prompts_get_the_json_they_ask_for(client, prompt, check):
    for stream in (False, True):
        r = chat(client, [user(prompt)], stream=stream, tools=tool_definitions(3))
        assert r.status_code == 200
        if stream:
            content = "".join(c["choices"][0]["delta"].get("content", "") for c in sse(r) if c["choices"])
        else:
            body = r.json()
            assert body["reply_kind"] == "task" and body["passages"] == []
            content = body["choices"][0]["message"]["content"]
        assert check(json.loads(content)), content


def test_task_prompt_in_a_system_message_and_json_mode(client):
    body = chat(client, [{"role": "system", "content": TAGS_PROMPT}, user("给出标签")],
                response_format={"type": "json_object"}).json()
    assert json.loads(body["choices"][0]["message"]["content"]) == {"tags": ["教育政策"]}


@pytest.mark.parametrize("text", ["你好", "你好！", "谢谢", "谢谢你！", "hello", "Thanks", "thank you very much", "😀😀😀", "？"])
def test_greetings_and_thanks_get_a_short_reply_listing_the_documents(client, text):
    body = chat(client, [user(text)]).json()
    content = body["choices"][0]["message"]["content"]
    assert body["reply_kind"] == "greeting" and body["passages"] == [] and body["choices"][0]["message"]["annotations"] == []
    assert body["no_answer"] is True and body["no_answer_reason"] == "not_a_question"  # as /ask says of a greeting
    assert all(t in content for t in TITLES) and len(content) < 600
    assert ("不客气" in content or "You're welcome" in content) == any(w in text.lower() for w in ("谢", "thank"))
    english = text.lower() in ("hello", "thanks", "thank you very much")  # an English greeting is answered in English
    assert ("Documents you can ask about" in content) == english and ("可以查询的文件" in content) != english
    assert content.startswith("请用文字提问") == (text in ("😀😀😀", "？"))  # nothing but symbols: ask in words


def test_greeting_detection_leaves_questions_alone():
    assert not any(is_greeting(q) for q in ["你好，海门区的目标是什么", "谢谢，那惠山区呢？", "history", "hi 双减", "零作业日",
                                            "怎么用好课后服务经费", "帮助困难学生有哪些措施", "你是谁负责的学校",
                                            "help for families with low income"])


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"n": 2}, "n=2"),
        ({"n": 0}, "n=0"),
        ({"tools": tool_definitions(2), "tool_choice": "required"}, "tool_choice"),
        ({"tools": tool_definitions(2), "tool_choice": {"type": "function", "function": {"name": "tool_1"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "json_object"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "json_schema"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
    ],
)
def test_options_this_service_cannot_honour_get_a_clear_400(client, extra, words):
    r = chat(client, [user("零作业日")], **extra)
    assert r.status_code == 400 and words in r.json()["error"]["message"]


def test_options_it_can_honour_are_accepted(client):
    r = chat(client, [user("零作业日")], n=1, tools=tool_definitions(36), tool_choice="auto",
             response_format={"type": "text"}, temperature=0.2, user="someone", max_tokens=100)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["annotations"]


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": []},
        {"messages": "零作业日"},
        {"messages": [{"content": "零作业日"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"role": "user", "content": "   "}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "system", "content": "你是助手"}]},
        {"messages": [{"role": "user", "content": "问" * 501}]},
        {"messages": [{"role": "user", "content": "零作业日"}], "n": "2"},
        {"messages": [{"role": "user", "content": "零作业日"}], "response_format": "json"},
        {"messages": [{"role": "user", "content": "零作业日"}], "top_k": 0},
        [],
    ],
)
def test_bad_chat_requests_get_json_4xx(client, payload):
    r = client.post("/v1/chat/completions", json=payload)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]


def test_an_unknown_role_is_named_in_the_error(client):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "usr", "content": "零作业日"}]})
    assert r.status_code == 400 and "messages[0].role" in r.json()["error"]["message"] and "'usr'" in r.json()["error"]["message"]


def test_content_parts_are_read_as_text(client):
    body = chat(client, [{"role": "user", "content": [{"type": "text", "text": "零作业"}, {"type": "text", "text": "日"}]}]).json()
    assert body["resolved_question"] == "零作业日"


def test_big_chat_bodies_are_accepted_other_routes_keep_their_limit(client):
    messages = []
    for i in range(60):
        messages += [user(f"问题{i}：零作业日"), assistant("回答" * 1500)]
    messages.append(user("零作业日"))
    payload = {"messages": messages, "tools": tool_definitions(36)}
    size = len(json.dumps(payload).encode())
    assert size > 500_000
    r = client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200 and r.json()["passages"]
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (5 * 1024 * 1024) + b'"}]}'
    r = client.post("/v1/chat/completions", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "new chat" in r.json()["error"]["message"]
    r = client.post("/ask", content=b"{" + b" " * 70000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_chat_page_keeps_the_conversation(client):
    page = client.get("/").text
    assert "history" in page and "resolved_question" in page and "/view/" in page and "X-API-Key" in page
    assert 'type="file"' in page and "fetch('/documents'" in page and "innerHTML" not in page


# ------------------------------------------------------------ live server
LIVE_TURNS = [
    "海门区2024年对清华北大录取人数的目标是多少？",
    "零作业日",
    WUJIN,
    HUISHAN_FOLLOW_UP,
    "普惠性幼儿园覆盖率",
    "那武进区呢？",
    "双减",
    "课后服务怎么安排",
    "滨湖区十四五规划的目标",
    "教师队伍建设",
]


def annotations_of(obj) -> list[dict] | None:
    """The SDK declares `annotations` on a message; on a streamed delta it is an extra field."""
    notes = getattr(obj, "annotations", None) or (obj.model_extra or {}).get("annotations")
    return [n if isinstance(n, dict) else n.model_dump() for n in notes] if notes else None


@pytest.mark.slow
def test_openai_client_25_turns_with_tool_definitions(live):
    from openai import OpenAI

    client = OpenAI(base_url=live + "/v1", api_key="unused", max_retries=0)
    tools = tool_definitions(36)
    assert len(json.dumps(tools)) > 20_000
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 50}]
    for turn in range(25):
        messages.append(user(LIVE_TURNS[turn % len(LIVE_TURNS)]))
        if turn % 2:
            reply = client.chat.completions.create(model="policy-qa", messages=messages, tools=tools)
            message, extra, usage = reply.choices[0].message, reply.model_extra, reply.usage
            content, notes = message.content, annotations_of(message)
        else:
            stream = client.chat.completions.create(model="policy-qa", messages=messages, tools=tools, stream=True,
                                                    stream_options={"include_usage": True})
            pieces, notes, usage, extra = [], None, None, {}
            for chunk in stream:
                if chunk.usage:
                    usage = chunk.usage
                if chunk.choices:
                    delta = chunk.choices[0].delta
                    pieces.append(delta.content or "")
                    if chunk.choices[0].finish_reason:
                        notes, extra = (delta.model_extra or {}).get("annotations"), chunk.model_extra
            content = "".join(pieces)
        assert "[1]" in content and notes, (turn, content)
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
        assert extra["passages"]
        messages.append(assistant(content))
    assert len(json.dumps({"messages": messages, "tools": tools}).encode()) > 64 * 1024  # the size that used to get 413
    for note in notes:
        url = note["url_citation"]["url"]
        assert url.startswith(live + "/view/")
        assert httpx.get(url, timeout=10).status_code == 200
        q = parse_qs(urlsplit(url).query)
        doc = urlsplit(url).path.rsplit("/", 1)[1]
        sl = httpx.get(f"{live}/documents/{doc}", params={"start": q["start"][0], "end": q["end"][0]}, timeout=10)
        assert sl.status_code == 200 and sl.json()["text"]


@pytest.mark.slow
def test_openai_client_follow_up_continue_tasks_greeting_and_refusals(live):
    import openai
    from openai import OpenAI

    client = OpenAI(base_url=live + "/v1", api_key="unused", max_retries=0)
    first = client.chat.completions.create(model="policy-qa", messages=[user(WUJIN)])
    follow = client.chat.completions.create(
        model="policy-qa", messages=[user(WUJIN), assistant(first.choices[0].message.content), user(HUISHAN_FOLLOW_UP)]
    )
    assert "惠山区" in follow.model_extra["resolved_question"]
    cont = client.chat.completions.create(model="policy-qa", messages=[user(WUJIN), assistant(first.choices[0].message.content)])
    assert cont.choices[0].message.content == "" and cont.choices[0].finish_reason == "stop"
    title = client.chat.completions.create(model="policy-qa", messages=[user(TITLE_PROMPT)])
    assert "title" in json.loads(title.choices[0].message.content)
    hello = client.chat.completions.create(model="policy-qa", messages=[user("你好")])
    assert "海门区教育体育局2024年工作计划" in hello.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="policy-qa", messages=[user("零作业日")], n=2)
    assert "n=2" in str(e.value)


# ------------------------------------------------------------ the chat page
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        pytest.skip("Debian chromium/chromium-driver not installed")
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--window-size=1000,1400", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


@pytest.mark.slow
def test_chat_page_two_turn_conversation(browser, live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def answered(n):
        return lambda d: len([t for t in d.find_elements(By.CSS_SELECTOR, ".turn") if t.find_elements(By.CSS_SELECTOR, ".passage")]) == n

    browser.get(live + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys(WUJIN + Keys.ENTER)
    WebDriverWait(browser, 60).until(answered(1))
    box.send_keys(HUISHAN_FOLLOW_UP + Keys.ENTER)
    WebDriverWait(browser, 60).until(answered(2))
    turns = browser.find_elements(By.CSS_SELECTOR, ".turn")
    assert turns[0].find_elements(By.CSS_SELECTOR, ".resolved") == []  # a self-contained question: nothing to show
    second = turns[1]
    assert second.find_element(By.CSS_SELECTOR, ".question").text == HUISHAN_FOLLOW_UP
    resolved = second.find_element(By.CSS_SELECTOR, ".resolved").text
    assert resolved.startswith("检索：") and "惠山区" in resolved
    assert "惠山区" in second.find_element(By.CSS_SELECTOR, ".passage .meta").text
    assert browser.find_element(By.ID, "answer").text == second.find_element(By.CSS_SELECTOR, ".answer").text
    cite = second.find_element(By.CSS_SELECTOR, ".answer a.cite")
    href = cite.get_attribute("href")
    assert cite.text == "[1]" and "/view/000_eaec54ca81dddf17?start=" in href
    browser.save_screenshot(str(tmp_path / "chat.png"))
    browser.get(href)  # the citation opens the document with the passage marked
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.TAG_NAME, "mark"))
    assert browser.find_element(By.ID, "title").text == "无锡市惠山区2018—2019学年度教育工作意见"
    q = parse_qs(urlsplit(href).query)
    cited = httpx.get(f"{live}/documents/000_eaec54ca81dddf17", params={"start": q["start"][0], "end": q["end"][0]}).json()["text"]
    mark = browser.find_element(By.TAG_NAME, "mark")
    assert "".join(mark.text.split()) == "".join(cited.split())
    assert browser.execute_script("const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.top < window.innerHeight;", mark)
