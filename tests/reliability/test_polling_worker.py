"""Polling runs in a real Celery worker over Redis, and survives provider failures."""

from __future__ import annotations

from listening.models import Connector, Health, Message
from listening.tasks import poll_due_connectors
from tests.fakes.http import Reply
from tests.reliability.conftest import wait_for


def _feed_fixture() -> bytes:
    items = "".join(
        f"<item><guid>review-{i}</guid><title>Review {i}</title><description>App crashes on start {i}"
        f"</description><pubDate>Tue, 24 Nov 2026 10:0{i}:00 GMT</pubDate></item>"
        for i in range(3)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Reviews</title>{items}</channel></rss>'.encode()


def test_beat_task_polls_due_feed_in_a_real_worker(celery_worker, fake_provider, make_connector):
    body = _feed_fixture()
    answered: list[int] = []  # the status of each answer, in order

    @fake_provider.route("GET", "/feed.xml")
    def feed(request):
        if request.headers.get("if-none-match") == '"v1"':
            answered.append(304)
            return Reply(304, b"")
        answered.append(200)
        return Reply(200, body, {"Content-Type": "application/rss+xml", "ETag": '"v1"'})

    connector = make_connector("rss", config={"url": fake_provider.url + "/feed.xml"})
    idle = make_connector("rss", config={"url": fake_provider.url + "/feed.xml"}, enabled=False)

    poll_due_connectors.delay()
    stored = wait_for(lambda: Message.objects.filter(connector=connector).count(), timeout=90)
    assert stored == 3, "the worker stored nothing"
    # Wait for the whole poll, not only its page: record_success sets next_poll_at just after the
    # cursor commits, and would overwrite the "due again" below if it came later.
    connector = wait_for(lambda: Connector.objects.filter(pk=connector.pk, cursor__etag='"v1"',
                                                          last_success_at__isnull=False).first())
    assert connector.health == Health.OK and connector.next_poll_at is not None
    assert not Message.objects.filter(connector=idle).exists()  # paused connectors are not polled

    # Due again: the worker sends the validator, gets 304, and stores nothing new.
    Connector.objects.filter(pk=connector.pk).update(next_poll_at=None)
    poll_due_connectors.delay()
    assert wait_for(lambda: len(answered) >= 2, timeout=120), f"answered {answered}"
    # Unchanged because the validator was sent and the server answered 304, not because the
    # entries were dropped as duplicates.
    assert fake_provider.calls("/feed.xml")[1].headers.get("if-none-match") == '"v1"'
    assert answered[:2] == [200, 304]
    assert Message.objects.filter(connector=connector).count() == stored


def test_worker_records_provider_failure_and_keeps_cursor(celery_worker, fake_provider, make_connector):
    @fake_provider.route("GET", "/down.xml")
    def down(request):
        return Reply(429, {"error": "slow down"}, {"Retry-After": "600"})

    connector = make_connector("rss", config={"url": fake_provider.url + "/down.xml"},
                               cursor={"etag": '"keep"'})
    poll_due_connectors.delay()
    failed = wait_for(lambda: Connector.objects.filter(pk=connector.pk, consecutive_failures=1).first(), timeout=90)
    assert failed is not None, "the worker did not record the failure"
    assert failed.health == Health.DEGRADED
    assert "429" in failed.last_error
    assert failed.cursor == {"etag": '"keep"'}
    assert (failed.next_poll_at - failed.last_error_at).total_seconds() >= 599
