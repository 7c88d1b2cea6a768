"""The intent head: multinomial logistic regression over the shared encoder's L2-normalised
sentence embedding. Small enough to refit from a handful of examples per intent in seconds, which
is what lets admins edit the taxonomy without a code change."""

import numpy as np
from sklearn.linear_model import LogisticRegression

DEFAULT_C = 8.0


def normalise(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.clip(norms, 1e-9, None)


def fit(embeddings: np.ndarray, labels: list[str], c: float = DEFAULT_C, seed: int = 13):
    """Return (label order, weight matrix labels x (dim + 1) with the bias last)."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("an intent model needs examples of at least two intents")
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(normalise(embeddings), labels)
    order = [str(label) for label in clf.classes_]
    weights = np.hstack([clf.coef_, clf.intercept_[:, None]]).astype(np.float32)
    if len(order) == 2:  # sklearn keeps one row for two classes; spell out both for softmax
        weights = np.vstack([-weights[0] / 2, weights[0] / 2])
    return order, weights


def probabilities(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    x = normalise(embeddings)
    logits = x @ weights[:, :-1].T + weights[:, -1]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)
