"""Hostile input: property-based requests against every operation of the OpenAPI
schema (hypothesis; schemathesis is not available here), and hand-written cases.
The rule under test: never a 5xx, always a JSON error body for a 4xx, and nothing
already stored changes."""
from __future__ import annotations

import json
import shutil
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from qa.settings import REPO_ROOT, Settings

TEST_DATA = REPO_ROOT / ".qa-data" / "test"
KEY = {"X-API-Key": "hostile-key"}
FUZZ = hsettings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, settings):
    path = tmp_path_factory.mktemp("hostile")
    shutil.copytree(settings.data_dir / "index", path / "index")
    s = Settings(data_dir=path, model_cache=TEST_DATA / "models", api_key="hostile-key")
    from server.app import create_app

    with TestClient(create_app(s, background=False), raise_server_exceptions=False) as c:
        yield c


def check(r):
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert body["error"]["status"] == r.status_code and body["error"]["message"]
    return r


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


def json_operations(client):
    spec = client.get("/openapi.json").json()
    ops = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                ref = content["application/json"]["schema"]["$ref"].split("/")[-1]
                ops.append((method, path, list(spec["components"]["schemas"][ref]["properties"])))
    return ops


def test_the_schema_lists_the_operations_fuzzed_here(app_client):
    ops = {(m, p) for m, p, _ in json_operations(app_client)}
    assert ops == {("post", "/ask"), ("post", "/v1/chat/completions")}


@FUZZ
@given(data=st.data())
def test_json_operations_never_fail_with_5xx(app_client, data):
    for method, path, props in json_operations(app_client):
        # shaped like the schema (known field names, any values), or any JSON at all
        body = data.draw(st.fixed_dictionaries({}, optional={p: json_values for p in props}) | json_values)
        check(app_client.request(method, path, json=body))


@FUZZ
@given(question=st.text(min_size=0, max_size=600), top_k=st.integers(-3, 60))
def test_any_question_text_gets_passages_or_a_4xx(app_client, question, top_k):
    r = check(app_client.post("/ask", json={"question": question, "top_k": top_k}))
    if r.status_code == 200:
        body = r.json()
        assert len(body["passages"]) <= top_k
        for p in body["passages"]:
            c = p["citation"]
            sliced = app_client.get(f"/documents/{c['doc_id']}", params={"start": c["start"], "end": c["end"]}).json()
            assert sliced["text"][:1] == p["text"][:1]


@FUZZ
@given(doc=st.text(min_size=1, max_size=30), start=st.text(max_size=6) | st.integers(-5, 10**12), end=st.text(max_size=6))
def test_document_slices_never_fail_with_5xx(app_client, doc, start, end):
    check(app_client.get("/documents/" + quote(doc, safe=""), params={"start": start, "end": end}))


@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(max_size=40), data=st.binary(max_size=2000))
def test_uploads_of_random_names_and_bytes_never_fail_with_5xx(app_client, name, data):
    r = check(app_client.post("/documents", files={"file": (name, data)}, headers=KEY))
    if r.status_code == 200:  # random bytes that are valid text under a valid name: take it out again
        for d in r.json()["documents"]:
            check(app_client.delete(f"/documents/{d['doc_id']}", headers=KEY))


@pytest.mark.parametrize(
    "method, path, kwargs, status",
    [
        ("post", "/ask", {"json": {"question": "教育" * 300}}, 400),  # over the question limit
        ("post", "/ask", {"json": {"question": "教" * 40000}}, 413),  # over the body limit
        ("post", "/ask", {"json": {"question": "双减\x00\x07"}}, 422),  # control characters
        ("post", "/ask", {"json": {"question": "  \u3000 "}}, 422),
        ("post", "/ask", {"json": {"question": "\u200b\ufeff\u200d"}}, 422),  # only invisible characters
        ("post", "/v1/chat/completions", {"json": {"model": "x", "messages": [{"role": "user", "content": "\u200b"}]}}, 400),
        ("post", "/ask", {"json": {"question": "双减", "top_k": "5"}}, 422),
        ("post", "/ask", {"json": {"question": "双减", "top_k": 10**30}}, 422),
        ("post", "/ask", {"json": {"question": "双减", "filters": {"doc_id": ["x"] * 5000}}}, 400),
        ("post", "/ask", {"json": {"question": "双减", "filters": {"path": "../../etc"}}}, 422),
        ("post", "/ask", {"content": b"[" * 30000 + b"]" * 30000, "headers": {"content-type": "application/json"}}, 400),
        ("post", "/ask", {"content": b'{"question": "' + b"\xff\xfe" * 10 + b'"}', "headers": {"content-type": "application/json"}}, 400),
        ("post", "/ask", {"content": b"question=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 422),
        ("post", "/ask", {"content": b'{"question": "a", "question": {"$gt": ""}}', "headers": {"content-type": "application/json"}}, 422),
        ("get", "/documents/..%2F..%2F..%2Fetc%2Fpasswd", {}, 404),
        ("get", "/documents/%00", {}, 404),
        ("get", "/documents/004_6f03f12d06f5859c?start=5&end=2", {}, 400),
        ("get", "/documents/004_6f03f12d06f5859c?start=-1", {}, 422),
        ("delete", "/documents/..%2F..%2Fseeds", {"headers": KEY}, 404),
        ("post", "/v1/chat/completions", {"json": {"model": "x", "messages": [{"role": "user", "content": [{"type": "image"}]}]}}, 400),
    ],
)
def test_hand_written_hostile_requests(app_client, method, path, kwargs, status):
    r = check(app_client.request(method, path, **kwargs))
    assert r.status_code == status, r.text[:300]


def test_mixed_scripts_and_emoji_are_ordinary_questions(app_client):
    for q in ["Ünïcødé 普惠性幼儿园 العربية 😀", "ＡＢＣ１２３　双减", "🙂" * 50, "<script>alert(1)</script> 课后服务"]:
        r = check(app_client.post("/ask", json={"question": q}))
        assert r.status_code == 200 and json.loads(r.text)["passages"]


def test_nothing_stored_changed(app_client):
    assert [d["doc_id"] for d in app_client.get("/documents").json()] == sorted(
        p.stem for p in (REPO_ROOT / "seeds").glob("*.txt"))


# ------------------------------------------------------- issue 13: hostile clients
import asyncio  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


def _asgi(app, method, path, headers=(), body_read=None):
    """Call the ASGI app directly: (status, headers); `body_read` is set if the app reads the body."""
    out = {}

    async def receive():
        if body_read is not None:
            body_read.set()
        await asyncio.sleep(3600)  # a body that never arrives

    async def send(msg):
        if msg["type"] == "http.response.start":
            out["status"], out["headers"] = msg["status"], dict(msg.get("headers") or [])

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers], "http_version": "1.1",
             "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 5))
    return out["status"], out["headers"]


def test_the_key_is_checked_before_any_body_is_read(tmp_path):
    from server.app import create_app

    app = create_app(Settings(data_dir=tmp_path, api_key="hostile-key"))
    read = threading.Event()
    status, headers = _asgi(app, "POST", "/documents", [("content-type", "multipart/form-data; boundary=x"),
                                                        ("content-length", str(10 * 2**20))], body_read=read)
    assert status == 401 and not read.is_set() and headers[b"www-authenticate"] == b"Bearer"
    status, _ = _asgi(app, "DELETE", "/documents/x", [("x-api-key", "wrong-key")], body_read=read)
    assert status == 401 and not read.is_set()


def test_a_body_that_arrives_too_slowly_is_refused():
    from server.middleware import BodyLimit

    async def inner(scope, receive, send):  # pragma: no cover - never reached
        raise AssertionError("the app must not see a body that never arrived")

    status, _ = _asgi(BodyLimit(inner, 1000, 1000, timeout=0.2), "POST", "/ask", [("content-type", "application/json")])
    assert status == 408


def test_uploads_beyond_the_cap_get_429_before_their_body_is_read(tmp_path):
    from server.app import create_app

    app = create_app(Settings(data_dir=tmp_path, api_key="hostile-key", max_concurrent_uploads=1))
    app.state.qa.uploads = 1  # one is being indexed
    read = threading.Event()
    status, headers = _asgi(app, "POST", "/documents", [("x-api-key", "hostile-key")], body_read=read)
    assert status == 429 and headers[b"retry-after"] == b"5" and not read.is_set()


def test_reads_behind_the_key_cover_the_api_docs_and_refuse_before_validation():
    from server.app import create_app

    # the session's built model and index, loaded before the client starts: a background load over an empty
    # data dir would convert a model and embed the seeds in a thread that outlives the test (torch competing
    # with the timing tests, and 'terminate called' if pytest exits meanwhile)
    from conftest import MODELS, TEST_DATA

    s = Settings(data_dir=TEST_DATA, api_key="hostile-key", require_key_for_reads=True, model_cache=MODELS)
    with TestClient(create_app(s, background=False)) as c:
        for path in ("/docs", "/redoc", "/openapi.json", "/v1/models"):
            assert c.get(path).status_code == 401, path
        r = c.post("/ask", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 401  # not a 422 describing the schema
        assert c.get("/openapi.json", headers={"X-API-Key": "hostile-key"}).status_code == 200
        assert c.get("/").status_code == 200  # the page shell holds no data; it asks for the key itself
        assert c.get("/healthz").status_code in (200, 503)


def test_every_response_carries_security_headers(app_client):
    for path in ("/healthz", "/documents", "/", "/view/x", "/docs", "/nope"):
        r = app_client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY"
    page = app_client.get("/").headers["content-security-policy"]
    assert "'sha256-" in page and "unsafe-inline" not in page.split("script-src")[1].split(";")[0]
    assert app_client.get("/documents").headers["content-security-policy"].startswith("default-src 'none'")


def test_a_405_says_which_methods_are_allowed(app_client):
    r = check(app_client.put("/ask", json={}))
    assert r.status_code == 405 and "POST" in r.headers["allow"]


def test_head_is_answered_as_get_without_a_body(app_client):
    """Uptime monitors send HEAD /healthz (and link checkers HEAD /): it was a 405 that said allow: GET."""
    for path in ("/healthz", "/", "/documents", "/v1/models"):
        got, head = app_client.get(path), app_client.head(path)
        assert head.status_code == got.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == str(len(got.content)), path
    assert app_client.head("/documents/nope").status_code == 404


def test_an_integral_float_top_k_is_an_integer_and_qa_top_k_is_the_default(app_client, tmp_path, settings):
    r = check(app_client.post("/ask", json={"question": "双减", "top_k": 2.0}))
    assert r.status_code == 200 and len(r.json()["passages"]) == 2
    assert app_client.post("/ask", json={"question": "双减", "top_k": 2.5}).status_code == 422
    from server.app import create_app

    with TestClient(create_app(settings.model_copy(update={"top_k": 2}), background=False)) as c:
        assert len(c.post("/ask", json={"question": "普惠性幼儿园覆盖率"}).json()["passages"]) == 2
    env = dict(os.environ, QA_DATA_DIR=str(settings.data_dir), QA_TOP_K="2")
    r = subprocess.run([sys.executable, "-m", "qa.cli", "ask", "普惠性幼儿园覆盖率", "--json"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and len(json.loads(r.stdout)["passages"]) == 2, r.stderr


@pytest.mark.parametrize("name, data, status, words", [
    ("utf16.txt", "\ufeff2025年某县教育工作要点\n一、学前教育\n新增学位1200个。\n".encode("utf-16-le"), 200, None),
    ("utf16be.txt", "2025年某县教育工作要点\n一、学前教育\n新增学位1200个。\n".encode("utf-16"), 200, None),
    # no BOM: the zero bytes of the ASCII characters say which end comes first
    ("utf16le-nobom.txt", "2025年某县教育工作要点\n一、学前教育\n新增学位1200个。\n".encode("utf-16-le"), 200, None),
    ("utf16be-nobom.txt", "2025年某县教育工作要点\n一、学前教育\n新增学位1200个。\n".encode("utf-16-be"), 200, None),
    ("nul.txt", b"abc\x00\x00def" * 50, 400, "binary"),  # zero bytes on both sides of the pairs: not UTF-16 text
    ("blank.txt", "\u3000\u3000\n  ".encode(), 400, "empty"),
    ("", b"abc", 400, "no file name"),
    ("０００_eaec54ca81dddf17x.txt", "\u3000".encode(), 400, "empty"),
    ("аbc_plan.txt", "2025年计划\n一、总体\n新增学位。\n".encode(), 400, "mixes"),  # Cyrillic а + Latin
    ("x\u200b.txt", b"abc", 400, "control"),  # zero-width space: an invisible look-alike
])
def test_upload_decoding_and_naming_messages(app_client, name, data, status, words):
    r = check(app_client.post("/documents", files={"file": (name, data)}, headers=KEY))
    assert r.status_code == status, r.text
    if words:
        assert words in r.json()["error"]["message"]
    else:
        assert app_client.delete(f"/documents/{r.json()['documents'][0]['doc_id']}", headers=KEY).status_code == 200


@pytest.mark.parametrize("content, ctype, words", [
    (b'{"question": "x",}', "application/json", "the body is not valid JSON at character 17"),
    ('{"question": "双减"}'.encode(), "text/plain", "sent with Content-Type: application/json"),
    (b"question=x", "application/x-www-form-urlencoded", "must be a JSON object"),
])
def test_a_body_that_is_not_a_json_object_is_told_so(app_client, content, ctype, words):
    r = check(app_client.post("/ask", content=content, headers={"content-type": ctype}))
    assert r.status_code == 422 and words in r.json()["error"]["message"], r.text


def test_full_width_ids_fold_to_the_id_they_imitate():
    from qa.ingest import doc_id_for

    assert doc_id_for("０００_eaec54ca81dddf17.txt") == ("000_eaec54ca81dddf17", ".txt")  # the seed itself, not a twin
    assert doc_id_for("海门区2024计划.docx") == ("海门区2024计划", ".docx")
    for bad in ("000_eаec54ca81dddf17.txt", "pαssword.md"):  # Cyrillic а, Greek α among Latin letters
        with pytest.raises(Exception, match="mixes"):
            doc_id_for(bad)


@pytest.mark.parametrize("env, words", [
    ({"QA_API_KEY": "short"}, "at least 8"),
    ({"QA_API_KEY": "ключ-ключ-ключ"}, "ASCII"),
    ({"QA_TOP_K": "0"}, "QA_TOP_K"),
    ({"QA_CORS_ORIGINS": "http://a"}, "JSON list"),
])
def test_bad_settings_are_one_line_at_start_up(env, words, tmp_path):
    r = subprocess.run([sys.executable, "-m", "qa.cli", "serve", "--port", "1"], env=dict(os.environ, QA_DATA_DIR=str(tmp_path), **env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("qa: error: ") and words in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and "ключ" not in r.stderr


def test_the_key_is_trimmed():
    assert Settings(api_key="  pasted-key\n").api_key == "pasted-key"


def test_links_and_html_in_chat_content_are_neutralised():
    from server.chat import answer_text

    body = {"question": "q", "resolved_question": "q", "answer": "见[x](javascript:alert(1)) <a href=\"javascript:x\">点</a> [1]",
            "passages": [{"rank": 1, "highlight": "<img src=x onerror=alert(1)>", "citation": {"title": "t", "section": ""}}]}
    text = answer_text(body)
    assert "](" not in text and "<a" not in text and "<img" not in text and "[1]" in text
    assert "javascript:alert(1)" in text  # shown as text, not removed


def test_idle_slow_and_bloated_header_connections_are_closed():
    import uvicorn
    from fastapi import FastAPI

    from server.app import server_config

    s = Settings(header_timeout_s=0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(FastAPI(), host="127.0.0.1", port=port, log_level="warning", **server_config(s)))
    threading.Thread(target=server.run, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        for first in (b"", b"GET / HTTP/1.1\r\nHost: x\r\n"):  # nothing at all; headers never finished
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.sendall(first)
                c.settimeout(5)
                t0 = time.monotonic()
                assert c.recv(100) == b"" and time.monotonic() - t0 < 3  # closed by the server
        # headers that never end but keep coming: refused at the cap, not buffered without bound
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.settimeout(5)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n")  # no blank line yet
            reply = c.recv(300)
            assert reply.startswith(b"HTTP/1.1 400") and b"too large" in reply.lower()
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["status"] == 400  # the service's JSON error
        # a request at the edge of the cap is still served
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.settimeout(5)
            c.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 12000 + b"\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True


@pytest.mark.slow
def test_schemathesis_over_the_live_openapi(app_client):
    """Every operation of the published schema, bounded examples: no 5xx, responses as documented."""
    import schemathesis
    from hypothesis import settings as hs
    from schemathesis.specs.openapi.checks import response_schema_conformance
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", app_client.app)
    failures = []
    for op in schema.get_all_operations():
        operation = op.ok()
        strategy = operation.as_strategy()

        @hs(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=strategy)
        def run(case):
            headers = dict(KEY) if operation.method.upper() in ("POST", "DELETE") and operation.path.startswith("/documents") else {}
            response = case.call(headers=headers)
            if case.method.upper() == "DELETE" and response.status_code == 200:
                pytest.fail(f"deleted a document: {case.path_parameters}")
            try:
                case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
            except Exception as e:  # collect, report all at the end
                failures.append(f"{case.method} {case.path}: {str(e)[:300]}")

        run()
    assert not failures, "\n".join(failures[:10])
