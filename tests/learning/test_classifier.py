"""The classifier on real text with the bundled model, including the hostile inputs."""

import numpy as np
import pytest

from learning.ml.classifier import IntentHead

pytestmark = pytest.mark.django_db

HOSTILE = [
    "",
    "x" * 100_000,
    "😡😡😡🔥🔥",
    "Mixed скрипты 混合 and English عربى",
    "broken \ud800 surrogate and NUL\x00 inside",
    "   ",
]


def test_every_head_gives_probabilities(classifier):
    [result] = classifier.classify(["My flight was cancelled and nobody at the desk will help me"])
    for scores, labels in [(result.sentiment_scores, {"negative", "neutral", "positive"}),
                           (result.emotion_scores, {"anger", "joy", "optimism", "sadness"})]:
        assert set(scores) == labels
        assert abs(sum(scores.values()) - 1) < 0.01
    assert result.sentiment == max(result.sentiment_scores, key=result.sentiment_scores.get)
    assert result.language == "en"


def test_sentiment_reads_obvious_cases(classifier):
    angry, happy = classifier.classify([
        "This is the worst service ever, I hate it, three hours on hold and nobody answers",
        "Thank you so much, the support team was amazing and fixed it in minutes! Love it",
    ])
    assert angry.sentiment == "negative"
    assert happy.sentiment == "positive"


def test_hostile_input_gets_a_result_for_every_text(classifier):
    results = classifier.classify(HOSTILE)
    assert len(results) == len(HOSTILE)
    empty, long, emoji, mixed, broken, blank = results
    assert empty.flags == ["empty"] and empty.sentiment == "" and empty.language == "und"
    assert blank.flags == ["empty"]
    assert "truncated" in long.flags and long.sentiment
    assert emoji.sentiment and emoji.flags == []
    # Mixed scripts: read, or flagged as a language whose sentiment is not scored; never dropped.
    assert mixed.language and (mixed.sentiment or "not_scored" in mixed.flags)
    assert "invalid_unicode" in broken.flags and broken.sentiment
    for result in results:
        result.text.encode("utf-8")


def _record_passes(classifier, monkeypatch) -> list[tuple[int, int]]:
    """The shape of every batch the encoder runs, whichever runtime runs it (torch or ONNX)."""
    shapes = []
    backend = classifier.engine.backend
    forward = backend.forward

    def recording(input_ids, attention_mask, heads):
        shapes.append(tuple(input_ids.shape))
        return forward(input_ids, attention_mask, heads)

    monkeypatch.setattr(backend, "forward", recording)
    return shapes


def test_one_encoder_pass_per_distinct_text(classifier, monkeypatch):
    """A flood of one message, and the three heads, cost one encoder row per distinct text."""
    shapes = _record_passes(classifier, monkeypatch)
    head = IntentHead("t", ["a", "b"], np.zeros((2, 385), dtype=np.float32))
    results = classifier.classify(["refund my order now"] * 200 + ["where is my parcel"], intent_head=head)
    rows = [n for n, _ in shapes]
    assert sum(rows) == 2
    assert len(results) == 201 and results[0].sentiment_scores == results[199].sentiment_scores
    assert set(results[0].intent_scores) == {"a", "b"}


def test_batches_are_padded_per_batch_sorted_by_length(classifier, monkeypatch):
    widths = _record_passes(classifier, monkeypatch)
    # English (the bundled encoder's language) of 1 to 40 repeats, each text distinct.
    texts = [f"my order {i} is " + "very " * (i % 40) + "late" for i in range(80)]
    classifier.classify(texts)
    rows = [r for r, _ in widths]
    assert sum(rows) == 80 and max(rows) <= 32
    # Sorted by length, cut where padding would cost more than another call: short texts are not
    # padded to the longest (learning.ml.engine.split).
    assert [w for _, w in widths] == sorted(w for _, w in widths) and len(widths) > 3
    assert sum(r * w for r, w in widths) < 1.2 * sum(len(classifier.engine.tokenize([t])[0]) for t in texts)


@pytest.mark.parametrize("bad", [None, 12, b"bytes"])
def test_non_text_does_not_crash(classifier, bad):
    [result] = classifier.classify([bad])
    assert result.language
