"""The project's own questions as a bank of examples: how answerable were the questions most
like this one?

Some questions are of a kind policy documents do not answer, whatever their topic: who the
head of a bureau is, how to sign up for a named programme, which housing estates a school's
catchment area takes in, what a uniform costs. Their words are the documents' words, so the
lexical and dense inputs of the answerability model see a passage on the topic and say yes. The
question's own embedding carries its form, and the questions the project wrote itself (train
documents only, with their labels: answerable or not) say which forms the documents answered.

`Bank.answered(vector)` is the similarity-weighted share of answerable questions among the
K nearest of the bank: one input of the answerability model (qa.retrieval.FEATURES,
"neighbours"). bench/fit.py writes the bank (qa/data/question_bank.npz) from the questions it
fits on, and gives each of those questions the value out of fold (never from its own document),
so the model learns how much the input says about a question from a document it has not seen.
The bank holds the vectors of the model it was fitted with: under another model the input is
left out (it counts as its training mean, qa.retrieval.Retriever.answerable)."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

BANK = Path(__file__).parent / "data" / "question_bank.npz"
K = 20  # neighbours looked at
SHARPNESS = 20.0  # weight exp(SHARPNESS × cosine): a neighbour 0.05 closer counts e ≈ 2.7 times as much


@dataclass
class Bank:
    vectors: np.ndarray  # (n, d) float32, unit length
    labels: np.ndarray  # (n,) float32: 1 answerable, 0 not
    groups: np.ndarray  # (n,) str: the document a question is about (its fold), for out-of-fold values
    model_id: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def answered(self, vector: np.ndarray | None, exclude: np.ndarray | None = None) -> float | None:
        """The similarity-weighted share of answerable questions among the K nearest (None without a
        vector, or a bank of another dimension). `exclude`: a boolean mask of bank rows left out."""
        if vector is None or not len(self) or vector.shape[-1] != self.vectors.shape[1]:
            return None
        sims = self.vectors @ np.asarray(vector, dtype=np.float32).reshape(-1)
        if exclude is not None:
            sims = np.where(exclude, -np.inf, sims)
        k = min(K, int(np.isfinite(sims).sum()))
        if k <= 0:
            return None
        idx = np.argpartition(-sims, k - 1)[:k]
        s = sims[idx]
        w = np.exp(SHARPNESS * (s - s.max()))
        return float((w * self.labels[idx]).sum() / w.sum())

    def out_of_fold(self) -> np.ndarray:
        """The value of each of the bank's own questions, from the questions of the other groups only."""
        return np.array([self.answered(v, self.groups == g) for v, g in zip(self.vectors, self.groups)], dtype=np.float64)

    def save(self, path: Path = BANK) -> None:
        np.savez_compressed(path, vectors=self.vectors.astype(np.float16), labels=self.labels.astype(np.int8),
                            groups=self.groups.astype(str), model_id=np.array(self.model_id))

    @classmethod
    def load(cls, model_id: str, path: Path = BANK) -> "Bank | None":
        """The bank written for `model_id`, or None (no bank, a damaged file, another model). Read once per
        process (every generation's retriever shares it: a write does not read it again)."""
        return _read(model_id, path)

    @classmethod
    def of(cls, vectors: list, labels: list, groups: list, model_id: str = "") -> "Bank":
        v = np.vstack([np.asarray(x, dtype=np.float32).reshape(1, -1) for x in vectors])
        return cls(_unit(v), np.asarray(labels, dtype=np.float32), np.asarray(groups, dtype=str), model_id)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)


@lru_cache(maxsize=4)
def _read(model_id: str, path: Path) -> Bank | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["model_id"]) != model_id:
                return None
            return Bank(_unit(z["vectors"].astype(np.float32)), z["labels"].astype(np.float32), z["groups"].astype(str),
                        model_id)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing, truncated, damaged
        return None
