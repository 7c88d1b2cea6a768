"""Fine-tune the top layers of multilingual-e5-small (learning/ml/e5_torch.py) for sentiment on
2 CPU cores: the frozen bottom layers run once over the training texts and their hidden states are
cached (fp16, under var/), then only the top `k` layers and a linear head train on the cache, which
costs a fraction of a full pass per epoch.

Texts are normalised as workers read them (learning.ml.text.normalize) and cut to MAX_TOKENS tokens
for training (tweets average about 27 tokens; 64 keeps 99% whole).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from learning.ml.e5_torch import Batch, Encoder, length_buckets

MAX_TOKENS = 64
CACHE_BATCH = 64


def cache_key(texts: list[str], cut: int) -> str:
    digest = hashlib.sha256("\n".join(texts).encode("utf-8", "replace")).hexdigest()[:16]
    return f"h{cut}-{MAX_TOKENS}-{digest}"


def cached_hidden(encoder: Encoder, texts: list[str], cut: int, cache: Path,
                  progress=print) -> tuple[np.ndarray, np.ndarray]:
    """(hidden fp16 (tokens, 384), offsets (n+1,)): each text's hidden states after layer `cut`,
    <s> and </s> included, concatenated in text order."""
    import torch

    path = Path(cache) / f"{cache_key(texts, cut)}.npz"
    if path.exists():
        z = np.load(path)
        return z["hidden"], z["offsets"]
    ids = [s[:MAX_TOKENS - 1] + [encoder.tokenizer.eos] if len(s) > MAX_TOKENS else s
           for s in encoder.tokenizer.ids(texts)]
    lengths = [len(s) for s in ids]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    hidden = np.zeros((int(offsets[-1]), encoder.config.hidden), dtype=np.float16)
    done = 0
    with torch.inference_mode():
        for bucket in length_buckets(lengths, CACHE_BATCH):
            batch = Batch([ids[i] for i in bucket], encoder.weights.pad)
            x = encoder.lower(batch, cut).numpy()
            for row, i in enumerate(bucket):
                hidden[offsets[i]:offsets[i + 1]] = x[row, :lengths[i]]
            done += len(bucket)
            if done % (CACHE_BATCH * 20) < CACHE_BATCH:
                progress(f"cached {done}/{len(texts)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, hidden=hidden, offsets=offsets)
    return hidden, offsets


def joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Cached hidden states of several text lists as one, in order."""
    offsets, base = [np.zeros(1, dtype=np.int64)], 0
    for _, own in parts:
        offsets.append(own[1:] + base)
        base += int(own[-1])
    return np.concatenate([h for h, _ in parts]), np.concatenate(offsets)


def padded(hidden: np.ndarray, offsets: np.ndarray, rows):
    """A padded fp32 batch (b, t, h) of the cached texts `rows`, with its token mask."""
    import torch

    lengths = [int(offsets[i + 1] - offsets[i]) for i in rows]
    x = np.zeros((len(rows), max(lengths), hidden.shape[1]), dtype=np.float32)
    for r, i in enumerate(rows):
        x[r, :lengths[r]] = hidden[offsets[i]:offsets[i + 1]]
    mask = torch.zeros((len(rows), max(lengths)), dtype=torch.bool)
    for r, n in enumerate(lengths):
        mask[r, :n] = True
    return torch.from_numpy(x), mask


class TopModel:
    """The top layers [cut, layers) of the encoder, mean pooling, L2 normalisation and a linear head
    (initialised from the frozen encoder's logistic head, so training starts where that head is)."""

    def __init__(self, encoder: Encoder, cut: int, head: np.ndarray, dropout: float = 0.1):
        import torch

        from learning.ml.e5_torch import make_layers

        self.cut = cut
        self.indices = tuple(range(cut, encoder.config.layers))
        self.layers = make_layers(encoder.weights, self.indices)
        self.head = torch.nn.Linear(head.shape[1] - 1, head.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(head[:, :-1]))
            self.head.bias.copy_(torch.from_numpy(head[:, -1]))
        self.dropout = torch.nn.Dropout(dropout)

    def parameters(self):
        return list(self.layers.parameters()) + list(self.head.parameters())

    def train(self, mode: bool = True):
        self.layers.train(mode)
        self.dropout.train(mode)

    def logits(self, x, mask):
        x = Encoder.upper(self.layers, x, mask[:, None, None, :])
        return self.head(self.dropout(Encoder.pool(x, mask)))


def predict(model: TopModel, hidden, offsets, batch: int = 128) -> np.ndarray:
    import torch

    model.train(False)
    lengths = list(np.diff(offsets))
    out = np.zeros((len(lengths), model.head.out_features), dtype=np.float32)
    with torch.inference_mode():
        for rows in length_buckets(lengths, batch):
            x, mask = padded(hidden, offsets, rows)
            out[rows] = torch.softmax(model.logits(x, mask), -1).numpy()
    return out


def fit(model: TopModel, hidden, offsets, y: np.ndarray, epochs: int, lr: float, seed: int,
        batch: int = 32, head_lr: float = 1e-3, on_epoch=None, progress=print) -> None:
    """AdamW with linear warm-up and decay; batches of similar length, shuffled. `on_epoch(epoch)`
    is called after each epoch (to measure on a held-out part of train)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lengths = list(np.diff(offsets))
    buckets = length_buckets(lengths, batch)
    steps = epochs * len(buckets)
    optimiser = torch.optim.AdamW([
        {"params": list(model.layers.parameters()), "lr": lr},
        {"params": list(model.head.parameters()), "lr": head_lr},
    ], weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    labels = torch.from_numpy(y.astype(np.int64))
    step = 0
    for epoch in range(epochs):
        model.train(True)
        total = 0.0
        for b in rng.permutation(len(buckets)):
            rows = buckets[b]
            x, mask = padded(hidden, offsets, rows)
            loss = torch.nn.functional.cross_entropy(model.logits(x, mask), labels[rows])
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
            step += 1
        progress(f"epoch {epoch + 1}: train loss {total / len(lengths):.4f}")
        if on_epoch:
            on_epoch(epoch + 1)


def _macro_f1(gold: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return round(float(f1_score(gold, probs.argmax(axis=1), average="macro", labels=[0, 1, 2], zero_division=0)), 4)


def finetune(data, out, cache, cut: int = 10, epochs: int = 3, lr: float = 3e-5, per_language: int | None = None,
             dev_share: float = 0.1, seed: int = 13, progress=print) -> dict:
    """Fine-tune layers [cut, 12) and the sentiment head on UMSAB train (8 languages), choosing the
    epoch by macro-F1 on a held-out share of *train*; UMSAB val is read once, at the end, per
    language. Writes `tuned.safetensors` (the layers and head, fp16) and `tuned.json` in `out`."""
    import json
    import random

    from safetensors.torch import save_file

    from learning.ml import datasets
    from learning.ml.e5_torch import layer_state
    from learning.ml.multilingual import Heads
    from learning.ml.text import normalize

    rng = random.Random(seed)
    labels = datasets.SENTIMENT_LABELS
    train_texts, train_y, dev_texts, dev_y, val = {}, [], {}, [], {}
    for folder, code in datasets.UMSAB_LANGUAGES.items():
        train_texts[code], dev_texts[code] = [], []
        texts, gold = datasets.umsab(data, folder, "train")
        order = list(range(len(texts)))
        rng.shuffle(order)
        order = order[:per_language] if per_language else order
        n_dev = max(1, int(len(order) * dev_share))
        for k, i in enumerate(order):
            (dev_texts if k < n_dev else train_texts)[code].append(normalize(texts[i])[0])
            (dev_y if k < n_dev else train_y).append(labels.index(gold[i]))
        texts, gold = datasets.umsab(data, folder, "val")
        val[code] = ([normalize(t)[0] for t in texts], np.array([labels.index(g) for g in gold]))
    encoder = Encoder()
    heads = Heads()
    if heads.labels["sentiment"] != labels:
        raise ValueError(f"the shipped sentiment head's labels {heads.labels['sentiment']} are not {labels}")
    # Cached per language, so that a run stopped half-way keeps what it has computed.
    train_h = joined([cached_hidden(encoder, t, cut, cache, progress) for t in train_texts.values()])
    dev_h = joined([cached_hidden(encoder, t, cut, cache, progress) for t in dev_texts.values()])
    model = TopModel(encoder, cut, heads.weights["sentiment"])
    dev_gold = np.array(dev_y)
    history = {0: _macro_f1(dev_gold, predict(model, *dev_h))}
    best = (history[0], 0, layer_state(model.layers, model.indices), model.head.state_dict())

    def on_epoch(epoch):
        nonlocal best
        history[epoch] = _macro_f1(dev_gold, predict(model, *dev_h))
        progress(f"epoch {epoch}: dev macro-F1 {history[epoch]}")
        if history[epoch] > best[0]:
            best = (history[epoch], epoch, layer_state(model.layers, model.indices),
                    {k: v.clone() for k, v in model.head.state_dict().items()})

    fit(model, *train_h, np.array(train_y), epochs, lr, seed, on_epoch=on_epoch, progress=progress)
    _, epoch, layers, head = best
    model = TopModel(encoder, cut, heads.weights["sentiment"])
    for layer, i in zip(model.layers, model.indices, strict=True):
        layer.load_state_dict({k.split(".", 1)[1]: v for k, v in layers.items() if k.startswith(f"layer{i}.")})
    model.head.load_state_dict(head)
    metrics = {}
    for code, (texts, gold) in val.items():
        metrics[f"umsab_{code}_macro_f1"] = _macro_f1(gold, predict(model, *cached_hidden(encoder, texts, cut, cache,
                                                                                          progress)))
    metrics["umsab_mean_macro_f1"] = round(float(np.mean(list(metrics.values()))), 4)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.half().contiguous() for k, v in layers.items()}
    tensors.update({f"sentiment.{k}": v.half().contiguous() for k, v in head.items()})
    save_file(tensors, str(out / "tuned.safetensors"))
    meta = {"cut": cut, "max_tokens": MAX_TOKENS, "labels": labels, "epoch": epoch, "dev_macro_f1": history,
            "recipe": {"epochs": epochs, "lr": lr, "per_language": per_language, "dev_share": dev_share,
                       "seed": seed}, "metrics": metrics}
    (out / "tuned.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta
