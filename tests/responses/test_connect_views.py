"""Connecting and running a source from the product's own pages: the form each connector class
generates, write-only credentials, secrets shown once, test connection, and refusals with reasons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from listening.connectors import connector_kinds, get_connector_class
from listening.models import AuditEvent, Connector, Message
from tests.fakes.http import Reply
from tests.listening.helpers import signed_webhook_post
from tests.responses.test_views import post_json

FEED = (Path(__file__).parents[1] / "fixtures" / "rss" / "app_reviews.rss.xml").read_bytes()
SECRET = "hunter2-do-not-leak-this"


def detail(connector) -> str:
    return reverse("console:connector", kwargs={"connector_id": connector.pk})


def webhook_form(**fields) -> dict:
    return {"name": "Site chat", "slug": "site-chat", "cfg_channel": "web", "cfg_tolerance_seconds": "300",
            "cfg_callback_url": "", **fields}


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return admin_user


def test_the_kind_picker_offers_every_registered_source(client, admin):
    page = client.get(reverse("console:connect")).content.decode()
    for kind in connector_kinds():
        assert reverse("console:connect-new", kwargs={"kind": kind}) in page
        assert get_connector_class(kind).label in page


def test_each_kinds_form_has_a_field_per_setting_and_a_masked_box_per_credential(client, admin):
    for kind in connector_kinds():
        cls = get_connector_class(kind)
        page = client.get(reverse("console:connect-new", kwargs={"kind": kind})).content.decode()
        for key in cls.config_defaults:
            assert f'name="cfg_{key}"' in page, (kind, key)
        for name in cls.credential_fields:
            box = re.search(rf'<(input|textarea)[^>]*name="cred_{name}"[^>]*>', page)
            assert box, (kind, name)
            assert box.group(1) == "textarea" or 'type="password"' in box.group(0), (kind, name)


def test_connecting_a_webhook_source_shows_its_generated_secret_once_and_it_works(client, admin):
    response = client.post(reverse("console:connect-new", kwargs={"kind": "webhook"}), webhook_form())
    connector = Connector.objects.get(slug="site-chat")
    assert response.status_code == 302 and response["Location"] == detail(connector)
    secret = connector.credentials["signing_secret"]
    assert len(secret) >= 40

    first = client.get(detail(connector)).content.decode()
    assert secret in first and "/hooks/site-chat/" in first
    assert secret not in client.get(detail(connector)).content.decode()

    client.logout()
    delivery = {"id": "m1", "text": "is anyone there?", "author": {"id": "c1"}}
    assert signed_webhook_post(client, connector, delivery, secret=secret).status_code == 200
    assert Message.objects.filter(connector=connector).count() == 1
    event = AuditEvent.objects.get(action="created")
    assert event.changes["credentials"] == {"added": ["signing_secret"]}
    assert secret not in str(event.changes)


def test_saved_credentials_never_reach_the_browser_and_blank_keeps_them(client, admin, make_connector):
    connector = make_connector("webhook", slug="site", credentials={"signing_secret": SECRET})
    assert SECRET not in client.get(detail(connector)).content.decode()
    assert SECRET not in client.get(detail(connector), HTTP_ACCEPT="application/json").content.decode()

    client.post(detail(connector), webhook_form(slug="site", cred_signing_secret=""))
    assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": SECRET}

    client.post(detail(connector), webhook_form(slug="site", cred_signing_secret="  new-secret  "))
    assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": "new-secret"}
    assert "new-secret" not in client.get(detail(connector)).content.decode()
    kept, change = AuditEvent.objects.filter(action="changed").order_by("id")
    assert "credentials" not in kept.changes  # the first save only filled in the settings' defaults
    assert change.changes["credentials"] == {"changed": ["signing_secret"]} and "new-secret" not in str(change.changes)


def test_removing_a_credential_is_audited_and_the_page_says_it_is_missing(client, admin, make_connector):
    connector = make_connector("slack", slug="community", credentials={"signing_secret": SECRET, "bot_token": "xoxb-1"})
    form = {"name": "Community", "slug": "community", "cfg_api_base": "https://slack.com", "cfg_team_id": "",
            "forget_bot_token": "on"}
    defaults = get_connector_class("slack").config_defaults
    form.update({f"cfg_{k}": v for k, v in defaults.items() if f"cfg_{k}" not in form})
    assert client.post(detail(connector), form).status_code == 302
    assert Connector.objects.get(pk=connector.pk).credentials == {"signing_secret": SECRET}
    assert AuditEvent.objects.get(action="changed").changes["credentials"] == {"removed": ["bot_token"]}
    if "bot_token" in get_connector_class("slack").required_credentials:
        assert "Missing credentials: bot_token" in client.get(detail(connector)).content.decode()


def test_a_setting_the_connector_refuses_is_shown_with_its_reason_and_nothing_is_saved(client, admin):
    url = reverse("console:connect-new", kwargs={"kind": "rss"})
    response = client.post(url, {"name": "News", "slug": "news", "poll_interval_seconds": "60",
                                 "cfg_url": "", "cfg_channel": "feed", "cfg_max_entries": "200"})
    assert response.status_code == 400
    assert not Connector.objects.exists()
    errors = re.findall(r'class="error[^"]*"[^>]*>(.*?)</', response.content.decode(), re.S)
    assert errors and "url" in " ".join(errors).lower()


def test_malformed_or_hostile_form_input_is_refused_field_by_field(client, admin, make_connector):
    make_connector("webhook", slug="taken")
    url = reverse("console:connect-new", kwargs={"kind": "webhook"})
    cases = [
        ({"slug": "taken"}, "already uses this slug"),
        ({"slug": "no spaces allowed"}, "slug"),
        ({"cfg_tolerance_seconds": "ten"}, "whole number"),
        ({"name": "x" * 5000}, "at most 120"),
        ({"cred_signing_secret": "s" * 30_000}, "at most 20000"),
    ]
    for fields, words in cases:
        response = client.post(url, webhook_form(**fields))
        assert response.status_code == 400, fields
        assert words in response.content.decode().lower().replace(",", ""), fields
    assert Connector.objects.filter(kind="webhook").count() == 1


def test_an_unknown_kind_or_source_is_404_and_only_admins_get_in(client, admin_user, supervisor_a, make_connector):
    connector = make_connector("webhook", slug="site")
    client.force_login(admin_user)
    assert client.get(reverse("console:connect-new", kwargs={"kind": "carrier-pigeon"})).status_code == 404
    assert client.get("/console/sources/999999/").status_code == 404
    client.force_login(supervisor_a)
    for url in (reverse("console:connect"), detail(connector), reverse("console:connect-new", kwargs={"kind": "rss"})):
        assert client.get(url, HTTP_ACCEPT="application/json").status_code == 403
    test_url = reverse("console:connector-test", kwargs={"connector_id": connector.pk})
    assert post_json(client, test_url, {}).status_code == 403


def test_test_connection_calls_the_provider_and_stores_nothing(client, admin, make_connector, fake_provider):
    fake_provider.route("GET", "/feed.xml")(lambda r: Reply(200, FEED, {"Content-Type": "application/rss+xml"}))
    fake_provider.route("GET", "/down.xml")(lambda r: Reply(503, "maintenance"))
    good = make_connector("rss", slug="reviews", config={"url": f"{fake_provider.url}/feed.xml"})
    down = make_connector("rss", slug="down", config={"url": f"{fake_provider.url}/down.xml"})

    answer = post_json(client, reverse("console:connector-test", kwargs={"connector_id": good.pk}), {}).json()
    assert answer["ok"] is True and answer["message"]
    failed = post_json(client, reverse("console:connector-test", kwargs={"connector_id": down.pk}), {}).json()
    assert failed["ok"] is False and "503" in failed["message"]
    assert not Message.objects.exists()
    assert len(fake_provider.calls("/feed.xml")) == 1

    page = client.post(reverse("console:connector-test", kwargs={"connector_id": down.pk})).content.decode()
    assert "✗" in page and "503" in page


def test_a_generated_secret_can_be_replaced_and_is_shown_once(client, admin, make_connector):
    connector = make_connector("webhook", slug="site", credentials={"signing_secret": SECRET})
    url = reverse("console:connector-secret", kwargs={"connector_id": connector.pk, "name": "signing_secret"})
    assert client.post(url).status_code == 302
    fresh = Connector.objects.get(pk=connector.pk).credentials["signing_secret"]
    assert fresh != SECRET and fresh in client.get(detail(connector)).content.decode()
    assert AuditEvent.objects.get(action="secret_rotated").changes == {"credentials": {"changed": ["signing_secret"]}}
    refused = post_json(client, reverse("console:connector-secret",
                                        kwargs={"connector_id": connector.pk, "name": "callback_url"}), {})
    assert refused.status_code == 400 and "not a secret CXM generates" in refused.json()["reason"]
