"""ONNX Runtime backend: the same model, exported once to ONNX (optionally int8),
run without torch. Query encoding is 2x faster in fp32 and about 5x in int8 on
this 2-core machine (bench/bench.py), and serving no longer imports torch.

sentence-transformers' own ONNX backend needs `optimum`, which is not in the
package index here, so the export is done with torch.onnx (TorchScript exporter)
over the transformer plus the model's pooling and normalisation, and the
tokenizer is the model's own tokenizer.json read by `tokenizers`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import ModelError

EXPORT_VERSION = "2"  # 2: int8 per channel (cosine to fp32 0.9975 instead of 0.991)
BACKENDS = ("torch", "onnx", "onnx-int8")
# Passages are embedded in batches of about this many tokens (padding included), not of a fixed
# number of texts: on the seeds (887 texts, 18-335 tokens) 16 texts a batch took 23 s, a budget of
# 1024-2048 tokens 14-16 s, 8192 tokens 37 s (int8, 2 cores): big batches of long texts cost more
# than they save in calls.
TOKENS_PER_BATCH = 2048


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def model_config(model_dir: Path) -> dict:
    """Pooling, normalisation, prompts and max length of a sentence-transformers folder."""
    modules = _read_json(model_dir / "modules.json") or []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules] if isinstance(modules, list) else []
    pooling_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), None) if kinds else None
    pooling = _read_json(model_dir / pooling_dir / "config.json") if pooling_dir else {}
    mode = pooling.get("pooling_mode") or ("mean" if pooling.get("pooling_mode_mean_tokens") else
                                           "cls" if pooling.get("pooling_mode_cls_token") else None)
    st_config = _read_json(model_dir / "config_sentence_transformers.json")
    bert_config = _read_json(model_dir / "sentence_bert_config.json")
    return {
        "pooling": mode,
        "normalize": "Normalize" in kinds,
        "prompts": st_config.get("prompts", {}) or {},
        "max_length": int(bert_config.get("max_seq_length") or _read_json(model_dir / "config.json").get("max_position_embeddings", 514) - 2),
    }


def export_dir(models_dir: Path, model_dir: Path, model_id: str) -> Path:
    slug = hashlib.sha256(f"{model_id}:{EXPORT_VERSION}".encode()).hexdigest()[:16]
    return models_dir / f"onnx-{slug}"


def ensure_onnx(models_dir: Path, model_dir: Path, model_id: str, int8: bool, progress: bool | None = None,
                model=None) -> Path:
    """The exported (and, for int8, quantised) model file; built once, then reused.
    `model`: the transformers model already in memory (just converted), exported as is
    instead of being loaded again from `model_dir`."""
    from qa.log import stage

    out = export_dir(models_dir, model_dir, model_id)
    name = "model-int8.onnx" if int8 else "model.onnx"
    stamp = _read_json(out / "export.json")
    if (out / name).is_file() and stamp.get(name) == (out / name).stat().st_size:
        return out / name
    cfg = model_config(model_dir)
    if cfg["pooling"] not in ("mean", "cls"):
        raise ModelError(f"the ONNX backend supports mean or CLS pooling; {model_dir} has {cfg['pooling']!r}: use QA_BACKEND=torch")
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.onnx"
    if not (fp32.is_file() and stamp.get("model.onnx") == fp32.stat().st_size):
        with stage("exporting the model to ONNX (once)", heartbeat=10):
            _export(model_dir, fp32, cfg, model)
        stamp["model.onnx"] = fp32.stat().st_size
    if int8:
        with stage("quantising the ONNX model to int8 (once)", heartbeat=10):
            tmp = out / f".tmp-{name}.{os.getpid()}"
            with _quiet_root_logger():  # onnxruntime.quantization calls logging.basicConfig on import
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
            os.replace(tmp, out / name)
        stamp[name] = (out / name).stat().st_size
    tmp = out / f".export.json.{os.getpid()}"
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, out / "export.json")
    return out / name


@contextmanager
def _quiet_root_logger():
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _export(model_dir: Path, target: Path, cfg: dict, model=None) -> None:
    import logging
    import warnings

    import torch
    from tokenizers import Tokenizer

    from qa.log import quiet_transformers

    if model is None:
        from transformers import AutoModel

        quiet_transformers()
        model = AutoModel.from_pretrained(str(model_dir))
    model.eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_padding(pad_id=tok.token_to_id("<pad>") or 0, pad_token="<pad>")
    pooling, normalize = cfg["pooling"], cfg["normalize"]

    class Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            h = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if pooling == "cls":
                v = h[:, 0]
            else:
                m = attention_mask.unsqueeze(-1).to(h.dtype)
                v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, dim=-1) if normalize else v

    enc = tok.encode_batch(["query: 普惠性幼儿园覆盖率", "passage: 一、学前教育"])
    sample = {"input_ids": torch.tensor([e.ids for e in enc]), "attention_mask": torch.tensor([e.attention_mask for e in enc])}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            Encoder(model), (sample["input_ids"], sample["attention_mask"]), str(path),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
        os.replace(path, target)
    if not target.is_file():
        raise ModelError(f"ONNX export of {model_dir} produced no file")
    shutil.rmtree(target.parent / "__pycache__", ignore_errors=True)


class OnnxEncoder:
    """encode(texts, prompt) -> normalised float32 vectors, like SentenceTransformer.encode."""

    def __init__(self, model_dir: Path, onnx_path: Path, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        cfg = model_config(model_dir)
        self.prompts = cfg["prompts"]
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=cfg["max_length"])
        pad_id = self.tokenizer.token_to_id("<pad>")
        self.tokenizer.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token="<pad>")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: the spinning threads would take the cores from
        # the rest of the request (BM25, highlighting) and from other processes
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # no memory arena: it grows to the largest batch ever seen (a document upload) and keeps it;
        # without it memory returns after an upload, at no measurable cost per query (bench/load.py)
        options.enable_cpu_mem_arena = False
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(f"cannot load the ONNX model {onnx_path} ({str(e)[:160]}); delete that folder to export it again") from None
        self.dim = int(self.session.get_outputs()[0].shape[-1] or self.session.run(None, self._feed(["a"]))[0].shape[-1])

    def _feed(self, texts: list[str]) -> dict:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask}

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [[i for i, m in zip(e.ids, e.attention_mask) if m] for e in self.tokenizer.encode_batch(texts)]

    def batches(self, texts: list[str], prompt: str | None, tokens: int = TOKENS_PER_BATCH, slab: int = 512):
        """Yield (positions, vectors) over all texts, batched by a token budget: long texts a few
        at a time, short ones many at a time, each batch padded only to its own longest text.
        Tokenised once, `slab` texts at a time (bounded memory for a large upload)."""
        texts = [(prompt or "") + t for t in texts]
        for a in range(0, len(texts), slab):
            feed = self._feed(texts[a : a + slab])
            lengths = feed["attention_mask"].sum(axis=1)
            order = np.argsort(-lengths, kind="stable")
            i = 0
            while i < len(order):
                longest = int(lengths[order[i]])
                rows = order[i : i + max(1, tokens // max(1, longest))]
                i += len(rows)
                batch = {k: np.ascontiguousarray(v[rows, :longest]) for k, v in feed.items()}
                yield rows + a, self.session.run(None, batch)[0]

    def encode(self, texts: list[str], prompt: str | None, batch_size: int = 32, on_run=None) -> np.ndarray:
        """on_run: called once, after the first batch is tokenised, right before the model runs."""
        texts = [(prompt or "") + t for t in texts]
        out = []
        for i in range(0, len(texts), batch_size):
            feed = self._feed(texts[i : i + batch_size])
            if on_run is not None:
                on_run()
                on_run = None
            out.append(self.session.run(None, feed)[0])
        return np.concatenate(out).astype(np.float32, copy=False)
