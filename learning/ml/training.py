"""Fine-tuning of the multi-task model: one shared encoder, heads for sentiment, emotion and
CLINC150 intents (the last keeps the sentence embedding good at telling requests apart, which the
admin-editable intent head reads). Banking77 is left out of training on purpose: it measures how
well intents are learnt from examples, with an encoder that never saw it.

The recipe is deterministic for a given seed, data and thread count (torch CPU kernels)."""

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import get_linear_schedule_with_warmup

from . import datasets, multitask
from .text import normalize

log = logging.getLogger(__name__)


@dataclass
class Recipe:
    encoder: str
    data: str
    steps: int = 3600
    batch_size: int = 32
    max_length: int = 64
    lr: float = 6e-5
    head_lr: float = 2e-3
    warmup: float = 0.06
    weight_decay: float = 0.01
    seed: int = 13
    freeze_word_embeddings: bool = True
    # Weight of a loss that keeps the pooled embedding close to the original encoder's (cosine).
    # Without it, fine-tuning for sentiment costs the intent head several points on Banking77.
    keep_embedding: float = 1.0
    mix: dict = field(default_factory=lambda: {"sentiment": 0.62, "emotion": 0.1, "clinc": 0.28})


def training_sets(data_root: str, extra_sentiment=()) -> dict[str, tuple[list[str], list[str]]]:
    sent_t, sent_y = datasets.tweeteval_sentiment(data_root, "train")
    air_t, air_y = datasets.airline_sentiment(data_root)
    extra_t = [t for t, _ in extra_sentiment]
    extra_y = [y for _, y in extra_sentiment]
    return {
        "sentiment": (sent_t + air_t + extra_t, sent_y + air_y + extra_y),
        "emotion": datasets.tweeteval_emotion(data_root, "train"),
        "clinc": datasets.clinc150(data_root, "train"),
    }


def head_labels(sets) -> dict[str, list[str]]:
    return {
        "sentiment": datasets.SENTIMENT_LABELS,
        "emotion": datasets.EMOTION_LABELS,
        "clinc": sorted(set(sets["clinc"][1])),
    }


def _batches(ids: list[list[int]], labels: list[int], batch_size: int, rng: random.Random):
    """Endless length-bucketed batches: shuffle, sort each pool of 64 batches by length, then
    shuffle the batches, so padding stays small without ordering the whole epoch."""
    order = list(range(len(ids)))
    pool = batch_size * 64
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(ids[i]))
            group = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            rng.shuffle(group)
            yield from group


def collate(ids: list[list[int]], pad_id: int):
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def _class_weights(labels: list[int], n: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n).astype(np.float64) + 1.0
    weights = (counts.sum() / counts) ** 0.5
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def train(recipe: Recipe, out: Path, extra_sentiment=(), progress=print) -> dict:
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    sets = training_sets(recipe.data, extra_sentiment)
    heads = head_labels(sets)
    model, tokenizer = multitask.from_encoder(recipe.encoder, heads)
    if recipe.freeze_word_embeddings:
        model.encoder.embeddings.word_embeddings.weight.requires_grad_(False)

    streams, losses = {}, {}
    rng = random.Random(recipe.seed)
    for name, (texts, labels) in sets.items():
        index = {label: i for i, label in enumerate(heads[name])}
        ids = tokenizer([normalize(t)[0] for t in texts], truncation=True, max_length=recipe.max_length)["input_ids"]
        y = [index[label] for label in labels]
        streams[name] = (ids, y, _batches(ids, y, recipe.batch_size, rng))
        losses[name] = nn.CrossEntropyLoss(weight=_class_weights(y, len(heads[name])))

    teacher = None
    if recipe.keep_embedding:
        teacher, _ = multitask.from_encoder(recipe.encoder, {})
        teacher.eval().requires_grad_(False)
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": recipe.lr},
            {"params": model.heads.parameters(), "lr": recipe.head_lr},
        ],
        weight_decay=recipe.weight_decay,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(recipe.steps * recipe.warmup), recipe.steps)
    names = list(recipe.mix)
    weights = [recipe.mix[n] for n in names]
    model.train()
    started, seen, running = time.time(), 0, {n: [] for n in names}
    for step in range(1, recipe.steps + 1):
        name = rng.choices(names, weights)[0]
        ids, y, stream = streams[name]
        batch = next(stream)
        input_ids, mask = collate([ids[i] for i in batch], tokenizer.pad_token_id)
        pooled, logits = model(input_ids, mask, heads=[name])
        loss = losses[name](logits[name], torch.tensor([y[i] for i in batch]))
        if teacher is not None:
            with torch.no_grad():
                target = teacher.embed(input_ids, mask)
            loss = loss + recipe.keep_embedding * (1 - F.cosine_similarity(pooled, target)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch)
        running[name].append(loss.item())
        if step % 50 == 0 or step == recipe.steps:
            rate = seen / (time.time() - started)
            avg = {n: round(float(np.mean(v[-20:])), 3) for n, v in running.items() if v}
            progress(f"step {step}/{recipe.steps} {rate:.0f} ex/s loss {avg}")
    model.eval()
    meta = {
        "recipe": asdict(recipe),
        "train_seconds": round(time.time() - started),
        "train_sizes": {n: len(s[0]) for n, s in sets.items()},
    }
    return {"model": model, "tokenizer": tokenizer, "meta": meta}


def write_card(path: Path, meta: dict) -> None:
    (Path(path) / "metrics.json").write_text(json.dumps(meta.get("metrics", {}), indent=2, sort_keys=True) + "\n")
