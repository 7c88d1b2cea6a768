"""The multilingual reader's heads: the shipped card, the n-gram sentiment head averaged with the
embedding head, and `train_multilingual --ngrams-only` end to end on a small UMSAB-shaped folder."""

import json
import shutil

import numpy as np
import pytest

from learning.ml import datasets
from learning.ml.multilingual import HEADS_FILE, META_FILE, Heads, NgramFeatures, default_heads_dir, fuse

NGRAMS_DIR = default_heads_dir().parent / "cxm-e5-heads-ngrams"


@pytest.mark.parametrize("path", [default_heads_dir(), NGRAMS_DIR])
def test_the_shipped_cards_score_exactly_the_languages_they_measured_well(path):
    heads = Heads(path)
    meta = heads.meta
    for code in datasets.UMSAB_LANGUAGES.values():
        f1 = meta["metrics"][f"umsab_{code}_macro_f1"]
        assert (code in heads.scored) == (f1 >= meta["recipe"]["scored_min_macro_f1"])
    card = (path / "README.md").read_text()
    assert f"{meta['metrics']['umsab_mean_macro_f1']:.3f}" in card
    assert (heads.ngrams is not None) == ("n-gram" in card) == (path == NGRAMS_DIR)
    if heads.ngrams is not None:
        assert heads.ngram_head == "sentiment"
        assert heads.ngram_weights.shape == (3, 2 * meta["ngrams"]["features"] + 1)


def test_sentiment_averages_the_embedding_and_ngram_heads():
    heads = Heads(NGRAMS_DIR)
    texts = ["Llevo tres semanas sin internet, es una vergüenza", "Merci beaucoup, service super rapide !"]
    emb = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    alone = heads.probabilities(emb, "sentiment")
    both = heads.probabilities(emb, "sentiment", texts)
    ngram = heads.ngram_probabilities(texts)
    np.testing.assert_allclose(both, fuse(alone, ngram, heads.ngram_weight), rtol=1e-5)
    np.testing.assert_allclose(both.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(both, alone)
    labels = heads.labels["sentiment"]
    assert [labels[i] for i in ngram.argmax(axis=1)] == ["negative", "positive"]
    # Emotion has no n-gram head: the texts change nothing.
    np.testing.assert_array_equal(heads.probabilities(emb, "emotion", texts), heads.probabilities(emb, "emotion"))


def test_ngram_features_are_the_same_for_the_same_text_and_bounded():
    features = NgramFeatures({"char_ngrams": [2, 5], "word_ngrams": [1, 2], "features": 1024})
    x = features.transform(["hola", "hola", "", "😀" * 5000])
    assert x.shape == (4, 2048)
    assert (x[0] != x[1]).nnz == 0 and x[2].nnz == 0 and x[3].nnz > 0


POSITIVE = ["love it, thank you so much", "great service, very happy", "amazing, works perfectly now"]
NEGATIVE = ["worst service ever, still broken", "terrible, nobody answers me", "awful, I want a refund"]
NEUTRAL = ["what time do you open tomorrow", "my order number is 4821", "is the store on main street"]


def _umsab_folder(root):
    for folder in datasets.UMSAB_LANGUAGES:
        d = root / "umsab_sentiment" / folder
        d.mkdir(parents=True)
        texts = [f"{t} {folder}" for group in (NEGATIVE, NEUTRAL, POSITIVE) for t in group]
        labels = ["0"] * 3 + ["1"] * 3 + ["2"] * 3
        for split in ("train", "val"):
            (d / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
            (d / f"{split}_labels.txt").write_text("\n".join(labels) + "\n")


def test_train_ngrams_only_refits_the_ngram_head_over_the_shipped_embedding_heads(tmp_path):
    from learning.ml import multilingual_training

    _umsab_folder(tmp_path / "data")
    out = tmp_path / "heads"
    out.mkdir()
    for name in (HEADS_FILE, META_FILE):
        shutil.copy(NGRAMS_DIR / name, out / name)
    shipped = Heads(NGRAMS_DIR)
    meta = multilingual_training.train(tmp_path / "data", out, cache=None, ngrams_only=True, progress=lambda _: None)
    assert meta["version"] != shipped.version and meta["name"] == "heads"
    written = json.loads((out / META_FILE).read_text())
    assert written == meta
    heads = Heads(out)
    # The embedding heads are the shipped ones; only the n-gram head is new.
    for name in ("sentiment", "emotion"):
        np.testing.assert_array_equal(heads.weights[name], shipped.weights[name])
    assert not np.array_equal(heads.ngram_weights, shipped.ngram_weights)
    # Trained and measured on the same nine texts per language, the n-gram head reads them all.
    assert all(meta["metrics"][f"umsab_{code}_ngram_macro_f1"] == 1.0 for code in datasets.UMSAB_LANGUAGES.values())
    assert set(meta["scored_languages"]) <= set(datasets.UMSAB_LANGUAGES.values())
    assert meta["recipe"]["selection"].count("n-gram C and weight fixed beforehand") == 1
    assert "| mean |" in (out / "README.md").read_text()


def test_train_multilingual_without_data_says_so(tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no UMSAB data"):
        call_command("train_multilingual", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--ngrams-only")
