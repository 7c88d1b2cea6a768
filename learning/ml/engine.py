"""Batched inference through the multi-task model: texts sorted by length, cut into micro-batches
padded only to their own longest text, one encoder pass per text feeding every head."""

import numpy as np
import torch


class Engine:
    def __init__(self, model, tokenizer, max_length: int = 128, batch_size: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

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
        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                rows = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
                    mask[r, : len(ids[i])] = 1
                emb, logits = self.model(input_ids, mask, heads=heads)
                pooled[rows] = emb.float().numpy()
                for h in heads:
                    probs[h][rows] = torch.softmax(logits[h].float(), dim=-1).numpy()
        return pooled, probs, cut
