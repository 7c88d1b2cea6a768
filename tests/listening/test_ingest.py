from __future__ import annotations

import pytest
from django.db import connection

from listening.actions import ingest_messages, merge_customers
from listening.exceptions import PayloadInvalid
from listening.models import Contact, Conversation, Customer, Message
from listening.signals import messages_ingested
from tests.listening.helpers import inbound


@pytest.fixture
def connector(make_connector):
    return make_connector("webhook", credentials={"signing_secret": "s3cret"})


@pytest.fixture
def announced():
    seen: list[list[int]] = []

    def receiver(sender, message_ids, connector_id, **kwargs):
        seen.append(list(message_ids))

    messages_ingested.connect(receiver)
    yield seen
    messages_ingested.disconnect(receiver)


def test_ingest_stores_each_message_once_and_counts_duplicates(connector, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = ingest_messages(connector, [inbound("m1"), inbound("m2"), inbound("m1")])
    second = ingest_messages(connector, [inbound("m2"), inbound("m3")])
    assert (first.created, first.duplicates) == (2, 1)
    assert (second.created, second.duplicates) == (1, 1)
    assert Message.objects.filter(connector=connector).count() == 3
    connector.refresh_from_db()
    assert connector.messages_received == 3
    assert connector.duplicates_received == 2


def test_ingest_announces_new_ids_only_after_commit(connector, announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = ingest_messages(connector, [inbound("a"), inbound("b")])
        assert announced == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert announced == [result.created_ids]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ingest_messages(connector, [inbound("a")])
    assert callbacks == []  # duplicates announce nothing


def test_ingest_threads_replies_into_parent_conversation(connector):
    ingest_messages(connector, [inbound("root", minutes=0)])
    ingest_messages(connector, [inbound("reply", author="u2", parent="root", minutes=1)])
    root, reply = Message.objects.get(external_id="root"), Message.objects.get(external_id="reply")
    assert reply.parent_id == root.pk
    assert reply.conversation_id == root.conversation_id
    conversation = Conversation.objects.get(pk=root.conversation_id)
    assert conversation.message_count == 2
    assert conversation.last_message_at == reply.sent_at


def test_ingest_links_a_parent_that_arrives_after_its_reply(connector):
    ingest_messages(connector, [inbound("late-reply", parent="late-root", thread_id="t9", minutes=5)])
    ingest_messages(connector, [inbound("late-root", thread_id="t9", minutes=0)])
    reply = Message.objects.get(external_id="late-reply")
    assert reply.parent.external_id == "late-root"


def test_ingest_threads_within_one_batch_in_time_order(connector):
    batch = [inbound("c2", parent="c1", minutes=2), inbound("c1", minutes=1), inbound("c3", parent="c2", minutes=3)]
    result = ingest_messages(connector, batch)
    assert result.created == 3
    assert Conversation.objects.count() == 1
    assert Message.objects.get(external_id="c3").parent.external_id == "c2"


def test_ingest_updates_contact_profile_without_erasing_known_fields(connector):
    ingest_messages(connector, [inbound("p1", display_name="Ada", followers=10, handle="ada")])
    ingest_messages(connector, [inbound("p2", display_name="", followers=25, minutes=3)])
    contact = Contact.objects.get(external_id="u1")
    assert (contact.display_name, contact.handle, contact.followers) == ("Ada", "ada", 25)
    assert contact.message_count == 2


def test_ingest_cleans_text_postgres_cannot_store(connector):
    nasty = "nul\x00 and lone surrogate \ud800 end"
    ingest_messages(connector, [inbound("n1", nasty)])
    stored = Message.objects.get(external_id="n1")
    assert stored.text == "nul and lone surrogate \ufffd end"


def test_a_lone_surrogate_stays_flagged_as_invalid_unicode_after_storage(connector):
    from learning.ml.text import normalize

    ingest_messages(connector, [inbound("s1", "refund \udcff please")])
    _, flags = normalize(Message.objects.get(external_id="s1").text)
    assert flags == ["invalid_unicode"]


def test_ingest_rejects_ids_longer_than_the_column(connector):
    with pytest.raises(PayloadInvalid):
        ingest_messages(connector, [inbound("x" * 300)])
    assert Message.objects.count() == 0


def test_ingest_caps_raw_payload(connector, settings):
    settings.RAW_PAYLOAD_MAX_BYTES = 2000
    big = inbound("big", "y" * 10_000)
    ingest_messages(connector, [big])
    stored = Message.objects.get(external_id="big")
    assert stored.raw_truncated and stored.raw["truncated"] is True
    assert len(stored.text) == 10_000  # the text itself is kept whole


def test_verified_email_joins_contacts_across_channels(connector):
    ingest_messages(connector, [inbound("e1", author="web-7", email="ada@example.com", email_verified=True)])
    ingest_messages(
        connector, [inbound("e2", author="tg-9", channel="telegram", email="ADA@example.com", email_verified=True)]
    )
    ingest_messages(connector, [inbound("e3", author="web-8", email="ada@example.com", email_verified=False)])
    web, tg = Contact.objects.get(external_id="web-7"), Contact.objects.get(external_id="tg-9")
    assert web.customer_id is not None and web.customer_id == tg.customer_id
    assert Contact.objects.get(external_id="web-8").customer_id is None  # unverified never merges


def test_merge_customers_moves_contacts_and_keeps_details(connector):
    ingest_messages(connector, [inbound("f1", author="a"), inbound("f2", author="b")])
    a, b = Contact.objects.get(external_id="a"), Contact.objects.get(external_id="b")
    first = Customer.objects.create(display_name="Ada")
    second = Customer.objects.create(email="ada@example.com")
    Contact.objects.filter(pk=a.pk).update(customer=first)
    Contact.objects.filter(pk=b.pk).update(customer=second)
    merged = merge_customers(first, second)
    assert merged.email == "ada@example.com"
    assert set(merged.contacts.values_list("external_id", flat=True)) == {"a", "b"}
    assert not Customer.objects.filter(pk=second.pk).exists()


def test_match_customer_reuses_existing_profile(connector):
    customer = Customer.objects.create(phone="+15550001")
    ingest_messages(connector, [inbound("g1", author="sms-1", phone="+15550001", phone_verified=True)])
    assert Contact.objects.get(external_id="sms-1").customer_id == customer.pk


def test_ingest_query_count_does_not_grow_with_batch_size(connector, django_assert_max_num_queries):
    with django_assert_max_num_queries(25):
        ingest_messages(connector, [inbound(f"q{i}", author=f"a{i % 7}", thread_id=f"t{i % 5}") for i in range(200)])
    assert Message.objects.count() == 200
    assert connection.vendor in {"sqlite", "postgresql"}


def test_conversation_started_by_our_echo_gets_the_customer_later(connector):
    from dataclasses import replace

    echo = replace(inbound("out-1", author="brand", thread_id="dm-1"), direction="out")
    ingest_messages(connector, [echo])
    assert Conversation.objects.get(external_id="dm-1").contact is None
    ingest_messages(connector, [inbound("in-1", author="cust", thread_id="dm-1", minutes=1)])
    conversation = Conversation.objects.get(external_id="dm-1")
    assert conversation.contact.external_id == "cust"
    assert Message.objects.get(external_id="out-1").direction == "out"


@pytest.mark.django_db(transaction=True)
def test_concurrent_large_batches_store_each_message_once(make_connector):
    """Large chunks take the COPY path on PostgreSQL; overlapping ones must still split cleanly."""
    from tests.listening.helpers import run_concurrently

    connector = make_connector("webhook")
    batch = [inbound(f"big{i}", author=f"a{i % 9}", thread_id=f"t{i % 13}", minutes=i) for i in range(120)]
    results = run_concurrently(lambda: ingest_messages(connector, batch), 3)
    assert len(results) == 3
    assert sum(r.created for r in results) == 120
    assert sum(r.duplicates for r in results) == 240
    assert Message.objects.filter(connector=connector).count() == 120
    assert sum(Conversation.objects.values_list("message_count", flat=True)) == 120
