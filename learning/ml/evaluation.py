"""Validation figures of a multi-task model, on the validation splits only (the test splits are
kept back): TweetEval sentiment (macro recall, the official metric) and emotion (macro F1), CLINC150
val accuracy, and the intent-learning path on Banking77 (10-fold CV on train, and 10 examples per
intent), which the encoder never saw in training."""

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.model_selection import StratifiedKFold

from . import datasets, intents
from .text import normalize


def _norm(texts):
    return [normalize(t)[0] for t in texts]


def head_metrics(engine, data_root) -> dict:
    out = {}
    texts, gold = datasets.tweeteval_sentiment(data_root, "val")
    _, probs, _ = engine.run(_norm(texts), heads=["sentiment"])
    pred = [engine.model.labels["sentiment"][i] for i in probs["sentiment"].argmax(1)]
    out["sentiment_val_macro_recall"] = round(recall_score(gold, pred, average="macro"), 4)
    out["sentiment_val_accuracy"] = round(accuracy_score(gold, pred), 4)
    texts, gold = datasets.tweeteval_emotion(data_root, "val")
    _, probs, _ = engine.run(_norm(texts), heads=["emotion"])
    pred = [engine.model.labels["emotion"][i] for i in probs["emotion"].argmax(1)]
    out["emotion_val_macro_f1"] = round(f1_score(gold, pred, average="macro"), 4)
    out["emotion_val_accuracy"] = round(accuracy_score(gold, pred), 4)
    if "clinc" in engine.model.heads:
        texts, gold = datasets.clinc150(data_root, "val")
        _, probs, _ = engine.run(_norm(texts), heads=["clinc"])
        pred = [engine.model.labels["clinc"][i] for i in probs["clinc"].argmax(1)]
        out["clinc150_val_accuracy"] = round(accuracy_score(gold, pred), 4)
    return out


def intent_metrics(engine, data_root, seed: int = 13, shots: int = 10, shot_seeds: int = 3) -> dict:
    texts, labels = datasets.banking77(data_root)
    emb, _, _ = engine.run(_norm(texts), heads=[])
    y = np.array(labels)
    folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=seed)
    correct = 0
    for train_idx, test_idx in folds.split(emb, y):
        order, w = intents.fit(emb[train_idx], list(y[train_idx]), seed=seed)
        pred = np.array(order)[intents.probabilities(emb[test_idx], w).argmax(1)]
        correct += int((pred == y[test_idx]).sum())
    few = []
    for s in range(shot_seeds):
        rng = np.random.default_rng(seed + s)
        train_idx = np.concatenate(
            [rng.choice(np.flatnonzero(y == label), shots, replace=False) for label in sorted(set(labels))]
        )
        test_mask = np.ones(len(y), dtype=bool)
        test_mask[train_idx] = False
        order, w = intents.fit(emb[train_idx], list(y[train_idx]), seed=seed)
        pred = np.array(order)[intents.probabilities(emb[test_mask], w).argmax(1)]
        few.append(float((pred == y[test_mask]).mean()))
    return {
        "banking77_cv10_accuracy": round(correct / len(y), 4),
        f"banking77_{shots}shot_accuracy": round(float(np.mean(few)), 4),
        f"banking77_{shots}shot_seeds": shot_seeds,
    }


def umsab_metrics(classifier, data_root) -> dict:
    """Sentiment macro-F1 per UMSAB language on its validation split, through the whole classifier
    as workers run it: language detection picks the reader, a text in a language not scored counts
    as wrong. The mean is over the 8 languages."""
    out, means = {}, []
    for folder, code in datasets.UMSAB_LANGUAGES.items():
        texts, gold = datasets.umsab(data_root, folder, "val")
        results = []
        for start in range(0, len(texts), 64):
            results += classifier.classify(texts[start:start + 64])
        pred = [r.sentiment or "not_scored" for r in results]
        score = f1_score(gold, pred, average="macro", labels=datasets.SENTIMENT_LABELS)
        out[f"umsab_{code}_val_macro_f1"] = round(float(score), 4)
        means.append(score)
    out["umsab_mean_val_macro_f1"] = round(float(np.mean(means)), 4)
    return out
