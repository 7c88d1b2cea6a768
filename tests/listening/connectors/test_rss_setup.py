"""What the admin pages need from the feed connector, against a local feed server: the connect
form's words, "test connection" (the feed's title and entry count) and backfill (the entries served
now that were published at or after a date)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from listening.actions import ingest_messages
from listening.connectors.rss import FeedConnector
from listening.exceptions import ProviderRejected
from listening.models import Message
from listening.polling import poll_connector
from tests.fakes.http import Recorded, Reply

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rss"
REVIEWS = (FIXTURES / "app_reviews.rss.xml").read_bytes()
UNDATED = b"""
    <item>
      <title>No date on this one</title>
      <guid isPermaLink="false">appstore-review-undated</guid>
      <description>Undated words.</description>
    </item>
  </channel>"""


@pytest.fixture
def feed(fake_provider):
    served = {"body": REVIEWS, "status": 200}

    @fake_provider.route("GET", "/feeds/reviews.xml")
    def serve(request: Recorded) -> Reply:
        return Reply(served["status"], served["body"], {"Content-Type": "application/rss+xml; charset=utf-8",
                                                        "ETag": '"v1"'})

    served["url"] = fake_provider.url + "/feeds/reviews.xml"
    return served


@pytest.fixture
def connector(make_connector, feed):
    return make_connector("rss", slug="app-reviews", config={"url": feed["url"], "channel": "appstore"})


def requests_made(fake_provider) -> int:
    return len(fake_provider.calls("/feeds/reviews.xml"))


def test_rss_connect_form_explains_every_key_and_needs_no_credentials():
    assert set(FeedConnector.config_help) == set(FeedConnector.config_defaults)
    assert (FeedConnector.credential_help, FeedConnector.required_credentials, FeedConnector.oauth) == ({}, (), None)
    assert FeedConnector.supports_backfill is True


def test_rss_check_says_the_feeds_title_and_entries_and_stores_nothing(fake_provider, connector):
    said = connector.get_backend().check_connection()
    assert said == 'Reached "Tunely for iOS: customer reviews": 3 entries (none stored by this test).'
    [call] = fake_provider.calls("/feeds/reviews.xml")
    assert "if-none-match" not in call.headers  # a test always fetches the whole feed
    assert Message.objects.count() == 0


@pytest.mark.parametrize(("status", "body", "reason"), [
    (404, "Not Found", "answered 404: Not Found"),
    (200, "<html><body>Moved to our new site</body></html>", "not a parseable RSS or Atom feed"),
])
def test_rss_check_of_something_that_is_no_feed_says_why(feed, connector, status, body, reason):
    feed.update(status=status, body=body.encode())
    with pytest.raises(ProviderRejected, match=reason):
        connector.get_backend().check_connection()


def test_rss_backfill_returns_the_entries_since_the_date_in_one_page(fake_provider, connector):
    backend = connector.get_backend()
    page = backend.backfill(datetime(2026, 10, 31, 12, tzinfo=UTC), {})
    assert [m.external_id for m in page.messages] == ["appstore-review-90001", "appstore-review-90002"]
    assert (page.cursor, page.more) == ({"done": True}, False)
    again = backend.backfill(datetime(2026, 10, 31, 12, tzinfo=UTC), page.cursor)
    assert (again.messages, again.more, requests_made(fake_provider)) == ([], False, 1)


def test_rss_backfill_leaves_undated_entries_to_polling(feed, connector):
    feed["body"] = REVIEWS.replace(b"  </channel>", UNDATED)
    page = connector.get_backend().backfill(datetime(2026, 10, 1, tzinfo=UTC), {})
    assert [m.external_id for m in page.messages] == [f"appstore-review-9000{n}" for n in (1, 2, 3)]


def test_rss_backfill_and_poll_store_each_entry_once(connector):
    page = connector.get_backend().backfill(datetime(2026, 10, 31, 12, tzinfo=UTC), {})
    assert ingest_messages(connector, page.messages).created == 2
    outcome = poll_connector(connector.pk)
    assert (outcome.created, outcome.duplicates) == (1, 2)
    assert Message.objects.count() == 3
