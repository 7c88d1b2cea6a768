"""What the admin pages need from the Reddit connector, against the fake Reddit over real HTTP: the
connect form's words, "test connection" (/api/v1/me), Connect with Reddit (a permanent refresh
token), rate-limit headroom from X-Ratelimit-* and backfill walking listings back with `after`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from listening.actions import ingest_messages
from listening.connectors import reddit as reddit_module
from listening.connectors.reddit import RedditAuthError, RedditConnector
from listening.exceptions import ProviderRateLimited
from listening.models import Message
from listening.polling import poll_connector
from tests.fakes.http import Reply
from tests.fakes.oauth import authorize_url, exchange_code
from tests.fakes.reddit import FakeReddit

APP = {"client_id": "p-jcoLKBynTLew", "client_secret": "gko_LXELoV07ZBNUXrvWZfzE3aI"}
SCRIPT = {**APP, "username": "AcmeCare", "password": "correct horse battery"}
AGENT = "server:com.acme.cxm:0.1 (by /u/AcmeCare)"
REDIRECT = "https://cxm.example.com/connect/reddit/callback/"
SINCE = datetime(2026, 10, 10, tzinfo=UTC)


def day(n: int) -> float:
    return datetime(2026, 10, n, 12, tzinfo=UTC).timestamp()


def post(n: int) -> dict[str, Any]:
    """An r/espresso post about acme, written on 2026-10-<n>."""
    return {"name": f"t3_p{n}", "id": f"p{n}", "subreddit": "espresso", "title": f"Acme kettle question {n}",
            "selftext": "help?", "is_self": True, "author": f"user_{n}", "created_utc": day(n),
            "permalink": f"/r/espresso/comments/p{n}/acme/"}


def mention(n: int) -> dict[str, Any]:
    return {"name": f"t1_m{n}", "id": f"m{n}", "parent_id": "t3_p1", "link_id": "t3_p1", "author": f"fan_{n}",
            "body": f"u/AcmeCare look at this {n}", "created_utc": day(n), "subreddit": "espresso",
            "context": f"/r/espresso/comments/p1/acme/m{n}/?context=3"}


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    reddit_module._tokens.clear()
    yield
    reddit_module._tokens.clear()


@pytest.fixture
def reddit(fake_provider) -> FakeReddit:
    return FakeReddit(fake_provider, client_id=APP["client_id"], client_secret=APP["client_secret"],
                      username=SCRIPT["username"], password=SCRIPT["password"])


def config(reddit: FakeReddit, **extra: Any) -> dict[str, Any]:
    return {"subreddits": ["espresso"], "queries": ["acme"], "user_agent": AGENT, "api_base": reddit.url,
            "auth_base": reddit.url, **extra}


@pytest.fixture
def account(make_connector, reddit):
    return make_connector("reddit", slug="rdt", credentials=SCRIPT, config=config(reddit, page_size=2))


def test_reddit_connect_form_explains_every_key_and_requires_the_app_id():
    assert set(RedditConnector.config_help) == set(RedditConnector.config_defaults)
    assert set(RedditConnector.credential_help) == set(RedditConnector.credential_fields)
    assert RedditConnector.required_credentials == ("client_id",)
    assert "prefs/apps" in RedditConnector.credential_help["client_id"]


# --- Test connection -----------------------------------------------------------------------------
def test_reddit_check_signs_in_and_notes_the_headroom(reddit, account):
    backend = account.get_backend()
    said = backend.check_connection()
    assert said == 'Signed in as u/AcmeCare; listening to "acme" in r/espresso, mentions.'
    [call] = reddit.calls("/api/v1/me")
    assert call.headers["user-agent"] == AGENT
    limit = backend.rate_limit
    assert (limit.remaining, limit.limit) == (599, 600)
    assert abs((limit.resets_at - timezone.now()) - timedelta(seconds=412)) < timedelta(seconds=5)
    assert Message.objects.count() == 0


def test_reddit_check_without_a_way_to_sign_in_fails_before_calling(make_connector, reddit):
    row = make_connector("reddit", credentials=APP, config=config(reddit))
    with pytest.raises(RedditAuthError, match="needs a refresh_token .Connect with Reddit. or, for a script app"):
        row.get_backend().check_connection()
    assert reddit.provider.requests == []


def test_reddit_check_with_a_wrong_password_is_reddits_words_without_it(make_connector, reddit):
    row = make_connector("reddit", credentials={**SCRIPT, "password": "hunter2-wrong"}, config=config(reddit))
    with pytest.raises(RedditAuthError) as caught:
        row.get_backend().check_connection()
    assert caught.value.reason == "Reddit refused the app's credentials: invalid_grant"
    assert "hunter2" not in str(caught.value)


# --- Rate limits -------------------------------------------------------------------------------
def test_reddit_poll_notes_the_headroom_of_its_last_answer(reddit, account):
    backend = account.get_backend()
    backend.poll({})  # the search, then the mentions
    assert (backend.rate_limit.remaining, backend.rate_limit.limit) == (598, 600)


def test_reddit_429_notes_no_headroom_left_before_raising(reddit, account):
    reddit.script("search", Reply(429, {"message": "Too Many Requests", "error": 429}, {
        "x-ratelimit-remaining": "0.0", "x-ratelimit-used": "600", "x-ratelimit-reset": "240"}))
    backend = account.get_backend()
    with pytest.raises(ProviderRateLimited):
        backend.poll({})
    assert (backend.rate_limit.remaining, backend.rate_limit.limit) == (0, 600)
    assert abs((backend.rate_limit.resets_at - timezone.now()) - timedelta(seconds=240)) < timedelta(seconds=5)


@pytest.mark.parametrize("remaining", ["nan", "inf", "lots", ""])
def test_reddit_junk_rate_limit_headers_are_ignored(reddit, account, remaining):
    reddit.script("me", Reply(200, {"name": "AcmeCare"}, {"x-ratelimit-remaining": remaining,
                                                          "x-ratelimit-reset": "1e400"}))
    backend = account.get_backend()
    backend.check_connection()
    assert backend.rate_limit is None


# --- OAuth -------------------------------------------------------------------------------------
def test_reddit_oauth_asks_a_permanent_grant_and_saves_the_refresh_token(make_connector, reddit):
    row = make_connector("reddit", credentials=APP, config=config(reddit))
    backend = row.get_backend()
    url = urlsplit(authorize_url(backend, REDIRECT, "st4te"))
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{reddit.url}/api/v1/authorize"
    assert (query["duration"], query["scope"]) == (["permanent"], ["identity read privatemessages submit"])
    assert "code_challenge" not in query

    answer = exchange_code(backend, reddit.authorize(REDIRECT), REDIRECT)
    assert answer["token_type"] == "bearer" and answer["refresh_token"] == reddit.refresh_token
    [call] = reddit.calls("/api/v1/access_token")
    assert call.headers["authorization"].startswith("Basic ") and "client_secret" not in call.form()
    saved = backend.oauth_credentials(answer)
    assert saved == {"refresh_token": reddit.refresh_token}
    row.credentials = {**row.credentials, **saved}
    row.save()
    assert row.get_backend().check_connection().startswith("Signed in as u/AcmeCare;")
    assert reddit.calls("/api/v1/access_token")[-1].form()["grant_type"] == "refresh_token"


@pytest.mark.parametrize(("duration", "code", "reason"), [
    ("temporary", None, "ask for duration=permanent"),
    ("permanent", "code-forged", "invalid_grant"),
])
def test_reddit_oauth_without_a_refresh_token_saves_nothing(make_connector, reddit, duration, code, reason):
    backend = make_connector("reddit", credentials=APP, config=config(reddit)).get_backend()
    answer = exchange_code(backend, code or reddit.authorize(REDIRECT, duration=duration), REDIRECT)
    with pytest.raises(RedditAuthError, match=f"no refresh_token: .*{reason}"):
        backend.oauth_credentials(answer)


# --- Backfill ----------------------------------------------------------------------------------
def test_reddit_backfill_walks_back_with_after_and_stops_at_since(reddit, account):
    for n in range(5, 15):
        reddit.add_post(post(n))
    for n in (8, 11, 12):
        reddit.add_mention(mention(n))
    backend, state, pages = account.get_backend(), {}, []
    for _ in range(10):
        page = backend.backfill(SINCE, state)
        assert all(m.sent_at >= SINCE for m in page.messages)
        pages.append(([m.external_id for m in page.messages], page.cursor))
        state = page.cursor
        if not page.more:
            break
    assert pages == [
        (["t1_m11", "t1_m12", "t3_p13", "t3_p14"], {"sources": {"search:espresso:acme": {"after": "t3_p13"},
                                                                "mentions": {"after": "t1_m11"}}}),
        (["t3_p11", "t3_p12"], {"sources": {"search:espresso:acme": {"after": "t3_p11"}, "mentions": {"done": True}}}),
        (["t3_p10"], {"sources": {"search:espresso:acme": {"done": True}, "mentions": {"done": True}}}),
    ]
    searches = reddit.calls(r"/r/espresso/search")
    assert [(c.query["sort"], c.query.get("after")) for c in searches] == [("new", None), ("new", "t3_p13"),
                                                                          ("new", "t3_p11")]
    mentions = reddit.calls("/message/mentions")
    assert [c.query.get("after") for c in mentions] == [None, "t1_m11"]  # a finished source is not asked again


def test_reddit_backfill_overlapping_the_polled_page_is_stored_once(reddit, make_connector):
    row = make_connector("reddit", credentials=SCRIPT, config=config(reddit, page_size=2, mentions=False))
    for n in range(5, 15):
        reddit.add_post(post(n))
    assert poll_connector(row.pk).created == 2  # a first poll takes the newest page only
    backend, state, created, duplicates = row.get_backend(), {}, 0, 0
    for _ in range(10):
        page = backend.backfill(SINCE, state)
        result = ingest_messages(row, page.messages)
        created, duplicates, state = created + result.created, duplicates + result.duplicates, page.cursor
        if not page.more:
            break
    assert (created, duplicates) == (3, 2)
    assert sorted(Message.objects.values_list("external_id", flat=True)) == [f"t3_p{n}" for n in range(10, 15)]
