"""Shared fixtures: one data directory per checkout (gitignored), so the default
model is built once and reused across test runs, and one Embedder per session."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from qa.settings import REPO_ROOT, Settings

TEST_DATA = REPO_ROOT / ".qa-data" / "test"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(data_dir=TEST_DATA, corpus_dir=REPO_ROOT / "seeds")


@pytest.fixture(scope="session")
def embedder(settings):
    from embeddings import Embedder

    return Embedder(settings, progress=False)


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


@pytest.fixture(scope="session")
def live(settings):
    port = _free_port()
    env = dict(os.environ, QA_DATA_DIR=str(settings.data_dir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail("server exited: " + proc.stderr.read()[-2000:])
            time.sleep(0.5)
        else:
            pytest.fail("server did not become ready in 180 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


