"""The Slack connector end to end: signed Events API deliveries through /hooks/<slug>/, and replies
through chat.postMessage on a fake Slack Web API over real HTTP (tests/fakes/slack.py)."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from listening.connectors import connector_kinds, get_connector_class
from listening.connectors.base import OutboundReply
from listening.connectors.slack import SlackAuthError, SlackConnector, plain_text
from listening.exceptions import ConfigInvalid, ProviderRateLimited, ProviderRejected, ProviderUnavailable
from listening.models import Contact, Conversation, Direction, Message
from responses import replies
from responses.models import Case, Reply, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.fakes.slack import (
    BOT_USER,
    CHANNEL_NOT_FOUND,
    FATAL_ERROR,
    IS_ARCHIVED,
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
    TOKEN_REVOKED,
    FakeSlack,
    sign,
)
from tests.listening.helpers import run_concurrently
from tests.responses.conftest import classify, make_user

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slack"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
TEAM, CHANNEL, USER = "T024BE7LD", "C2147483705", "U061F7AUR"
ROOT_TS = "1793534400.000100"
CREDENTIALS = {"signing_secret": SECRET, "bot_token": TOKEN}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def deliver(client, connector, payload: Any, *, secret: str | None = SECRET, timestamp: int | None = None,
            headers: dict[str, str] | None = None):
    """POST a delivery signed the way Slack signs it (unsigned with secret=None)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signed = sign(secret, body, timestamp) if secret is not None else {}
    return client.post(f"/hooks/{connector.slug}/", data=body, content_type="application/json",
                       headers={**signed, **(headers or {})})


@pytest.fixture
def connector(make_connector):
    return make_connector("slack", slug="slack-community", credentials=CREDENTIALS)


@pytest.fixture
def slack(fake_provider) -> FakeSlack:
    return FakeSlack(fake_provider, TOKEN)


@pytest.fixture
def sender(make_connector, slack):
    return make_connector("slack", config={"api_base": slack.url}, credentials=CREDENTIALS)


# --- url_verification ----------------------------------------------------------------------------
def test_slack_url_verification_answers_the_challenge_when_signed(client, connector):
    response = deliver(client, connector, fixture("url_verification"))
    assert response.status_code == 200
    assert response.content == b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert response["Content-Type"].startswith("text/plain")
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("secret", "timestamp", "status", "code"),
    [(None, None, 401, "signature_missing"), ("not-the-signing-secret", None, 403, "signature_invalid"),
     (SECRET, int(time.time()) - 301, 403, "replay_rejected")],
)
def test_slack_url_verification_unsigned_forged_or_stale_gets_no_challenge(client, connector, secret, timestamp,
                                                                           status, code):
    response = deliver(client, connector, fixture("url_verification"), secret=secret, timestamp=timestamp)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert b"3eZbrw1aBm2rZgRNFdxV" not in response.content
    connector.refresh_from_db()
    assert connector.deliveries_rejected == 1


@pytest.mark.parametrize("challenge", ["", "has space", "x" * 300, None, [42]])
def test_slack_url_verification_rejects_a_malformed_challenge(client, connector, challenge):
    response = deliver(client, connector, {"type": "url_verification", "challenge": challenge})
    assert response.status_code == 400
    assert "challenge" in response.json()["reason"]


def test_slack_fails_closed_without_a_signing_secret(client, make_connector):
    bare = make_connector("slack", slug="slack-bare", credentials={"bot_token": TOKEN})
    for payload in (fixture("url_verification"), fixture("message_channel")):
        response = deliver(client, bare, payload, secret="")
        assert response.status_code == 403
        assert response.json()["error"] == "secret_not_configured"
        assert b"3eZbrw1aBm2rZgRNFdxV" not in response.content
    assert not Message.objects.exists()


# --- Storing -----------------------------------------------------------------------------------
def test_slack_channel_message_is_stored_with_author_thread_and_plain_text(client, connector):
    response = deliver(client, connector, fixture("message_channel"))
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0}
    message = Message.objects.get()
    assert message.external_id == f"{CHANNEL}:{ROOT_TS}"
    assert message.channel == "slack" and message.direction == Direction.INBOUND
    assert message.text == ("My order #4411 arrived broken & support hasn't answered <3 days> now. Can @U0LAN0Z89 "
                            "help? Details: order 4411 (https://acme.example/orders/4411)")
    assert message.sent_at == datetime(2026, 11, 1, 12, 0, 0, 100, tzinfo=UTC)
    assert message.conversation.external_id == f"{CHANNEL}:{ROOT_TS}"
    assert message.author.external_id == f"{TEAM}:{USER}" and message.author.channel == "slack"
    assert message.raw["event_id"] == "Ev0PV52K01" and message.raw["event"]["client_msg_id"]
    assert "token" not in message.raw  # the deprecated verification token is a credential


def test_slack_same_delivery_three_times_with_retry_headers_stores_once(client, connector):
    payload = fixture("message_channel")
    statuses = [
        deliver(client, connector, payload, headers=retry).status_code
        for retry in ({}, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
                      {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"})
    ]
    assert statuses == [200, 200, 200]
    assert Message.objects.count() == 1 and Conversation.objects.count() == 1
    connector.refresh_from_db()
    assert (connector.messages_received, connector.duplicates_received) == (1, 2)


@pytest.mark.django_db(transaction=True)
def test_slack_concurrent_duplicate_deliveries_store_once(make_connector):
    connector = make_connector("slack", slug="slack-race", credentials=CREDENTIALS)
    body = json.dumps(fixture("message_thread_reply")).encode()
    statuses = run_concurrently(lambda: deliver(Client(), connector, body).status_code, 4)
    assert statuses == [200] * 4
    assert Message.objects.filter(connector=connector).count() == 1


def test_slack_thread_reply_joins_the_roots_conversation(client, connector):
    deliver(client, connector, fixture("message_channel"))
    assert deliver(client, connector, fixture("message_thread_reply")).json()["stored"] == 1
    root = Message.objects.get(external_id=f"{CHANNEL}:{ROOT_TS}")
    reply = Message.objects.get(external_id=f"{CHANNEL}:1793534460.000200")
    assert reply.parent_id == root.pk and reply.parent_external_id == root.external_id
    assert reply.conversation_id == root.conversation_id
    assert Conversation.objects.get().message_count == 2


def test_slack_thread_reply_arriving_before_its_root_is_linked_later(client, connector):
    deliver(client, connector, fixture("message_thread_reply"))
    deliver(client, connector, fixture("message_channel"))
    reply = Message.objects.get(external_id=f"{CHANNEL}:1793534460.000200")
    assert reply.parent.external_id == f"{CHANNEL}:{ROOT_TS}"
    assert Conversation.objects.count() == 1


def test_slack_app_mention_is_stored(client, connector):
    response = deliver(client, connector, fixture("app_mention"))
    assert response.json() == {"stored": 1, "duplicates": 0}
    message = Message.objects.get()
    assert message.external_id == f"{CHANNEL}:1793534520.000300"
    assert message.text == "@U0LAN0Z89 is the @support team around? Billing charged me twice"
    assert message.conversation.external_id == f"{CHANNEL}:1793534520.000300"


def test_slack_mention_heard_both_as_app_mention_and_message_is_stored_once(client, connector):
    mention = fixture("app_mention")
    as_message = copy.deepcopy(mention)
    as_message["event_id"], as_message["event"]["type"] = "Ev0PV52K99", "message"
    as_message["event"]["channel_type"] = "channel"
    assert deliver(client, connector, mention).json() == {"stored": 1, "duplicates": 0}
    assert deliver(client, connector, as_message).json() == {"stored": 0, "duplicates": 1}
    assert Message.objects.count() == 1


def test_slack_direct_messages_are_one_conversation(client, connector):
    first, second = fixture("message_im"), fixture("message_im")
    second["event_id"], second["event"]["ts"], second["event"]["text"] = "Ev0PV52K44", "1793534590.000410", "Order 4411"
    deliver(client, connector, first)
    deliver(client, connector, second)
    assert Message.objects.count() == 2
    assert Conversation.objects.get().external_id == "D0PNCRP9N"


def test_slack_file_share_without_text_is_stored_with_the_file_name(client, connector):
    assert deliver(client, connector, fixture("file_share")).json()["stored"] == 1
    message = Message.objects.get()
    assert message.text == "[cracked-jug.jpg]"
    assert message.conversation.external_id == f"{CHANNEL}:{ROOT_TS}"


def test_slack_edit_is_stored_beside_the_original(client, connector):
    deliver(client, connector, fixture("message_channel"))
    assert deliver(client, connector, fixture("message_changed")).json() == {"stored": 1, "duplicates": 0}
    original = Message.objects.get(external_id=f"{CHANNEL}:{ROOT_TS}")
    edit = Message.objects.get(external_id=f"{CHANNEL}:{ROOT_TS}:edit:1793534490.000000")
    assert edit.text.startswith("My order #4411 arrived broken (the glass jug)")
    assert edit.parent_id == original.pk and edit.conversation_id == original.conversation_id
    assert original.text.startswith("My order #4411 arrived broken & support")
    assert deliver(client, connector, fixture("message_changed")).json() == {"stored": 0, "duplicates": 1}


@pytest.mark.parametrize("change", ["unfurl", "bot", "same_text"])
def test_slack_changes_that_are_not_a_persons_edit_are_skipped(client, connector, change):
    payload = fixture("message_changed")
    message = payload["event"]["message"]
    if change == "unfurl":  # Slack adds a link preview: message_changed without `edited`
        del message["edited"]
    elif change == "bot":
        message["bot_id"] = "B0CDEF123"
    else:
        message["text"] = payload["event"]["previous_message"]["text"]
    assert deliver(client, connector, payload).json() == {"stored": 0, "duplicates": 0}
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "name", ["bot_message", "own_echo", "channel_join", "message_deleted", "reaction_added", "app_rate_limited"]
)
def test_slack_bots_echoes_and_non_messages_are_accepted_and_skipped(client, connector, name):
    response = deliver(client, connector, fixture(name))
    assert response.status_code == 200  # anything else and Slack would retry it
    assert response.json() == {"stored": 0, "duplicates": 0}
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_slack_our_own_reply_echoed_back_is_not_stored_as_customer_words(client, make_connector, slack):
    hook = make_connector("slack", slug="slack-echo", config={"api_base": slack.url}, credentials=CREDENTIALS)
    hook.get_backend().send(OutboundReply(text="On it!", channel="slack", recipient_id=f"{TEAM}:{USER}",
                                          thread_id=f"{CHANNEL}:{ROOT_TS}"))
    [posted] = slack.posted
    assert posted["user"] == BOT_USER and posted["bot_id"]
    response = deliver(client, hook, slack.echo_event(posted))
    assert response.json() == {"stored": 0, "duplicates": 0}
    assert not Message.objects.exists()


def test_slack_events_of_another_workspace_are_skipped_when_a_team_is_set(client, make_connector):
    pinned = make_connector("slack", slug="slack-pinned", config={"team_id": "T0OTHER01"}, credentials=CREDENTIALS)
    assert deliver(client, pinned, fixture("message_channel")).json() == {"stored": 0, "duplicates": 0}
    mine = make_connector("slack", slug="slack-mine", config={"team_id": TEAM}, credentials=CREDENTIALS)
    assert deliver(client, mine, fixture("message_channel")).json()["stored"] == 1


def test_slack_user_profile_names_the_author_when_slack_sends_it(client, connector):
    payload = fixture("message_channel")
    payload["event"]["user_profile"] = {"real_name": "Ada Lovelace", "display_name": "ada", "name": "ada.l"}
    deliver(client, connector, payload)
    author = Message.objects.get().author
    assert (author.display_name, author.handle) == ("ada", "ada.l")


def test_slack_paused_connector_stores_nothing(client, connector):
    connector.enabled = False
    connector.save()
    assert deliver(client, connector, fixture("message_channel")).status_code == 403
    assert not Message.objects.exists()


# --- Signatures, replays, size -----------------------------------------------------------------
def test_slack_signature_missing_forged_or_from_another_secret_stores_nothing(client, connector):
    payload = fixture("message_channel")
    body = json.dumps(payload).encode()
    good = sign(SECRET, body)
    cases = [
        ({}, 401, "signature_missing"),
        ({"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]}, 401, "signature_missing"),
        ({"X-Slack-Signature": good["X-Slack-Signature"]}, 401, "signature_missing"),
        ({**good, "X-Slack-Signature": "v0=" + "0" * 64}, 403, "signature_invalid"),
        ({**good, "X-Slack-Signature": good["X-Slack-Signature"].replace("v0=", "v1=")}, 403, "signature_invalid"),
        (sign("someone-elses-signing-secret", body), 403, "signature_invalid"),
        ({**good, "X-Slack-Request-Timestamp": "soon"}, 403, "signature_invalid"),
        ({**good, "X-Slack-Request-Timestamp": "9" * 40}, 403, "signature_invalid"),
        # The timestamp is signed: moving it by a second breaks the signature.
        ({**good, "X-Slack-Request-Timestamp": str(int(good["X-Slack-Request-Timestamp"]) + 1)}, 403,
         "signature_invalid"),
    ]
    for headers, status, code in cases:
        response = client.post(f"/hooks/{connector.slug}/", data=body, content_type="application/json",
                               headers=headers)
        assert (response.status_code, response.json()["error"]) == (status, code), headers
    assert not Message.objects.exists()
    connector.refresh_from_db()
    assert connector.deliveries_rejected == len(cases)


@pytest.mark.parametrize(("offset", "status"), [(-301, 403), (301, 403), (-3600, 403), (-240, 200), (240, 200)])
def test_slack_timestamp_more_than_five_minutes_off_is_a_replay(client, connector, offset, status):
    response = deliver(client, connector, fixture("message_channel"), timestamp=int(time.time()) + offset)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "replay_rejected"
    assert Message.objects.count() == (1 if status == 200 else 0)


def test_slack_signature_covers_the_raw_bytes_not_the_parsed_json(client, connector):
    payload = fixture("message_channel")
    signed = sign(SECRET, json.dumps(payload).encode())
    response = client.post(f"/hooks/{connector.slug}/", data=json.dumps(payload, indent=2).encode(),
                           content_type="application/json", headers=signed)
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_slack_rejects_an_oversized_body(client, connector, settings):
    settings.WEBHOOK_MAX_BYTES = 4096
    payload = fixture("message_channel")
    payload["event"]["text"] = "x" * 8000
    response = deliver(client, connector, payload)
    assert response.status_code == 413
    assert not Message.objects.exists()


def _with(path: tuple, value: Any, name: str = "message_channel") -> bytes:
    payload = fixture(name)
    node = payload
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2]", "body must be an object"),
        (b'{"type": "event_callback", "event": {}}' + b" " * 10, "missing field team_id"),
        (_with(("type",), KeyError), "missing field type"),
        (_with(("type",), "block_actions"), "unsupported type"),
        (_with(("event_id",), KeyError), "missing field event_id"),
        (_with(("event_id",), "Ev 1"), "event_id is not a Slack id"),
        (_with(("team_id",), "T\u0000X"), "team_id is not a Slack id"),
        (_with(("event",), "a message"), "field event must be dict"),
        (_with(("event", "type"), KeyError), "missing field event.type"),
        (_with(("event", "channel"), KeyError), "missing field event.channel"),
        (_with(("event", "channel"), "#general"), "event.channel is not a Slack id"),
        (_with(("event", "ts"), "yesterday"), "event.ts must be a Slack timestamp"),
        (_with(("event", "ts"), 1793534400.0001), "event.ts must be a Slack timestamp"),
        (_with(("event", "thread_ts"), "1e9"), "event.thread_ts must be a Slack timestamp"),
        (_with(("event", "user"), {"id": USER}), "event.user is not a Slack id"),
        (_with(("event", "user"), KeyError), "missing field event.user"),
        (_with(("event", "text"), ["hi"]), "event.text must be str"),
        (_with(("event", "subtype"), ["bot_message"]), "event.subtype must be str"),
        (_with(("event", "message"), KeyError, "message_changed"), "missing field event.message"),
        (_with(("event", "message", "edited", "ts"), "now", "message_changed"),
         "event.message.edited.ts must be a Slack timestamp"),
        (b'{"type": "event_callback", "event_id": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_slack_rejects_malformed_deliveries_with_a_reason(client, connector, body, reason):
    response = deliver(client, connector, body)
    assert response.status_code == 400
    assert reason in response.json()["reason"], response.json()
    assert not Message.objects.exists() and not Contact.objects.exists()


scalars = (st.none() | st.booleans() | st.integers() | st.just(10**300) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["", "0", ROOT_TS, CHANNEL, USER, "\x00", "\ud800", "x" * 300]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


def shaped(**fields) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={key: value | json_values for key, value in fields.items()})


ts = st.sampled_from([ROOT_TS, "1793534460.000200", "1.2", "99999999999999.1"])
slack_message = shaped(
    type=st.sampled_from(["message", "app_mention", "reaction_added"]), channel=st.sampled_from([CHANNEL, "D0PNC"]),
    user=st.sampled_from([USER, "u1"]), text=st.text(max_size=8) | st.just("<@U1|ada> &amp; <https://x|y>"), ts=ts,
    thread_ts=ts, subtype=st.sampled_from(["", "message_changed", "bot_message", "file_share", "thread_broadcast"]),
    bot_id=st.just("B1"), channel_type=st.sampled_from(["channel", "im", "mpim"]), user_team=st.just(TEAM),
    files=st.lists(shaped(name=st.text(max_size=5), title=st.text(max_size=5)), max_size=2),
    user_profile=shaped(display_name=st.text(max_size=5), name=st.text(max_size=5)),
)
event = slack_message | shaped(message=slack_message, previous_message=slack_message,
                               edited=shaped(ts=ts), **{"type": st.just("message"), "subtype": st.just(
                                   "message_changed"), "channel": st.just(CHANNEL)})
slack_body = json_values | shaped(
    type=st.sampled_from(["event_callback", "url_verification", "app_rate_limited"]),
    team_id=st.sampled_from([TEAM, "t"]), api_app_id=st.just("A0KRD7HC3"), event_id=st.sampled_from(["Ev1", "E v"]),
    challenge=st.text(max_size=8), event=event,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=slack_body)
def test_slack_hostile_signed_bodies_never_500(client, connector, body):
    response = deliver(client, connector, json.dumps(body).encode())
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["reason"]


@pytest.mark.parametrize(
    ("markup", "text"),
    [("<@U061F7AUR>", "@U061F7AUR"), ("<@U061F7AUR|ada>", "@ada"), ("<#C2147483705|general>", "#general"),
     ("<!here>", "@here"), ("<!channel|@channel>", "@channel"), ("<mailto:a@b.c|a@b.c>", "a@b.c (mailto:a@b.c)"),
     ("<https://x.example>", "https://x.example"), ("a &amp;lt; b", "a &lt; b"), ("<script>", "script"),
     ("<|x> <@|> <#>", "x @ #"), ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>")],
)
def test_slack_markup_is_read_as_plain_text(markup, text):
    assert plain_text(markup) == text


# --- Replies -----------------------------------------------------------------------------------
def test_slack_send_posts_in_the_thread_with_the_bot_token(sender, slack):
    external_id = sender.get_backend().send(OutboundReply(
        text="Sorry, Ada! A new jug ships today <3 & the <!channel> tag stays text.", channel="slack",
        recipient_id=f"{TEAM}:{USER}", thread_id=f"{CHANNEL}:{ROOT_TS}", in_reply_to=f"{CHANNEL}:{ROOT_TS}",
        idempotency_key="r-1",
    ))
    [call] = slack.calls("chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["content-type"] == "application/json; charset=utf-8"
    assert call.json() == {"channel": CHANNEL, "thread_ts": ROOT_TS,
                           "text": "Sorry, Ada! A new jug ships today &lt;3 &amp; the &lt;!channel&gt; tag stays text."}
    [posted] = slack.posted
    assert external_id == f"{CHANNEL}:{posted['ts']}" and posted["thread_ts"] == ROOT_TS


def test_slack_send_in_a_direct_message_posts_at_top_level(sender, slack):
    sender.get_backend().send(OutboundReply(text="Refund issued.", channel="slack", recipient_id=f"{TEAM}:{USER}",
                                            thread_id="D0PNCRP9N"))
    [call] = slack.calls("chat.postMessage")
    assert call.json() == {"channel": "D0PNCRP9N", "text": "Refund issued."}


@pytest.mark.parametrize(
    ("failure", "error", "retryable", "words"),
    [
        (RATE_LIMITED, ProviderRateLimited, True, "ratelimited"),
        (TOKEN_REVOKED, SlackAuthError, False, "token_revoked"),
        (CHANNEL_NOT_FOUND, ProviderRejected, False, "channel_not_found"),
        (IS_ARCHIVED, ProviderRejected, False, "is_archived"),
        (FATAL_ERROR, ProviderRejected, False, "may have been posted"),
        (SERVICE_UNAVAILABLE, ProviderUnavailable, True, "service_unavailable"),
    ],
)
def test_slack_send_maps_web_api_errors(sender, slack, failure, error, retryable, words):
    slack.fail_next(failure)
    with pytest.raises(error) as raised:
        sender.get_backend().send(OutboundReply(text="hi", channel="slack", recipient_id=USER,
                                                thread_id=f"{CHANNEL}:{ROOT_TS}"))
    assert type(raised.value) is error and raised.value.retryable is retryable
    assert words in raised.value.reason and TOKEN not in raised.value.reason
    assert len(slack.calls()) == 1  # no hidden retries: backoff belongs to the reply delivery


def test_slack_send_rate_limit_carries_retry_after(sender, slack):
    slack.fail_next(RATE_LIMITED)
    with pytest.raises(ProviderRateLimited) as raised:
        sender.get_backend().send(OutboundReply(text="hi", channel="slack", recipient_id=USER,
                                                thread_id=f"{CHANNEL}:{ROOT_TS}"))
    assert (raised.value.retry_after, raised.value.status) == (30, 429)


def test_slack_send_with_a_wrong_token_is_a_permanent_auth_error(make_connector, slack):
    wrong = make_connector("slack", config={"api_base": slack.url},
                           credentials={"signing_secret": SECRET, "bot_token": "xoxb-revoked"})
    with pytest.raises(SlackAuthError, match="invalid_auth") as raised:
        wrong.get_backend().send(OutboundReply(text="hi", channel="slack", recipient_id=USER, thread_id=CHANNEL))
    assert raised.value.retryable is False and "xoxb-revoked" not in raised.value.reason


def test_slack_send_to_a_channel_the_bot_is_not_in_is_rejected(make_connector, fake_provider):
    slack = FakeSlack(fake_provider, TOKEN, member_of=set())
    connector = make_connector("slack", config={"api_base": slack.url}, credentials=CREDENTIALS)
    with pytest.raises(ProviderRejected, match="not_in_channel"):
        connector.get_backend().send(OutboundReply(text="hi", channel="slack", recipient_id=USER,
                                                   thread_id=f"{CHANNEL}:{ROOT_TS}"))


@pytest.mark.parametrize("thread_id", ["", "general", f"{CHANNEL}:yesterday", "c2147483705:1.2"])
def test_slack_send_without_a_channel_never_calls_slack(sender, slack, thread_id):
    with pytest.raises(ProviderRejected, match="no Slack channel"):
        sender.get_backend().send(OutboundReply(text="hi", channel="slack", recipient_id=USER, thread_id=thread_id))
    assert slack.provider.requests == []


def test_slack_send_without_a_bot_token_never_calls_slack(make_connector, slack):
    tokenless = make_connector("slack", config={"api_base": slack.url}, credentials={"signing_secret": SECRET})
    with pytest.raises(SlackAuthError, match="bot_token"):
        tokenless.get_backend().send(OutboundReply(text="hi", channel="slack", recipient_id=USER, thread_id=CHANNEL))
    assert slack.provider.requests == []


# --- A reply through the console's delivery ------------------------------------------------------
@pytest.fixture
def slack_case(client, make_connector, slack, settings, django_user_model):
    """A signed channel message routed into a case of a team that owns the Slack connector."""
    settings.CXM_CLASSIFY_ON_INGEST = False
    connector = make_connector("slack", slug="slack-care", config={"api_base": slack.url}, credentials=CREDENTIALS)
    team = Team.objects.create(name="Community", slug="community")
    ensure_default_queues(team)
    team.connectors.add(connector)
    assert deliver(client, connector, fixture("message_channel")).json()["stored"] == 1
    message = Message.objects.get(connector=connector)
    classify(message)
    route_messages([message.pk])
    agent = make_user(django_user_model, "agent_slack", Role.AGENT, [team])
    return Case.objects.get(conversation=message.conversation), agent


def test_slack_reply_is_retried_after_retry_after_then_posted_once_in_the_thread(
        slack_case, slack, django_capture_on_commit_callbacks):
    case, agent = slack_case
    slack.fail_next(RATE_LIMITED)
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Sorry about the jug, a new one ships today.")
    reply.refresh_from_db()
    assert reply.status == Reply.Status.PENDING and "ratelimited" in reply.last_error
    assert 28 <= (reply.next_attempt_at - timezone.now()).total_seconds() <= 30.5  # Retry-After: 30
    assert reply.pk not in replies.pending_replies_to_resend()  # the sweep waits for it too
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE  # what the retry does
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED and reply.attempts == 2
    calls = slack.calls("chat.postMessage")
    assert [call.json()["thread_ts"] for call in calls] == [ROOT_TS, ROOT_TS]
    [posted] = slack.posted
    out = Message.objects.get(pk=reply.message_id)
    assert out.external_id == f"{CHANNEL}:{posted['ts']}" and out.direction == Direction.OUTBOUND
    assert out.conversation_id == case.conversation_id and out.parent.external_id == f"{CHANNEL}:{ROOT_TS}"


def test_slack_reply_with_a_revoked_token_fails_at_once_with_the_reason(
        slack_case, slack, django_capture_on_commit_callbacks):
    case, agent = slack_case
    slack.fail_next(TOKEN_REVOKED)
    with django_capture_on_commit_callbacks(execute=True):
        reply = replies.send_reply(agent, case.pk, "Hello again")
    reply.refresh_from_db()
    assert reply.status == Reply.Status.FAILED and reply.attempts == 1
    assert "token_revoked" in reply.last_error and not reply.last_error.startswith("gave up")
    assert len(slack.calls()) == 1 and slack.posted == []


# --- Registry and config -----------------------------------------------------------------------
def test_slack_is_registered_with_its_credentials():
    assert "slack" in connector_kinds()
    cls = get_connector_class("slack")
    assert cls is SlackConnector and cls.receives_webhooks and cls.can_reply and not cls.polls
    assert cls.credential_fields == ("signing_secret", "bot_token", "client_id", "client_secret")
    assert cls.validate_config({}) == {"api_base": "https://slack.com", "team_id": ""}


@pytest.mark.parametrize(
    "config",
    [{"api_base": "ftp://slack.com"}, {"api_base": "https://slack.com/api"}, {"team_id": "acme"},
     {"team_id": 24}, {"bot_token": "xoxb-in-the-wrong-place"}],
)
def test_slack_validate_config_refuses_bad_values(config):
    with pytest.raises(ConfigInvalid):
        SlackConnector.validate_config(config)
