"""Shared fixtures: one data directory per checkout (gitignored), so the default
model is built once and reused across test runs, and one Embedder per session."""
from __future__ import annotations

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
