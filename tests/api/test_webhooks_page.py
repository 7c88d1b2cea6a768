"""The console's webhooks page, for admins (access per role is in the console isolation matrix,
tests/responses/test_isolation_http.py): the secret is on the answer that made the webhook and
nowhere after; its events are edited; the log shows the receiver's answers; a webhook switched
off after failures says so and why; switching it on and "Send again" deliver to a real local
receiver (tests/fakes/http.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from responses import outbound
from responses.models import WebhookDelivery, WebhookSubscription
from tests.fakes.http import Reply
from tests.responses.conftest import open_case

pytestmark = pytest.mark.django_db(transaction=True)  # deliveries leave on commit, as in production


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_webhooks_page_shows_the_secret_once(admin_client, fake_provider):
    made = admin_client.post("/console/webhooks/", {"name": "CRM sync", "url": f"{fake_provider.url}/hook",
                                                    "events": ["case.created", "case.resolved"]})
    assert made.status_code == 201
    row = WebhookSubscription.objects.get(name="CRM sync")
    secret = outbound.crypto.decrypt_text(row.secret_encrypted)
    page = made.content.decode()
    assert secret in page and "will not show it again" in page
    assert "no-store" in made["Cache-Control"]
    assert row.events == ["case.created", "case.resolved"]
    later = admin_client.get("/console/webhooks/").content.decode()
    assert "CRM sync" in later and secret not in later
    assert "A case was opened · A case was resolved or closed" in later  # people read labels, not slugs
    assert secret not in admin_client.get(f"/console/webhooks/{row.pk}/").content.decode()


def test_webhooks_page_refuses_bad_input_with_a_reason(admin_client, settings):
    local = "http://127.0.0.1:9/hook"
    for private_ok, data, words in (
        (False, {"name": "x", "url": local, "events": ["case.created"]}, "cannot receive webhooks"),
        (True, {"name": "x", "url": "ftp://127.0.0.1/", "events": ["case.created"]}, "cannot receive webhooks"),
        (True, {"name": "x", "url": local, "events": []}, "choose event types"),
        (True, {"name": "x", "url": local, "events": ["case.exploded"]}, "choose event types"),
        (True, {"name": "", "url": local, "events": ["case.created"]}, "name the subscription"),
    ):
        settings.ALLOW_PRIVATE_URLS = private_ok
        response = admin_client.post("/console/webhooks/", data)
        assert response.status_code == 400, data
        assert words in response.content.decode(), data
    assert not WebhookSubscription.objects.exists()


def test_webhooks_page_edits_events_and_refuses_none(admin_client, admin_user, fake_provider):
    row, _ = outbound.subscribe(admin_user, "CRM", f"{fake_provider.url}/hook", ["case.created"])
    changed = admin_client.post(f"/console/webhooks/{row.pk}/", {"events_form": "1", "name": "CRM",
                                                                  "url": row.url,
                                                                  "events": ["case.created", "reply.failed"]})
    assert changed.status_code == 302
    row.refresh_from_db()
    assert row.events == ["case.created", "reply.failed"]
    refused = admin_client.post(f"/console/webhooks/{row.pk}/", {"events_form": "1", "name": "CRM", "url": row.url})
    assert refused.status_code == 400 and "choose event types" in refused.content.decode()
    row.refresh_from_db()
    assert row.events == ["case.created", "reply.failed"]


def test_webhooks_page_log_and_switched_off_state(admin_client, admin_user, connector_a, fake_provider, settings):
    settings.CXM_WEBHOOK_DISABLE_AFTER = 2
    answer = {"status": 500}
    fake_provider.route("POST", "/hook")(lambda r: Reply(answer["status"]))
    row, _ = outbound.subscribe(admin_user, "Flaky CRM", f"{fake_provider.url}/hook", ["case.created"])
    open_case(connector_a, "first", author="c1")
    open_case(connector_a, "second", author="c2")
    row.refresh_from_db()
    assert not row.enabled and row.disabled_reason.startswith("switched off after 2 failed deliveries")
    listing = admin_client.get("/console/webhooks/").content.decode()
    assert "Switched off after failures" in listing and "the receiver answered 500" in listing
    page = admin_client.get(f"/console/webhooks/{row.pk}/").content.decode()
    assert page.count('class="response-status">500<') == 2
    assert "Switch on and send what waits" in page

    # The receiver is fixed; switching on forgives the failures and sends what waits.
    answer["status"] = 204
    assert admin_client.post(f"/console/webhooks/{row.pk}/enabled/", {"enabled": "1"}).status_code == 302
    row.refresh_from_db()
    assert row.enabled and row.consecutive_failures == 0 and row.disabled_reason == ""
    assert set(WebhookDelivery.objects.values_list("status", "response_status")) == {("delivered", 204)}
    delivered = admin_client.get(f"/console/webhooks/{row.pk}/?status=delivered").content.decode()
    assert delivered.count('class="response-status">204<') == 2


def test_webhooks_page_sends_a_delivery_again(admin_client, admin_user, connector_a, fake_provider):
    fake_provider.route("POST", "/hook")(lambda r: Reply(200, {"ok": True}))
    row, _ = outbound.subscribe(admin_user, "CRM", f"{fake_provider.url}/hook", ["case.created"])
    open_case(connector_a, "first")
    delivery = WebhookDelivery.objects.get()
    assert len(fake_provider.calls("/hook")) == 1
    again = admin_client.post(f"/console/webhooks/deliveries/{delivery.pk}/replay/",
                              HTTP_ACCEPT="application/json", content_type="application/json", data={})
    assert again.status_code == 200 and again.json()["delivery"]["id"] == delivery.pk
    calls = fake_provider.calls("/hook")
    assert len(calls) == 2
    assert calls[0].headers["x-cxm-delivery"] == calls[1].headers["x-cxm-delivery"] == str(delivery.event_id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


def test_webhooks_page_delete_removes_it_and_its_log(admin_client, admin_user, fake_provider):
    row, _ = outbound.subscribe(admin_user, "Old", f"{fake_provider.url}/hook", ["case.created"])
    assert admin_client.post(f"/console/webhooks/{row.pk}/delete/").status_code == 302
    assert not WebhookSubscription.objects.exists()
    assert admin_client.get(f"/console/webhooks/{row.pk}/", HTTP_ACCEPT="application/json").status_code == 404
