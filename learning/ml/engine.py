"""Batched inference through the multi-task model: texts sorted by length, cut into micro-batches
padded only to their own longest text, one encoder pass per text feeding every head.

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
        for start in range(0, n, self.batch_size):
            rows = order[start : start + self.batch_size]
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
