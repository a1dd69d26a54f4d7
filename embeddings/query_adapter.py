"""A query-side adapter: a small learned correction of the question's embedding.

    q' = normalise(q + q·D)        D: dim × dim, learned; D = 0 is the model unchanged

Colloquial questions (“外面给小娃上课的早教班有没有人管”) and English ones land
away from the official wording of the passages (“严格早教机构全面监管”); the
adapter is trained (embeddings/adapter/train.py) on question → passage pairs written
from the documents, with the passages' own vectors fixed, so the index is not
rebuilt and a passage embedded today is scored the same way tomorrow. It is tied
to the model it was trained for (not applied to any other) and costs one
384×384 product per question.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent / "adapter"
WEIGHTS = HERE / "adapter.npz"


def base_model(model_id: str) -> str:
    """The model a vector space belongs to, whatever backend serves it (int8 ≈ fp32, cosine 0.997)."""
    return model_id.split("+")[0]


@dataclass(frozen=True)
class QueryAdapter:
    delta: np.ndarray  # dim × dim
    model: str
    meta: dict

    def apply(self, q: np.ndarray) -> np.ndarray:
        out = q + q @ self.delta
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    @classmethod
    def load(cls, model_id: str, path: Path = WEIGHTS) -> "QueryAdapter | None":
        """The adapter trained for this model, or None (another model, or none shipped)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("model") != base_model(model_id):
                    return None
                return cls(np.asarray(z["delta"], dtype=np.float32), meta["model"], meta)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None

    def save(self, path: Path = WEIGHTS) -> None:
        np.savez_compressed(path, delta=self.delta.astype(np.float32), meta=np.array(json.dumps(self.meta, ensure_ascii=False)))
