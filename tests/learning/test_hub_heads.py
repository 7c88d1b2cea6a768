"""A head can be replaced by any Hugging Face sequence-classification model, by hub id or local
path (here a local one: these machines reach no hub)."""

import pytest
import torch

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def local_sentiment_model(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from learning.ml.loading import default_encoder_path

    path = tmp_path_factory.mktemp("hub-model")
    source = default_encoder_path()
    labels = {0: "Negative", 1: "Neutral", 2: "Positive"}
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=3, id2label=labels,
                                                               label2id={v: k for k, v in labels.items()})
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path


def test_sentiment_head_from_a_local_hub_model(local_sentiment_model):
    from learning.ml.classifier import Classifier

    classifier = Classifier(quantize=False, sentiment_model=str(local_sentiment_model), emotion_model="")
    [result] = classifier.classify(["the app keeps crashing"])
    assert set(result.sentiment_scores) == {"negative", "neutral", "positive"}  # labels lower-cased
    assert abs(sum(result.sentiment_scores.values()) - 1) < 0.01
    assert set(result.emotion_scores) == {"anger", "joy", "optimism", "sadness"}  # bundled head still
    used = classifier.models_used(None)
    assert used["sentiment"] == str(local_sentiment_model) and used["emotion"].startswith(classifier.name)


def test_a_missing_model_is_a_clear_error(tmp_path):
    from learning.ml.classifier import Classifier

    with pytest.raises(OSError):
        Classifier(quantize=False, sentiment_model=str(tmp_path / "no-such-model"), emotion_model="")
