"""Merge two conversations of one customer, and undo it exactly; the UI for merge_customers."""

from __future__ import annotations

import json

from django.urls import reverse

from listening.models import Contact, Customer
from responses.merge import conversation_ids
from responses.models import Case, CaseActivity, CaseStatus, MergeRecord
from tests.responses.conftest import open_case

JSON = "application/json"


def post(client, url, data):
    return client.post(url, data=json.dumps(data), content_type=JSON, HTTP_ACCEPT=JSON)


def merge_url(case):
    return reverse("console:case-merge", kwargs={"case_id": case.pk})


def two_threads(connector, author="cust-m"):
    first = open_case(connector, "My parcel is late", author=author, thread="t-one")
    second = open_case(connector, "Also: the invoice is wrong", author=author, thread="t-two")
    return first, second


def test_merge_two_conversations_of_one_customer_and_undo_restores(client, agent_a, connector_a):
    target, source = two_threads(connector_a)
    before = Case.objects.filter(pk=source.pk).values("status", "waiting_since", "sla_state", "sla_due_at",
                                                      "awaiting_assignment", "resolved_at").get()
    client.force_login(agent_a)
    response = post(client, merge_url(target), {"source": f"#{source.pk}"})
    assert response.status_code == 200, response.content
    data = response.json()["merge"]
    source.refresh_from_db()
    assert source.status == CaseStatus.CLOSED
    assert set(conversation_ids(target)) == {target.conversation_id, source.conversation_id}
    assert CaseActivity.objects.filter(case=target, kind="merged").exists()
    assert CaseActivity.objects.filter(case=source, kind="merged").exists()
    page = client.get(reverse("console:case", kwargs={"case_id": target.pk})).content.decode()
    assert "the invoice is wrong" in page  # the source's messages show on the target's timeline

    response = post(client, data["undo_url"], {})
    assert response.status_code == 200, response.content
    after = Case.objects.filter(pk=source.pk).values(*before.keys()).get()
    assert after == before
    assert conversation_ids(target) == [target.conversation_id]
    assert MergeRecord.objects.get(pk=data["id"]).undone_at is not None
    assert CaseActivity.objects.filter(case=source, kind="unmerged").exists()
    assert post(client, data["undo_url"], {}).status_code == 409  # undone once


def test_merge_of_two_customer_records_needs_confirmation_and_undo_splits_them(client, agent_a, connector_a):
    target = open_case(connector_a, "Order 1 missing", author="cust-email", name="Dana Doe")
    source = open_case(connector_a, "It's Dana again from my phone", author="cust-phone", name="D. Doe")
    kept = Customer.objects.create(display_name="Dana Doe")
    gone = Customer.objects.create(display_name="D. Doe", email="dana@example.com", vip=True)
    Contact.objects.filter(pk=target.conversation.contact_id).update(customer=kept)
    Contact.objects.filter(pk=source.conversation.contact_id).update(customer=gone)
    gone_before = Customer.objects.filter(pk=gone.pk).values("display_name", "email", "phone", "vip").get()
    kept_before = Customer.objects.filter(pk=kept.pk).values("display_name", "email", "phone", "vip").get()
    client.force_login(agent_a)

    response = post(client, merge_url(target), {"source": source.pk})
    assert response.status_code == 400
    assert "same person" in response.json()["reason"]
    assert Customer.objects.filter(pk=gone.pk).exists()

    response = post(client, merge_url(target), {"source": source.pk, "same_person": True})
    assert response.status_code == 200, response.content
    assert response.json()["merge"]["customers_merged"] is True
    assert not Customer.objects.filter(pk=gone.pk).exists()
    assert Contact.objects.get(pk=source.conversation.contact_id).customer_id == kept.pk
    assert Customer.objects.get(pk=kept.pk).email == "dana@example.com"  # blanks filled by merge_customers

    response = post(client, response.json()["merge"]["undo_url"], {})
    assert response.status_code == 200, response.content
    assert Customer.objects.filter(pk=gone.pk).values("display_name", "email", "phone", "vip").get() == gone_before
    assert Customer.objects.filter(pk=kept.pk).values("display_name", "email", "phone", "vip").get() == kept_before
    assert Contact.objects.get(pk=source.conversation.contact_id).customer_id == gone.pk


def test_merge_across_teams_the_user_cannot_see_is_404_with_a_reason(client, agent_a, agent_b, connector_a,
                                                                     connector_b):
    mine = open_case(connector_a, author="cust-x")
    theirs = open_case(connector_b, author="cust-x")
    client.force_login(agent_a)
    response = post(client, merge_url(mine), {"source": theirs.pk, "same_person": True})
    assert response.status_code == 404 and response.json()["reason"]
    client.force_login(agent_b)
    response = post(client, merge_url(theirs), {"source": mine.pk, "same_person": True})
    assert response.status_code == 404
    assert MergeRecord.objects.count() == 0
    assert Case.objects.get(pk=theirs.pk).status != CaseStatus.CLOSED


def test_merge_bad_input_gets_4xx_with_a_reason(client, agent_a, agent_b, connector_a):
    target, source = two_threads(connector_a, author="cust-bad")
    client.force_login(agent_a)
    for body, status in (({"source": target.pk}, 400), ({"source": "abc"}, 404), ({}, 404),
                         ({"source": 2**70}, 404), ({"source": ["1"]}, 404)):
        response = post(client, merge_url(target), body)
        assert response.status_code == status, (body, response.status_code)
        assert response.json()["reason"]
    assert post(client, merge_url(target), {"source": source.pk}).status_code == 200
    assert post(client, merge_url(target), {"source": source.pk}).status_code == 409  # already merged
    third = open_case(connector_a, "Third thread", author="cust-bad", thread="t-three")
    assert post(client, merge_url(source), {"source": third.pk}).status_code == 400  # source is merged away
    record = MergeRecord.objects.get()
    client.force_login(agent_b)
    response = post(client, reverse("console:merge-undo", kwargs={"merge_id": record.pk}), {})
    assert response.status_code == 404
    assert MergeRecord.objects.get().undone_at is None


def test_the_customer_writing_again_on_a_merged_thread_lands_on_the_merge_target(client, agent_a, connector_a):
    from listening.models import Message
    from responses.routing import route_messages
    from tests.responses.conftest import classify, store_message

    target, source = two_threads(connector_a)
    client.force_login(agent_a)
    assert post(client, merge_url(target), {"source": f"#{source.pk}"}).status_code == 200
    Case.objects.filter(pk=target.pk).update(status=CaseStatus.RESOLVED)

    later = store_message(connector_a, "Still no corrected invoice", author="cust-m", thread="t-two")
    same_batch = store_message(connector_a, "And the parcel?", author="cust-m", thread="t-one")
    for message in (later, same_batch):
        classify(message)
    assert route_messages([later.pk, same_batch.pk]) == [target.pk, target.pk]

    source.refresh_from_db()
    target.refresh_from_db()
    assert source.status == CaseStatus.CLOSED  # not reopened beside the case that holds its thread
    assert target.status == CaseStatus.OPEN and target.last_message_id in (later.pk, same_batch.pk)
    assert target.conversation_id != later.conversation_id  # the target keeps its own thread
    assert Message.objects.get(pk=later.pk).conversation_id == source.conversation_id
    page = client.get(reverse("console:case", kwargs={"case_id": target.pk})).content.decode()
    assert "Still no corrected invoice" in page

    post(client, reverse("console:merge-undo", kwargs={"merge_id": MergeRecord.objects.get().pk}), {})
    again = store_message(connector_a, "Hello? Invoice?", author="cust-m", thread="t-two")
    classify(again)
    route_messages([again.pk])
    source.refresh_from_db()
    assert source.status == CaseStatus.OPEN  # undone: its thread is its own case again
