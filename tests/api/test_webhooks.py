"""Outbound webhooks against a real local receiver (tests/fakes/http.py): signed, unique ids,
retried with backoff, in order per conversation, a hanging or failing receiver holding up no one,
switched off after failures with a console alert, replayable, private targets refused."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from insight.models import Alert
from responses import cases as case_actions, outbound
from responses.models import ConsoleEvent, WebhookDelivery, WebhookSubscription
from tests.api.conftest import Api, token_for
from tests.fakes.http import Reply
from tests.responses.conftest import open_case, store_message

# Real commits: events leave on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def _subscribe(admin_user, url: str, events: list[str]) -> tuple[int, str]:
    response = Api(token_for(admin_user)).post("/admin/webhooks", {"name": "crm", "url": url, "events": events})
    assert response.status_code == 201, response.content
    body = response.json()
    return body["id"], body["secret"]


def _due_now() -> None:
    """Time travel for retries: everything pending is due."""
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_webhook_signed_with_unique_id(admin_user, connector_a, fake_provider):
    fake_provider.route("POST", "/hook")(lambda r: Reply(200, {"ok": True}))
    sub_id, secret = _subscribe(admin_user, f"{fake_provider.url}/hook", ["message.received"])
    row = WebhookSubscription.objects.get(pk=sub_id)
    assert secret.startswith("whsec_") and secret not in row.secret_encrypted
    assert "secret" not in Api(token_for(admin_user)).get(f"/admin/webhooks/{sub_id}").json()
    message = store_message(connector_a, "Where is my parcel?")
    store_message(connector_a, "Hello?", author="someone-else")
    calls = fake_provider.calls("/hook")
    assert len(calls) == 2
    first = calls[0]
    assert outbound.verify(secret, first.headers["x-cxm-signature"], first.body)
    assert not outbound.verify(secret, first.headers["x-cxm-signature"], first.body + b" ")
    assert not outbound.verify("whsec_wrong", first.headers["x-cxm-signature"], first.body)
    body = first.json()
    assert body["type"] == "message.received" and body["data"]["message"]["id"] == message.pk
    assert first.headers["x-cxm-event"] == "message.received"
    ids = {c.headers["x-cxm-delivery"] for c in calls}
    assert len(ids) == 2 and all(uuid.UUID(i) for i in ids)
    assert body["id"] == first.headers["x-cxm-delivery"]
    assert set(WebhookDelivery.objects.values_list("status", "response_status")) == {("delivered", 200)}


def test_webhook_signature_rejects_old_timestamps():
    body = b'{"x":1}'
    header = outbound.signature("s", 1_000_000, body)
    assert outbound.verify("s", header, body, now=1_000_100)
    assert not outbound.verify("s", header, body, now=1_000_000 + 3600)
    assert not outbound.verify("s", "garbage", body)


def test_webhook_case_events(admin_user, agent_a, connector_a, fake_provider):
    fake_provider.route("POST", "/hook")(lambda r: Reply(204))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["case.created", "case.resolved"])
    case = open_case(connector_a)
    case_actions.set_status(agent_a, case.pk, "resolved")
    types = [c.json()["type"] for c in fake_provider.calls("/hook")]
    assert types == ["case.created", "case.resolved"]
    assert fake_provider.calls("/hook")[1].json()["data"]["case"]["id"] == case.pk


def test_webhook_alert_raised(admin_user, team_a, fake_provider):
    fake_provider.route("POST", "/hook")(lambda r: Reply(200))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["alert.raised"])
    now = timezone.now()
    Alert.objects.create(team=team_a, kind="volume", dimension="team", key="t", label="Spike", window_start=now,
                         window_end=now, observed=9, expected=1, score=5)
    assert [c.json()["data"]["alert"]["label"] for c in fake_provider.calls("/hook")] == ["Spike"]


def test_webhook_hanging_and_failing_receivers_hold_up_no_one(admin_user, connector_a, fake_provider, settings):
    settings.CXM_WEBHOOK_TIMEOUT = 1
    release = threading.Event()

    def hang(r):
        release.wait(10)
        return Reply(200)

    fake_provider.route("POST", "/hang")(hang)
    fake_provider.route("POST", "/fail")(lambda r: Reply(500, "boom"))
    fake_provider.route("POST", "/redirect")(lambda r: Reply(302, headers={"Location": "http://169.254.169.254/"}))
    fake_provider.route("POST", "/ok")(lambda r: Reply(200))
    subs = {name: _subscribe(admin_user, f"{fake_provider.url}/{name}", ["message.received"])
            for name in ("hang", "fail", "redirect", "ok")}
    try:
        store_message(connector_a, "Anyone there?")
    finally:
        release.set()
    assert len(fake_provider.calls("/ok")) == 1
    rows = {d.subscription_id: d for d in WebhookDelivery.objects.all()}
    assert rows[subs["ok"][0]].status == "delivered"
    for name, expected in (("hang", "no answer within 1 s"), ("fail", "answered 500"), ("redirect", "answered 302")):
        row = rows[subs[name][0]]
        assert row.status == "pending" and expected in row.last_error, (name, row.last_error)
        assert row.next_attempt_at > timezone.now()  # backing off
        assert subs[name][1] not in row.last_error
    # The redirect was not followed.
    assert all("169.254" not in r.headers.get("host", "") for r in fake_provider.requests)


def test_webhook_retried_until_delivered_in_order(admin_user, connector_a, fake_provider):
    answers = iter([500, 500])
    fake_provider.route("POST", "/hook")(lambda r: Reply(next(answers, 200)))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["message.received"])
    first = store_message(connector_a, "one", thread="t-order")
    second = store_message(connector_a, "two", thread="t-order")
    # The second waits behind the first of its conversation: it was not sent at all yet.
    sent = [c.json()["data"]["message"]["id"] for c in fake_provider.calls("/hook")]
    assert sent == [first.pk]
    _due_now()
    outbound.send_due()  # first fails again (second 500); second still waits
    _due_now()
    outbound.send_due()  # first delivered, then second follows it
    sent = [c.json()["data"]["message"]["id"] for c in fake_provider.calls("/hook")]
    assert sent == [first.pk, first.pk, first.pk, second.pk]
    first_row = WebhookDelivery.objects.get(payload__data__message__id=first.pk)
    assert (first_row.status, first_row.attempts) == ("delivered", 3)
    assert WebhookDelivery.objects.get(payload__data__message__id=second.pk).status == "delivered"


def test_webhook_gives_up_after_a_day(admin_user, connector_a, fake_provider):
    fake_provider.route("POST", "/hook")(lambda r: Reply(503))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["message.received"])
    store_message(connector_a, "x")
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(days=1, seconds=1))
    _due_now()
    outbound.send_due()
    assert WebhookDelivery.objects.get().status == "failed"


def test_webhook_disabled_after_failures_with_console_alert(admin_user, connector_a, fake_provider, settings):
    settings.CXM_WEBHOOK_DISABLE_AFTER = 2
    fake_provider.route("POST", "/hook")(lambda r: Reply(500))
    sub_id, _ = _subscribe(admin_user, f"{fake_provider.url}/hook", ["message.received"])
    store_message(connector_a, "a", author="p1")
    store_message(connector_a, "b", author="p2")
    row = WebhookSubscription.objects.get(pk=sub_id)
    assert not row.enabled and "2 failed deliveries" in row.disabled_reason
    alert = ConsoleEvent.objects.get(type="webhook.disabled")
    assert alert.user_id == admin_user.pk and alert.payload["subscription"]["id"] == sub_id
    store_message(connector_a, "c", author="p3")
    assert len(fake_provider.calls("/hook")) == 2  # nothing more is sent to it


def test_webhook_replay_by_hand(admin_user, connector_a, fake_provider):
    fake_provider.route("POST", "/hook")(lambda r: Reply(200))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["message.received"])
    store_message(connector_a, "x")
    delivery = WebhookDelivery.objects.get()
    api = Api(token_for(admin_user))
    log = api.get("/admin/webhook-deliveries").json()["results"]
    assert [(d["id"], d["status"], d["response_status"]) for d in log] == [(delivery.pk, "delivered", 200)]
    assert api.post(f"/admin/webhook-deliveries/{delivery.pk}/replay").status_code == 200
    calls = fake_provider.calls("/hook")
    assert len(calls) == 2 and calls[0].headers["x-cxm-delivery"] == calls[1].headers["x-cxm-delivery"]
    assert json.loads(calls[0].body)["data"] == json.loads(calls[1].body)["data"]


def test_webhook_private_targets_refused_in_production(admin_user, settings):
    settings.ALLOW_PRIVATE_URLS = False
    api = Api(token_for(admin_user))
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://10.0.0.5/", "ftp://example.com/"):
        response = api.post("/admin/webhooks", {"name": "x", "url": url, "events": ["case.created"]})
        assert response.status_code == 400, url
        assert response.json()["reason"] == "invalid"
    assert not WebhookSubscription.objects.exists()


def test_webhook_routes_are_for_admins(agent_a, supervisor_a):
    for user in (agent_a, supervisor_a):
        api = Api(token_for(user))
        assert api.get("/admin/webhooks").status_code == 403
        assert api.post("/admin/webhooks", {"name": "x", "url": "http://example.com", "events": ["case.created"]}
                        ).status_code == 403
    assert not WebhookSubscription.objects.exists()


def test_webhook_reply_delivered_and_connector_failing(admin_user, agent_a, connector_a, fake_provider):
    fake_provider.route("POST", "/replies")(lambda r: Reply(200, {"id": "ext-1"}))
    fake_provider.route("POST", "/hook")(lambda r: Reply(200))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["reply.delivered", "reply.failed", "connector.failing"])
    case = open_case(connector_a)
    sent = Api(token_for(agent_a)).post(f"/cases/{case.pk}/replies", {"text": "On its way"})
    assert sent.status_code == 201
    from listening.signals import connector_failing

    connector_failing.send(sender=None, connector_id=connector_a.pk, reason="401 from the provider")
    events = [c.json() for c in fake_provider.calls("/hook")]
    assert [e["type"] for e in events] == ["reply.delivered", "connector.failing"]
    assert events[0]["data"]["reply"]["text"] == "On its way"
    assert events[1]["data"] == {"connector": {"id": connector_a.pk}, "reason": "401 from the provider"}


def test_webhook_message_classified_carries_the_classification(admin_user, connector_a, fake_provider):
    from learning.signals import messages_classified
    from tests.responses.conftest import classify

    fake_provider.route("POST", "/hook")(lambda r: Reply(200))
    _subscribe(admin_user, f"{fake_provider.url}/hook", ["message.classified"])
    message = store_message(connector_a, "Love the new app")
    classify(message, sentiment="positive", lane="praise", intent="praise")
    messages_classified.send(sender=None, message_ids=[message.pk], classification_ids=[])
    (call,) = fake_provider.calls("/hook")
    data = call.json()["data"]
    assert data["message"]["id"] == message.pk
    assert (data["classification"]["sentiment"], data["classification"]["lane"]) == ("positive", "praise")
