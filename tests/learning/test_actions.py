"""Classification of stored messages: hand-off from ingestion, idempotence, history, failures."""

import dataclasses
from datetime import timedelta

import pytest

from learning import actions, tasks
from learning.models import Classification, Correction, IntentExample, IntentModel
from listening.actions import ingest_messages
from listening.models import Message
from tests.listening.helpers import inbound

pytestmark = pytest.mark.django_db


def _ingest(connector, *messages, capture):
    with capture(execute=True):
        return ingest_messages(connector, list(messages))


def test_ingested_messages_are_classified_on_commit(loaded, make_connector, django_capture_on_commit_callbacks):
    connector = make_connector("webhook")
    _ingest(connector, inbound("m1", "I want a refund, you charged me twice"),
            inbound("m2", "thanks so much, great service!", author="u2"), capture=django_capture_on_commit_callbacks)
    rows = {c.message.external_id: c for c in Classification.objects.select_related("message")}
    assert set(rows) == {"m1", "m2"}
    refund = rows["m1"]
    assert refund.status == "ok" and refund.is_current
    assert refund.lane in {"issue", "ambivalence", "praise", "noise"}
    assert refund.model_name == loaded.name and refund.model_version == loaded.version
    assert refund.models_used["intent"].startswith("intents ")
    assert set(refund.intent_scores) >= {"refund_request", "complaint", "churn_threat"}
    assert refund.confidence is not None and 0 <= refund.priority <= 1
    assert "lane_reason" in refund.priority_factors


def test_outbound_messages_are_not_classified(loaded, make_connector, django_capture_on_commit_callbacks):
    connector = make_connector("webhook")
    message = dataclasses.replace(inbound("out1", "We are sorry, a refund is on its way"), direction="out")
    _ingest(connector, message, capture=django_capture_on_commit_callbacks)
    assert Message.objects.count() == 1 and not Classification.objects.exists()


def test_classification_is_idempotent_and_reclassification_keeps_history(loaded, make_connector):
    connector = make_connector("webhook")
    ingest_messages(connector, [inbound("m1", "where is my parcel??")])
    [mid] = Message.objects.values_list("pk", flat=True)
    assert actions.classify_messages([mid]).classified == [mid]
    again = actions.classify_messages([mid, mid])
    assert again.classified == [] and again.skipped == 1
    assert Classification.objects.count() == 1
    actions.classify_messages([mid], force=True)
    assert Classification.objects.count() == 2
    assert Classification.objects.filter(is_current=True).count() == 1


def test_three_negative_messages_within_an_hour_escalate(loaded, make_connector):
    connector = make_connector("webhook")
    angry = "This is terrible, my internet has been down all day and nobody helps"
    ingest_messages(connector, [inbound(f"m{i}", f"{angry} ({i})", minutes=10 * i) for i in range(3)])
    ingest_messages(connector, [inbound("later", f"{angry} (later)", minutes=300)])
    ids = list(Message.objects.order_by("sent_at").values_list("pk", flat=True))
    actions.classify_messages(ids[:2])
    actions.classify_messages(ids[2:])  # history comes from the database and from the batch
    rows = [Classification.objects.get(message_id=i) for i in ids]
    assert [r.sentiment for r in rows] == ["negative"] * 4
    assert [r.priority_factors["history"] > 0 for r in rows] == [False, True, True, False]
    assert rows[2].priority_factors["escalation"] > 0 and rows[1].priority_factors["escalation"] == 0
    assert rows[2].priority > rows[0].priority
    assert rows[3].priority_factors["escalation"] == 0  # hours later: the window has passed


def test_a_follow_up_keeps_the_conversation_lane(loaded, make_connector):
    connector = make_connector("webhook")
    crash = "My app crashes every time I open a playlist, please help"
    ingest_messages(connector, [inbound("q", crash, thread_id="t")])
    actions.classify_messages(Message.objects.values_list("pk", flat=True))
    ingest_messages(connector, [inbound("a", "iPhone 13, iOS 17.4 and app version 8.9.2", thread_id="t", minutes=5),
                                inbound("b", "iPhone 13, iOS 17.4 and app version 8.9.2", thread_id="x", minutes=5)])
    actions.classify_messages(Message.objects.values_list("pk", flat=True))
    first = Classification.objects.get(message__external_id="q")
    reply = Classification.objects.get(message__external_id="a")
    alone = Classification.objects.get(message__external_id="b")
    assert first.lane == "issue"
    assert reply.intent == "follow_up" and reply.lane == "issue"
    assert reply.priority_factors["lane_reason"] == "continues the conversation"
    # Alone, the same details were still sent to the brand: a person looks, it is never set aside.
    assert alone.lane == "triage" and "sent to the brand" in alone.priority_factors["lane_reason"]


def test_failed_classification_is_retried_then_recorded(loaded, make_connector, monkeypatch):
    connector = make_connector("webhook")
    ingest_messages(connector, [inbound("ok", "hello there"), inbound("bad", "poison message")])
    ok, bad = (Message.objects.get(external_id=e).pk for e in ("ok", "bad"))
    real = loaded.classify
    calls = []

    def flaky(texts, **kw):
        calls.append(list(texts))
        if "poison message" in texts:
            raise RuntimeError("tokenizer exploded")
        return real(texts, **kw)

    monkeypatch.setattr(loaded, "classify", flaky)
    tasks.classify_messages.delay([ok, bad])  # eager: no delayed retries, straight to one by one
    assert sorted(map(sorted, calls)) == [["hello there"], ["hello there", "poison message"], ["poison message"]]
    assert len(calls[0]) == 2  # the batch first, then one by one
    assert Classification.objects.get(message_id=ok).status == "ok"
    failed = Classification.objects.get(message_id=bad)
    assert failed.status == "failed" and "tokenizer exploded" in failed.error and failed.is_current


def test_sweep_enqueues_only_old_unclassified_inbound(loaded, make_connector):
    connector = make_connector("webhook")
    ingest_messages(connector, [inbound("old", "my card is blocked"), inbound("new", "hi")])
    Message.objects.filter(external_id="old").update(received_at=Message.objects.get(external_id="old")
                                                     .received_at - timedelta(minutes=5))
    assert tasks.sweep_unclassified.delay().get() == 1
    assert list(Classification.objects.values_list("message__external_id", flat=True)) == ["old"]


def test_intent_edits_refit_the_head(loaded, make_connector):
    first = actions.fit_intents(loaded)
    assert first is not None and "churn_threat" in first.labels
    assert actions.fit_intents(loaded).version == first.version  # unchanged examples, same head
    from learning.models import Intent

    intent = Intent.objects.create(slug="warranty", name="Warranty claim", lane="issue")
    for text in ["is my blender still under warranty", "warranty claim for broken headphones",
                 "does the warranty cover water damage", "I want to use my 2 year warranty",
                 "how do I file a warranty claim", "my laptop broke, is it covered by warranty"]:
        IntentExample.objects.create(intent=intent, text=text)
    assert tasks.retrain_intents.delay().get() != first.version
    actions._intent_cache["checked"] = 0.0  # as if INTENT_CHECK_SECONDS had passed
    head = actions.current_intent_head(loaded)
    assert "warranty" in head.labels and IntentModel.objects.count() == 2
    ingest_messages(make_connector("webhook"), [inbound("w", "can I get my broken phone fixed under warranty?")])
    actions.classify_messages(Message.objects.values_list("pk", flat=True))
    assert Classification.objects.get().intent == "warranty"


def test_removing_intents_down_to_one_drops_the_intent_head(loaded, make_connector):
    from learning.models import Intent

    assert actions.fit_intents(loaded) is not None
    Intent.objects.exclude(slug="complaint").delete()
    assert tasks.retrain_intents.delay().get() is None
    assert actions.current_intent_head(loaded) is None
    ingest_messages(make_connector("webhook"), [inbound("n", "my bill is wrong")])
    actions.classify_messages(Message.objects.values_list("pk", flat=True))
    row = Classification.objects.get()
    assert row.intent == "" and row.sentiment and "intent" not in row.models_used


def test_corrections_are_validated_and_become_examples(loaded, make_connector, django_user_model):
    from cxm.exceptions import CXMError

    agent = django_user_model.objects.create_user("agent")
    ingest_messages(make_connector("webhook"), [inbound("c", "my package is lost, third time this month")])
    message = Message.objects.get()
    actions.classify_messages([message.pk])
    correction = actions.record_correction(message, "intent", "order_status", agent)
    assert correction.previous and correction.user == agent and correction.text == message.text
    assert IntentExample.objects.filter(text=message.text, source="correction", intent__slug="order_status").exists()
    actions.record_correction(message, "sentiment", "negative", agent)
    for field, value in [("emotion", "joy"), ("sentiment", "furious"), ("intent", "no_such_intent")]:
        with pytest.raises(CXMError) as err:
            actions.record_correction(message, field, value, agent)
        assert err.value.status_code == 400
    assert Correction.objects.count() == 2


BAD_INPUT = {
    "empty": "",
    "emoji": "😡😡😡🔥🔥🙏",
    "long": "my router keeps dropping the connection " * 500,  # 20,000 characters
    "mixed": "Mi pedido 注文 не пришёл, my order never came",
    "rtl": "وصل الطلب مكسوراً، أريد استرداد المبلغ",
    "rtl_override": "\u202eevil override\u202c my refund is late",
    # Invalid UTF-8 as a connector's decoder hands it over (errors="replace"), and a NUL.
    "invalid": b"broken \xff\xfe bytes from a bad sender\x00".decode("utf-8", "replace"),
}


def test_bad_input_in_one_worker_batch_is_classified_or_flagged(loaded, make_connector):
    """The issue's bad inputs, all in one batch as a worker receives it: each gets its own OK result,
    what could not be read is flagged, and none is set aside as spam (a webhook is sent to the brand)."""
    assert len(BAD_INPUT["long"]) == 20_000
    connector = make_connector("webhook")
    ingest_messages(connector, [inbound(key, text, author=key) for key, text in BAD_INPUT.items()])
    ids = list(Message.objects.values_list("pk", flat=True))
    assert len(ids) == len(BAD_INPUT)
    outcome = actions.classify_messages(ids)
    assert sorted(outcome.classified) == sorted(ids)
    rows = {c.message.external_id: c for c in Classification.objects.select_related("message")}
    assert set(rows) == set(BAD_INPUT)
    for key, row in rows.items():
        assert row.status == "ok" and row.is_current, key
        assert row.lane and row.lane != "noise", (key, row.lane)
        assert row.sentiment or {"empty", "not_scored"} & set(row.flags), key
    assert rows["empty"].flags == ["empty"] and rows["empty"].lane == "triage"
    assert "truncated" in rows["long"].flags
    assert "invalid_unicode" in rows["invalid"].flags
    assert rows["rtl"].language == "ar"
