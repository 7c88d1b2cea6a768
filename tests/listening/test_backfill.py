"""Backfill from a date, from the source's page down to the provider (a local fake Mastodon): pages
walked back until the date, nothing older stored, nothing stored twice (with polling or a second
backfill), a failure stops with the reason and a restart resumes, refusals say why, and the
provider's rate-limit headroom reaches the Sources page."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from listening import backfill
from listening.models import AuditEvent, Connector, Message
from listening.polling import poll_connector
from tests.fakes.http import Reply
from tests.fakes.mastodon import FakeMastodon
from tests.responses.test_views import post_json

TOKEN = "backfill-token"
STATUS = json.loads((Path(__file__).parents[1] / "fixtures" / "mastodon" / "status_mention.json").read_text())


def mention_at(mastodon: FakeMastodon, when: datetime, n: int) -> dict:
    body = copy.deepcopy(STATUS)
    body.update(content=f"<p>@acme problem {n}</p>", tags=[],
                created_at=when.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    return mastodon.mention(body)


@pytest.fixture
def mastodon(fake_provider) -> FakeMastodon:
    return FakeMastodon(fake_provider, TOKEN)


@pytest.fixture
def history(mastodon):
    """A mention a day for 30 days, oldest first (ids grow with time, as on Mastodon)."""
    now = timezone.now()
    return [mention_at(mastodon, now - timedelta(days=30 - day, hours=1), day) for day in range(30)]


@pytest.fixture
def source(make_connector, mastodon):
    return make_connector("mastodon", slug="acme-social", credentials={"access_token": TOKEN},
                          config={"instance_url": mastodon.url, "page_size": 4})


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return admin_user


def start(client, connector, since: str, capture):
    with capture(execute=True):  # the worker runs once the request's transaction commits
        return post_json(client, reverse("console:connector-backfill", kwargs={"connector_id": connector.pk}),
                         {"since": since})


def days_ago(days: int) -> str:
    return (timezone.localdate() - timedelta(days=days)).isoformat()


def test_backfill_walks_back_to_the_date_and_stores_nothing_older(client, admin, source, history,
                                                                  django_capture_on_commit_callbacks):
    response = start(client, source, days_ago(10), django_capture_on_commit_callbacks)
    assert response.status_code == 202
    job = Connector.objects.get(pk=source.pk).backfill
    since = datetime.fromisoformat(job["since"])
    expected = [s for s in history if datetime.fromisoformat(s["created_at"].replace("Z", "+00:00")) >= since]
    assert 9 <= len(expected) <= 11
    assert sorted(Message.objects.values_list("external_id", flat=True)) == sorted(s["id"] for s in expected)
    assert job["created"] == len(expected) and job["finished_at"] and not job["error"]
    assert job["pages"] >= 3  # four a page: walked back page by page
    assert min(Message.objects.values_list("sent_at", flat=True)) >= since
    event = AuditEvent.objects.get(action="backfill")
    assert event.changes == {"backfill": {"since": job["since"], "resumed": False}} and event.actor == admin


def test_backfill_and_polling_never_store_a_message_twice(client, admin, source, history,
                                                          django_capture_on_commit_callbacks):
    poll_connector(source.pk, force=True)
    polled = Message.objects.count()
    assert polled > 0
    start(client, source, days_ago(40), django_capture_on_commit_callbacks)
    job = Connector.objects.get(pk=source.pk).backfill
    assert Message.objects.count() == len(history) == job["created"] + job["duplicates"]
    assert job["duplicates"] >= 1

    start(client, source, days_ago(40), django_capture_on_commit_callbacks)  # again: all already here
    again = Connector.objects.get(pk=source.pk).backfill
    assert again["created"] == 0 and again["duplicates"] == len(history)
    assert Message.objects.count() == len(history)


def test_a_failure_stops_with_the_reason_and_starting_again_resumes(client, admin, source, history, mastodon,
                                                                   django_capture_on_commit_callbacks):
    mastodon.fail(r"/api/v1/notifications", Reply(503, {"error": "Maintenance"}), after=2)
    start(client, source, days_ago(40), django_capture_on_commit_callbacks)
    stopped = Connector.objects.get(pk=source.pk).backfill
    assert "503" in stopped["error"] and stopped["pages"] == 2 and stopped["created"] == 8
    page = client.get(reverse("console:connector", kwargs={"connector_id": source.pk})).content.decode()
    status = page[page.index("backfill-status"):][:400]
    assert "stopped:" in status and "503" in status, status

    start(client, source, days_ago(40), django_capture_on_commit_callbacks)
    resumed = Connector.objects.get(pk=source.pk).backfill
    assert not resumed["error"] and resumed["created"] == len(history) and resumed["duplicates"] == 0
    assert Message.objects.count() == len(history)
    assert list(AuditEvent.objects.order_by("id").values_list("changes__backfill__resumed", flat=True)) == [False, True]


def test_refusals_say_why_and_start_nothing(client, admin, source, make_connector, mastodon):
    site = make_connector("webhook", slug="site")
    url = reverse("console:connector-backfill", kwargs={"connector_id": site.pk})
    refused = post_json(client, url, {"since": days_ago(3)})
    assert refused.status_code == 400 and "import them from a file" in refused.json()["reason"]  # its own words
    url = reverse("console:connector-backfill", kwargs={"connector_id": source.pk})
    for since, words in [(days_ago(-2), "in the future"), (days_ago(400), "at most 366 days"),
                         ("2026-02-30", "a date like"), ("yesterday", "a date like"), ("", "since is required")]:
        response = post_json(client, url, {"since": since})
        assert response.status_code == 400 and words in response.json()["reason"], since
    Connector.objects.filter(pk=source.pk).update(enabled=False)
    assert "paused" in post_json(client, url, {"since": days_ago(3)}).json()["reason"]
    Connector.objects.filter(pk=source.pk).update(enabled=True, backfill={"since": "x", "finished_at": None})
    running = post_json(client, url, {"since": days_ago(3)})
    assert running.status_code == 409 and "already running" in running.json()["reason"]
    assert not mastodon.calls(r"/api/v1/.*") and not AuditEvent.objects.exists()


def test_two_workers_never_walk_the_same_backfill(source, history, admin_user):
    since = timezone.now() - timedelta(days=5)
    backfill.start(source, since, actor=admin_user)
    assert backfill._claim(source.pk) is True
    assert backfill.run(source.pk) == {}  # the lease is held: the second worker does nothing
    assert not Message.objects.exists()


def test_the_providers_rate_limit_headroom_reaches_sources(client, admin, source, history, mastodon):
    poll_connector(source.pk, force=True)
    saved = Connector.objects.get(pk=source.pk).rate_limit
    assert saved["limit"] == 300 and 0 < saved["remaining"] < 300
    assert datetime.fromisoformat(saved["resets_at"]) > datetime(2020, 1, 1, tzinfo=UTC)
    rows = client.get(reverse("console:connectors"), HTTP_ACCEPT="application/json").json()["connectors"]
    assert rows[0]["rate_limit"]["remaining"] == saved["remaining"] and rows[0]["rate_limit"]["limit"] == 300
    assert f"{saved['remaining']} of 300 calls left" in client.get(reverse("console:connectors")).content.decode()
