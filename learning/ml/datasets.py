"""Readers for the public training data in ../shared/data (see its README for sources and
licences). Each returns (texts, labels) with labels as strings. Nothing here is copied into the
product: the data stays where it is and only the trained weights are committed."""

import csv
import json
from pathlib import Path

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
EMOTION_LABELS = ["anger", "joy", "optimism", "sadness"]


def _tweeteval(root: Path, task: str, split: str, labels: list[str]):
    folder = Path(root) / f"tweeteval_{task}"
    texts = (folder / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    ids = (folder / f"{split}_labels.txt").read_text(encoding="utf-8").split()
    if len(texts) != len(ids):
        raise ValueError(f"{folder}: {len(texts)} texts but {len(ids)} labels")
    return [t.strip() for t in texts], [labels[int(i)] for i in ids]


def tweeteval_sentiment(root, split="train"):
    return _tweeteval(root, "sentiment", split, SENTIMENT_LABELS)


def tweeteval_emotion(root, split="train"):
    return _tweeteval(root, "emotion", split, EMOTION_LABELS)


def airline_sentiment(root):
    with open(Path(root) / "twitter_us_airline_sentiment" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["airline_sentiment"] for r in rows]


def banking77(root):
    with open(Path(root) / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def clinc150(root, split="train"):
    data = json.loads((Path(root) / "clinc150" / "data_full_train_val.json").read_text(encoding="utf-8"))
    pairs = list(data[split]) + list(data.get(f"oos_{split}", []))
    return [t for t, _ in pairs], [label for _, label in pairs]


UMSAB_LANGUAGES = {"arabic": "ar", "english": "en", "french": "fr", "german": "de", "hindi": "hi",
                   "italian": "it", "portuguese": "pt", "spanish": "es"}


def umsab(root, language: str, split="train"):
    """UMSAB sentiment tweets of one language (its folder name, e.g. "spanish")."""
    folder = Path(root) / "umsab_sentiment" / language
    texts = (folder / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
    ids = (folder / f"{split}_labels.txt").read_text(encoding="utf-8").split()
    if len(texts) != len(ids):
        raise ValueError(f"{folder}: {len(texts)} texts but {len(ids)} labels")
    return [t.strip() for t in texts], [SENTIMENT_LABELS[int(i)] for i in ids]
