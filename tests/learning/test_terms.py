from __future__ import annotations

import logging

import pytest
import spacy

from learning import terms
from learning.models import Term

TERMS = [
    {"id": 1, "name": "Acme", "kind": "brand", "phrases": ["Acme", "ACME Corp", "Akme"]},
    {"id": 2, "name": "Acme Pro Max", "kind": "product", "phrases": ["Acme Pro Max", "ProMax"]},
    {"id": 3, "name": "Globex", "kind": "competitor", "phrases": ["Globex"]},
    {"id": 4, "name": "Refunds", "kind": "topic", "phrases": ["refund", "money back"]},
]


@pytest.fixture(scope="module")
def matcher():
    return terms.TermMatcher(TERMS)


def found(matcher, text):
    [result] = matcher.match([text])
    for hit in result:  # offsets always point back at what the customer wrote
        assert text[hit["start"] : hit["end"]] == hit["text"]
    return [(hit["name"], hit["text"]) for hit in result]


def test_result_shape(matcher):
    [[hit]] = matcher.match(["We switched to Globex."])
    assert hit == {"term_id": 3, "name": "Globex", "kind": "competitor", "text": "Globex", "start": 15, "end": 21}


def test_synonyms_and_case_are_matched(matcher):
    assert found(matcher, "akme lost my parcel") == [("Acme", "akme")]
    assert found(matcher, "GLOBEX support is quick") == [("Globex", "GLOBEX")]
    assert found(matcher, "I want my Money Back") == [("Refunds", "Money Back")]


def test_multi_word_phrase_wins_over_the_shorter_one(matcher):
    assert found(matcher, "my ACME PRO MAX died") == [("Acme Pro Max", "ACME PRO MAX")]
    assert found(matcher, "acme corp never answers") == [("Acme", "acme corp")]


def test_each_term_once_in_order_of_first_appearance(matcher):
    text = "Globex refund, then Acme, Globex again, acme again, ACME Pro Max, acme!"
    assert found(matcher, text) == [("Globex", "Globex"), ("Refunds", "refund"), ("Acme", "Acme"),
                                    ("Acme Pro Max", "ACME Pro Max")]
    first_acme = matcher.match([text])[0][2]
    assert (first_acme["start"], first_acme["end"]) == (20, 24)


def test_hashtags_and_handles_match(matcher):
    assert found(matcher, "#Acme is down again") == [("Acme", "Acme")]
    assert found(matcher, "@acme where is my refund?") == [("Acme", "acme"), ("Refunds", "refund")]
    assert found(matcher, "(#globex)") == [("Globex", "globex")]
    # hashtags glue the words of a phrase together
    assert found(matcher, "Loving my new #AcmeProMax!") == [("Acme Pro Max", "AcmeProMax")]


def test_words_that_merely_contain_a_term_do_not_match(matcher):
    assert found(matcher, "Acmes and globexes and refunded") == []


def test_emoji_glued_to_a_term(matcher):
    assert found(matcher, "❤️Acme and 🔥Globex🔥") == [("Acme", "Acme"), ("Globex", "Globex")]


def test_two_terms_sharing_a_phrase_are_both_reported():
    shared = terms.TermMatcher([
        {"id": 1, "name": "Apple", "kind": "brand", "phrases": ["Apple"]},
        {"id": 2, "name": "Fruit", "kind": "topic", "phrases": ["apple", "banana"]},
    ])
    assert found(shared, "an apple a day") == [("Apple", "apple"), ("Fruit", "apple")]


def test_batch_keeps_order_and_length(matcher):
    results = matcher.match(["Globex", "", "nothing here", "Acme"])
    assert [[hit["name"] for hit in r] for r in results] == [["Globex"], [], [], ["Acme"]]


def test_no_terms_matches_nothing():
    assert terms.TermMatcher([]).match(["Acme", ""]) == [[], []]


HOSTILE = ["", "   ", "😀😀🔥", "\ud800 Acme \udfff", "Acme\x00Globex \x00 refund", "\ufeff\u202eAcme", None, 42]


def test_hostile_input_never_raises(matcher):
    results = matcher.match(HOSTILE)
    assert len(results) == len(HOSTILE)
    assert [h["name"] for h in results[3]] == ["Acme"]
    assert results[3][0]["start"] == 2  # a replaced surrogate still counts as one character
    assert [h["name"] for h in results[4]] == ["Acme", "Globex", "Refunds"]


def test_long_text_is_capped_without_cutting_a_word(matcher):
    text = "Acme " + "x" * 100_000 + " Globex"
    assert found(matcher, text) == [("Acme", "Acme")]
    # the cap falls inside "Maxwell": cut there, it would read as the product "Acme Pro Max"
    cut = "y" * (terms.MAX_CHARS - len("Acme Pro Max") - 1) + " Acme Pro Maxwell"
    assert found(matcher, cut) == [("Acme", "Acme")]
    assert terms.prepare(cut).endswith(" Acme Pro")


def test_vocabulary_growth_triggers_a_rebuild(monkeypatch):
    fresh = terms.TermMatcher(TERMS)
    monkeypatch.setattr(terms, "VOCAB_LIMIT", len(fresh.nlp.vocab) + 10)
    nlp_before = fresh.nlp
    fresh.match([" ".join(f"word{i}" for i in range(50))])
    assert fresh.nlp is not nlp_before
    assert [h["name"] for h in fresh.match(["Acme and Globex"])[0]] == ["Acme", "Globex"]


# --- Terms from the database --------------------------------------------------------------------


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(terms, "_current", terms._Current())
    monkeypatch.setattr(terms, "CHECK_SECONDS", 0)


def names(matcher, text):
    return [hit["name"] for hit in matcher.match([text])[0]]


@pytest.mark.django_db
def test_from_db_uses_enabled_terms_and_their_synonyms():
    acme = Term.objects.create(name="Acme", kind="brand", synonyms=["Akme", "acme"])
    Term.objects.create(name="Globex", kind="competitor", enabled=False)
    Term.objects.create(name="Initech", kind="competitor", synonyms="not a list")
    [hits] = terms.TermMatcher.from_db().match(["akme vs globex vs initech"])
    assert [(h["term_id"], h["name"], h["kind"], h["text"]) for h in hits] == [
        (acme.pk, "Acme", "brand", "akme"),
        (Term.objects.get(name="Initech").pk, "Initech", "competitor", "initech"),
    ]


@pytest.mark.django_db
def test_current_matcher_follows_adds_edits_and_deletes(fresh_cache):
    text = "Globex is cheaper than Acme, says Hooli"
    assert names(terms.current_matcher(), text) == []

    acme = Term.objects.create(name="Acme", kind="brand")
    assert names(terms.current_matcher(), text) == ["Acme"]

    globex = Term.objects.create(name="Globex", kind="competitor")
    assert names(terms.current_matcher(), text) == ["Globex", "Acme"]

    acme.synonyms = ["Hooli"]
    acme.save()
    globex.delete()
    assert names(terms.current_matcher(), "Hooli rocks") == ["Acme"]
    assert names(terms.current_matcher(), text) == ["Acme"]

    # bulk updates skip auto_now; the count of enabled terms still changes
    Term.objects.filter(pk=acme.pk).update(enabled=False)
    assert names(terms.current_matcher(), text) == []


@pytest.mark.django_db
def test_current_matcher_deletion_of_the_oldest_term_is_noticed(fresh_cache):
    old = Term.objects.create(name="Acme", kind="brand")
    Term.objects.create(name="Globex", kind="competitor")
    assert names(terms.current_matcher(), "Acme Globex") == ["Acme", "Globex"]
    old.delete()  # max(updated_at) stays the same: only the count says something changed
    assert names(terms.current_matcher(), "Acme Globex") == ["Globex"]


@pytest.mark.django_db
def test_current_matcher_asks_the_database_at_most_every_interval(fresh_cache, monkeypatch,
                                                                  django_assert_num_queries):
    Term.objects.create(name="Acme", kind="brand")
    first = terms.current_matcher()
    monkeypatch.setattr(terms, "CHECK_SECONDS", 3600)
    Term.objects.create(name="Globex", kind="competitor")
    with django_assert_num_queries(0):
        assert terms.current_matcher() is first
    monkeypatch.setattr(terms, "CHECK_SECONDS", 0)
    second = terms.current_matcher()
    assert second is not first
    assert names(second, "Acme Globex") == ["Acme", "Globex"]
    with django_assert_num_queries(1):  # the fingerprint only: nothing changed since the last build
        assert terms.current_matcher() is second


@pytest.mark.django_db
def test_current_matcher_unchanged_terms_keep_the_same_matcher(fresh_cache):
    Term.objects.create(name="Acme", kind="brand")
    assert terms.current_matcher() is terms.current_matcher()


# --- Named entities -------------------------------------------------------------------------------


@pytest.fixture
def no_entity_cache(monkeypatch):
    monkeypatch.setattr(terms, "_entity_pipelines", {})


def test_entities_without_a_configured_model(settings, no_entity_cache):
    settings.CXM_SPACY_MODEL = ""
    assert terms.entities(["Tim Cook visited Paris", ""]) == [[], []]
    assert terms.entity_model_name() == ""


def test_entities_with_a_missing_model_warn_once(settings, no_entity_cache, caplog):
    settings.CXM_SPACY_MODEL = "xx_no_such_pipeline_sm"
    with caplog.at_level(logging.WARNING, logger="learning.terms"):
        assert terms.entities(["Tim Cook visited Paris"]) == [[]]
        assert terms.entities(["again", "and again"]) == [[], []]
        assert terms.entity_model_name() == ""
    warnings = [r for r in caplog.records if "xx_no_such_pipeline_sm" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


@pytest.fixture
def ruler_pipeline(tmp_path):
    """A real spaCy pipeline on disk whose entities come from rules, as no trained one is installed."""
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([
        {"label": "ORG", "pattern": [{"LOWER": "acme"}, {"LOWER": "corp"}]},
        {"label": "GPE", "pattern": "Paris"},
    ])
    nlp.meta["version"] = "1.2.3"
    nlp.to_disk(tmp_path / "ruler")
    return str(tmp_path / "ruler")


def test_entities_from_the_configured_pipeline(settings, no_entity_cache, ruler_pipeline):
    settings.CXM_SPACY_MODEL = ruler_pipeline
    texts = ["ACME Corp opened a shop in Paris", "", "\ud800 Paris \x00", "😀" * 3]
    results = terms.entities(texts)
    assert results[0] == [{"text": "ACME Corp", "label": "ORG", "start": 0, "end": 9},
                          {"text": "Paris", "label": "GPE", "start": 27, "end": 32}]
    assert results[1] == [] and results[3] == []
    assert results[2] == [{"text": "Paris", "label": "GPE", "start": 2, "end": 7}]
    assert terms.entity_model_name() == f"{ruler_pipeline} 1.2.3"
