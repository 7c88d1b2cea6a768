"""The generic signed webhook, end to end through /hooks/<slug>/ and out to a callback server."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from listening.connectors.base import OutboundReply
from listening.connectors.webhook import sign
from listening.exceptions import NotSupported
from listening.models import Message
from tests.fakes.http import Reply
from tests.listening.helpers import run_concurrently, signed_webhook_post


def delivery(*ids: str, author: str = "cust-1", **extra) -> dict:
    return {
        "messages": [
            {"id": i, "text": f"message {i}", "author": {"id": author, "name": "Ada"}, **extra} for i in ids
        ]
    }


@pytest.fixture
def connector(make_connector):
    return make_connector("webhook", slug="site-chat", credentials={"signing_secret": "s3cret"})


def test_webhook_stores_signed_delivery(client, connector):
    response = signed_webhook_post(client, connector, delivery("w1", "w2", thread_id="chat-9"))
    assert response.status_code == 200
    assert response.json() == {"stored": 2, "duplicates": 0}
    stored = Message.objects.filter(connector=connector).order_by("external_id")
    assert [m.external_id for m in stored] == ["w1", "w2"]
    assert {m.conversation.external_id for m in stored} == {"chat-9"}
    assert stored[0].author.display_name == "Ada"


def test_webhook_accepts_a_single_message_object_and_connector_id(client, connector):
    one = {"id": "solo", "text": "hi", "author": {"id": "x"}, "sent_at": "2026-11-01T10:00:00Z"}
    body = json.dumps(one).encode()
    response = client.post(f"/hooks/{connector.pk}/", data=body, content_type="application/json",
                           headers=sign("s3cret", int(time.time()), body))
    assert response.status_code == 200
    assert Message.objects.get(external_id="solo").sent_at.isoformat() == "2026-11-01T10:00:00+00:00"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "signature_missing"),
        ({"X-CXM-Timestamp": "1", "X-CXM-Signature": "sha256=" + "0" * 64}, 403, "signature_invalid"),
    ],
)
def test_webhook_rejects_unsigned_or_forged(client, connector, headers, status, code):
    ts = str(int(time.time()))
    headers = {k: (ts if v == "1" else v) for k, v in headers.items()}
    response = client.post(f"/hooks/{connector.slug}/", data=json.dumps(delivery("f1")),
                           content_type="application/json", headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert not Message.objects.exists()
    connector.refresh_from_db()
    assert connector.deliveries_rejected == 1


def test_webhook_rejects_replayed_timestamp(client, connector):
    response = signed_webhook_post(client, connector, delivery("r1"), timestamp=int(time.time()) - 3600)
    assert response.status_code == 403
    assert response.json()["error"] == "replay_rejected"
    assert not Message.objects.exists()


def test_webhook_fails_closed_without_a_secret(client, make_connector):
    bare = make_connector("webhook", slug="no-secret")
    response = signed_webhook_post(client, bare, delivery("n1"), secret="")
    assert response.status_code == 403
    assert response.json()["error"] == "secret_not_configured"
    assert not Message.objects.exists()


def test_webhook_rejects_oversized_body(client, connector, settings):
    settings.WEBHOOK_MAX_BYTES = 2048
    payload = delivery("big")
    payload["messages"][0]["text"] = "x" * 5000
    response = signed_webhook_post(client, connector, payload)
    assert response.status_code == 413
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2]", "message object"),
        (json.dumps({"messages": [{"text": "no id", "author": {"id": "a"}}]}).encode(), "missing field messages[0].id"),
        (json.dumps({"messages": [{"id": "1", "text": "t", "author": {}}]}).encode(), "messages[0].author.id"),
        (json.dumps({"messages": [{"id": "1", "text": [5], "author": {"id": "a"}}]}).encode(), "text must be str"),
        (json.dumps({"id": "1", "text": "t", "author": {"id": "a"}, "sent_at": "yesterday"}).encode(), "ISO 8601"),
        (json.dumps({"id": "1", "text": "t", "author": {"id": "a"}, "channel": "<script>"}).encode(), "channel"),
        (json.dumps({"id": "x" * 400, "text": "t", "author": {"id": "a"}}).encode(), "message id"),
        (json.dumps({"id": "a\u0000b", "text": "t", "author": {"id": "a"}}).encode(), "NUL"),
        (json.dumps({"id": "ok", "text": "t", "author": {"id": "\ud800"}}).encode(), "invalid character"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"id": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_webhook_rejects_malformed_body_with_reason(client, connector, body, reason):
    response = signed_webhook_post(client, connector, body)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert not Message.objects.exists()


def test_webhook_unknown_or_paused_connector(client, connector):
    assert client.post("/hooks/nope/", data=b"{}", content_type="application/json").status_code == 404
    connector.enabled = False
    connector.save()
    response = signed_webhook_post(client, connector, delivery("p1"))
    assert response.status_code == 403
    assert response.json()["error"] == "connector_disabled"


def test_webhook_requires_post(client, connector):
    assert client.get(f"/hooks/{connector.slug}/").status_code == 405


def test_webhook_same_delivery_three_times_stores_once(client, connector):
    for _ in range(3):
        assert signed_webhook_post(client, connector, delivery("d1", "d2")).status_code == 200
    assert Message.objects.filter(connector=connector).count() == 2
    connector.refresh_from_db()
    assert (connector.messages_received, connector.duplicates_received) == (2, 4)


@pytest.mark.django_db(transaction=True)
def test_webhook_concurrent_duplicate_deliveries_store_once(make_connector):
    connector = make_connector("webhook", slug="race", credentials={"signing_secret": "s3cret"})
    payload = delivery(*[f"c{i}" for i in range(20)])
    statuses = run_concurrently(lambda: signed_webhook_post(Client(), connector, payload).status_code, 4)
    assert statuses == [200] * 4
    assert Message.objects.filter(connector=connector).count() == 20
    connector.refresh_from_db()
    assert connector.messages_received == 20
    assert connector.duplicates_received == 60


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.text(min_size=1, max_size=300),
        "text": json_values,
        "author": json_values | st.fixed_dictionaries({"id": json_values}, optional={"followers": json_values}),
        "sent_at": json_values,
        "channel": json_values,
        "in_reply_to": json_values,
        "thread_id": json_values,
    },
)


@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=json_values
    | message_like
    | st.fixed_dictionaries({"messages": st.lists(message_like, max_size=3) | json_values})
)
def test_webhook_hostile_bodies_never_500(client, connector, body):
    response = signed_webhook_post(client, connector, json.dumps(body).encode())
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["reason"]


def test_webhook_send_posts_signed_reply_to_callback(fake_provider, make_connector):
    @fake_provider.route("POST", "/replies")
    def receive(request):
        return Reply(201, {"id": "crm-42"})

    connector = make_connector("webhook", config={"callback_url": fake_provider.url + "/replies"},
                               credentials={"signing_secret": "s3cret"})
    external_id = connector.get_backend().send(
        OutboundReply(text="Sorry about that!", channel="web", recipient_id="cust-1", thread_id="chat-9",
                      in_reply_to="w1", idempotency_key="reply-1")
    )
    assert external_id == "crm-42"
    [call] = fake_provider.calls("/replies")
    assert call.json()["text"] == "Sorry about that!" and call.headers["idempotency-key"] == "reply-1"
    expected = sign("s3cret", int(call.headers["x-cxm-timestamp"]), call.body)["X-CXM-Signature"]
    assert call.headers["x-cxm-signature"] == expected


def test_webhook_send_without_callback_is_not_supported(make_connector):
    connector = make_connector("webhook", credentials={"signing_secret": "s3cret"})
    with pytest.raises(NotSupported):
        connector.get_backend().send(OutboundReply(text="x", channel="web", recipient_id="a"))
