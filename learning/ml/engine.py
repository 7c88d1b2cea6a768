"""Batched inference through the multi-task model: texts sorted by length, cut into micro-batches
padded only to their own longest text, one encoder pass per text feeding every head.

Where the micro-batches are cut is chosen per call (`split`): the fewest padded tokens plus a fixed
cost per encoder call, at most `batch_size` rows each. Fixed runs of 32 padded a call of 64 care
messages to 1.76x their tokens, and the encoder's cost is per token (bench/classify.py).

The pass itself is a backend's: `TorchBackend` (the model in torch, fp32 or int8) or
`learning.ml.onnx_runtime.OnnxBackend` (the same model exported to ONNX Runtime). Both take token
ids and an attention mask as int64 arrays and return the pooled embeddings and every head's logits
as float32 arrays."""

import numpy as np
import torch


class TorchBackend:
    """The multi-task model run by torch (whatever its encoder's precision)."""

    name = "torch"

    def __init__(self, model):
        self.model = model

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, heads: list[str]):
        with torch.inference_mode():
            pooled, logits = self.model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask), heads=heads)
            return pooled.float().numpy(), {h: logits[h].float().numpy() for h in heads}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# What one more encoder call costs, in padded tokens: ONNX Runtime's per-call work (about a hundred
# operators, each handing work to the other threads) measured about as much as 10-20 tokens of a
# batch here. Lower cuts more calls, higher pads more; 8-16 gave the same CPU per message.
CALL_COST_TOKENS = 12


def split(lengths: list[int], cap: int, call_cost: float = CALL_COST_TOKENS) -> list[tuple[int, int]]:
    """Cut texts sorted by ascending token count into runs [i, j) of at most `cap` rows, minimising
    the tokens run (rows x the run's longest text) plus `call_cost` per run: exact, by dynamic
    programming over the cut points (n x cap steps)."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[j - 1]
        for i in range(max(0, j - cap), j):
            cost = best[i] + (j - i) * width + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs = []
    while n > 0:
        runs.append((cut[n], n))
        n = cut[n]
    return runs[::-1]


class Engine:
    def __init__(self, model, tokenizer, max_length: int = 128, batch_size: int = 32, backend=None):
        self.model = model  # the torch model: labels and heads per task, the encoder's config
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.backend = backend or TorchBackend(model)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def run(self, texts: list[str], heads=None) -> tuple[np.ndarray, dict[str, np.ndarray], list[bool]]:
        """Return pooled embeddings, softmax probabilities per head (rows in input order), and
        for each text whether the tokenizer cut it at max_length."""
        heads = list(heads or self.model.heads)
        n = len(texts)
        dim = self.model.encoder.config.hidden_size
        pooled = np.zeros((n, dim), dtype=np.float32)
        probs = {h: np.zeros((n, len(self.model.labels[h])), dtype=np.float32) for h in heads}
        if not n:
            return pooled, probs, []
        ids = self.tokenize(texts)
        cut = [len(x) >= self.max_length for x in ids]
        order = sorted(range(n), key=lambda i: len(ids[i]))
        pad = self.tokenizer.pad_token_id or 0
        for start, stop in split([len(ids[i]) for i in order], self.batch_size):
            rows = order[start:stop]
            width = max(len(ids[i]) for i in rows)
            input_ids = np.full((len(rows), width), pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            emb, logits = self.backend.forward(input_ids, mask, heads)
            pooled[rows] = emb
            for h in heads:
                probs[h][rows] = softmax(logits[h].astype(np.float32))
        return pooled, probs, cut
