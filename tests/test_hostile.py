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
