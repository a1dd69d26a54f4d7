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
left out (it counts as its training mean, qa.retrieval.Retriever.answerable).

`Bank.form(vector)` is a second input from the same questions: the log-odds of a logistic model
(L2, PROBE_L2) over the question's embedding itself, fitted on the whole bank. The neighbours
vote locally, and a question unlike any in the bank gets whatever its few nearest say; the linear
model reads the direction of the embedding that separates the forms the documents answer from
the ones they do not, and carries over to phrasings the bank lacks. Separating the read blind
sets' questions of the test documents (never fitted on), the neighbours alone give ROC area
0.893 and the linear model 0.940; the answerability model takes both (README, issue 11)."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

BANK = Path(__file__).parent / "data" / "question_bank.npz"
K = 20  # neighbours looked at
SHARPNESS = 20.0  # weight exp(SHARPNESS × cosine): a neighbour 0.05 closer counts e ≈ 2.7 times as much
# the linear model's L2 strength, chosen by the ROC area of out-of-fold values on the train documents'
# questions (0.01: 0.953, 0.03 and 0.1: 0.956, 0.3: 0.952, 1: 0.942, 3: 0.924)
PROBE_L2 = 0.05


@dataclass
class Bank:
    vectors: np.ndarray  # (n, d) float32, unit length
    labels: np.ndarray  # (n,) float32: 1 answerable, 0 not
    groups: np.ndarray  # (n,) str: the document a question is about (its fold), for out-of-fold values
    model_id: str = ""
    probe: np.ndarray | None = None  # (d + 1,) the linear model over the embedding (weights, bias); None: not fitted
    _probes: dict = field(default_factory=dict, repr=False, compare=False)  # group left out -> its model (fitting)

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

    def form(self, vector: np.ndarray | None, leave_out: str | None = None) -> float | None:
        """The log-odds that a question of this form is answered, by the linear model over the embedding
        (None without a vector, another dimension, or a bank without the model). `leave_out`: the model
        fitted without that group's questions (bench/fit.py's out-of-fold values)."""
        if vector is None or not len(self) or vector.shape[-1] != self.vectors.shape[1]:
            return None
        if leave_out is None:
            w = self.probe
        else:
            w = self._probes.get(leave_out)
            if w is None:
                keep = self.groups != leave_out
                w = self._probes[leave_out] = fit_probe(self.vectors[keep], self.labels[keep])
        if w is None:
            return None
        return float(np.dot(w[:-1], np.asarray(vector, dtype=np.float64).reshape(-1)) + w[-1])

    def form_out_of_fold(self) -> np.ndarray:
        """`form` of each of the bank's own questions, from the model fitted without its group."""
        return np.array([self.form(v, g) for v, g in zip(self.vectors, self.groups)], dtype=np.float64)

    def out_of_fold(self) -> np.ndarray:
        """The value of each of the bank's own questions, from the questions of the other groups only."""
        return np.array([self.answered(v, self.groups == g) for v, g in zip(self.vectors, self.groups)], dtype=np.float64)

    def save(self, path: Path = BANK) -> None:
        extra = {"probe": self.probe.astype(np.float64)} if self.probe is not None else {}
        np.savez_compressed(path, vectors=self.vectors.astype(np.float16), labels=self.labels.astype(np.int8),
                            groups=self.groups.astype(str), model_id=np.array(self.model_id), **extra)

    @classmethod
    def load(cls, model_id: str, path: Path = BANK) -> "Bank | None":
        """The bank written for `model_id`, or None (no bank, a damaged file, another model). Read once per
        process (every generation's retriever shares it: a write does not read it again)."""
        return _read(model_id, path)

    @classmethod
    def of(cls, vectors: list, labels: list, groups: list, model_id: str = "") -> "Bank":
        """A bank of these questions, its linear model fitted on all of them."""
        v = _unit(np.vstack([np.asarray(x, dtype=np.float32).reshape(1, -1) for x in vectors]))
        y = np.asarray(labels, dtype=np.float32)
        return cls(v, y, np.asarray(groups, dtype=str), model_id, fit_probe(v, y))


def fit_probe(vectors: np.ndarray, labels: np.ndarray, l2: float = PROBE_L2, iters: int = 25) -> np.ndarray | None:
    """Logistic regression of the labels on the vectors (L2 on the weights, not the bias), by Newton's
    method: (weights, bias). None when the labels are all of one kind."""
    y = np.asarray(labels, dtype=np.float64)
    if not len(y) or y.min() == y.max():
        return None
    Z = np.hstack([np.asarray(vectors, dtype=np.float64), np.ones((len(y), 1))])
    reg = np.full(Z.shape[1], l2)
    reg[-1] = 0.0
    w = np.zeros(Z.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w, -30, 30)))
        step = np.linalg.solve((Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg), Z.T @ (p - y) + reg * w)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)


@lru_cache(maxsize=4)
def _read(model_id: str, path: Path) -> Bank | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["model_id"]) != model_id:
                return None
            probe = z["probe"].astype(np.float64) if "probe" in z.files else None
            if probe is not None and (probe.shape != (z["vectors"].shape[1] + 1,) or not np.isfinite(probe).all()):
                probe = None  # a model of another shape, or not numbers: the input is left out
            return Bank(_unit(z["vectors"].astype(np.float32)), z["labels"].astype(np.float32), z["groups"].astype(str),
                        model_id, probe)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing, truncated, damaged
        return None
