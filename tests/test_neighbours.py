"""The bank of the project's own questions (qa/neighbours.py) and its answerability input, on the real
model and the shipped bank."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from qa.neighbours import BANK, K, Bank
from qa.retrieval import PARAMS


def test_the_answered_share_weights_the_nearest_questions():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 8))
    near = base + 0.01 * rng.normal(size=(5, 8))  # five answerable questions close to `base`
    far = rng.normal(size=(40, 8))  # forty unanswerable ones anywhere
    bank = Bank.of(list(near) + list(far), [1] * 5 + [0] * 40, ["a"] * 5 + ["b"] * 40)
    v = base[0] / np.linalg.norm(base[0])
    assert bank.answered(v) > 0.9  # the close ones outweigh the K - 5 far ones
    assert bank.answered(v, exclude=bank.groups == "a") == 0.0  # without them: none answerable
    assert bank.answered(None) is None and bank.answered(np.ones(3)) is None  # no vector, another dimension
    oof = bank.out_of_fold()
    assert oof[:5].max() == 0.0  # each close one, its group left out, sees only unanswerable questions
    assert len(oof) == len(bank) > K


def test_the_linear_model_reads_the_direction_that_separates_the_forms(tmp_path):
    """Bank.form: a logistic model over the embedding, fitted on the bank; out of fold without a group's
    questions; saved and read back with the bank; absent where the labels are all of one kind."""
    rng = np.random.default_rng(1)
    direction = np.zeros(16)
    direction[0] = 1.0
    x = rng.normal(size=(300, 16))
    y = (x @ direction > 0).astype(float)  # answerable: the questions on one side
    groups = np.where(np.arange(300) < 150, "a", "b")
    bank = Bank.of(list(x), list(y), list(groups), "m")
    assert bank.probe is not None and bank.probe.shape == (17,)
    pos, neg = direction + 0.1, -direction + 0.1
    assert bank.form(pos / np.linalg.norm(pos)) > 1.0 > -1.0 > bank.form(neg / np.linalg.norm(neg))
    oof = bank.form_out_of_fold()
    assert ((oof > 0) == (y == 1)).mean() > 0.9  # each group's values from a model fitted on the other
    assert bank.form(pos / np.linalg.norm(pos), "a") != bank.form(pos / np.linalg.norm(pos))
    assert bank.form(None) is None and bank.form(np.ones(3)) is None
    path = tmp_path / "bank.npz"
    bank.save(path)
    back = Bank.load("m", path)
    assert back is not None and np.allclose(back.probe, bank.probe)
    bad = tmp_path / "bad.npz"
    Bank(bank.vectors, bank.labels, bank.groups, "m", np.full_like(bank.probe, np.nan)).save(bad)
    broken = Bank.load("m", bad)
    assert broken is not None and broken.probe is None and broken.form(pos / np.linalg.norm(pos)) is None
    assert Bank.of(list(x[:20]), [1.0] * 20, ["a"] * 20).form(x[0] / np.linalg.norm(x[0])) is None


def test_the_shipped_bank_is_the_fit_s_and_damaged_or_foreign_banks_are_left_out(tmp_path, embedder):
    params = json.loads(PARAMS.read_text(encoding="utf-8"))
    assert "neighbours" in params["answerability"]["weights"]
    bank = Bank.load(embedder.model_id)
    assert bank is not None and len(bank) >= 1000 and bank.vectors.shape[1] == embedder.dim
    assert 0.3 < bank.labels.mean() < 0.95  # both kinds of question
    assert "question_form" in params["answerability"]["weights"] and bank.probe is not None
    # only train documents' questions (and questions of no document): the test split stays unseen
    split = json.loads((PARAMS.parents[2] / "tests" / "eval" / "split.json").read_text(encoding="utf-8"))
    assert not set(bank.groups) & set(split["test"])
    assert Bank.load("another-model") is None
    bad = tmp_path / "bank.npz"
    bad.write_bytes(BANK.read_bytes()[:1000])  # a truncated file
    assert Bank.load(embedder.model_id, bad) is None


@pytest.mark.parametrize("question, answerable", [
    ("红烧肉怎么做才不腻？", False),  # everyday, far from every document
    ("海门区2024年对清华北大录取人数的目标是多少？", True),
    ("惠山区普惠性幼儿园覆盖率要达到多少？", True),
])
def test_questions_like_answered_ones_score_high(seeds_service, question, answerable):
    r = seeds_service.retriever
    res = r.search(question, top_k=5)
    value = res.features["neighbours"]
    assert value is not None
    assert (value > 0.5) == answerable
    assert (res.features["question_form"] > 0) == answerable  # the linear model's log-odds


def test_without_a_bank_the_input_counts_as_its_mean(seeds_service):
    """A service with no bank (another model, a damaged file) still answers: the input adds nothing."""
    r = seeds_service.retriever
    q = "海门区2024年对清华北大录取人数的目标是多少？"
    with_bank = r.search(q, top_k=5)
    saved = r.options
    try:
        r.options = replace(saved, neighbours=False)
        without = r.search(q, top_k=5)
    finally:
        r.options = saved
    assert without.features["neighbours"] is None and without.features["question_form"] is None
    mean = saved.answerability["mean"]
    assert without.probability == pytest.approx(r.answerable({**with_bank.features, "neighbours": mean["neighbours"],
                                                              "question_form": mean["question_form"]}), abs=1e-9)
    assert not without.no_answer and [c.chunk.id for c in without.candidates] == [c.chunk.id for c in with_bank.candidates]
