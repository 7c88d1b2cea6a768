"""RSS/Atom feeds, polled through listening.polling against a local feed server that honours
ETag/If-None-Match and Last-Modified/If-Modified-Since like a real web server."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from listening.connectors.base import OutboundReply
from listening.exceptions import NotSupported
from listening.htmltext import html_to_text
from listening.models import Connector, Health, Message
from listening.polling import poll_connector
from tests.fakes.http import Recorded, Reply

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rss"
REVIEWS = (FIXTURES / "app_reviews.rss.xml").read_bytes()
FORUM = (FIXTURES / "forum_posts.atom.xml").read_bytes()

NEW_REVIEW = b"""
    <item>
      <title>Widget is blank after update</title>
      <link>https://reviews.example.com/apps/tunely/reviews/90004</link>
      <guid isPermaLink="false">appstore-review-90004</guid>
      <dc:creator>Sam</dc:creator>
      <pubDate>Sun, 01 Nov 2026 11:00:00 GMT</pubDate>
      <description>The home screen widget shows nothing.</description>
    </item>"""


class FeedServer:
    """One feed document served with validators; publishing a new version changes them."""

    def __init__(self, fake, body: bytes, *, path: str = "/feeds/reviews.xml", etag: bool = True,
                 content_type: str = "application/rss+xml; charset=utf-8") -> None:
        self.body, self.version, self.use_etag, self.content_type = body, 1, etag, content_type
        self.path = path
        self.answered: list[int] = []  # the status of each answer, in order
        fake.route("GET", path)(self.serve)
        self.url = fake.url + path

    @property
    def etag(self) -> str:
        return f'"v{self.version}"'

    @property
    def modified(self) -> str:
        return f"Sun, 01 Nov 2026 {10 + self.version:02d}:00:00 GMT"

    def publish(self, body: bytes) -> None:
        self.body, self.version = body, self.version + 1

    def serve(self, request: Recorded) -> Reply:
        validators = {"Last-Modified": self.modified, **({"ETag": self.etag} if self.use_etag else {})}
        # RFC 9110 13.2.2: If-None-Match is evaluated first; If-Modified-Since only without it.
        if "if-none-match" in request.headers and self.use_etag:
            unchanged = request.headers["if-none-match"] == self.etag
        else:
            unchanged = request.headers.get("if-modified-since") == self.modified
        self.answered.append(304 if unchanged else 200)
        if unchanged:
            return Reply(304, b"", validators)
        return Reply(200, self.body, {"Content-Type": self.content_type, **validators})


@pytest.fixture
def feed(fake_provider):
    return FeedServer(fake_provider, REVIEWS)


@pytest.fixture
def connector(make_connector, feed):
    return make_connector("rss", slug="app-reviews", config={"url": feed.url, "channel": "appstore"})


def feed_calls(fake_provider, feed):
    return fake_provider.calls(feed.path)


def test_rss_first_poll_stores_every_entry(connector, fake_provider, feed):
    outcome = poll_connector(connector.pk, force=True)
    assert (outcome.polled, outcome.created, outcome.error) == (True, 3, "")
    stored = {m.external_id: m for m in Message.objects.filter(connector=connector)}
    assert set(stored) == {"appstore-review-90001", "appstore-review-90002", "appstore-review-90003"}
    crash = stored["appstore-review-90001"]
    assert crash.text == (
        "Crashes every time I open a playlist\n\n"
        "Since the last update the app crashes whenever I open a playlist.\n\niPhone 15, reinstalled twice."
    )
    assert crash.channel == "appstore"
    assert crash.url == "https://reviews.example.com/apps/tunely/reviews/90001"
    assert crash.author.display_name == "Maya R."
    assert crash.conversation.external_id == "appstore-review-90001"
    assert crash.conversation.subject == "Crashes every time I open a playlist"
    assert crash.sent_at == datetime(2026, 11, 1, 8, 12, tzinfo=UTC)
    assert crash.raw["review_rating"] == "1"
    praise = stored["appstore-review-90002"]
    assert praise.sent_at == datetime(2026, 10, 31, 18, 45, 10, tzinfo=UTC)  # +0100 normalised
    assert praise.author.email == "jonas@example.org" and not praise.author.email_verified
    assert praise.text.endswith("Thanks & keep it up!\nFive stars.")
    assert len({m.conversation_id for m in stored.values()}) == 3  # each review is its own thread
    connector.refresh_from_db()
    assert connector.cursor == {"etag": '"v1"', "modified": "Sun, 01 Nov 2026 11:00:00 GMT"}
    assert connector.health == Health.OK and connector.last_success_at is not None
    first = feed_calls(fake_provider, feed)[0]
    assert "if-none-match" not in first.headers and "if-modified-since" not in first.headers


def test_rss_second_poll_sends_validators_and_stores_nothing_on_304(connector, fake_provider, feed):
    poll_connector(connector.pk, force=True)
    outcome = poll_connector(connector.pk, force=True)
    assert (outcome.created, outcome.duplicates, outcome.error) == (0, 0, "")
    second = feed_calls(fake_provider, feed)[1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Sun, 01 Nov 2026 11:00:00 GMT"
    # Unchanged because the server said so (304), not because the entries were duplicates.
    assert feed.answered == [200, 304]
    assert Message.objects.filter(connector=connector).count() == 3
    connector.refresh_from_db()
    assert connector.cursor == {"etag": '"v1"', "modified": "Sun, 01 Nov 2026 11:00:00 GMT"}
    assert connector.health == Health.OK


def test_rss_last_modified_alone_is_enough_for_a_304(make_connector, fake_provider):
    feed = FeedServer(fake_provider, REVIEWS, path="/no-etag.xml", etag=False)
    connector = make_connector("rss", config={"url": feed.url})
    poll_connector(connector.pk, force=True)
    connector.refresh_from_db()
    assert connector.cursor == {"modified": feed.modified}
    assert poll_connector(connector.pk, force=True).created == 0
    second = feed_calls(fake_provider, feed)[1]
    assert "if-none-match" not in second.headers
    assert second.headers["if-modified-since"] == feed.modified
    assert feed.answered == [200, 304]


def test_rss_changed_feed_stores_exactly_the_new_entry(connector, fake_provider, feed):
    poll_connector(connector.pk, force=True)
    feed.publish(REVIEWS.replace(b"<item>", NEW_REVIEW.strip() + b"\n    <item>", 1))
    outcome = poll_connector(connector.pk, force=True)
    assert (outcome.created, outcome.duplicates) == (1, 3)
    new = Message.objects.get(connector=connector, external_id="appstore-review-90004")
    assert new.text == "Widget is blank after update\n\nThe home screen widget shows nothing."
    connector.refresh_from_db()
    assert connector.cursor["etag"] == '"v2"'
    assert poll_connector(connector.pk, force=True).created == 0
    assert feed.answered == [200, 200, 304]


def test_rss_html_in_entries_is_stored_as_inert_text(connector):
    poll_connector(connector.pk, force=True)
    text = Message.objects.get(external_id="appstore-review-90003").text
    assert text == "Subscription price went up, not sure it's worth it\n\nThe app is fine but €2 more a month?"
    for hostile in ("<script", "document.cookie", "<img", "onerror", "<div"):
        assert hostile not in text


def test_html_to_text_drops_markup_scripts_and_styles_even_unsanitised():
    markup = (
        "<style>p{color:red}</style><p>Refund&nbsp;please &amp; fast</p>"
        "<script>alert('x')</script><ul><li>one</li><li>two</li></ul><a href='javascript:x()'>link</a>"
        "<svg><text>drawn</text></svg>"
    )
    assert html_to_text(markup) == "Refund please & fast\n\none\n\ntwo\n\nlink"
    assert html_to_text("unclosed <script>alert(1)") == "unclosed"
    assert html_to_text("") == ""


def test_rss_atom_forum_replies_join_the_topic_thread(make_connector, fake_provider):
    feed = FeedServer(fake_provider, FORUM, path="/c/bugs.atom", content_type="application/atom+xml")
    connector = make_connector("rss", config={"url": feed.url, "channel": "forum"})
    assert poll_connector(connector.pk, force=True).created == 3
    topic = Message.objects.get(external_id="tag:community.example.com,2026:topic/7001")
    reply = Message.objects.get(external_id="tag:community.example.com,2026:post/7001-2")
    other = Message.objects.get(external_id="tag:community.example.com,2026:topic/7002")
    assert reply.conversation_id == topic.conversation_id != other.conversation_id
    assert reply.parent_id == topic.pk
    assert topic.author.profile_url == "https://community.example.com/u/dara_k"
    assert topic.author.external_id == "https://community.example.com/u/dara_k"
    assert reply.author.email == "lee.m@example.net"
    assert other.sent_at == datetime(2026, 11, 1, 10, 30, tzinfo=UTC)  # updated, no published
    # type="text" content is taken literally, not parsed as markup.
    assert other.text == (
        "Lyrics out of sync <again>\n\n"
        "Lyrics run two lines behind the song on desktop. I <3 the feature otherwise."
    )


def test_rss_reply_to_an_entry_outside_the_feed_is_grouped_under_its_parent(make_connector, fake_provider):
    first_entry = FORUM[FORUM.index(b"  <entry>") : FORUM.index(b"</entry>") + len(b"</entry>")]
    only_reply = FORUM.replace(first_entry, b"")  # the topic itself is not in this feed
    feed = FeedServer(fake_provider, only_reply, path="/c/replies.atom", content_type="application/atom+xml")
    connector = make_connector("rss", config={"url": feed.url})
    assert poll_connector(connector.pk, force=True).created == 2
    reply = Message.objects.get(external_id="tag:community.example.com,2026:post/7001-2")
    assert reply.conversation.external_id == "tag:community.example.com,2026:topic/7001"
    assert reply.parent_external_id == "tag:community.example.com,2026:topic/7001"


def test_rss_entries_without_ids_are_deduped_by_link_or_content(make_connector, fake_provider):
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
      <item><title>Linked</title><link>https://blog.example.com/p/1</link><description>a</description></item>
      <item><title>Bare</title><pubDate>Sun, 01 Nov 2026 08:00:00 GMT</pubDate><description>b</description></item>
      <item><description>no title no date</description></item>
    </channel></rss>"""
    feed = FeedServer(fake_provider, body, path="/blog.xml", etag=False)
    feed.use_etag = False
    connector = make_connector("rss", config={"url": feed.url})
    assert poll_connector(connector.pk, force=True).created == 3
    feed.publish(body)  # same entries, new validators: nothing is stored twice
    outcome = poll_connector(connector.pk, force=True)
    assert (outcome.created, outcome.duplicates) == (0, 3)
    ids = set(Message.objects.filter(connector=connector).values_list("external_id", flat=True))
    assert "https://blog.example.com/p/1" in ids
    assert sum(i.startswith("sha256:") for i in ids) == 2
    hostless = Message.objects.get(connector=connector, text="no title no date")
    assert hostless.author.external_id == "127.0.0.1"  # no author: the feed's host


def test_rss_max_entries_caps_a_poll(make_connector, feed):
    connector = make_connector("rss", config={"url": feed.url, "max_entries": 2})
    assert poll_connector(connector.pk, force=True).created == 2


def test_rss_follows_redirects(make_connector, fake_provider, feed):
    fake_provider.route("GET", "/old-feed")(lambda r: Reply(301, b"", {"Location": "/feeds/reviews.xml"}))
    connector = make_connector("rss", config={"url": fake_provider.url + "/old-feed"})
    assert poll_connector(connector.pk, force=True).created == 3


def assert_failed_without_moving_cursor(connector: Connector, cursor: dict, *fragments: str) -> None:
    connector.refresh_from_db()
    assert connector.health == Health.DEGRADED
    assert connector.consecutive_failures == 1
    for fragment in fragments:
        assert fragment in connector.last_error
    assert connector.cursor == cursor
    assert connector.next_poll_at > connector.last_error_at
    assert not Message.objects.filter(connector=connector).exists()


def test_rss_server_error_is_recorded_on_health_without_moving_the_cursor(make_connector, fake_provider):
    fake_provider.route("GET", "/down.xml")(lambda r: Reply(500, "upstream exploded"))
    cursor = {"etag": '"old"'}
    connector = make_connector("rss", config={"url": fake_provider.url + "/down.xml"}, cursor=cursor)
    outcome = poll_connector(connector.pk, force=True)
    assert outcome.polled and "500" in outcome.error
    assert_failed_without_moving_cursor(connector, cursor, "ProviderUnavailable", "answered 500")
    assert fake_provider.calls("/down.xml")[0].headers["if-none-match"] == '"old"'


def test_rss_connection_refused_is_recorded_on_health(make_connector):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cursor = {"modified": "Sun, 01 Nov 2026 09:00:00 GMT"}
    connector = make_connector("rss", config={"url": f"http://127.0.0.1:{port}/feed"}, cursor=cursor)
    poll_connector(connector.pk, force=True)
    assert_failed_without_moving_cursor(connector, cursor, "ProviderUnavailable", "cannot reach")


def test_rss_timeout_is_recorded_on_health(make_connector, fake_provider, settings):
    settings.PROVIDER_HTTP_TIMEOUT = 0.3
    release, answered = threading.Event(), threading.Event()

    def slow(request: Recorded) -> Reply:
        release.wait(30)  # answers only once the test has seen the poll give up
        answered.set()
        return Reply(200, REVIEWS)

    fake_provider.route("GET", "/slow.xml")(slow)
    connector = make_connector("rss", config={"url": fake_provider.url + "/slow.xml"})
    poll_connector(connector.pk, force=True)
    # Bounded by an event, not a stopwatch: the poll returned while the server still held its answer.
    assert not answered.is_set()
    release.set()
    assert_failed_without_moving_cursor(connector, {}, "timed out")


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body><h1>Welcome</h1><p>This is not a feed",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR binary garbage",
        b"",
    ],
    ids=["html-page", "binary", "empty"],
)
def test_rss_malformed_feed_is_a_clear_failure(make_connector, fake_provider, body):
    fake_provider.route("GET", "/broken.xml")(lambda r: Reply(200, body, {"Content-Type": "text/html"}))
    connector = make_connector("rss", config={"url": fake_provider.url + "/broken.xml"})
    outcome = poll_connector(connector.pk, force=True)
    assert "not a parseable RSS or Atom feed" in outcome.error
    assert_failed_without_moving_cursor(connector, {}, "ProviderRejected", "not a parseable RSS or Atom feed")


def test_rss_damaged_feed_with_entries_keeps_no_validators(make_connector, fake_provider):
    truncated = REVIEWS[: REVIEWS.index(b"</item>") + len(b"</item>")]  # cut off mid-document
    feed = FeedServer(fake_provider, truncated, path="/cut.xml")
    connector = make_connector("rss", config={"url": feed.url})
    outcome = poll_connector(connector.pk, force=True)
    assert outcome.error == "" and outcome.created == 1
    connector.refresh_from_db()
    assert connector.cursor == {}  # fetch in full next time, not a 304 that hides the rest


def test_rss_feed_body_is_never_opened_as_a_local_path(make_connector, fake_provider, tmp_path):
    secret = tmp_path / "secret.xml"
    secret.write_bytes(REVIEWS)
    fake_provider.route("GET", "/path.xml")(lambda r: Reply(200, str(secret).encode()))
    connector = make_connector("rss", config={"url": fake_provider.url + "/path.xml"})
    outcome = poll_connector(connector.pk, force=True)
    assert outcome.created == 0 and "not a parseable" in outcome.error


def test_rss_send_is_not_supported(connector):
    with pytest.raises(NotSupported):
        connector.get_backend().send(OutboundReply(text="thanks", channel="appstore", recipient_id="x"))


def test_rss_config_is_validated():
    from listening.connectors.rss import FeedConnector
    from listening.exceptions import ConfigInvalid

    assert FeedConnector.validate_config({"url": "https://x.example/feed"})["channel"] == "feed"
    for bad in ({"url": "file:///etc/passwd"}, {"url": "https://x.example/f", "max_entries": 0}, {"nope": 1}):
        with pytest.raises(ConfigInvalid):
            FeedConnector.validate_config(bad)
