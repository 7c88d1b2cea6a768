"""What the resources do: idempotent replies (Stripe's rule), keyset pagination and filters,
customers' update and merge, corrections, alerts, connectors' pause and resume."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from learning.models import Correction
from listening.models import Connector, Customer
from responses.models import Reply
from tests.api.conftest import Api, token_for
from tests.responses.conftest import classify, open_case, store_message

pytestmark = pytest.mark.django_db


def test_reply_replay_same_body_same_result_one_row(agent_a, connector_a):
    case = open_case(connector_a)
    api = Api(token_for(agent_a))
    first = api.post(f"/cases/{case.pk}/replies", {"text": "On its way!"}, headers={"Idempotency-Key": "k-1"})
    again = api.post(f"/cases/{case.pk}/replies", {"text": "On its way!"}, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Reply.objects.count() == 1


def test_reply_replay_different_body_is_422(agent_a, connector_a):
    case = open_case(connector_a)
    api = Api(token_for(agent_a))
    assert api.post(f"/cases/{case.pk}/replies", {"text": "One"}, headers={"Idempotency-Key": "k-2"}).status_code == 201
    changed = api.post(f"/cases/{case.pk}/replies", {"text": "Two"}, headers={"Idempotency-Key": "k-2"})
    assert changed.status_code == 422
    assert changed.json()["reason"] == "idempotency_key_reused"
    assert list(Reply.objects.values_list("text", flat=True)) == ["One"]


def test_reply_keys_are_per_user(agent_a, agent_a2, connector_a):
    case = open_case(connector_a)
    for user in (agent_a, agent_a2):
        response = Api(token_for(user)).post(f"/cases/{case.pk}/replies", {"text": "Hi"},
                                             headers={"Idempotency-Key": "same"})
        assert response.status_code == 201
    assert Reply.objects.count() == 2


def test_reply_without_key_sends_each_time(agent_a, connector_a):
    case = open_case(connector_a)
    api = Api(token_for(agent_a))
    api.post(f"/cases/{case.pk}/replies", {"text": "Hi"})
    api.post(f"/cases/{case.pk}/replies", {"text": "Hi"})
    assert Reply.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_reply_concurrent_same_key_stores_once(agent_a, connector_a):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers: the race needs PostgreSQL")
    case = open_case(connector_a)
    secret = token_for(agent_a)
    codes = []

    def send():
        codes.append(Api(secret).post(f"/cases/{case.pk}/replies", {"text": "Race"},
                                      headers={"Idempotency-Key": "race"}).status_code)
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [201] * 4
    assert Reply.objects.count() == 1


def test_cases_keyset_pagination_walks_every_case_once(agent_a, connector_a):
    ids = {open_case(connector_a, f"m{i}", author=f"c{i}").pk for i in range(7)}
    api = Api(token_for(agent_a))
    seen, url, pages = [], "/cases", 0
    params = {"page_size": "3"}
    while url:
        response = api.get(url, params)
        body = response.json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"].split("/api/v1", 1)[1] if body["next"] else None
        params = None
        pages += 1
    assert pages == 3
    assert seen == sorted(ids, reverse=True)


def test_cases_filters(agent_a, connector_a):
    sad = open_case(connector_a, "bad", author="x1", sentiment="negative")
    happy = open_case(connector_a, "great", author="x2", sentiment="positive", lane="praise")
    api = Api(token_for(agent_a))
    ids = lambda params: [r["id"] for r in api.get("/cases", params).json()["results"]]  # noqa: E731
    assert ids({"sentiment": "negative"}) == [sad.pk]
    assert ids({"sentiment": "positive"}) == [happy.pk]
    assert ids({"lane": "praise"}) == [happy.pk]
    api.patch(f"/cases/{sad.pk}", {"tags": ["refund"]})
    assert ids({"tag": "refund"}) == [sad.pk]
    assert ids({"opened_after": "2199-01-01T00:00:00Z"}) == []


def test_messages_filters_and_classification(agent_a, connector_a):
    message = store_message(connector_a, "meh")
    classify(message, sentiment="neutral", lane="ambivalence")
    other = store_message(connector_a, "angry")
    classify(other, sentiment="negative")
    api = Api(token_for(agent_a))
    rows = api.get("/messages", {"sentiment": "neutral"}).json()["results"]
    assert [r["id"] for r in rows] == [message.pk]
    assert rows[0]["classification"]["lane"] == "ambivalence"
    history = api.get(f"/messages/{message.pk}/classifications").json()
    assert history[0]["sentiment"] == "neutral"


def test_correction_recorded_through_the_case(agent_a, connector_a):
    case = open_case(connector_a)
    api = Api(token_for(agent_a))
    message = case.last_message_id
    response = api.post("/corrections", {"case": case.pk, "message": message, "field": "sentiment",
                                         "value": "neutral"})
    assert response.status_code == 201, response.content
    correction = Correction.objects.get()
    assert (correction.field, correction.value, correction.user) == ("sentiment", "neutral", agent_a)
    assert api.get("/corrections").json()["results"][0]["id"] == correction.pk
    # A scope for cases is not one for learning.
    assert Api(token_for(agent_a, ["cases:write"])).post("/corrections", {}).status_code == 403


def test_customers_update_and_merge(agent_a, supervisor_a, connector_a):
    one, two = (open_case(connector_a, "a", author=p, email=f"{p}@example.com", email_verified=True)
                .conversation.contact.customer for p in ("p1", "p2"))
    agent = Api(token_for(agent_a))
    updated = agent.patch(f"/customers/{one.pk}", {"vip": True, "display_name": "Pat"})
    assert updated.status_code == 200 and updated.json()["vip"] is True
    assert agent.post(f"/customers/{one.pk}/merge", {"others": [two.pk]}).status_code == 403
    merged = Api(token_for(supervisor_a)).post(f"/customers/{one.pk}/merge", {"others": [two.pk]})
    assert merged.status_code == 200
    assert not Customer.objects.filter(pk=two.pk).exists()
    assert Customer.objects.get(pk=one.pk).contacts.count() == 2


def test_admin_pause_resume_never_shows_secrets(admin_user, connector_a):
    api = Api(token_for(admin_user))
    listing = api.get("/admin/connectors").content.decode()
    assert "s3cret" not in listing and "credentials" not in listing and "config" not in listing
    assert api.post(f"/admin/connectors/{connector_a.pk}/pause").json()["enabled"] is False
    assert Connector.objects.get(pk=connector_a.pk).enabled is False
    assert api.post(f"/admin/connectors/{connector_a.pk}/resume").json()["enabled"] is True
    assert connector_a.audit.filter(action="paused").exists()


def test_messages_list_rows_match_the_serializer(agent_a, connector_a):
    """The list's fast rows (responses.api.messages.message_rows) are MessageSerializer's output."""
    from listening.models import Message
    from responses.api.messages import _current
    from responses.api.serializers import MessageSerializer

    classified = store_message(connector_a, "Where is my refund? ünïcode")
    Message.objects.filter(pk=classified.pk).update(url="https://example.com/p/1")
    classify(classified, sentiment="negative", lane="issue", intent="refund_request")
    store_message(connector_a, "not classified yet", author="someone-else")
    api = Api(token_for(agent_a))
    listed = api.get("/messages", {"page_size": "10"}).json()["results"]
    rows = Message.objects.filter(pk__in=[r["id"] for r in listed]).prefetch_related(_current()).order_by("-id")
    assert listed == MessageSerializer(rows, many=True).data
    assert listed[1]["classification"]["sentiment"] == "negative" and listed[0]["classification"] is None
    assert listed[1]["url"] == "https://example.com/p/1"


def test_messages_keyset_pagination_walks_every_message_once(agent_a, connector_a):
    ids = {store_message(connector_a, f"m{i}", author=f"c{i}").pk for i in range(7)}
    api = Api(token_for(agent_a))
    seen, url, params = [], "/messages", {"page_size": "3"}
    while url:
        body = api.get(url, params).json()
        seen += [row["id"] for row in body["results"]]
        url, params = (body["next"].split("/api/v1", 1)[1] if body["next"] else None), None
    assert seen == sorted(ids, reverse=True)
