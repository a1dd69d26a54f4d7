"""The OpenAI-compatible chat endpoint: what chat frontends really send, mapped onto `Service.ask`.

A request is classified once (`plan`) and answered by one of four replies:

- **answer**: the last user message, resolved against the earlier user turns (at most
  `HISTORY_TURNS`, each cut to `max_question_chars`) by `Service.ask(..., history=…)`;
  the content is the extractive answer with `[n]` markers and a sources list, and every
  passage is an OpenAI `url_citation` annotation on its first `[n]` marker, pointing at
  this service's document view (`/view/{doc_id}?start=&end=`).
- **task**: frontend background prompts (Open WebUI's title / tags / follow-up / query
  generation: a `### Task:` prompt that asks for JSON such as `{"title": …}`) get a short
  valid reply in the format they ask for, never a retrieval.
- **greeting**: "你好", "谢谢", "hello", … get a short reply saying what can be asked.
- **continuation**: a conversation that ends with the assistant's message ("Continue
  response") gets an empty continuation, not the previous answer again.

Only the last turns are read, so long histories, long system prompts and tool definitions
cost nothing but their bytes (the body limit for this route is `MAX_BODY_BYTES`).
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from qa.errors import QAError
from qa.query import is_blank, is_wordless

MODEL_NAME = "policy-qa"
HISTORY_TURNS = 6  # earlier user turns handed to the resolver; older ones never change a follow-up
MAX_BODY_BYTES = 4 * 1024 * 1024  # ~800 Open WebUI turns with 36 tool definitions; the rest of the API keeps 64 KiB
STREAM_STEP = 24  # characters per streamed content delta


class UnsupportedRequest(QAError):
    status = 400


# ------------------------------------------------------------------ messages
def text_of(content) -> str:
    """A message's text: a string, or the text parts of [{"type": "text", "text": …}, …]."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text", ""), str))
    return ""


def check_supported(req, task_json: bool) -> None:
    """Options this service cannot honour are refused, not silently ignored."""
    n = getattr(req, "n", None)
    if n is not None and n != 1:
        raise UnsupportedRequest(f"n={n} is not supported: this service gives exactly one reply (n=1)")
    choice = getattr(req, "tool_choice", None)
    if choice == "required" or isinstance(choice, dict):
        raise UnsupportedRequest(
            "tool_choice 'required' or a named function is not supported: this service never calls tools "
            "(tool definitions are accepted and ignored with tool_choice 'auto' or 'none')"
        )
    if choice is not None and choice not in ("auto", "none"):
        raise UnsupportedRequest(f"tool_choice {choice!r} is not supported; use 'auto' or 'none'")
    fmt = getattr(req, "response_format", None)
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_object" and task_json:
            return  # a frontend task prompt: its reply is JSON anyway
        if kind in ("json_object", "json_schema"):
            raise UnsupportedRequest(
                f"response_format {kind!r} is not supported: replies are cited passages in text (use 'text' or leave it out)"
            )
        if kind != "text":
            raise UnsupportedRequest(f"response_format type {kind!r} is not supported; use 'text'")


# -------------------------------------------------------------- greetings
# one definition for /ask, the CLI and chat: qa.conversation
from qa.conversation import greeting_reply, is_greeting  # noqa: E402,F401


# ------------------------------------------------------- frontend task prompts
_TASK_KEY = re.compile(r"""\{\s*["“]([A-Za-z_]+)["”]\s*:\s*(\[|\{|["“]|\d|true|false)""")


def task_prompt(texts: list[str]) -> tuple[str, str] | None:
    """(prompt text, JSON key or "") when a message has the shape of a frontend background task:
    a "### Task:" prompt, usually asking for JSON like {"title": …}, {"tags": […]}, {"follow_ups": […]}."""
    for text in texts:
        if "### Task:" not in text and "### Task：" not in text:
            continue
        m = _TASK_KEY.search(text)
        if m:
            return text, m.group(1)
        if "<chat_history>" in text:  # e.g. emoji generation: a reply without JSON
            return text, ""
    return None


def _first_user_turn(prompt: str, fallback: list[str]) -> str:
    hist = re.search(r"<chat_history>(.*?)(?:</chat_history>|$)", prompt, re.S)
    if hist:
        m = re.search(r"^\s*USER:\s*(.+?)(?=^\s*(?:ASSISTANT|USER|SYSTEM):|\Z)", hist.group(1), re.S | re.M)
        if m and m.group(1).strip():
            return m.group(1).strip()
    for t in fallback:
        if t.strip():
            return t.strip()
    return ""


def short_title(question: str, limit: int = 20) -> str:
    t = re.sub(r"\s+", " ", question).strip().rstrip("？?。.!！ ")
    if len(t) > limit:
        t = t[: limit - 1] + "…"
    return t or "教育政策问答"


def task_reply(prompt: str, key: str, user_texts: list[str]) -> str:
    if key == "title":
        return json.dumps({"title": short_title(_first_user_turn(prompt, user_texts))}, ensure_ascii=False)
    if key == "tags":
        return json.dumps({"tags": ["教育政策"]}, ensure_ascii=False)
    if not key:
        return ""
    m = _TASK_KEY.search(prompt)
    opener = m.group(2) if m else '"'
    value = [] if opener == "[" else {} if opener == "{" else ""
    return json.dumps({key: value}, ensure_ascii=False)


# ---------------------------------------------------------------- answers
def answer_text(body: dict) -> str:
    """The extractive answer with numbered citations, then the sources as a list (one item each, as every
    markdown renderer shows it); a first line "检索：…" says what was searched when a follow-up was resolved
    into another question ("Sources:" and "Searched: …" for a question asked in English, whatever the
    conversation's language). A reply that the documents do not answer lists no sources as if they did: the
    closest passages under their own heading when they were only too far from the question (low_relevance),
    none when the question is about another place or period, or is not a question."""
    from qa.query import language

    lines = []
    # an English question gets English labels (the passages stay Chinese, as the answer does)
    en = language(body.get("question") or "") == "en" or (body.get("query") or {}).get("language") == "en"
    resolved = body.get("resolved_question")
    if resolved and resolved != body.get("question"):
        lines += [f"Searched: {resolved}" if en else f"检索：{resolved}", ""]
    lines.append(body["answer"])
    refused, reason = body.get("no_answer"), body.get("no_answer_reason")
    if body["passages"] and (not refused or reason == "low_relevance"):
        if refused:
            head = "Closest passages (not an answer):" if en else "参考段落（不是答案）："
        else:
            head = "Sources:" if en else "来源："
        lines += ["", head]
        for p in body["passages"]:
            c = p["citation"]
            said = " ".join(p["highlight"].split())  # one line: a heading and its sentence would break the item
            quote_ = said if len(said) <= 60 else said[:59] + "…"
            lines.append(f"- [{p['rank']}] {_where(c)}：“{quote_}”")
    from .safe_text import neutralise_markup  # uploaded text may hold links and HTML; frontends render markdown

    return neutralise_markup("\n".join(lines))


def _where(c: dict) -> str:
    return f"{c['title']} › {c['section']}" if c.get("section") else c["title"]


def view_url(base_url: str, c: dict) -> str:
    return f"{base_url.rstrip('/')}/view/{quote(c['doc_id'], safe='')}?start={c['start']}&end={c['end']}"


def annotations(content: str, passages: list[dict], base_url: str) -> list[dict]:
    """One url_citation per passage, in rank order, on its first "[n]" marker in the content
    (start/end index that marker, in characters)."""
    out = []
    for p in passages:
        marker = f"[{p['rank']}]"
        i = content.find(marker)
        if i < 0:
            continue
        c = p["citation"]
        out.append({
            "type": "url_citation",
            "url_citation": {"url": view_url(base_url, c), "title": _where(c), "start_index": i, "end_index": i + len(marker)},
        })
    return out


# ----------------------------------------------------------- token counts
_counters: dict[str, object] = {}
_counters_lock = threading.Lock()


class TokenCounter:
    """Counts tokens with the embedding model's own tokenizer (no truncation, no special tokens)."""

    def __init__(self, embedder):
        self._lock = threading.Lock()
        self._tok = self._hf = None
        path = Path(str(getattr(embedder, "path", "")))
        if (path / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
            self._tok.no_truncation()
            self._tok.no_padding()
        else:  # a hub-cached sentence-transformers model: its HF tokenizer
            self._hf = getattr(getattr(embedder, "model", None), "tokenizer", None)

    def __call__(self, texts: list[str]) -> int:
        texts = [t for t in texts if t]
        if not texts:
            return 0
        with self._lock:
            if self._tok is not None:
                return sum(len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False))
            if self._hf is not None:
                return sum(len(self._hf(t, add_special_tokens=False)["input_ids"]) for t in texts)
        return sum(len(t) for t in texts)  # no tokenizer reachable: characters, an upper bound for Chinese


def count_tokens(embedder, texts: list[str]) -> int:
    key = str(getattr(embedder, "path", id(embedder)))
    with _counters_lock:
        counter = _counters.get(key)
        if counter is None:
            counter = _counters[key] = TokenCounter(embedder)
    return counter(texts)


# ------------------------------------------------------------------ replies
@dataclass
class Reply:
    kind: str  # answer | task | greeting | continuation
    content: str
    prompt: list[str] = field(default_factory=list)  # the texts the service used
    body: dict | None = None  # the /ask body, for answers
    annotations: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)


ROLES = ("system", "developer", "user", "assistant", "tool", "function")  # OpenAI's chat roles


def plan(req, settings) -> dict:
    """Classify the request without touching the index: cheap, and every refusal comes before retrieval."""
    messages = list(req.messages)
    for i, m in enumerate(messages):
        if m.role not in ROLES:  # a typo (usr) was "must contain a non-empty user message"
            raise QAError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m.role!r}")
    texts = [(m.role, text_of(m.content)) for m in messages]
    users = [t for r, t in texts if r == "user"]
    if not users or not any(t.strip() for t in users):
        raise QAError("messages must contain a non-empty user message (the question)")
    # the prompt of a background task is the last user message or a system message (never an earlier question)
    task = task_prompt([t for r, t in texts if r in ("system", "developer")] + [users[-1]])
    check_supported(req, task_json=bool(task and task[1]))
    if task:
        return {"kind": "task", "prompt": task[0], "key": task[1], "users": users}
    last_role = texts[-1][0]
    if last_role == "assistant":
        return {"kind": "continuation"}
    # the last user message is the question (a trailing system/tool message is not one)
    idx = max(i for i, (r, _) in enumerate(texts) if r == "user")
    question = texts[idx][1].strip()
    if is_blank(question):
        raise QAError("messages must end with a non-empty user message (the question)")
    if is_greeting(question) or is_wordless(question):  # 你好, 谢谢, 😀: nothing to look up
        return {"kind": "greeting", "question": question}
    if len(question) > settings.max_question_chars:
        raise QAError(f"question too long ({len(question)} characters, at most {settings.max_question_chars})")
    earlier = [t.strip() for r, t in texts[:idx] if r == "user" and t.strip()]
    earlier = [t for t in earlier if not is_greeting(t) and not task_prompt([t])]
    history = [t[: settings.max_question_chars] for t in earlier[-HISTORY_TURNS:]]
    return {"kind": "answer", "question": question, "history": history}


def make_reply(svc, req, settings, p: dict, base_url: str) -> Reply:
    kind = p["kind"]
    if kind == "continuation":
        reply = Reply("continuation", "")
    elif kind == "task":
        reply = Reply("task", task_reply(p["prompt"], p["key"], p["users"]), prompt=[p["prompt"]])
    elif kind == "greeting":
        titles = [d["title"] for d in svc.index.docs.values()]
        reply = Reply("greeting", greeting_reply(p["question"], titles), prompt=[p["question"]])
    else:
        body = svc.ask(p["question"], req.top_k or settings.top_k, None, history=p["history"] or None)
        content = answer_text(body)
        reply = Reply("answer", content, prompt=[*p["history"], p["question"]], body=body,
                      annotations=annotations(content, body["passages"], base_url))
    prompt_tokens = count_tokens(svc.embedder, reply.prompt)
    completion_tokens = count_tokens(svc.embedder, [reply.content])
    reply.usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                   "total_tokens": prompt_tokens + completion_tokens}
    return reply


def _extra(reply: Reply) -> dict:
    body = reply.body or {}
    return {
        "passages": body.get("passages", []),
        # a greeting is answered by no passage, as /ask says of it (no_answer_reason not_a_question)
        "no_answer": bool(body.get("no_answer", False)) or reply.kind == "greeting",
        "no_answer_reason": body.get("no_answer_reason") or ("not_a_question" if reply.kind == "greeting" else None),
        "resolved_question": body.get("resolved_question"),
        "reply_kind": reply.kind,
    }


def completion(reply: Reply) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_NAME,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.content, "annotations": reply.annotations},
            "finish_reason": "stop",
        }],
        "usage": reply.usage,
        **_extra(reply),
    }


def stream(reply: Reply, include_usage: bool = False):
    """SSE chunks: the role, the content in pieces, a final delta with the annotations
    (finish_reason "stop", plus `passages` etc.), then a usage chunk with empty choices when
    stream_options.include_usage asks for it, then [DONE]."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(choices: list, **more) -> str:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME, "choices": choices, **more}
        if include_usage and "usage" not in obj:
            obj["usage"] = None
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    def delta(d: dict, finish: str | None = None) -> list:
        return [{"index": 0, "delta": d, "finish_reason": finish}]

    yield chunk(delta({"role": "assistant", "content": ""}))
    for i in range(0, len(reply.content), STREAM_STEP):
        yield chunk(delta({"content": reply.content[i : i + STREAM_STEP]}))
    yield chunk(delta({"annotations": reply.annotations}, "stop"), **_extra(reply))
    if include_usage:
        yield chunk([], usage=reply.usage)
    yield "data: [DONE]\n\n"


async def respond(req, settings, need_service, base_url: str):
    """The route's whole body: classify, refuse what cannot be honoured, answer in a worker thread."""
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    p = plan(req, settings)
    svc = need_service()
    reply = await run_in_threadpool(make_reply, svc, req, settings, p, base_url)
    if not req.stream:
        return completion(reply)
    include_usage = bool((req.stream_options or {}).get("include_usage"))
    return StreamingResponse(stream(reply, include_usage), media_type="text/event-stream")
