"""The labelled care set (learning/eval/care_set.jsonl): its shape, its sizes per language and lane,
and that it stays apart from what the intent head is trained on."""

import json
from collections import Counter

import pytest

from learning.default_intents import DEFAULT_INTENTS
from learning.ml.care_eval import CARE_SET, load_care_set

LANES = {"issue", "praise", "ambivalence", "noise", "triage"}
CHANNELS = {"dm", "mention", "reply", "review", "email", "feed"}
SENTIMENTS = {"negative", "neutral", "positive"}
MIN_PER_LANGUAGE = {"en": 200, "es": 30, "fr": 30, "de": 30, "pt": 30, "it": 30,
                    "ar": 15, "hi": 15, "ja": 15, "nl": 15, "tr": 15}


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def rows():
    return load_care_set()


def test_care_set_rows_have_valid_labels(rows):
    slugs = {spec["slug"] for spec in DEFAULT_INTENTS}
    for row in rows:
        assert set(row) <= {"text", "lang", "industry", "channel", "lane", "intent", "sentiment", "note"}, row
        assert row["text"].strip() == row["text"] and row["text"], row
        assert len(row["lang"]) == 2 and row["lang"].islower(), row
        assert row["channel"] in CHANNELS and row["lane"] in LANES and row["sentiment"] in SENTIMENTS, row
        assert row["intent"] in slugs, row
        assert (row["lane"] == "noise") == (row["intent"] == "spam"), row  # noise means spam, nothing else


def test_care_set_is_large_multilingual_and_spread_over_industries(rows):
    assert len(rows) >= 480
    languages = Counter(row["lang"] for row in rows)
    assert len(languages) >= 10
    for lang, least in MIN_PER_LANGUAGE.items():
        assert languages[lang] >= least, (lang, languages[lang])
    assert len({row["industry"] for row in rows}) >= 8
    assert len({row["channel"] for row in rows}) == len(CHANNELS)
    assert len({row["intent"] for row in rows}) == len(DEFAULT_INTENTS)  # every intent is measured


def test_care_set_has_real_traffic_proportions(rows):
    lanes = Counter(row["lane"] for row in rows)
    assert 0.05 <= lanes["noise"] / len(rows) <= 0.08  # spam is rare in care traffic
    assert lanes["triage"] / len(rows) <= 0.02  # a care lead places almost everything
    assert min(lanes["issue"], lanes["praise"], lanes["ambivalence"]) >= 30
    # What a customer addresses to the brand (a DM, a reply, a review, an email) is never noise.
    addressed = [row for row in rows if row["channel"] in {"dm", "reply", "review", "email"}]
    assert addressed and not [row for row in addressed if row["lane"] == "noise"]


def test_care_set_texts_are_unique_and_kept_apart_from_intent_examples(rows):
    texts = Counter(_normal(row["text"]) for row in rows)
    assert [t for t, n in texts.items() if n > 1] == []
    examples = {_normal(text) for spec in DEFAULT_INTENTS for text in spec["examples"]}
    assert sorted(set(texts) & examples) == []


def test_load_care_set_names_the_line_of_a_broken_row(tmp_path):
    path = tmp_path / "care.jsonl"
    good = {"text": "hi", "lang": "en", "industry": "retail", "channel": "dm", "lane": "issue",
            "intent": "greeting", "sentiment": "neutral"}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "lane": None}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: missing lane"):
        load_care_set(path)
    path.write_text(json.dumps(good) + "\n", encoding="utf-8")
    assert load_care_set(path) == [good]
    assert load_care_set() == load_care_set(CARE_SET)
