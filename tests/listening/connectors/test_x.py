"""The X connector end to end against a fake X API v2 over real HTTP (tests/fakes/x.py): polling
mentions and recent search with since_id, Account Activity webhooks through /hooks/<slug>/ (CRC,
signatures), replies as posts and DMs with the OAuth 2 refresh, check_connection and backfill."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from listening.connectors import get_connector_class
from listening.connectors.base import OutboundReply
from listening.connectors.x import XAuthError, XConnector, crc_response_token
from listening.connectors.x_payloads import weighted_length
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    SecretNotConfigured,
)
from listening.models import Connector, Contact, Conversation, Direction, Message
from listening.polling import poll_connector
from responses import replies
from responses.models import Case, Reply as CareReply, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.fakes.http import Reply
from tests.fakes.x import BRAND, FakeX, fixture, mint, sign
from tests.listening.helpers import run_concurrently
from tests.responses.conftest import classify, make_user

BEARER = "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDjRfl76ZC9Ub0wn"
CONSUMER_SECRET = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"
CLIENT_ID, CLIENT_SECRET = "M1M5R3BMVy13QmpScXkzTUt5OE46MTpjaQ", "vB8Y2fH4-kq9wXq0u3k6tZ_pLr1eJm5nS7cA2dQx"
ACCESS = "bWRWeVJfRjVnOUd6bTJxbUhGT2VoMXBfX0VBdG1uMjVQaHJOQmZ2NzZaMFBtOjE"
REFRESH = "b2NwM0tIWTlPSUNyQlRldGp4eThOTkVtU1V3dFYy"
CREDENTIALS = {"bearer_token": BEARER, "consumer_secret": CONSUMER_SECRET, "client_id": CLIENT_ID,
               "client_secret": CLIENT_SECRET, "access_token": ACCESS, "refresh_token": REFRESH}
ADA = {"id": "1522201468510494720", "name": "Ada Lovelace", "username": "ada_l",
       "public_metrics": {"followers_count": 1280, "following_count": 301, "tweet_count": 4410}}
BOB = {"id": "1390000000000000001", "name": "Bob", "username": "bob_b", "public_metrics": {"followers_count": 3}}
MENTIONS = rf"/2/users/{BRAND['id']}/mentions"
SEARCH = r"/2/tweets/search/recent"


@pytest.fixture
def x(fake_provider) -> FakeX:
    return FakeX(fake_provider, bearer=BEARER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                 access_token=ACCESS, refresh_token=REFRESH)


def make_x(make_connector, x: FakeX | None = None, *, credentials: dict | None = None, slug: str | None = None,
           **config: Any) -> Connector:
    settings = {"user_id": BRAND["id"], **({"api_base": x.url} if x else {}), **config}
    fields = {"slug": slug} if slug else {}
    return make_connector("x", config=settings, credentials=CREDENTIALS if credentials is None else credentials,
                          **fields)


@pytest.fixture
def poller(make_connector, x):
    return make_x(make_connector, x, slug="x-poll", queries=["kettle"], page_size=10)


@pytest.fixture
def hook(make_connector):
    return make_x(make_connector, slug="x-hook", mode="webhook")


def stored_ids() -> list[str]:
    return sorted(Message.objects.values_list("external_id", flat=True))


def deliver(client, connector, payload: Any, *, secret: str | None = CONSUMER_SECRET, headers: dict | None = None):
    """POST an Account Activity delivery signed the way X signs it (unsigned with secret=None)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = sign(secret, body) if secret is not None else {}
    return client.post(f"/hooks/{connector.slug}/", data=body, content_type="application/json",
                       headers={**signed, **(headers or {})})


# --- Polling -----------------------------------------------------------------------------------
def test_x_poll_stores_a_mention_also_found_by_search_once_as_plain_text(x, poller):
    mentioned = x.add_post("@AcmeCare my kettle order #4411 arrived with a cracked lid &amp; no manual &lt;3",
                           ADA, minutes_ago=5)
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created, outcome.duplicates) == ("", 1, 0)
    message = Message.objects.get()
    assert (message.external_id, message.channel) == (mentioned["id"], "x")
    assert message.text == "@AcmeCare my kettle order #4411 arrived with a cracked lid & no manual <3"
    assert message.url == f"https://x.com/ada_l/status/{mentioned['id']}"
    assert message.conversation.external_id == mentioned["id"]
    author = message.author
    assert (author.external_id, author.handle, author.display_name, author.profile_url, author.followers) == (
        ADA["id"], "ada_l", "Ada Lovelace", "https://x.com/ada_l", 1280)
    [mentions], [search] = x.calls(MENTIONS), x.calls(SEARCH)
    for call in (mentions, search):
        assert call.headers["authorization"] == f"Bearer {BEARER}"
        assert call.query["tweet.fields"].split(",")[:6] == ["created_at", "conversation_id", "author_id",
                                                             "in_reply_to_user_id", "referenced_tweets", "lang"]
        assert (call.query["expansions"], call.query["user.fields"]) == ("author_id", "username,name,public_metrics")
        assert (call.query["max_results"], "since_id" in call.query) == ("10", False)
    assert search.query["query"] == "kettle"
    poller.refresh_from_db()
    key = next(k for k in poller.cursor if k.startswith("search:"))
    assert poller.cursor == {"mentions": {"since": mentioned["id"]}, key: {"since": mentioned["id"]}}
    assert BEARER not in json.dumps(poller.cursor) and "kettle" not in key

    again = poll_connector(poller.pk, force=True)
    assert (again.error, again.created) == ("", 0)
    assert x.calls(MENTIONS)[-1].query["since_id"] == x.calls(SEARCH)[-1].query["since_id"] == mentioned["id"]
    assert Message.objects.count() == 1


def test_x_poll_skips_our_own_posts_and_reposts(x, poller):
    x.add_post("@AcmeCare kettle lid cracked", ADA, minutes_ago=9)
    x.add_post("Our kettle sale starts today", BRAND, minutes_ago=8)  # found by the search: ours
    x.add_post("RT @ada_l: @AcmeCare kettle lid cracked", BOB, minutes_ago=7, repost_of="1")
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 1)
    assert Message.objects.get().author.external_id == ADA["id"]
    assert not Contact.objects.filter(external_id=BRAND["id"]).exists()


def test_x_poll_threads_replies_by_conversation_and_replied_to(x, poller):
    root = x.add_post("@AcmeCare where is order 4411?", ADA, minutes_ago=20)
    answer = x.add_post("@ada_l @AcmeCare same problem with 4415", BOB, minutes_ago=10, reply_to=root["id"])
    poll_connector(poller.pk)
    reply = Message.objects.get(external_id=answer["id"])
    assert reply.parent.external_id == root["id"] and reply.parent_external_id == root["id"]
    assert reply.conversation.external_id == root["id"] == reply.parent.conversation.external_id
    assert Conversation.objects.get().message_count == 2


def test_x_first_poll_takes_the_newest_page_only(x, poller):
    posts = [x.add_post(f"@AcmeCare problem number {n}", ADA, minutes_ago=60 - n) for n in range(25)]
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.pages, outcome.created) == ("", 1, 10)
    assert stored_ids() == sorted(p["id"] for p in posts[-10:])
    poller.refresh_from_db()
    assert poller.cursor["mentions"] == {"since": posts[-1]["id"]}


def test_x_poll_walks_a_backlog_with_next_token_and_moves_since_id_only_at_the_end(x, poller):
    first = x.add_post("@AcmeCare problem number 0", ADA, minutes_ago=60)
    poll_connector(poller.pk)
    news = [x.add_post(f"@AcmeCare problem number {n}", ADA, minutes_ago=50 - n) for n in range(1, 26)]
    outcome = poll_connector(poller.pk, force=True)
    assert (outcome.error, outcome.pages, outcome.created) == ("", 3, 25)
    calls = x.calls(MENTIONS)[1:]
    assert [c.query.get("since_id") for c in calls] == [first["id"]] * 3
    assert "pagination_token" not in calls[0].query and all(c.query["pagination_token"] for c in calls[1:])
    assert len(x.calls(SEARCH)) == 2  # while mentions walked, the search was not called again
    poller.refresh_from_db()
    assert poller.cursor["mentions"] == {"since": news[-1]["id"]}
    assert stored_ids() == sorted([first["id"], *(p["id"] for p in news)])


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (Reply(503, {"title": "Service Unavailable", "detail": "Service Unavailable", "status": 503}),
         "failed (503): Service Unavailable"),
        (Reply(200, b'{"data": [{"id": "3497'), "without a JSON object"),
        (Reply(200, {"data": [{"id": "1", "text": "hi", "author_id": "2"}]}), "missing field data[0].created_at"),
        (Reply(200, {"data": [{"id": "../x", "text": "hi", "author_id": "2", "created_at": "2026-11-24T09:14:07Z"}]}),
         "data[0].id is not an X id"),
        (Reply(200, {"data": "posts"}), "field data must be list"),
    ],
)
def test_x_poll_bad_page_stores_nothing_keeps_the_cursor_then_resumes(x, poller, page, expected):
    x.add_post("@AcmeCare problem number 0", ADA, minutes_ago=60)
    poll_connector(poller.pk)
    for n in range(1, 26):
        x.add_post(f"@AcmeCare problem number {n}", ADA, minutes_ago=50 - n)
    x.fail(MENTIONS, page, after=1)  # the first page passes, the second is bad
    first = poll_connector(poller.pk, force=True)
    assert (first.pages, first.created) == (1, 10)
    assert expected in first.error
    poller.refresh_from_db()
    assert set(poller.cursor["mentions"]) == {"since", "next", "top"}  # mid-walk, kept
    assert poller.last_error.startswith("ProviderUnavailable:")
    second = poll_connector(poller.pk, force=True)
    assert (second.error, second.created, second.duplicates) == ("", 15, 0)
    poller.refresh_from_db()
    assert (set(poller.cursor["mentions"]), Message.objects.count()) == ({"since"}, 26)


def test_x_poll_rate_limited_backs_off_until_the_reset_and_stores_nothing(x, poller):
    reset = int(timezone.now().timestamp()) + 300
    x.fail(SEARCH, Reply(429, fixture("error_429"), {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0",
                                                     "x-rate-limit-reset": str(reset)}))
    x.add_post("@AcmeCare kettle broken", ADA, minutes_ago=1)
    outcome = poll_connector(poller.pk)
    assert outcome.error == "X /2/tweets/search/recent failed (429): Too Many Requests"
    row = Connector.objects.get(pk=poller.pk)
    assert (row.cursor, Message.objects.count()) == ({}, 0)  # the mentions page was not stored alone
    assert row.next_poll_at >= timezone.now() + timedelta(minutes=4)
    x.fail(SEARCH, Reply(429, fixture("error_429"), {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}))
    backend = poller.get_backend()
    with pytest.raises(ProviderRateLimited) as caught:
        backend.poll({})
    assert 295 <= caught.value.retry_after <= 300 and caught.value.status == 429
    assert backend.rate_limit.remaining == 0 and backend.rate_limit.resets_at == datetime.fromtimestamp(reset, UTC)


def test_x_poll_notes_the_rate_limit_headroom_of_every_answer(x, poller):
    backend = poller.get_backend()
    backend.poll({})
    limit = backend.rate_limit
    assert (limit.remaining, limit.limit) == (449, 450)
    assert limit.resets_at == datetime.fromtimestamp(x.reset_at, UTC)
    backend.poll({})
    assert backend.rate_limit.remaining == 448


def test_x_search_cursor_older_than_seven_days_restarts_from_the_newest_page(x, poller):
    stale = mint(datetime.now(UTC) - timedelta(days=8), 1)
    recent = x.add_post("@AcmeCare kettle leaks", ADA, minutes_ago=3)
    backend = poller.get_backend()
    key = backend.sources(backend.validate_config(poller.config))[1].key
    page = backend.poll({"mentions": {"since": recent["id"]}, key: {"since": stale, "next": "7140dibd"}})
    assert [m.external_id for m in page.messages] == [recent["id"]]
    assert "since_id" not in x.calls(SEARCH)[-1].query and "next_token" not in x.calls(SEARCH)[-1].query
    assert page.cursor[key] == {"since": recent["id"]} and not page.more


def test_x_poll_with_a_wrong_bearer_token_is_an_auth_error(make_connector, x):
    row = make_x(make_connector, x, credentials={**CREDENTIALS, "bearer_token": "revoked"})
    outcome = poll_connector(row.pk)
    assert outcome.error == f"X /2/users/{BRAND['id']}/mentions failed (401): Unauthorized"
    assert Connector.objects.get(pk=row.pk).last_error.startswith("XUnauthorized:")
    assert "revoked" not in Connector.objects.get(pk=row.pk).last_error


# --- Webhooks: the challenge-response check ------------------------------------------------------
def test_x_crc_answers_with_the_hmac_of_the_token(client, hook):
    token = "9b4507b3-9040-4669-9ca3-6b94edb50553"  # the example token of X's published CRC samples
    response = client.get(f"/hooks/{hook.slug}/", {"crc_token": token})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    digest = hmac.new(CONSUMER_SECRET.encode(), token.encode(), hashlib.sha256).digest()
    assert response.json() == {"response_token": "sha256=" + base64.b64encode(digest).decode()}
    assert response.json() == {"response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="}
    assert not Message.objects.exists()


def test_x_crc_token_matches_the_published_hmac_sha256_vector():
    # RFC 4231, test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    expected = base64.b64encode(bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
    assert crc_response_token("Jefe", "what do ya want for nothing?") == "sha256=" + expected.decode()


@pytest.mark.parametrize("token", ["", "x" * 513, '{"for_user_id": "2244994945"}', "has space", "a\nb"])
def test_x_crc_refuses_a_token_that_is_not_a_token(client, hook, token):
    # A JSON-looking token would make the answer a signature for a delivery of an attacker's choosing.
    response = client.get(f"/hooks/{hook.slug}/", {"crc_token": token})
    assert response.status_code == 400 and "crc_token" in response.json()["reason"]
    assert b"sha256=" not in response.content


def test_x_crc_fails_closed_without_a_consumer_secret_and_a_bare_get_is_refused(client, make_connector, hook):
    bare = make_x(make_connector, slug="x-bare", mode="webhook", credentials={"bearer_token": BEARER})
    response = client.get(f"/hooks/{bare.slug}/", {"crc_token": "abc"})
    assert (response.status_code, response.json()["error"]) == (403, "secret_not_configured")
    assert deliver(client, bare, fixture("activity_mention"), secret="").status_code == 403
    assert client.get(f"/hooks/{hook.slug}/").status_code == 405
    assert not Message.objects.exists()


# --- Webhooks: deliveries ------------------------------------------------------------------------
def test_x_mention_delivered_three_times_is_stored_once(client, hook):
    statuses = [deliver(client, hook, fixture("activity_mention")).json() for _ in range(3)]
    assert statuses == [{"stored": 1, "duplicates": 0}] + [{"stored": 0, "duplicates": 1}] * 2
    message = Message.objects.get()
    assert (message.external_id, message.channel) == ("2125157520241590272", "x")
    assert message.text == "@AcmeCare still waiting on #4411 & nobody answers"
    assert message.sent_at == datetime(2026, 11, 24, 9, 20, 11, tzinfo=UTC)
    assert message.parent_external_id == "2125155993514934272"
    assert message.url == "https://x.com/ada_l/status/2125157520241590272"
    assert (message.author.external_id, message.author.handle, message.author.followers) == (ADA["id"], "ada_l", 1280)
    assert message.raw["for_user_id"] == BRAND["id"]
    hook.refresh_from_db()
    assert (hook.messages_received, hook.duplicates_received) == (1, 2)


def test_x_direct_message_is_one_conversation_per_customer(client, hook):
    first = fixture("activity_dm")
    second = copy.deepcopy(first)
    event = second["direct_message_events"][0]
    event["id"], event["created_timestamp"] = "2125158023558070999", "1795512191000"
    event["message_create"]["message_data"]["text"] = "Any news?"
    assert deliver(client, hook, first).json() == {"stored": 1, "duplicates": 0}
    assert deliver(client, hook, second).json() == {"stored": 1, "duplicates": 0}
    assert deliver(client, hook, first).json() == {"stored": 0, "duplicates": 1}
    message = Message.objects.get(external_id="dm:2125158023558070272")
    assert message.channel == "x_dm"
    assert message.text == "Hi! Order 4412: can you change the address to 10 Downing St & keep the gift note?"
    assert (message.author.external_id, message.author.handle, message.author.display_name) == (
        "3001969357", "grace_h", "Grace Hopper")
    conversation = Conversation.objects.get()
    assert (conversation.external_id, conversation.channel, conversation.message_count) == ("dm:3001969357", "x_dm", 2)


def _own(kind: str) -> dict[str, Any]:
    if kind == "own_post":
        body = fixture("activity_mention")
        body["tweet_create_events"][0]["user"].update(id_str=BRAND["id"], screen_name="AcmeCare")
    elif kind == "own_dm":
        body = fixture("activity_dm")
        create = body["direct_message_events"][0]["message_create"]
        create["sender_id"], create["target"]["recipient_id"] = BRAND["id"], "3001969357"
    elif kind == "repost":
        body = fixture("activity_mention")
        body["tweet_create_events"][0]["retweeted_status"] = {"id_str": "2125155993514934272"}
    elif kind == "blocked":
        body = {**fixture("activity_mention"), "user_has_blocked": "true"}
    elif kind == "other_account":
        body = {**fixture("activity_mention"), "for_user_id": "783214"}
    elif kind == "typing":
        body = {"for_user_id": BRAND["id"], "direct_message_indicate_typing_events": [
            {"created_timestamp": "1795512131000", "sender_id": "3001969357", "target": {"recipient_id": BRAND["id"]}}]}
    else:
        body = fixture(kind)
    return body


@pytest.mark.parametrize("kind", ["own_post", "own_dm", "repost", "blocked", "other_account", "typing",
                                  "activity_favorite"])
def test_x_our_own_activity_and_other_events_are_accepted_and_skipped(client, hook, kind):
    response = deliver(client, hook, _own(kind))
    assert response.status_code == 200  # anything else and X would retry it
    assert response.json() == {"stored": 0, "duplicates": 0}
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_x_webhook_reply_joins_the_polled_conversation(client, make_connector, x):
    both = make_x(make_connector, x, slug="x-both", mode="both")
    root = x.add_post("@AcmeCare where is order 4411?", ADA, minutes_ago=20)
    poll_connector(both.pk)
    body = fixture("activity_mention")
    body["tweet_create_events"][0]["in_reply_to_status_id_str"] = root["id"]
    assert deliver(client, both, body).json() == {"stored": 1, "duplicates": 0}
    reply = Message.objects.get(external_id="2125157520241590272")
    assert reply.parent.external_id == root["id"] and reply.conversation.external_id == root["id"]


def test_x_signature_missing_forged_or_from_another_secret_stores_nothing(client, hook):
    body = json.dumps(fixture("activity_mention")).encode()
    good = sign(CONSUMER_SECRET, body)["x-twitter-webhooks-signature"]
    cases = [
        ({}, 401, "signature_missing"),
        ({"x-twitter-webhooks-signature": ""}, 401, "signature_missing"),
        ({"x-twitter-webhooks-signature": "sha256=" + "A" * 43 + "="}, 403, "signature_invalid"),
        ({"x-twitter-webhooks-signature": good.replace("sha256=", "sha1=")}, 403, "signature_invalid"),
        ({"x-twitter-webhooks-signature": good.removeprefix("sha256=")}, 403, "signature_invalid"),
        (sign("someone-elses-consumer-secret", body), 403, "signature_invalid"),
    ]
    for headers, status, code in cases:
        response = client.post(f"/hooks/{hook.slug}/", data=body, content_type="application/json", headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, code), headers
    # The signature covers the raw bytes: the same JSON re-serialised does not pass.
    pretty = json.dumps(fixture("activity_mention"), indent=2).encode()
    response = client.post(f"/hooks/{hook.slug}/", data=pretty, content_type="application/json",
                           headers={"x-twitter-webhooks-signature": good})
    assert response.status_code == 403
    assert not Message.objects.exists()
    hook.refresh_from_db()
    assert hook.deliveries_rejected == len(cases) + 1


def test_x_rejects_an_oversized_body(client, hook, settings):
    settings.WEBHOOK_MAX_BYTES = 4096
    payload = fixture("activity_mention")
    payload["tweet_create_events"][0]["text"] = "x" * 8000
    assert deliver(client, hook, payload).status_code == 413
    assert not Message.objects.exists()


def _with(path: tuple, value: Any, name: str = "activity_mention") -> bytes:
    payload = fixture(name)
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(payload).encode()


POST, DM = ("tweet_create_events", 0), ("direct_message_events", 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2]", "body must be an Account Activity object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (_with(("for_user_id",), KeyError), "missing field for_user_id"),
        (_with(("for_user_id",), "@AcmeCare"), "for_user_id is not an X id"),
        (_with(("tweet_create_events",), {"id_str": "1"}), "field tweet_create_events must be list"),
        (_with((*POST,), "a post"), "tweet_create_events[0] must be an object"),
        (_with((*POST, "id_str"), KeyError), "missing field tweet_create_events[0].id_str"),
        (_with((*POST, "id_str"), "12e3"), "tweet_create_events[0].id_str is not an X id"),
        (_with((*POST, "id_str"), "9" * 40), "tweet_create_events[0].id_str is not an X id"),
        (_with((*POST, "user"), KeyError), "missing field tweet_create_events[0].user"),
        (_with((*POST, "user", "id_str"), "x"), "tweet_create_events[0].user.id_str is not an X id"),
        (_with((*POST, "text"), ["hi"]), "tweet_create_events[0].text must be str"),
        (_with((*POST, "timestamp_ms"), "soon"), "timestamp_ms must be milliseconds"),
        (_with((*POST, "in_reply_to_status_id_str"), "../1"), "in_reply_to_status_id_str is not an X id"),
        (_with((*DM, "type"), KeyError, "activity_dm"), "missing field direct_message_events[0].type"),
        (_with((*DM, "message_create"), KeyError, "activity_dm"),
         "missing field direct_message_events[0].message_create"),
        (_with((*DM, "message_create", "sender_id"), 42.5, "activity_dm"), "sender_id is not an X id"),
        (_with((*DM, "message_create", "target"), "me", "activity_dm"), "target must be dict"),
        (_with((*DM, "created_timestamp"), "-1", "activity_dm"), "created_timestamp must be milliseconds"),
        (_with(("users",), ["3001969357"], "activity_dm"), "field users must be dict"),
    ],
)
def test_x_rejects_malformed_deliveries_with_a_reason(client, hook, body, reason):
    response = deliver(client, hook, body)
    assert response.status_code == 400
    assert reason in response.json()["reason"], response.json()
    assert not Message.objects.exists() and not Contact.objects.exists()


scalars = (st.none() | st.booleans() | st.integers() | st.just(10**300) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["", "0", BRAND["id"], ADA["id"], "\x00", "\ud800", "x" * 300,
                                                    "1795512011000", "Tue Nov 24 09:20:11 +0000 2026"]))
json_values = st.recursive(
    scalars, lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children,
                                                                               max_size=3),
    max_leaves=12,
)


def shaped(**fields) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={key: value | json_values for key, value in fields.items()})


ids = st.sampled_from([BRAND["id"], ADA["id"], "3001969357", "2125157520241590272", "-1", "1e5"])
v1_user = shaped(id_str=ids, screen_name=st.sampled_from(["ada_l", "bad name!", ""]), name=st.text(max_size=5),
                 followers_count=st.integers(min_value=-5, max_value=2**70))
v1_post = shaped(id_str=ids, user=v1_user, text=st.text(max_size=8) | st.just("&amp;lt; hi"), full_text=st.text(
    max_size=5), extended_tweet=shaped(full_text=st.text(max_size=5)), timestamp_ms=st.sampled_from(
    ["1795512011000", "0", "99999999999999999"]), created_at=st.sampled_from(["Tue Nov 24 09:20:11 +0000 2026", "x"]),
    in_reply_to_status_id_str=ids, retweeted_status=st.just({}))
dm_event = shaped(type=st.sampled_from(["message_create", "other"]), id=ids, created_timestamp=st.sampled_from(
    ["1795512131000", "x"]), message_create=shaped(sender_id=ids, target=shaped(recipient_id=ids), message_data=shaped(
        text=st.text(max_size=8), attachment=shaped(type=st.just("media")))))
x_body = json_values | shaped(
    for_user_id=st.sampled_from([BRAND["id"], "783214", "x"]), user_has_blocked=st.sampled_from(["true", "false"]),
    tweet_create_events=st.lists(v1_post, max_size=2), direct_message_events=st.lists(dm_event, max_size=2),
    users=st.dictionaries(ids, v1_user, max_size=2),
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=x_body)
def test_x_hostile_signed_bodies_never_500(client, hook, body):
    response = deliver(client, hook, json.dumps(body).encode())
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["reason"]


# --- Replies -----------------------------------------------------------------------------------
@pytest.fixture
def sender(make_connector, x):
    return make_x(make_connector, x, slug="x-send")


def post_reply(backend, answered: dict[str, Any], text: str = "So sorry, Ada! A new lid ships today.") -> str:
    return backend.send(OutboundReply(text=text, channel="x", recipient_id=answered["author_id"],
                                      thread_id=answered["conversation_id"], in_reply_to=answered["id"],
                                      idempotency_key="r-1"))


def dm_reply(backend, text: str = "Address changed to 10 Downing St.") -> str:
    return backend.send(OutboundReply(text=text, channel="x_dm", recipient_id="3001969357",
                                      thread_id="dm:3001969357"))


def test_x_reply_is_a_post_in_the_thread_with_the_user_token(x, sender):
    root = x.add_post("@AcmeCare where is order 4411?", ADA, minutes_ago=20)
    answered = x.add_post("@AcmeCare hello??", ADA, minutes_ago=10, reply_to=root["id"])
    sent_id = post_reply(sender.get_backend(), answered)
    [call] = x.calls(r"/2/tweets")
    assert call.headers["authorization"] == f"Bearer {ACCESS}"
    assert call.json() == {"text": "So sorry, Ada! A new lid ships today.",
                           "reply": {"in_reply_to_tweet_id": answered["id"]}}
    assert x.posts[sent_id]["conversation_id"] == root["id"]
    assert x.posts[sent_id]["referenced_tweets"] == [{"type": "replied_to", "id": answered["id"]}]


def test_x_dm_reply_goes_to_the_conversations_participant(x, sender):
    x.add_user({"id": "3001969357", "name": "Grace Hopper", "username": "grace_h"})
    external_id = dm_reply(sender.get_backend())
    [call] = x.calls(r"/2/dm_conversations/with/.*")
    assert call.path == "/2/dm_conversations/with/3001969357/messages"
    assert call.headers["authorization"] == f"Bearer {ACCESS}"
    assert call.json() == {"text": "Address changed to 10 Downing St."}
    assert external_id.startswith("dm:") and x.dms == [{"participant": "3001969357",
                                                        "text": "Address changed to 10 Downing St."}]


def test_x_expired_token_is_refreshed_once_saved_and_the_call_repeated(x, sender):
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    x.expire_access_tokens()
    sent_id = post_reply(sender.get_backend(), answered)
    assert sent_id in x.posts
    [refresh] = x.calls(r"/2/oauth2/token")
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert refresh.headers["authorization"] == f"Basic {basic}"
    assert refresh.form() == {"grant_type": "refresh_token", "refresh_token": REFRESH, "client_id": CLIENT_ID}
    calls = x.calls(r"/2/tweets")
    assert [c.headers["authorization"] for c in calls] == [f"Bearer {ACCESS}", f"Bearer {next(iter(x.access_tokens))}"]
    saved = Connector.objects.get(pk=sender.pk).credentials
    assert saved["access_token"] in x.access_tokens and saved["refresh_token"] in x.refresh_tokens
    assert saved["refresh_token"] != REFRESH and saved["client_secret"] == CLIENT_SECRET
    assert saved["scope"].split() == ["tweet.read", "tweet.write", "users.read", "dm.read", "dm.write",
                                      "offline.access"]
    # Another worker, reading the row now, posts with the saved token: no second refresh.
    post_reply(Connector.objects.get(pk=sender.pk).get_backend(), answered, "And a discount code.")
    assert len(x.calls(r"/2/oauth2/token")) == 1


def test_x_two_workers_with_the_same_expired_token_refresh_once(x, sender):
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    first, second = sender.get_backend(), Connector.objects.get(pk=sender.pk).get_backend()
    x.expire_access_tokens()
    post_reply(first, answered, "One")
    post_reply(second, answered, "Two")  # its 401 finds the token already rotated by the first
    assert len(x.calls(r"/2/oauth2/token")) == 1
    assert [p["text"] for p in x.posted] == ["One", "Two"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_x_concurrent_workers_with_an_expired_token_rotate_it_once(make_connector, fake_provider):
    x = FakeX(fake_provider, bearer=BEARER, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
              access_token=ACCESS, refresh_token=REFRESH)
    row = make_x(make_connector, x, slug="x-race")
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    x.expire_access_tokens()
    numbers = iter(range(4))

    def send() -> str:
        return post_reply(Connector.objects.get(pk=row.pk).get_backend(), answered, f"Reply {next(numbers)}")

    sent = run_concurrently(send, 4)
    assert len(sent) == 4 and len(set(sent)) == 4
    assert len(x.calls(r"/2/oauth2/token")) == 1  # a second refresh, with the voided token, would fail
    assert Connector.objects.get(pk=row.pk).credentials["refresh_token"] in x.refresh_tokens


def test_x_connection_test_of_an_unsaved_connector_renews_its_token_in_memory(x):
    # No database fixture: touching the database at all would raise.
    row = Connector(kind="x", slug="x-unsaved", config={"user_id": BRAND["id"], "api_base": x.url})
    row.credentials = CREDENTIALS
    x.expire_access_tokens()
    assert row.get_backend().check_connection().startswith("Signed in as @AcmeCare")
    assert row.credentials["access_token"] in x.access_tokens and row.credentials["refresh_token"] != REFRESH


def test_x_refused_refresh_fails_at_once_for_an_admin(make_connector, x):
    row = make_x(make_connector, x, credentials={**CREDENTIALS, "refresh_token": "voided"})
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    x.expire_access_tokens()
    with pytest.raises(XAuthError) as caught:
        post_reply(row.get_backend(), answered)
    assert caught.value.retryable is False
    assert "Value passed for the token was invalid" in caught.value.reason and "voided" not in caught.value.reason
    assert x.posted == [] and Connector.objects.get(pk=row.pk).credentials["refresh_token"] == "voided"


def test_x_still_unauthorized_after_a_refresh_is_an_auth_error(x, sender):
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    x.fail(r"/2/tweets", Reply(401, fixture("error_401")))
    x.fail(r"/2/tweets", Reply(401, fixture("error_401")))
    with pytest.raises(ProviderAuthError, match=r"/2/tweets failed \(401\): Unauthorized"):
        post_reply(sender.get_backend(), answered)
    assert len(x.calls(r"/2/tweets")) == 2 and len(x.calls(r"/2/oauth2/token")) == 1


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (Reply(403, fixture("error_403_duplicate")), ProviderRejected,
         lambda e: not e.retryable and e.reason.endswith("(403): You are not allowed to create a Tweet with "
                                                         "duplicate content.")),
        (Reply(403, fixture("error_403_reply_not_allowed")), ProviderRejected,
         lambda e: "not allowed because you have not been mentioned" in e.reason),
        (Reply(503, "<html>over capacity</html>"), ProviderUnavailable, lambda e: e.retryable and e.status == 503),
        (Reply(201, {"data": {"text": "hi"}}), ProviderRejected, lambda e: "without the new post's id" in e.reason),
        (Reply(400, fixture("error_400_invalid_request")), ProviderRejected,
         lambda e: "'start_time' must be on or after" in e.reason),
    ],
)
def test_x_reply_errors_are_mapped_with_xs_words(x, sender, reply, error, check):
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    x.fail(r"/2/tweets", reply)
    with pytest.raises(error) as caught:
        post_reply(sender.get_backend(), answered)
    assert type(caught.value) is error and check(caught.value)
    assert x.posted == [] and ACCESS not in caught.value.reason


def test_x_reply_rate_limits_wait_for_the_window_or_the_24_hour_cap(x, sender):
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    now = int(timezone.now().timestamp())
    x.fail(r"/2/tweets", Reply(429, fixture("error_429"), {
        "x-rate-limit-remaining": "97", "x-rate-limit-reset": str(now + 600),
        "x-user-limit-24hour-limit": "100", "x-user-limit-24hour-remaining": "0",
        "x-user-limit-24hour-reset": str(now + 3 * 3600)}))
    backend = sender.get_backend()
    with pytest.raises(ProviderRateLimited) as caught:
        post_reply(backend, answered)
    assert 3 * 3600 - 5 <= caught.value.retry_after <= 3 * 3600
    assert backend.rate_limit.remaining == 97  # the 15-minute window's headroom, as X reported it


def test_x_the_same_text_twice_is_refused_as_duplicate_so_a_post_never_goes_twice(x, sender):
    answered = x.add_post("@AcmeCare help", ADA, minutes_ago=3)
    post_reply(sender.get_backend(), answered)
    with pytest.raises(ProviderRejected, match="duplicate content"):
        post_reply(sender.get_backend(), answered)
    assert len(x.posted) == 1


def test_x_dm_to_an_account_closed_to_our_messages_is_rejected(x, sender):
    x.add_user({"id": "3001969357", "name": "Grace Hopper", "username": "grace_h"})
    x.dm_closed.add("3001969357")
    with pytest.raises(ProviderRejected, match=r"\(403\): You are not permitted to send Direct Messages"):
        dm_reply(sender.get_backend())


@pytest.mark.parametrize(
    ("reply", "words"),
    [(OutboundReply(text="hi", channel="x", recipient_id="1", thread_id="dm:1"), "no X post to answer"),
     (OutboundReply(text="hi", channel="x", recipient_id="1", thread_id=""), "no X post to answer"),
     (OutboundReply(text="hi", channel="x_dm", recipient_id="@grace", thread_id="dm:../1"), "no X account"),
     (OutboundReply(text="é" * 281, channel="x", recipient_id="1", thread_id="2125155993514934272"),
      "weighs 281 of X's 280"),
     (OutboundReply(text="日本" * 71, channel="x", recipient_id="1", thread_id="2125155993514934272"),
      "weighs 284 of X's 280")],
)
def test_x_replies_that_cannot_go_never_call_x(x, sender, reply, words):
    with pytest.raises(ProviderRejected, match=words):
        sender.get_backend().send(reply)
    assert x.provider.requests == []


def test_x_reply_without_a_user_token_is_for_an_admin(make_connector, x):
    row = make_x(make_connector, x, credentials={"bearer_token": BEARER})
    with pytest.raises(XAuthError, match="connect the account again") as caught:
        post_reply(row.get_backend(), {"id": "2125155993514934272", "author_id": "1", "conversation_id": "1"})
    assert caught.value.retryable is False and x.provider.requests == []


@pytest.mark.parametrize(
    ("text", "weight"),
    [("hello", 5), ("日本語", 6), ("👍🏽", 2), ("👨\u200d👩\u200d👧", 2), ("🇫🇷🇩🇪", 4), ("é", 1), ("e\u0301", 1),
     ("see https://example.com/a/very/long/path?x=1.", 28), ("https://a.co https://b.co/x", 47), ("—“”…", 5)],
)
def test_x_weighted_length_counts_as_x_does(text, weight):
    assert weighted_length(text) == weight


def test_x_reply_rules_by_channel(sender):
    backend = sender.get_backend()
    assert (backend.reply_rules("x").max_chars, backend.reply_rules("x").window_hours) == (280, None)
    assert backend.reply_rules("x_dm").max_chars == 10_000


# --- A reply through the console's delivery ------------------------------------------------------
def test_x_dm_reply_from_the_console_is_delivered_after_a_refresh(
        client, make_connector, x, settings, django_user_model, django_capture_on_commit_callbacks):
    settings.CXM_CLASSIFY_ON_INGEST = False
    connector = make_x(make_connector, x, slug="x-care", mode="both")
    team = Team.objects.create(name="Social", slug="social")
    ensure_default_queues(team)
    team.connectors.add(connector)
    x.add_user({"id": "3001969357", "name": "Grace Hopper", "username": "grace_h"})
    assert deliver(client, connector, fixture("activity_dm")).json()["stored"] == 1
    message = Message.objects.get()
    classify(message)
    route_messages([message.pk])
    agent = make_user(django_user_model, "agent_x", Role.AGENT, [team])
    case = Case.objects.get(conversation=message.conversation)
    x.expire_access_tokens()
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Done: the address is changed.")
    reply.refresh_from_db()
    assert reply.status == CareReply.Status.DELIVERED and reply.attempts == 1
    out = Message.objects.get(pk=reply.message_id)
    assert out.external_id.startswith("dm:") and out.direction == Direction.OUTBOUND
    assert out.conversation.external_id == "dm:3001969357"
    assert x.dms == [{"participant": "3001969357", "text": "Done: the address is changed."}]


# --- check_connection and backfill ---------------------------------------------------------------
def test_x_check_connection_names_the_account_and_stores_nothing(make_connector, x, poller):
    assert poller.get_backend().check_connection() == (
        "Signed in as @AcmeCare, reading @AcmeCare with the app's bearer token.")
    assert [c.headers["authorization"] for c in x.calls(r"/2/users/.*")] == [f"Bearer {ACCESS}", f"Bearer {BEARER}"]
    reader = make_x(make_connector, x, credentials={"bearer_token": BEARER, "scope": "tweet.read"})
    assert reader.get_backend().check_connection() == "Reading @AcmeCare with the app's bearer token."
    narrow = make_x(make_connector, x, mode="webhook", credentials={**CREDENTIALS, "scope": "tweet.read users.read"})
    assert narrow.get_backend().check_connection() == (
        "Signed in as @AcmeCare without tweet.write and dm.write: connect again to reply.")
    assert not Message.objects.exists() and Connector.objects.get(pk=poller.pk).cursor == {}


def test_x_check_connection_refuses_another_account_or_a_missing_secret(make_connector, x):
    other = make_x(make_connector, x, user_id="783214")
    with pytest.raises(ConfigInvalid, match="@AcmeCare has id 2244994945, not user_id 783214"):
        other.get_backend().check_connection()
    hookless = make_x(make_connector, x, mode="both", credentials={"bearer_token": BEARER})
    with pytest.raises(SecretNotConfigured, match="consumer_secret"):
        hookless.get_backend().check_connection()
    wrong = make_x(make_connector, x, credentials={"bearer_token": "nope"})
    with pytest.raises(ProviderAuthError, match=r"\(401\): Unauthorized"):
        wrong.get_backend().check_connection()


def test_x_backfill_walks_each_source_from_start_time(x, poller):
    old = [x.add_post(f"@AcmeCare kettle problem {n}", ADA, minutes_ago=3000 - n) for n in range(12)]
    x.add_post("@AcmeCare too old for the backfill", ADA, minutes_ago=4000)
    backend, since = poller.get_backend(), timezone.now() - timedelta(days=2, hours=3)
    pages, state, found = [], {}, set()
    while True:
        page = backend.backfill(since, state)
        pages.append(page)
        found |= {m.external_id for m in page.messages}
        state = page.cursor
        if not page.more:
            break
    assert len(pages) == 4  # mentions: 10 + 2, then the search: 10 + 2
    assert found == {p["id"] for p in old}
    starts = {c.query["start_time"] for c in x.calls(f"({MENTIONS}|{SEARCH})")}
    assert starts == {since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert "pagination_token" in x.calls(MENTIONS)[1].query and "next_token" in x.calls(SEARCH)[1].query
    assert pages[-1].cursor == {"source": 2} and Connector.objects.get(pk=poller.pk).cursor == {}


def test_x_backfill_beyond_seven_days_is_refused_with_search_and_allowed_for_mentions(make_connector, x, poller):
    with pytest.raises(NotSupported, match="reaches back only 7 days"):
        poller.get_backend().backfill(timezone.now() - timedelta(days=8), {})
    assert x.provider.requests == []
    mentions_only = make_x(make_connector, x)
    page = mentions_only.get_backend().backfill(timezone.now() - timedelta(days=30), {})
    assert page.messages == [] and not page.more and "start_time" in x.calls(MENTIONS)[0].query


# --- Registry and config -----------------------------------------------------------------------
def test_x_is_registered_with_its_config_credentials_and_oauth(settings):
    cls = get_connector_class("x")
    assert cls is XConnector and cls.polls and cls.receives_webhooks and cls.can_reply and cls.supports_backfill
    settings.ALLOW_PRIVATE_URLS = False
    assert cls.validate_config({"user_id": "2244994945", "queries": [" acme -is:retweet ", "acme -is:retweet"]}) == {
        "api_base": "https://api.x.com", "user_id": "2244994945", "mentions": True,
        "queries": ["acme -is:retweet"], "mode": "polling", "page_size": 100}
    assert cls.oauth.authorize_url == "https://x.com/i/oauth2/authorize"
    assert cls.oauth.token_url == "{api_base}/2/oauth2/token" and cls.oauth.pkce and cls.oauth.client_auth == "basic"
    assert set(cls.oauth.scopes) == {"tweet.read", "tweet.write", "users.read", "dm.read", "dm.write", "offline.access"}
    assert set(cls.config_help) == set(cls.config_defaults)
    assert set(cls.credential_help) == set(cls.credential_fields) >= set(cls.required_credentials)
    assert [cls.wants_polling({"mode": mode}) for mode in ("polling", "webhook", "both")] == [True, False, True]
    assert cls.wants_polling({}) is True
    saved = XConnector(Connector(kind="x")).oauth_credentials(fixture("token_refreshed"))
    assert set(saved) == {"access_token", "refresh_token", "scope"}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"user_id": ""}, "user_id must be"),
        ({"user_id": "@AcmeCare"}, "user_id must be"),
        ({"user_id": 2244994945}, "user_id must be"),
        ({"api_base": "http://api.x.com"}, "api_base must be an https URL"),
        ({"api_base": "https://api.x.com/2"}, "api_base"),
        ({"queries": "acme"}, "queries"),
        ({"queries": [" "]}, "queries"),
        ({"queries": ["a\nb"]}, "queries"),
        ({"queries": ["x" * 513]}, "queries"),
        ({"queries": [f"q{n}" for n in range(11)]}, "queries"),
        ({"mode": "stream"}, "mode must be one of"),
        ({"page_size": 5}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"mentions": "yes"}, "mentions"),
        ({"mentions": False}, "nothing to poll"),
        ({"bearer_token": "x"}, "unknown config keys"),
    ],
)
def test_x_validate_config_names_the_bad_key(settings, config, reason):
    settings.ALLOW_PRIVATE_URLS = False
    with pytest.raises(ConfigInvalid, match=reason):
        XConnector.validate_config({"user_id": "2244994945", **config})
    assert XConnector.validate_config({"user_id": "1", "mentions": False, "mode": "webhook"})["mode"] == "webhook"
