"""Sources for admins: health at a glance, pause and resume (audited, and a paused webhook takes
nothing), and a live console alert to every admin when a connector starts failing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from listening.exceptions import ProviderUnavailable
from listening.models import AuditEvent, Connector, Health, Message
from listening.polling import FAILING_AFTER, record_failure
from responses.models import ConsoleEvent, Role
from tests.listening.helpers import signed_webhook_post
from tests.responses.conftest import make_user
from tests.responses.test_views import post_json

DELIVERY = {"messages": [{"id": "p1", "text": "hello?", "author": {"id": "cust-1", "name": "Ada"}}]}


@pytest.fixture
def site(make_connector, team_a):
    connector = make_connector("webhook", slug="site-chat", name="Site chat", credentials={"signing_secret": "s3cret"})
    team_a.connectors.add(connector)
    return connector


def test_admins_see_every_source_with_its_health(client, admin_user, site, make_connector):
    broken = make_connector("rss", slug="news", name="News feed", config={"url": "https://example.com/feed"})
    Connector.objects.filter(pk=broken.pk).update(health=Health.FAILING, consecutive_failures=4,
                                                 last_error="ProviderUnavailable: 503 from the feed")
    signed_webhook_post(client, site, DELIVERY)
    client.force_login(admin_user)
    page = client.get(reverse("console:connectors")).content.decode()
    assert "Site chat" in page and "News feed" in page
    assert "503 from the feed" in page and "4 failures in a row" in page
    assert "/hooks/site-chat/" in page
    rows = {r["slug"]: r for r in client.get(reverse("console:connectors"), HTTP_ACCEPT="application/json")
            .json()["connectors"]}
    assert rows["site-chat"]["messages_last_hour"] == 1 and rows["news"]["health"] == "failing"
    assert rows["news"]["polls"] and not rows["news"]["webhook_url"]


def test_supervisors_cannot_see_or_pause_sources(client, supervisor_a, site):
    client.force_login(supervisor_a)
    assert client.get(reverse("console:connectors"), HTTP_ACCEPT="application/json").status_code == 403
    response = post_json(client, reverse("console:connector-pause", kwargs={"connector_id": site.pk}), {})
    assert response.status_code == 403
    assert Connector.objects.get(pk=site.pk).enabled and not AuditEvent.objects.exists()


def test_a_paused_source_takes_nothing_until_resumed_and_both_are_audited(client, admin_user, site):
    client.force_login(admin_user)
    pause = reverse("console:connector-pause", kwargs={"connector_id": site.pk})
    assert post_json(client, pause, {}).status_code == 200
    assert not Connector.objects.get(pk=site.pk).enabled
    client.logout()
    assert signed_webhook_post(client, site, DELIVERY).status_code == 403
    assert not Message.objects.exists()

    client.force_login(admin_user)
    post_json(client, reverse("console:connector-resume", kwargs={"connector_id": site.pk}), {})
    client.logout()
    assert signed_webhook_post(client, site, DELIVERY).status_code == 200
    events = list(AuditEvent.objects.order_by("id").values_list("action", "actor_name", "changes"))
    assert events == [("paused", "admin", {"enabled": {"from": True, "to": False}}),
                      ("resumed", "admin", {"enabled": {"from": False, "to": True}})]


def test_an_unknown_source_is_404(client, admin_user):
    client.force_login(admin_user)
    for ref in ("999999", "abc"):
        response = post_json(client, f"/console/sources/{ref}/pause/", {})
        assert response.status_code == 404 and response.json()["reason"] == "no such connector"


def test_a_source_that_starts_failing_alerts_every_admin_once(admin_user, supervisor_a, django_user_model, site,
                                                             django_capture_on_commit_callbacks):
    second_admin = make_user(django_user_model, "ops_admin", Role.ADMIN)
    for _ in range(FAILING_AFTER + 2):
        with django_capture_on_commit_callbacks(execute=True):
            record_failure(Connector.objects.get(pk=site.pk), ProviderUnavailable("503 from the provider"))
    alerts = ConsoleEvent.objects.filter(type="connector.failing")
    assert sorted(alerts.values_list("user_id", flat=True)) == sorted([admin_user.pk, second_admin.pk])
    assert alerts.first().payload["connector"]["name"] == "Site chat"
    assert "503 from the provider" in alerts.first().payload["reason"]
    assert Connector.objects.get(pk=site.pk).health == Health.FAILING
