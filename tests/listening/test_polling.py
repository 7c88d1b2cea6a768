"""The polling action: leases, due selection, health and backoff (kind-independent)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from listening.exceptions import PayloadInvalid
from listening.models import Connector, Health, Message
from listening.polling import (
    FAILING_AFTER,
    backoff_seconds,
    due_polling_connector_ids,
    poll_connector,
    record_skipped,
    store_page,
    with_skipped,
)
from tests.fakes.http import Reply
from tests.listening.helpers import inbound, run_concurrently

FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
    b"<item><guid>a</guid><title>One</title></item><item><guid>b</guid><title>Two</title></item>"
    b"</channel></rss>"
)


@pytest.fixture
def feed(fake_provider):
    state = {"status": 200}

    @fake_provider.route("GET", "/feed")
    def serve(request):
        if state["status"] != 200:
            return Reply(state["status"], "down")
        return Reply(200, FEED, {"Content-Type": "application/rss+xml"})

    fake_provider.state = state
    return fake_provider


def test_due_selection_skips_webhook_kinds_disabled_and_not_yet_due(make_connector, feed):
    url = feed.url + "/feed"
    due = make_connector("rss", config={"url": url})
    later = make_connector("rss", config={"url": url}, next_poll_at=timezone.now() + timedelta(hours=1))
    paused = make_connector("rss", config={"url": url}, enabled=False)
    hook = make_connector("webhook")
    ids = due_polling_connector_ids()
    assert due.pk in ids
    assert not {later.pk, paused.pk, hook.pk} & set(ids)


def test_poll_schedules_next_poll_and_lease_blocks_a_second_poll(make_connector, feed):
    connector = make_connector("rss", config={"url": feed.url + "/feed"}, poll_interval_seconds=120)
    outcome = poll_connector(connector.pk)
    assert (outcome.polled, outcome.created) == (True, 2)
    connector.refresh_from_db()
    assert connector.health == Health.OK and connector.last_success_at is not None
    assert 110 <= (connector.next_poll_at - timezone.now()).total_seconds() <= 121
    assert poll_connector(connector.pk).polled is False  # not due yet
    assert len(feed.calls("/feed")) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_polls_of_one_connector_poll_once(make_connector, feed):
    connector = make_connector("rss", config={"url": feed.url + "/feed"})
    outcomes = run_concurrently(lambda: poll_connector(connector.pk).polled, 3)
    assert sorted(outcomes) == [False, False, True]
    assert len(feed.calls("/feed")) == 1
    assert Message.objects.filter(connector=connector).count() == 2


def test_failures_degrade_then_fail_and_back_off(make_connector, feed):
    feed.state["status"] = 503
    connector = make_connector("rss", config={"url": feed.url + "/feed"}, poll_interval_seconds=60)
    delays = []
    for attempt in range(1, FAILING_AFTER + 1):
        outcome = poll_connector(connector.pk, force=True)
        assert outcome.polled and "503" in outcome.error
        connector.refresh_from_db()
        delays.append((connector.next_poll_at - connector.last_error_at).total_seconds())
        assert connector.consecutive_failures == attempt
        assert connector.health == (Health.FAILING if attempt >= FAILING_AFTER else Health.DEGRADED)
    assert delays[0] < delays[1] < delays[2]
    feed.state["status"] = 200
    assert poll_connector(connector.pk, force=True).created == 2
    connector.refresh_from_db()
    assert (connector.health, connector.consecutive_failures) == (Health.OK, 0)
    assert "503" in connector.last_error  # the last error stays visible for admins


def test_backoff_is_capped_and_jittered():
    values = {round(backoff_seconds(60, 30)) for _ in range(20)}
    assert max(values) <= 3600 * 1.2 and len(values) > 1


def test_poll_of_unknown_or_disabled_connector_does_nothing(make_connector, feed):
    paused = make_connector("rss", config={"url": feed.url + "/feed"}, enabled=False)
    assert poll_connector(paused.pk).polled is False
    assert poll_connector(999_999).polled is False
    assert Connector.objects.get(pk=paused.pk).next_poll_at is None


def test_absurd_retry_after_is_capped_at_a_day(make_connector, fake_provider):
    @fake_provider.route("GET", "/feed")
    def slow_down(request):
        return Reply(429, "busy", {"Retry-After": "999999999999"})

    connector = make_connector("rss", config={"url": fake_provider.url + "/feed"})
    assert "429" in poll_connector(connector.pk).error
    connector.refresh_from_db()
    wait = (connector.next_poll_at - connector.last_error_at).total_seconds()
    assert 86_000 <= wait <= 86_400


def test_provider_error_caps_retry_after():
    from listening.exceptions import MAX_RETRY_AFTER_SECONDS, ProviderRateLimited

    assert ProviderRateLimited("x", retry_after=10**400).retry_after == MAX_RETRY_AFTER_SECONDS
    assert ProviderRateLimited("x", retry_after=-5).retry_after == 0.0
    assert ProviderRateLimited("x", retry_after=30).retry_after == 30.0
    assert ProviderRateLimited("x").retry_after is None


def test_poll_records_an_unforeseen_exception_on_the_connector_and_backs_off(make_connector, fake_provider):
    """feedparser raises UnicodeEncodeError on a lone surrogate's character reference: not a
    ProviderError, yet the failure is on the row (health, last_error, backoff), not lost in the worker."""
    poisoned = FEED.replace(b"<guid>a</guid>", b"<guid>a&#xD800;</guid>")
    fake_provider.route("GET", "/feed")(lambda request: Reply(200, poisoned, {"Content-Type": "application/rss+xml"}))
    connector = make_connector("rss", config={"url": fake_provider.url + "/feed"}, poll_interval_seconds=60)
    outcome = poll_connector(connector.pk)
    assert outcome.polled and outcome.error.startswith("UnicodeEncodeError")
    connector.refresh_from_db()
    assert (connector.health, connector.consecutive_failures) == (Health.DEGRADED, 1)
    assert connector.last_error.startswith("UnicodeEncodeError") and connector.last_error_at is not None
    assert 60 < (connector.next_poll_at - connector.last_error_at).total_seconds() < 300  # backoff, not the lease


def test_store_page_skips_a_poisoned_message_stores_the_rest_and_names_it_in_the_cursor(make_connector):
    connector = make_connector("webhook")
    poisoned = inbound("p" * 300, minutes=1)  # an id longer than the column: refused by ingest_messages
    page = [inbound("before"), poisoned, inbound("after", minutes=2)]
    with transaction.atomic():
        stored, skipped = store_page(connector, page)
    assert stored.created == 2
    assert set(Message.objects.filter(connector=connector).values_list("external_id", flat=True)) == {"before", "after"}
    assert [item["id"] for item in skipped] == ["p" * 100]
    assert "PayloadInvalid" in skipped[0]["reason"] and "255" in skipped[0]["reason"]
    cursor = with_skipped({"page": 2}, {"page": 1, "skipped": [{"id": "older", "reason": "r"}]}, skipped)
    assert cursor == {"page": 2, "skipped": [{"id": "older", "reason": "r"}, *skipped]}
    assert with_skipped({"page": 3}, cursor, []) == {"page": 3}  # nothing skipped: the page's cursor as is
    many = with_skipped({}, None, [{"id": str(n), "reason": "r"} for n in range(30)])
    assert [item["id"] for item in many["skipped"]] == [str(n) for n in range(10, 30)]
    record_skipped(connector, skipped)
    connector.refresh_from_db()
    assert connector.last_error.startswith("skipped 1 message(s) that could not be stored: " + "p" * 100)
    assert connector.health == Health.OK and connector.consecutive_failures == 0


def test_store_page_fails_instead_of_skipping_a_page_where_every_message_fails_alike(make_connector):
    """That is a bug of ours, not poisoned items: the poll fails (and is recorded), the cursor stays."""
    connector = make_connector("webhook")
    page = [inbound("a" * 300), inbound("b" * 300)]
    with pytest.raises(PayloadInvalid), transaction.atomic():
        store_page(connector, page)
    with transaction.atomic():
        stored, skipped = store_page(connector, page[:1])  # a page of one poisoned message is skipped
    assert stored.created == 0 and [item["id"] for item in skipped] == ["a" * 100]
    assert not Message.objects.filter(connector=connector).exists()
