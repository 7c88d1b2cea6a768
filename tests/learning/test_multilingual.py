"""No customer goes unheard, in any language: the multilingual reader, 'not scored', lanes that
never hide what was sent to the brand, and agents' lane corrections that teach the lane."""

import pytest

from learning import actions, language
from learning.ml.classifier import MULTILINGUAL_READER
from learning.models import Classification, Correction
from listening.actions import ingest_messages
from listening.models import Message
from tests.listening.helpers import inbound

pytestmark = pytest.mark.django_db  # the classifier reads the topic terms

# Care messages that the English-only model used to set aside as noise (issue 13's examples).
SENT_TO_THE_BRAND = [
    "@Acme can you tell me when the store opens tomorrow?",
    "@Acme wann wird meine Rückerstattung überwiesen? Bestellnummer 48213",
    "@Acme o aplicativo trava toda vez que abro, já reinstalei três vezes",
    "@Acme 注文した商品がまだ届きません。どうなっていますか？",
    "@Acme وصل المنتج مكسورا وأريد استرداد أموالي",
    "Lumen Mobile: roaming funktioniert seit gestern nicht mehr. Bitte dringend beheben.",
    "quick question: how do I change the email on my account?",
    "Je vais résilier mon abonnement si rien ne change d'ici vendredi",
    "hi", "anyone there?", "👍🙏😍",
]


def test_other_languages_are_read_by_the_multilingual_reader(classifier):
    spanish, german, english = classifier.classify([
        "Llevo tres semanas sin internet y nadie me da una solución, es una vergüenza",
        "Vielen Dank, der Kundenservice war super freundlich und schnell!",
        "this is the worst service I have ever had",
    ])
    assert (spanish.language, spanish.sentiment) == ("es", "negative")
    assert (german.language, german.sentiment) == ("de", "positive")
    assert spanish.reader == german.reader == MULTILINGUAL_READER
    assert english.reader != MULTILINGUAL_READER and english.sentiment == "negative"
    assert classifier.models_used(None, spanish.reader)["sentiment"].startswith("multilingual-e5-small")


def test_a_language_without_measured_sentiment_is_not_scored_not_neutral(classifier):
    [japanese] = classifier.classify(["注文した商品がまだ届きません。どうなっていますか？"])
    assert japanese.language == "ja"
    assert "not_scored" in japanese.flags
    assert japanese.sentiment == "" and japanese.sentiment_scores == {}


def test_short_romance_texts_are_not_galician_or_pidgin():
    detected = [code for code, _ in language.detect([
        "o aplicativo trava toda vez que abro", "gracias por todo", "non funziona niente", "my order never came o",
    ])]
    assert detected == ["pt", "es", "it", "en"]


def test_nothing_sent_to_the_brand_goes_to_noise(loaded, make_connector):
    connector = make_connector("webhook")
    ingest_messages(connector, [inbound(f"m{i}", text, author=f"u{i}") for i, text in enumerate(SENT_TO_THE_BRAND)])
    actions.classify_messages(list(Message.objects.values_list("pk", flat=True)))
    lanes = dict(Classification.objects.values_list("message__text", "lane"))
    assert len(lanes) == len(SENT_TO_THE_BRAND)
    assert [text for text, lane in lanes.items() if lane == "noise"] == []
    assert set(lanes.values()) <= {"issue", "praise", "ambivalence", "triage"}


def test_confident_spam_is_set_aside_and_overheard_chatter_may_be(loaded, make_connector):
    hook, feed = make_connector("webhook"), make_connector("rss", config={"url": "http://127.0.0.1/feed"})
    spam = "🔥 FREE followers!! Follow4follow, click bit.ly/xx now to win an iPhone 🔥 crypto giveaway"
    ingest_messages(hook, [inbound("s1", spam)])
    ingest_messages(feed, [inbound("f1", "Company announces quarterly results on Thursday", author="news")])
    actions.classify_messages(list(Message.objects.values_list("pk", flat=True)))
    by_text = {c.message.text: c for c in Classification.objects.select_related("message")}
    assert by_text[spam].lane == "noise" and by_text[spam].priority_factors["lane_reason"].startswith("spam")
    overheard = by_text["Company announces quarterly results on Thursday"]
    assert overheard.lane in {"noise", "issue", "ambivalence", "praise"}
    if overheard.lane == "noise":
        assert "overheard" in overheard.priority_factors["lane_reason"]


def test_lane_corrections_teach_the_lane_for_the_same_and_near_identical_texts(loaded, make_connector,
                                                                                django_user_model, monkeypatch):
    monkeypatch.setattr("learning.lane_memory.CHECK_SECONDS", 0.0)  # workers look every few seconds
    agent = django_user_model.objects.create_user("agent")
    connector = make_connector("webhook")
    text = "Check out our new store, 50% off everything this weekend only! Visit now"
    ingest_messages(connector, [inbound("a1", text)])
    first = Message.objects.get(external_id="a1")
    actions.classify_messages([first.pk])
    actions.record_correction(first, Correction.Field.LANE, "praise", user=agent)
    ingest_messages(connector, [inbound("a2", text, author="u2"),
                                inbound("a3", text.replace("Visit now", "Visit now!!"), author="u3")])
    again = Message.objects.filter(external_id__in=["a2", "a3"]).values_list("pk", flat=True)
    actions.classify_messages(list(again))
    results = {c.message.external_id: c for c in Classification.objects.filter(message_id__in=again)
               .select_related("message")}
    assert results["a2"].lane == "praise"
    assert results["a2"].priority_factors["lane_reason"] == "an agent put this in Praise"
    assert results["a3"].lane == "praise" and "near-identical" in results["a3"].priority_factors["lane_reason"]


BAD = ["", "😀😀😀🎉", "x" * 20_000, "Mi pedido 注文 не пришёл my order", "الطلب لم يصل بعد، أرجو المساعدة",
       "bad \udcff bytes \ud800 here", "\u202eevil rtl override\u202c text"]


def test_hostile_texts_in_any_language_are_classified_or_flagged_in_one_batch(classifier):
    results = classifier.classify(BAD)
    assert len(results) == len(BAD)
    empty, emoji, long, mixed, arabic, broken, rtl = results
    assert empty.flags == ["empty"]
    assert emoji.sentiment  # emoji carry sentiment; read by the multilingual reader
    assert "truncated" in long.flags
    assert "invalid_unicode" in broken.flags
    for result in (mixed, arabic, broken, rtl):
        assert result.sentiment or "not_scored" in result.flags
    assert arabic.language == "ar" and arabic.sentiment


def test_demo_noise_lane_holds_only_its_spam(loaded, make_connector):
    """Every demo template, with a follow-up in its thread: the noise lane holds only the demo's spam."""
    from cxm.demo import FOLLOW_UPS, TEMPLATES

    connector = make_connector("webhook")
    expected, messages = {}, []
    for kind, templates in TEMPLATES.items():
        for n, (_, template) in enumerate(templates):
            text = template.format(brand="Lumen Mobile", product="roaming")
            key = f"{kind}-{n}"
            messages.append(inbound(key, text, author=key, thread_id=key))
            expected[key] = kind == "spam"
            if kind != "spam":
                follow = f"{key}-follow"
                messages.append(inbound(follow, FOLLOW_UPS[n % len(FOLLOW_UPS)], author=key, thread_id=key,
                                        parent=key, minutes=1))
                expected[follow] = False
    ingest_messages(connector, messages)
    actions.classify_messages(list(Message.objects.values_list("pk", flat=True)))
    lanes = dict(Classification.objects.values_list("message__external_id", "lane"))
    assert len(lanes) == len(expected)
    assert {key: lane for key, lane in lanes.items() if lane == "noise" and not expected[key]} == {}
    # Spam the intent head is unsure of waits in triage for a person, rather than risk a customer.
    spam = [lanes[key] for key, is_spam in expected.items() if is_spam]
    assert spam.count("noise") >= len(spam) - 1 and set(spam) <= {"noise", "triage"}
