"""Fit the multilingual reader's heads (learning/ml/multilingual.py) on the public data, measure
them on the validation splits, and write them with their card.

Sentiment: UMSAB's training tweets in 8 languages, with a sample of TweetEval's English training
tweets for breadth. Emotion: TweetEval's English emotion tweets; the multilingual encoder puts
translations close together, which is what carries the head to other languages. Both heads are
multinomial logistic regressions on the frozen encoder's embedding: seconds to fit on 2 CPU cores,
where fine-tuning a 118M-parameter encoder is not. C is chosen by 5-fold cross-validation on the
training data; the validation splits are only measured.

The sentiment head also reads hashed character and word n-grams (learning/ml/multilingual.py,
NgramFeatures): a logistic regression on UMSAB's training tweets, whose log-probabilities are averaged
with the embedding head's. Its C and the averaging weight are fixed beforehand (NGRAM_C,
NGRAM_WEIGHT), not chosen on validation. `--ngrams-only` refits only that head over the shipped
embedding heads: it needs no encoder pass over the training data (an hour on a loaded 2-core
machine), only over the validation tweets it measures.

A language counts as *scored* when its validation macro-F1 reaches SCORED_MIN_F1; any other
language is read for intent and routing but its sentiment is shown as not scored.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import cross_val_score

from learning.ml import datasets
from learning.ml.multilingual import HEADS_FILE, META_FILE, Encoder, NgramFeatures, _softmax, fuse, ngram_spec
from learning.ml.text import normalize

SCORED_MIN_F1 = 0.5  # clearly above chance (0.33) and above FastText's published 0.51 mean
C_GRID = (0.5, 2.0, 8.0)
TWEETEVAL_SAMPLE = 8000
NGRAM_C = 4.0
NGRAM_WEIGHT = 0.5  # the n-gram head's share of the averaged log-probabilities


def _embed(encoder: Encoder, texts: list[str], cache: Path | None, progress) -> np.ndarray:
    """Embeddings of texts, kept in `cache` by content hash (embedding 30k tweets takes minutes)."""
    path = None
    if cache:
        digest = hashlib.sha256("\n".join(texts).encode("utf-8", "replace")).hexdigest()[:20]
        path = Path(cache) / f"e5-{digest}.npy"
        if path.exists():
            return np.load(path)
    out = np.concatenate([encoder.embed(texts[i:i + 256]) for i in range(0, len(texts), 256)])
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    progress(f"embedded {len(texts)} texts")
    return out


def _fit(x: np.ndarray, y: list[str], seed: int) -> tuple[LogisticRegression, float]:
    scores = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000, random_state=seed), x, y, cv=5,
                                 scoring="f1_macro").mean() for c in C_GRID}
    best = max(scores, key=scores.get)
    return LogisticRegression(C=best, max_iter=3000, random_state=seed).fit(x, y), best


def _weights(clf: LogisticRegression) -> tuple[list[str], np.ndarray]:
    # C order: sklearn's coef_ may be Fortran-ordered, and safetensors writes the buffer as it lies.
    weights = np.ascontiguousarray(np.hstack([clf.coef_, clf.intercept_[:, None]]), dtype=np.float32)
    return [str(c) for c in clf.classes_], weights


def _umsab_normalised(data, folder: str, split: str) -> tuple[list[str], list[str]]:
    texts, labels = datasets.umsab(data, folder, split)
    return [normalize(t)[0] for t in texts], labels


def fit_ngrams(data: str | Path, seed: int, progress=print) -> tuple[list[str], np.ndarray, dict]:
    """The n-gram sentiment head on UMSAB train (8 languages), texts normalised as workers read them."""
    spec = ngram_spec()
    features = NgramFeatures(spec)
    texts, labels = [], []
    for folder in datasets.UMSAB_LANGUAGES:
        t, y = _umsab_normalised(data, folder, "train")
        texts += t
        labels += y
    clf = LogisticRegression(C=NGRAM_C, max_iter=1000, random_state=seed).fit(features.transform(texts), labels)
    progress(f"n-gram sentiment head fitted on {len(texts)} tweets (C={NGRAM_C})")
    names, weights = _weights(clf)
    return names, weights.astype(np.float16), spec


def _measure(encoder: Encoder, data, cache, progress, sentiment_w: np.ndarray, ngram_w: np.ndarray | None,
             spec: dict | None, labels: list[str]) -> dict:
    """UMSAB val macro-F1 per language of the embedding head, the n-gram head, and both averaged."""
    features = NgramFeatures(spec) if spec else None
    metrics = {}
    for folder, code in datasets.UMSAB_LANGUAGES.items():
        texts, gold = datasets.umsab(data, folder, "val")
        emb = _embed(encoder, texts, cache, progress)
        probs = _softmax(emb @ sentiment_w[:, :-1].T + sentiment_w[:, -1])
        metrics[f"umsab_{code}_embedding_macro_f1"] = _f1(gold, labels, probs)
        if features is not None:
            x = features.transform([normalize(t)[0] for t in texts])
            ngram = _softmax(np.asarray(x @ ngram_w[:, :-1].T.astype(np.float32)) + ngram_w[:, -1].astype(np.float32))
            metrics[f"umsab_{code}_ngram_macro_f1"] = _f1(gold, labels, ngram)
            probs = fuse(probs, ngram, NGRAM_WEIGHT)
        metrics[f"umsab_{code}_macro_f1"] = _f1(gold, labels, probs)
    for kind in ("", "embedding_", "ngram_"):
        values = [metrics.get(f"umsab_{code}_{kind}macro_f1") for code in datasets.UMSAB_LANGUAGES.values()]
        if None not in values:
            metrics[f"umsab_mean_{kind}macro_f1"] = round(float(np.mean(values)), 4)
    return metrics


def _f1(gold: list[str], labels: list[str], probs: np.ndarray) -> float:
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    return round(float(f1_score(gold, predicted, average="macro")), 4)


def train(data: str | Path, out: str | Path, cache: str | Path | None = None, seed: int = 13,
          progress=print, ngrams_only: bool = False) -> dict:
    from safetensors.numpy import load_file, save_file

    encoder = Encoder()
    out = Path(out)
    if ngrams_only:
        meta = json.loads((out / META_FILE).read_text())
        tensors = {name: t for name, t in load_file(str(out / HEADS_FILE)).items() if name in meta["heads"]}
        heads = meta["heads"]
        recipe = meta["recipe"]
        emotion_f1 = meta["metrics"]["tweeteval_emotion_macro_f1"]
    else:
        tensors, heads, recipe, emotion_f1 = _fit_embedding_heads(encoder, data, cache, seed, progress)
    names, ngram_w, spec = fit_ngrams(data, seed, progress)
    if names != heads["sentiment"]:
        raise ValueError(f"n-gram labels {names} differ from the sentiment head's {heads['sentiment']}")
    tensors["sentiment_ngrams"] = ngram_w
    metrics = _measure(encoder, data, cache, progress, tensors["sentiment"], ngram_w, spec, heads["sentiment"])
    metrics["tweeteval_emotion_macro_f1"] = emotion_f1
    scored = sorted(code for code in datasets.UMSAB_LANGUAGES.values()
                    if metrics[f"umsab_{code}_macro_f1"] >= SCORED_MIN_F1)
    recipe = dict(recipe, ngrams=f"logistic regression C={NGRAM_C} on hashed char 2-5 and word 1-2 grams "
                                 f"({spec['features']:,} buckets each) of UMSAB train, texts normalised as "
                                 f"workers read them; log-probabilities averaged with weight {NGRAM_WEIGHT}",
                  selection=recipe["selection"].split("; n-gram")[0] + "; n-gram C and weight fixed beforehand")
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out / HEADS_FILE))
    version = "e5h-" + hashlib.sha256(b"".join(tensors[k].tobytes() for k in sorted(tensors))).hexdigest()[:8]
    meta = {
        "name": out.name, "version": version, "encoder": f"{encoder.name}, {encoder.version}",
        "heads": heads, "scored_languages": scored, "metrics": metrics, "recipe": recipe,
        "ngrams": dict(spec, head="sentiment", weight=NGRAM_WEIGHT),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(card(meta))
    if not ngrams_only:
        embed_examples(encoder, out)
    return meta


def _fit_embedding_heads(encoder: Encoder, data, cache, seed: int, progress) -> tuple[dict, dict, dict, float]:
    x_parts, y_parts = [], []
    for folder in datasets.UMSAB_LANGUAGES:
        texts, labels = datasets.umsab(data, folder, "train")
        x_parts.append(_embed(encoder, texts, cache, progress))
        y_parts += labels
    texts, labels = datasets.tweeteval_sentiment(data, "train")
    sample = sorted(random.Random(seed).sample(range(len(texts)), min(TWEETEVAL_SAMPLE, len(texts))))
    x_parts.append(_embed(encoder, [texts[i] for i in sample], cache, progress))
    y_parts += [labels[i] for i in sample]
    sentiment, sentiment_c = _fit(np.concatenate(x_parts), y_parts, seed)
    progress(f"sentiment head fitted (C={sentiment_c})")

    texts, labels = datasets.tweeteval_emotion(data, "train")
    emotion, emotion_c = _fit(_embed(encoder, texts, cache, progress), labels, seed)
    progress(f"emotion head fitted (C={emotion_c})")
    texts, labels = datasets.tweeteval_emotion(data, "val")
    predicted = emotion.predict(_embed(encoder, texts, cache, progress))
    emotion_f1 = round(float(f1_score(labels, predicted, average="macro")), 4)

    heads, tensors = {}, {}
    for name, clf in (("sentiment", sentiment), ("emotion", emotion)):
        heads[name], tensors[name] = _weights(clf)
    recipe = {"sentiment": f"UMSAB train (8 languages x 1,839) + {TWEETEVAL_SAMPLE} TweetEval sentiment "
                           f"train tweets; logistic regression C={sentiment_c}",
              "emotion": f"TweetEval emotion train; logistic regression C={emotion_c}",
              "selection": f"C from {list(C_GRID)} by 5-fold CV on train; validation only measured",
              "seed": seed, "scored_min_macro_f1": SCORED_MIN_F1}
    return tensors, heads, recipe, emotion_f1


def embed_examples(encoder: Encoder, out: Path) -> int:
    """Ship the reader's embeddings of the default intent examples, normalised as the intent head
    reads them (learning.actions.fit_intents)."""
    from learning.default_intents import default_intents
    from learning.ml.multilingual import save_known
    from learning.ml.text import normalize

    texts = sorted({normalize(text)[0] for spec in default_intents() for text in spec["examples"]})
    save_known(out, texts, np.concatenate([encoder.embed(texts[i:i + 256]) for i in range(0, len(texts), 256)]))
    return len(texts)


def card(meta: dict) -> str:
    """The heads' model card: what they are, how they were made, how well they read each language."""
    m = meta["metrics"]

    def cell(key):
        return f"{m[key]:.3f}" if key in m else "-"

    rows = "\n".join(f"| {code} | {cell(f'umsab_{code}_macro_f1')} | {cell(f'umsab_{code}_embedding_macro_f1')} | "
                     f"{cell(f'umsab_{code}_ngram_macro_f1')} | "
                     f"{'yes' if code in meta['scored_languages'] else 'no: shown as not scored'} |"
                     for code in datasets.UMSAB_LANGUAGES.values())
    mean = " | ".join(cell(f"umsab_mean_{kind}macro_f1") for kind in ("", "embedding_", "ngram_"))
    recipe = meta["recipe"]
    ngrams = f"- N-grams: {recipe['ngrams']}.\n" if "ngrams" in recipe else ""
    return f"""# {meta['name']} {meta['version']}

Sentiment and emotion heads for {meta['encoder']}, the multilingual reader that CXM's workers run
for text that is not English (learning/ml/multilingual.py): linear heads over the frozen sentence
embedding, and for sentiment a second linear head over hashed character and word n-grams whose
log-probabilities are averaged in. Made by `python manage.py train_multilingual`
(learning/ml/multilingual_training.py); the weights are in `heads.safetensors`, labels, figures and
the n-gram settings in `cxm.json`.

- Sentiment: {recipe['sentiment']}.
{ngrams}- Emotion: {recipe['emotion']}.
- Selection: {recipe['selection']}.

## Validation (UMSAB val, 324 tweets per language; macro-F1 of the reader on its own)

| language | sentiment (shipped) | embedding head alone | n-gram head alone | scored |
|---|---|---|---|---|
{rows}
| mean | {mean} | |

TweetEval emotion val macro-F1 (English): {m['tweeteval_emotion_macro_f1']:.3f}. For scale, XLM-T (a
270M-parameter Twitter model, fine-tuned) reaches 0.694 mean macro-F1 on UMSAB's test split, and
FastText 0.510. A language is *scored* when its macro-F1 reaches {recipe['scored_min_macro_f1']}; in
any other language the sentiment is shown as not scored. `python manage.py evaluate_models` measures
the whole classifier as workers run it (language detection choosing the reader: English and
undetermined plain-Latin text go to the English encoder), per language.
"""
