"""The airline care figures count what the goal says: praise found is the praise lane only; a
positive tweet answered in the issue lane is reported beside it, not counted as found."""

import csv
from types import SimpleNamespace

from learning.ml import lane_evaluation

ROWS = [  # text, label, lane the stub rules give, sentiment the stub reads
    ("love the crew", "positive", "praise", "positive"),
    ("thanks! when is the next flight?", "positive", "issue", "positive"),
    ("great, but my bag is lost", "positive", "ambivalence", "negative"),
    ("thanks, anyway", "positive", "issue", "neutral"),
    ("lost my bag", "negative", "issue", "negative"),
    ("delayed again", "negative", "ambivalence", "negative"),
]


class StubClassifier:
    def classify(self, texts, intent_head=None):
        by_text = {text: (lane, sentiment) for text, _, lane, sentiment in ROWS}
        return [SimpleNamespace(text=t, lane=by_text[t][0], sentiment=by_text[t][1]) for t in texts]


def test_airline_figures_count_the_praise_lane_and_report_answered_positives_apart(tmp_path):
    folder = tmp_path / "twitter_us_airline_sentiment"
    folder.mkdir()
    with open(folder / "train.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "airline_sentiment"])
        writer.writeheader()
        writer.writerows({"text": text, "airline_sentiment": label} for text, label, _, _ in ROWS)
    figures = lane_evaluation.airline_figures(StubClassifier(), None, lambda result, *a: result, tmp_path)
    assert figures["airline_praise_found"] == 0.25
    assert figures["airline_praise_answered_positive"] == 0.25
    assert figures["airline_praise_lanes"] == {"praise": 1, "issue": 2, "ambivalence": 1}
    assert figures["airline_complaints_to_issue"] == 0.5 and figures["airline_complaints_to_noise"] == 0.0
