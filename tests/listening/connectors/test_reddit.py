"""The Reddit connector end to end: OAuth, subreddit search and mention polling, and comments as
replies, against a fake Reddit over real HTTP (tests/fakes/reddit.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from listening.connectors import get_connector_class, reddit as reddit_module
from listening.connectors.base import OutboundReply
from listening.connectors.reddit import RedditAuthError, RedditConnector
from listening.exceptions import ConfigInvalid, ProviderRateLimited, ProviderRejected
from listening.models import Connector, Health, Message
from listening.polling import due_polling_connector_ids, poll_connector
from responses import replies
from responses.exceptions import InvalidRequest
from responses.models import Case, Reply as CaseReply, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.fakes.http import Reply
from tests.fakes.reddit import FakeReddit
from tests.responses.conftest import classify, make_user

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "reddit"
APP = {"client_id": "p-jcoLKBynTLew", "client_secret": "gko_LXELoV07ZBNUXrvWZfzE3aI"}
SCRIPT = {**APP, "username": "AcmeCare", "password": "correct horse battery"}
AGENT = "server:com.acme.cxm:0.1 (by /u/AcmeCare)"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def posts() -> list[dict[str, Any]]:
    return [child["data"] for child in fixture("search_listing")["data"]["children"]]


def mention() -> dict[str, Any]:
    return fixture("mentions_listing")["data"]["children"][0]["data"]


def post(n: int, created: float, *, sub: str = "espresso", title: str = "Acme kettle question") -> dict[str, Any]:
    return {"name": f"t3_p{n}", "id": f"p{n}", "subreddit": sub, "title": f"{title} {n}", "selftext": "help?",
            "is_self": True, "author": f"user_{n}", "created_utc": created,
            "permalink": f"/r/{sub}/comments/p{n}/acme/"}


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    reddit_module._tokens.clear()
    yield
    reddit_module._tokens.clear()


@pytest.fixture
def reddit(fake_provider) -> FakeReddit:
    return FakeReddit(fake_provider, client_id=APP["client_id"], client_secret=APP["client_secret"],
                      username=SCRIPT["username"], password=SCRIPT["password"], refresh_token="r-offline-9f8e7d")


@pytest.fixture
def poller(make_connector, reddit):
    return make_connector("reddit", slug="rdt", poll_interval_seconds=60, credentials=SCRIPT, config={
        "subreddits": ["espresso", "BuyItForLife"], "queries": ["acme"], "mentions": True, "user_agent": AGENT,
        "api_base": reddit.url, "auth_base": reddit.url})


def listing(*items: dict[str, Any], kind: str = "t3") -> dict[str, Any]:
    return {"kind": "Listing", "data": {"children": [{"kind": kind, "data": item} for item in items]}}


def stored() -> list[str]:
    return sorted(Message.objects.values_list("external_id", flat=True))


# --- Polling ----------------------------------------------------------------------------------
def test_reddit_poll_stores_search_results_and_mentions_with_threads_and_authors(reddit, poller):
    for data in posts():
        reddit.add_post(data)
    reddit.add_mention(mention())
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 3)
    assert stored() == ["t1_kx3r9b1", "t3_1c9w2mm", "t3_1c9x7qa"]
    thread_post = Message.objects.get(external_id="t3_1c9x7qa")
    assert thread_post.text.startswith("Acme Barista Pro steam wand leaking after 4 weeks <sigh>\n\nBought")
    assert thread_post.sent_at == datetime.fromtimestamp(1793534400, tz=UTC)
    assert thread_post.url == ("https://www.reddit.com/r/espresso/comments/1c9x7qa/"
                               "acme_barista_pro_steam_wand_leaking_after_4_weeks/")
    assert thread_post.channel == "reddit"
    assert (thread_post.author.external_id, thread_post.author.handle, thread_post.author.profile_url) == (
        "cremaqueen_88", "CremaQueen_88", "https://www.reddit.com/user/CremaQueen_88")
    comment = Message.objects.get(external_id="t1_kx3r9b1")
    assert comment.parent_id == thread_post.pk  # the mention answers the post: one conversation
    assert comment.conversation_id == thread_post.conversation_id
    assert thread_post.conversation.external_id == "t3_1c9x7qa"
    link = Message.objects.get(external_id="t3_1c9w2mm")
    assert link.text == "Ten years with my Acme grinder and still going strong\n\nhttps://i.redd.it/k2b1x0acme.jpeg"
    [search] = reddit.calls(r"/r/.*/search")
    assert search.path == "/r/espresso+BuyItForLife/search"
    assert search.query == {"q": "acme", "sort": "new", "type": "link", "restrict_sr": "1", "limit": "100",
                            "raw_json": "1"}
    [inbox] = reddit.calls(r"/message/mentions")
    assert inbox.query["mark"] == "false"  # reading must not clear the care team's orangereds
    assert inbox.headers["user-agent"] == AGENT
    poller.refresh_from_db()
    assert poller.cursor["sources"]["mentions"]["newest"] == "t1_kx3r9b1"
    assert poller.cursor["sources"]["search:espresso+BuyItForLife:acme"]["created"] == 1793534400.0
    assert "token" not in json.dumps(poller.cursor)  # the bearer token never lands in the clear


def test_reddit_repeated_polls_and_overlapping_sources_store_each_fullname_once(reddit, make_connector):
    both = make_connector("reddit", credentials=SCRIPT, config={
        "queries": ["acme", "steam wand"], "api_base": reddit.url, "auth_base": reddit.url, "user_agent": AGENT})
    reddit.add_post(posts()[0])  # matches both searches
    reddit.add_mention(mention())
    assert poll_connector(both.pk).created == 2
    for _ in range(2):
        again = poll_connector(both.pk, force=True)
        assert (again.error, again.created, again.duplicates) == ("", 0, 0)  # the cursor filtered them
    reddit.add_post(post(1, 1793536000, title="Acme steam wand"))
    third = poll_connector(both.pk, force=True)
    assert (third.created, third.duplicates) == (1, 0)  # found by both searches, handed over once
    assert stored() == ["t1_kx3r9b1", "t3_1c9x7qa", "t3_p1"]
    assert [c.path for c in reddit.calls(r"/search")] == ["/search"] * 8  # no subreddits: all of Reddit


def test_reddit_token_is_fetched_once_and_refreshed_once_after_a_401(reddit, poller):
    reddit.add_post(posts()[0])
    poll_connector(poller.pk)
    poll_connector(poller.pk, force=True)
    [grant] = reddit.calls(r"/api/v1/access_token")
    assert grant.form() == {"grant_type": "password", "username": "AcmeCare", "password": "correct horse battery"}
    assert grant.headers["user-agent"] == AGENT
    reddit.expire_tokens()
    reddit.add_mention(mention())
    outcome = poll_connector(poller.pk, force=True)
    assert (outcome.error, outcome.created) == ("", 1)
    assert len(reddit.calls(r"/api/v1/access_token")) == 2
    bearers = [c.headers["authorization"] for c in reddit.calls(r"/r/.*/search")]
    assert bearers == ["bearer fake-token-1"] * 3 + ["bearer fake-token-2"]


def test_reddit_refresh_token_grant_for_installed_apps(reddit, make_connector):
    app = make_connector("reddit", credentials={**APP, "refresh_token": "r-offline-9f8e7d"},
                         config={"queries": ["acme"], "mentions": False, "api_base": reddit.url,
                                 "auth_base": reddit.url})
    reddit.add_post(posts()[0])
    assert poll_connector(app.pk).created == 1
    [grant] = reddit.calls(r"/api/v1/access_token")
    assert grant.form() == {"grant_type": "refresh_token", "refresh_token": "r-offline-9f8e7d"}
    assert grant.headers["user-agent"].startswith("server:cxm-listening:0.1")


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ({**SCRIPT, "client_secret": "wrong"}, "refused the app's client_id or client_secret"),
        ({**SCRIPT, "password": "wrong"}, "refused the app's credentials: invalid_grant"),
        ({**APP, "username": "AcmeCare"}, "no password configured"),
    ],
)
def test_reddit_bad_credentials_are_an_auth_failure_that_stores_nothing(reddit, make_connector, credentials, reason):
    bad = make_connector("reddit", credentials=credentials, config={
        "queries": ["acme"], "api_base": reddit.url, "auth_base": reddit.url})
    reddit.add_post(posts()[0])
    outcome = poll_connector(bad.pk)
    assert reason in outcome.error
    assert "wrong" not in outcome.error and SCRIPT["password"] not in outcome.error
    row = Connector.objects.get(pk=bad.pk)
    assert (row.health, row.cursor) == (Health.DEGRADED, {})
    assert row.last_error.startswith("RedditAuthError:")
    assert not Message.objects.exists()


def test_reddit_a_token_refused_twice_is_an_auth_error(reddit, poller):
    reddit.script("search", Reply(401, fixture("unauthorized")))
    reddit.script("search", Reply(401, fixture("unauthorized")))
    outcome = poll_connector(poller.pk)
    assert outcome.error.endswith("answered 401: " + json.dumps(fixture("unauthorized")))
    assert len(reddit.calls(r"/api/v1/access_token")) == 2  # refreshed once, then gave up
    assert Connector.objects.get(pk=poller.pk).last_error.startswith("ProviderAuthError:")


def test_reddit_a_generic_user_agent_is_refused_so_ours_is_descriptive(reddit, make_connector):
    bare = make_connector("reddit", credentials=SCRIPT, config={
        "queries": ["acme"], "api_base": reddit.url, "auth_base": reddit.url})
    reddit.add_post(posts()[0])
    assert poll_connector(bare.pk).created == 1
    assert reddit.calls(r"/search")[0].headers["user-agent"] == "server:cxm-listening:0.1 (by /u/AcmeCare)"


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (Reply(200, {"kind": "t3", "data": {}}), "malformed Listing: kind must be Listing"),
        (Reply(200, {"kind": "Listing", "data": {"children": {}}}), "field data.children must be list"),
        (Reply(200, {"kind": "Listing", "data": {"children": [{"kind": "t3", "data": {"created_utc": 1}}]}}),
         "missing field data.children[0].data.name"),
        (Reply(200, listing({"name": "t1_x", "created_utc": 1})),
         "data.children[0].data.name is not a t3 fullname"),
        (Reply(200, listing({"name": "t3_x", "created_utc": "soon"})),
         "created_utc must be Unix seconds"),
        (Reply(200, b"<html>our CDN is sad</html>"), "malformed Listing: body must be an object"),
        (Reply(502, "<html>Bad Gateway</html>"), "answered 502"),
    ],
)
def test_reddit_a_failed_or_malformed_page_stores_nothing_and_keeps_the_cursor(reddit, poller, page, expected):
    reddit.add_post(posts()[0])
    reddit.add_mention(mention())
    assert poll_connector(poller.pk).created == 2
    poller.refresh_from_db()
    cursor = poller.cursor
    reddit.add_post(post(1, 1793536000))
    reddit.add_mention({**mention(), "name": "t1_kx9", "id": "kx9", "created_utc": 1793536100.0})
    reddit.script("mentions", page)  # search succeeds, then mentions fails: the whole poll is one page
    outcome = poll_connector(poller.pk, force=True)
    assert expected in outcome.error
    assert outcome.created == 0
    row = Connector.objects.get(pk=poller.pk)
    assert (row.cursor, row.health) == (cursor, Health.DEGRADED)
    assert stored() == ["t1_kx3r9b1", "t3_1c9x7qa"]
    again = poll_connector(poller.pk, force=True)  # the next poll picks both up, once
    assert (again.error, again.created) == ("", 2)
    assert stored() == ["t1_kx3r9b1", "t1_kx9", "t3_1c9x7qa", "t3_p1"]


def test_reddit_429_honours_x_ratelimit_reset(reddit, poller):
    reddit.script("search", Reply(429, {"message": "Too Many Requests", "error": 429}, {"x-ratelimit-reset": "240"}))
    before = timezone.now()
    outcome = poll_connector(poller.pk)
    assert "rate limit" in outcome.error
    row = Connector.objects.get(pk=poller.pk)
    assert row.last_error.startswith("ProviderRateLimited:")
    assert row.next_poll_at >= before + timedelta(seconds=240)


def test_reddit_poll_follows_older_pages_while_everything_is_new_and_catches_late_indexing(reddit, poller):
    poller.config = {**poller.config, "page_size": 2, "mentions": False}
    poller.save()
    reddit.add_post(post(1, 1793530000))
    assert poll_connector(poller.pk).created == 1
    for n in range(2, 7):  # five new posts while we were away: more than one page of two
        reddit.add_post(post(n, 1793530000 + n * 100))
    assert poll_connector(poller.pk, force=True).created == 5
    afters = [c.query.get("after") for c in reddit.calls(r"/r/.*/search")]
    assert afters == [None, None, "t3_p5", "t3_p3"]
    reddit.add_post(post(7, 1793530000 + 550))  # indexed late: older than the newest seen
    assert poll_connector(poller.pk, force=True).created == 1
    assert stored() == [f"t3_p{n}" for n in range(1, 8)]


def test_reddit_deleted_and_odd_items_are_skipped_without_blocking(reddit, poller, caplog):
    reddit.add_post({**post(1, 1793530000), "selftext": "[removed]"})
    reddit.add_post({**post(2, 1793530100), "author": "[deleted]"})
    reddit.add_post(post(3, 1793530200))
    reddit.add_mention({**mention(), "body": "[deleted]"})
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 1)
    assert stored() == ["t3_p3"]
    assert "skipped t3_p2: t3_p2 has no author" in caplog.text
    assert poll_connector(poller.pk, force=True).created == 0


def test_reddit_wants_polling_and_is_due(poller):
    assert RedditConnector.wants_polling({"mentions": True})
    assert not RedditConnector.wants_polling({"mentions": False})
    assert poller.pk in due_polling_connector_ids()


# --- Replies ----------------------------------------------------------------------------------
@pytest.fixture
def sender(make_connector, reddit):
    reddit.add_post(posts()[0])
    reddit.add_mention(mention())
    connector = make_connector("reddit", credentials=SCRIPT, config={
        "queries": ["acme"], "api_base": reddit.url, "auth_base": reddit.url, "user_agent": AGENT})
    return connector.get_backend()


def reply_to(thing: str, text: str = "So sorry about the leak! We have sent you a DM.") -> OutboundReply:
    return OutboundReply(text=text, channel="reddit", recipient_id="steamy_mike", thread_id="t3_1c9x7qa",
                         in_reply_to=thing, idempotency_key="reply-1")


def test_reddit_send_posts_a_comment_on_the_answered_fullname(reddit, sender):
    assert sender.send(reply_to("t1_kx3r9b1")) == "t1_kz00001"
    [call] = reddit.calls(r"/api/comment")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.headers["authorization"] == "bearer fake-token-1"
    assert call.form() == {"api_type": "json", "thing_id": "t1_kx3r9b1",
                           "text": "So sorry about the leak! We have sent you a DM."}
    # No message answered: the comment goes on the submission itself.
    sender.send(OutboundReply(text="Hi all", channel="reddit", recipient_id="x", thread_id="t3_1c9x7qa"))
    assert reddit.comments[-1]["thing_id"] == "t3_1c9x7qa"


def test_reddit_send_reads_the_new_comment_from_the_recorded_answer(reddit, sender):
    reddit.script("comment", Reply(200, fixture("comment_ok")))
    assert sender.send(reply_to("t1_kx3r9b1")) == "t1_kx3s0aa"


@pytest.mark.parametrize(
    ("answer", "error", "check"),
    [
        (fixture("comment_ratelimit"), ProviderRateLimited,
         lambda e: e.retryable and e.retry_after == pytest.approx(299.617153)),
        ({"json": {"errors": [["RATELIMIT", "you are doing that too much. try again in 5 minutes.", "ratelimit"]]}},
         ProviderRateLimited, lambda e: e.retry_after == 300),
        ({"json": {"errors": [["RATELIMIT", "you are doing that too much. try again in 42 seconds.", "ratelimit"]]}},
         ProviderRateLimited, lambda e: e.retry_after == 42),
        (fixture("comment_locked"), ProviderRejected,
         lambda e: not e.retryable and e.reason == "Reddit refused the comment: THREAD_LOCKED: Comments are locked."),
        (fixture("comment_deleted"), ProviderRejected, lambda e: "DELETED_COMMENT" in e.reason),
        ({"json": {"errors": [["USER_REQUIRED", "Please log in to do that.", None]]}}, RedditAuthError,
         lambda e: not e.retryable),
        ({"json": {"errors": [], "data": {"things": []}}}, ProviderRejected, lambda e: "may" not in e.reason),
        ({"jquery": []}, ProviderRejected, lambda e: "may have been posted" in e.reason),
    ],
)
def test_reddit_send_maps_comment_errors(reddit, sender, answer, error, check):
    reddit.script("comment", Reply(200, answer))
    with pytest.raises(error) as caught:
        sender.send(reply_to("t1_kx3r9b1"))
    assert check(caught.value)
    assert len(reddit.calls(r"/api/comment")) == 1  # never posted twice by us


def test_reddit_send_into_a_locked_thread_is_permanent_with_the_reason(reddit, sender):
    reddit.locked.add("t3_1c9x7qa")
    with pytest.raises(ProviderRejected, match="THREAD_LOCKED: Comments are locked") as caught:
        sender.send(reply_to("t1_kx3r9b1"))
    assert not caught.value.retryable
    assert reddit.comments == []


def test_reddit_send_after_token_expiry_refreshes_and_posts_once(reddit, sender):
    sender.send(reply_to("t1_kx3r9b1"))
    reddit.expire_tokens()
    assert sender.send(reply_to("t3_1c9x7qa", "Second")) == "t1_kz00002"
    assert [c["text"] for c in reddit.comments][-1] == "Second"
    assert len(reddit.calls(r"/api/comment")) == 3  # one refused with 401 (not posted), then retried
    assert len(reddit.calls(r"/api/v1/access_token")) == 2


def test_reddit_send_429_is_rate_limited_with_the_reset(reddit, sender):
    reddit.script("comment", Reply(429, "Too Many Requests", {"x-ratelimit-reset": "77"}))
    with pytest.raises(ProviderRateLimited) as caught:
        sender.send(reply_to("t1_kx3r9b1"))
    assert caught.value.retry_after == 77


@pytest.mark.parametrize("thing", ["", "t2_abc", "t1_ABC", "t3_" + "a" * 14, "t1_x/../../api"])
def test_reddit_send_without_a_fullname_is_rejected_before_calling(reddit, sender, thing):
    with pytest.raises(ProviderRejected):
        sender.send(OutboundReply(text="hi", channel="reddit", recipient_id="x", thread_id=thing, in_reply_to=thing))
    assert reddit.calls(r"/api/comment") == []


def test_reddit_reply_rules():
    rules = RedditConnector.reply_rules(None, "reddit")
    assert (rules.max_chars, rules.window_hours, rules.media) == (10_000, None, False)


# --- A reply through the console's delivery ------------------------------------------------------
@pytest.fixture
def reddit_case(reddit, poller, settings, django_user_model):
    """A polled mention routed into a case of a team that owns the Reddit connector."""
    settings.CXM_CLASSIFY_ON_INGEST = False
    team = Team.objects.create(name="Social", slug="social")
    ensure_default_queues(team)
    team.connectors.add(poller)
    reddit.add_mention(mention())
    assert poll_connector(poller.pk).created == 1
    message = Message.objects.get(connector=poller)
    classify(message)
    route_messages([message.pk])
    agent = make_user(django_user_model, "agent_reddit", Role.AGENT, [team])
    return Case.objects.get(conversation=message.conversation), agent


def test_reddit_console_reply_waits_out_ratelimit_then_comments_once(
        reddit_case, reddit, django_capture_on_commit_callbacks):
    case, agent = reddit_case
    reddit.script("comment", Reply(200, fixture("comment_ratelimit")))
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "So sorry about the leak! We have sent you a DM.")
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.PENDING and "RATELIMIT" in reply.last_error
    assert 295 <= (reply.next_attempt_at - timezone.now()).total_seconds() <= 300.5
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.DELIVERED and reply.attempts == 2
    assert [c.form()["thing_id"] for c in reddit.calls(r"/api/comment")] == ["t1_kx3r9b1"] * 2
    [posted] = reddit.comments
    out = Message.objects.get(pk=reply.message_id)
    assert out.external_id == "t1_kz00001" and out.conversation_id == case.conversation_id
    assert posted["text"] == "So sorry about the leak! We have sent you a DM."


def test_reddit_console_reply_into_a_locked_thread_fails_at_once_with_the_reason(
        reddit_case, reddit, django_capture_on_commit_callbacks):
    case, agent = reddit_case
    reddit.locked.add("t3_1c9x7qa")
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Hello again")
    reply.refresh_from_db()
    assert reply.status == CaseReply.Status.FAILED and reply.attempts == 1
    assert "THREAD_LOCKED: Comments are locked." in reply.last_error
    assert reddit.comments == []


def test_reddit_console_refuses_an_overlong_reply_before_sending(reddit_case, reddit):
    # Reddit's own limit (the connector's reply rules), not a console-wide one.
    case, agent = reddit_case
    with pytest.raises(InvalidRequest, match="replies are at most 10000 characters; this one is 10001"):
        replies.send_reply(agent, case.pk, "x" * 10_001)
    assert reddit.calls(r"/api/comment") == []
    assert not CaseReply.objects.exists()
    assert replies.send_reply(agent, case.pk, "x" * 10_000).text == "x" * 10_000


# --- Configuration ----------------------------------------------------------------------------
def test_reddit_is_registered_with_its_config_and_credentials():
    assert get_connector_class("reddit") is RedditConnector
    assert RedditConnector.credential_fields == ("client_id", "client_secret", "username", "password", "refresh_token")
    assert RedditConnector.validate_config({}) == {
        "subreddits": [], "queries": [], "mentions": True, "user_agent": "", "page_size": 100,
        "api_base": "https://oauth.reddit.com", "auth_base": "https://www.reddit.com"}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"subreddits": ["r/espresso"]}, "subreddits must be a list of subreddit names"),
        ({"subreddits": "espresso"}, "subreddits must be a list"),
        ({"queries": [""]}, "queries must be a list of search queries"),
        ({"queries": ["a", "a"]}, "at most 20 distinct"),
        ({"mentions": False}, "at least one query"),
        ({"mentions": "yes"}, "mentions must be true or false"),
        ({"user_agent": "bot\nInjected: 1"}, "user_agent must be"),
        ({"page_size": 0}, "page_size must be an integer from 1 to 100"),
        ({"api_base": "https://oauth.reddit.com/api"}, "api_base must be an http(s) URL with no path"),
        ({"auth_base": "file:///etc/passwd"}, "auth_base must be an http(s) URL"),
        ({"token": "x"}, "unknown config keys for reddit: token"),
    ],
)
def test_reddit_invalid_config_is_refused_with_the_key(config, reason):
    with pytest.raises(ConfigInvalid, match=reason.replace("(", r"\(").replace(")", r"\)")):
        RedditConnector.validate_config(config)


def test_reddit_api_base_pointing_inward_is_refused_in_production(reddit, make_connector, settings):
    settings.ALLOW_PRIVATE_URLS = False
    inward = make_connector("reddit", credentials=SCRIPT, config={
        "queries": ["acme"], "api_base": reddit.url, "auth_base": reddit.url})
    outcome = poll_connector(inward.pk)
    assert "resolves to a non-public address" in outcome.error
    assert reddit.calls(r".*") == []

