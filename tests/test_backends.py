"""The retrieval and document tests, run once per store backend (issue 14): the embedded FAISS +
bm25s generation and Milvus Lite 2.5.1 (the Milvus C++ engine in a wheel; skipped without the
milvus extra). The tests are the embedded backend's own, imported from tests/test_retrieval.py and
tests/test_documents.py, not copies: here their `service`, `kb` and `client` fixtures come from the
backend-parametrised fixtures of tests/conftest.py, so everything above the store seam (citation
offsets, filters, top_k, no-answer reasons, the region/year preference, documents added, replaced
and removed) must behave the same on both. Test configuration for Milvus: FLAT dense index (Milvus
Lite has no HNSW), a Milvus Lite file per data dir, words under the project's own tokens."""
from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from qa.settings import Settings
from test_documents import (  # noqa: F401  (collected here, once per backend)
    CountingEmbedder,
    TEST_DATA,
    TOWN,
    test_a_corrupted_index_is_reported_and_rebuilt_with_the_uploads,
    test_add_embeds_only_the_new_document_and_survives_a_restart,
    test_replace_unchanged_remove_and_restore,
    test_upload_docx_ask_cite_and_delete_over_http,
)
from test_retrieval import (  # noqa: F401
    test_a_named_place_is_a_scope_not_a_topic,
    test_a_question_about_something_the_corpus_never_names_is_no_answer,
    test_answer_is_extractive_with_markers,
    test_colloquial_questions_the_corpus_answers_are_not_refused,
    test_every_passage_cites_its_source_exactly,
    test_filters,
    test_quality_bar_on_the_dev_file,
    test_region_and_year_preference,
    test_top_k_bounds,
    test_unanswerable_question_says_so_plainly,
)


@pytest.fixture
def service(backend_service):
    return backend_service


@pytest.fixture
def kb(backend_env, tmp_path, embedder):
    """tests/test_documents.py's small knowledge base, on the backend: its own data dir (for Milvus
    its own Milvus Lite file, <data_dir>/milvus.db), the shared model."""
    corpus = tmp_path / "seeds"
    corpus.mkdir()
    (corpus / "town.txt").write_text(TOWN, encoding="utf-8")
    s = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, model_cache=TEST_DATA / "models")
    assert s.store == backend_env
    yield s, CountingEmbedder(embedder)
    mirrors_the_generation(s)


@pytest.fixture(scope="module")
def client(backend, tmp_path_factory, settings):
    """An app over a copy of the test index, with an API key, on the backend."""
    from server.app import create_app

    path = tmp_path_factory.mktemp("http")
    shutil.copytree(settings.data_dir / "index", path / "index")
    extra = {"store": "milvus", "milvus_analyzer": "tokens"} if backend == "milvus" else {}
    s = Settings(data_dir=path, model_cache=TEST_DATA / "models", api_key="s3cret-key", **extra)
    with TestClient(create_app(s, background=False)) as c:
        yield c
    mirrors_the_generation(s)
    _close(s)


def mirrors_the_generation(settings) -> None:
    """On Milvus, the collection holds exactly the live generation's documents and chunks."""
    if settings.store != "milvus":
        return
    from qa import index as index_mod
    from qa.backends import open_remote

    docs = index_mod.live_documents(settings)
    remote = open_remote(settings)
    assert remote.documents() == {d: m["sha256"] for d, m in docs.items()}
    assert remote.count() == len(index_mod.live_chunks(settings))


def _close(settings) -> None:
    if settings.store == "milvus":
        from qa.backends import open_remote

        open_remote(settings).close()


def test_the_backend_is_the_one_asked_for(backend, service):
    remote = service.retriever.remote
    assert (remote is None) == (backend == "embedded")
    if remote is not None:
        assert remote.index_type == "FLAT" and remote.analyzer == "tokens"
        mirrors_the_generation(service.settings)
