"""The Mastodon connector end to end against a fake instance over real HTTP (tests/fakes/mastodon.py):
polling mentions and hashtag timelines with since_id, replies as statuses, the streaming API."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from listening.connectors import get_connector_class
from listening.connectors.base import OutboundReply
from listening.connectors.mastodon import MastodonConnector, narrowest, read_events
from listening.exceptions import (
    ConfigInvalid,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.models import Connector, Health, Message
from listening.polling import poll_connector
from tests.fakes.http import Reply
from tests.fakes.mastodon import FakeMastodon

TOKEN = "ZA-Yj3aBD8U8Cm7lKUp-lm9O9BmDgdhHzDeqsY8tlL0"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mastodon"
NOTIFICATIONS, TAG = "/api/v1/notifications", "/api/v1/timelines/tag/acme"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def status(n: int, **fields: Any) -> dict[str, Any]:
    """A public mention of @acme, "customer n"."""
    body = copy.deepcopy(fixture("status_mention"))
    body.update({"content": f"<p>@acme problem number {n}</p>", "tags": [], **fields})
    return body


@pytest.fixture
def mastodon(fake_provider) -> FakeMastodon:
    return FakeMastodon(fake_provider, TOKEN)


@pytest.fixture
def poller(make_connector, mastodon):
    return make_connector("mastodon", slug="masto", poll_interval_seconds=60, credentials={"access_token": TOKEN},
                          config={"instance_url": mastodon.url, "hashtags": ["#Acme"], "page_size": 2})


def stored_ids() -> list[str]:
    return sorted(Message.objects.values_list("external_id", flat=True))


# --- Polling -----------------------------------------------------------------------------------
def test_mastodon_poll_stores_a_mention_seen_in_a_hashtag_too_once_as_inert_text(mastodon, poller):
    mentioned = mastodon.mention(fixture("status_mention"))  # tagged #acme: in both sources
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created, outcome.duplicates) == ("", 1, 0)
    message = Message.objects.get()
    assert message.external_id == mentioned["id"]
    assert message.channel == "mastodon"
    assert message.text == ("@acme my kettle order #acme arrived with a cracked lid & no manual.\n\n"
                            "Order 4411, see https://example.com/photo")  # the <script> is gone
    assert message.sent_at == datetime(2026, 11, 2, 9, 14, 7, tzinfo=UTC)
    assert message.url == "https://fosstodon.org/@ada/113410553200000001"
    author = message.author
    assert (author.external_id, author.handle, author.display_name, author.profile_url, author.followers) == (
        "109302183749201823", "ada@fosstodon.org", "Ada Lovelace", "https://fosstodon.org/@ada", 1280)
    first = mastodon.calls(NOTIFICATIONS)[0]
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert (first.query["types[]"], first.query["limit"], "since_id" in first.query) == ("mention", "2", False)
    poller.refresh_from_db()
    assert poller.cursor == {"mentions": {"since": mastodon.notifications[0]["id"]},
                             "tag:acme": {"since": mentioned["id"]}}
    assert poller.health == Health.OK

    again = poll_connector(poller.pk, force=True)
    assert (again.error, again.created) == ("", 0)
    assert mastodon.calls(NOTIFICATIONS)[-1].query["since_id"] == mastodon.notifications[0]["id"]
    assert mastodon.calls(TAG)[-1].query["since_id"] == mentioned["id"]
    assert Message.objects.count() == 1


def test_mastodon_poll_skips_other_notifications_and_boosts(mastodon, poller):
    mastodon.notify("favourite", fixture("status_mention")["account"])
    mastodon.add_status(status(1, tags=[{"name": "ACME"}]))
    mastodon.add_status(status(2, tags=[{"name": "acme"}], reblog=fixture("status_mention")))
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 1)
    assert Message.objects.get().text == "@acme problem number 1"


def test_mastodon_poll_walks_a_backlog_down_and_moves_since_id_only_at_the_end(mastodon, poller):
    mastodon.mention(status(0))
    poll_connector(poller.pk)
    old_since = mastodon.notifications[-1]["id"]
    news = [mastodon.mention(status(n)) for n in range(1, 6)]
    outcome = poll_connector(poller.pk, force=True)
    assert (outcome.error, outcome.pages, outcome.created) == ("", 3, 5)
    calls = mastodon.calls(NOTIFICATIONS)[1:]
    assert [c.query.get("since_id") for c in calls] == [old_since] * 3
    ids = [n["id"] for n in mastodon.notifications]
    assert [c.query.get("max_id") for c in calls] == [None, ids[4], ids[2]]  # from the Link rel="next"
    poller.refresh_from_db()
    assert poller.cursor["mentions"] == {"since": ids[-1]}
    assert stored_ids() == sorted([mastodon.notifications[0]["status"]["id"], *(s["id"] for s in news)])


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (Reply(502, "<html>Bad Gateway</html>"), "answered 502"),
        (Reply(200, b'[{"id": "3497'), "with no JSON, not a list"),
        (Reply(200, {"error": "nope"}), "with a JSON dict, not a list"),
        (Reply(200, [{"id": "1", "type": "mention", "status": {"id": "9", "content": "<p>hi</p>",
                                                                 "created_at": "2026-11-02T09:14:07Z"}}]),
         "missing field /api/v1/notifications[0].status.account"),
        (Reply(200, [{"id": "1", "type": "mention", "status": {**status(1), "created_at": "last tuesday"}}]),
         "status.created_at must be an ISO 8601 timestamp"),
        (Reply(200, [{"id": "../x", "type": "mention", "status": status(1)}]), "is not an id"),
        (Reply(200, [["not", "a", "notification"]]), "must be an object"),
    ],
)
def test_mastodon_poll_bad_page_stores_nothing_keeps_the_cursor_then_resumes(mastodon, poller, page, expected):
    mastodon.mention(status(0))
    poll_connector(poller.pk)
    for n in range(1, 6):
        mastodon.mention(status(n))
    mastodon.fail(NOTIFICATIONS, page, after=1)  # the first page passes, the second is bad
    first = poll_connector(poller.pk, force=True)
    assert (first.pages, first.created) == (1, 2)
    assert expected in first.error
    poller.refresh_from_db()
    ids = [n["id"] for n in mastodon.notifications]
    assert poller.cursor["mentions"] == {"since": ids[0], "max": ids[4], "top": ids[5]}  # mid-walk, kept
    assert (poller.health, Message.objects.count()) == (Health.DEGRADED, 3)
    assert poller.last_error.startswith("ProviderUnavailable:")
    second = poll_connector(poller.pk, force=True)
    assert (second.error, second.created, second.duplicates) == ("", 3, 0)
    poller.refresh_from_db()
    assert (poller.cursor["mentions"], poller.health, Message.objects.count()) == ({"since": ids[5]}, Health.OK, 6)


def test_mastodon_poll_rate_limited_backs_off_until_the_reset(mastodon, poller):
    reset = (timezone.now() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    mastodon.fail(TAG, Reply(429, fixture("error_429"), {"X-RateLimit-Limit": "300",
                                                         "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}))
    mastodon.mention(fixture("status_mention"))
    outcome = poll_connector(poller.pk)
    assert outcome.error == "Mastodon /api/v1/timelines/tag/acme failed (429): Too many requests"
    row = Connector.objects.get(pk=poller.pk)
    assert (row.cursor, Message.objects.count()) == ({}, 0)  # the mentions page was not stored alone
    assert row.next_poll_at >= timezone.now() + timedelta(minutes=4)
    with pytest.raises(ProviderRateLimited) as caught:
        mastodon.fail(TAG, Reply(429, fixture("error_429"), {"Retry-After": "30"}))
        poller.get_backend().poll({})
    assert caught.value.retry_after == 30


def test_mastodon_poll_with_a_wrong_token_is_an_auth_error(make_connector, mastodon):
    row = make_connector("mastodon", credentials={"access_token": "revoked"}, config={"instance_url": mastodon.url})
    outcome = poll_connector(row.pk)
    assert outcome.error == "Mastodon /api/v1/notifications failed (401): The access token is invalid"
    assert Connector.objects.get(pk=row.pk).last_error.startswith("ProviderAuthError:")


# --- Replies -----------------------------------------------------------------------------------
def reply_to(backend, answered: dict[str, Any], text: str = "So sorry! A new lid is on its way.", key: str = "r-1"):
    return backend.send(OutboundReply(text=text, channel="mastodon", recipient_id=answered["account"]["id"],
                                      thread_id=answered["id"], in_reply_to=answered["id"], idempotency_key=key))


@pytest.mark.parametrize(
    ("theirs", "configured", "sent"),
    [("public", "unlisted", "unlisted"), ("unlisted", "unlisted", "unlisted"), ("private", "unlisted", "private"),
     ("direct", "unlisted", "direct"), ("public", "public", "public"), ("unlisted", "public", "unlisted"),
     ("public", "private", "private"), ("limited", "public", "direct")],
)
def test_mastodon_reply_is_a_status_mentioning_the_author_never_wider_than_theirs(
        make_connector, mastodon, theirs, configured, sent):
    answered = mastodon.add_status({**fixture("status_mention"), "visibility": theirs})
    backend = make_connector("mastodon", credentials={"access_token": TOKEN},
                             config={"instance_url": mastodon.url, "visibility": configured}).get_backend()
    sent_id = reply_to(backend, answered)
    [call] = mastodon.calls("/api/v1/statuses")
    assert call.headers["idempotency-key"] == "r-1"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.json() == {"status": "@ada@fosstodon.org So sorry! A new lid is on its way.",
                           "in_reply_to_id": answered["id"], "visibility": sent}
    assert mastodon.statuses[sent_id]["in_reply_to_id"] == answered["id"]
    assert narrowest(theirs, configured) == sent


def test_mastodon_reply_to_a_direct_message_stays_direct_keeps_the_warning_and_posts_once(make_connector, mastodon):
    answered = mastodon.add_status(fixture("status_direct"))
    backend = make_connector("mastodon", credentials={"access_token": TOKEN},
                             config={"instance_url": mastodon.url, "visibility": "public"}).get_backend()
    first = reply_to(backend, answered, "@grace Rerouted!", key="case-7:1")
    again = reply_to(backend, answered, "@grace Rerouted!", key="case-7:1")  # a worker retrying
    assert first == again
    assert mastodon.posted == [{"status": "@grace Rerouted!", "in_reply_to_id": answered["id"],
                                "visibility": "direct", "spoiler_text": "order details"}]


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (Reply(429, fixture("error_429"), {"Retry-After": "30"}), ProviderRateLimited,
         lambda e: e.retryable and e.retry_after == 30),
        (Reply(422, fixture("error_422")), ProviderRejected,
         lambda e: not e.retryable and e.reason.endswith("(422): " + fixture("error_422")["error"])),
        (Reply(503, "<html>down</html>"), ProviderUnavailable, lambda e: e.retryable and e.status == 503),
        (Reply(200, {"id": 17}), ProviderRejected, lambda e: "without the posted status's id" in e.reason),
    ],
)
def test_mastodon_reply_errors_are_mapped(make_connector, mastodon, reply, error, check):
    answered = mastodon.add_status(fixture("status_mention"))
    mastodon.fail("/api/v1/statuses", reply)
    backend = make_connector("mastodon", credentials={"access_token": TOKEN},
                             config={"instance_url": mastodon.url}).get_backend()
    with pytest.raises(error) as caught:
        reply_to(backend, answered)
    assert check(caught.value)
    assert mastodon.posted == []


def test_mastodon_reply_to_a_deleted_status_or_with_a_wrong_token_fails_with_the_reason(make_connector, mastodon):
    backend = make_connector("mastodon", credentials={"access_token": TOKEN},
                             config={"instance_url": mastodon.url}).get_backend()
    with pytest.raises(ProviderRejected, match=r"\(404\): Record not found"):
        reply_to(backend, {"id": "113400000000000000", "account": {"id": "1"}})
    with pytest.raises(ProviderRejected, match="no Mastodon status to answer"):
        reply_to(backend, {"id": "", "account": {"id": "1"}})
    wrong = make_connector("mastodon", credentials={"access_token": "nope"},
                           config={"instance_url": mastodon.url}).get_backend()
    with pytest.raises(ProviderAuthError, match="The access token is invalid"):
        reply_to(wrong, mastodon.add_status(fixture("status_mention")))
    assert mastodon.posted == []


def test_mastodon_reply_rules_leave_room_for_the_mention(make_connector, mastodon):
    backend = make_connector("mastodon", config={"instance_url": mastodon.url, "max_chars": 1000}).get_backend()
    rules = backend.reply_rules("mastodon")
    assert (rules.max_chars, rules.window_hours, rules.media) == (1000 - 32, None, True)
    assert MastodonConnector(Connector(kind="mastodon", config={})).reply_rules("mastodon").max_chars == 468


# --- Streaming ---------------------------------------------------------------------------------
def test_mastodon_stream_yields_mentions_and_updates_and_ignores_the_rest(make_connector, mastodon):
    mentioned = mastodon.mention(fixture("status_mention"))
    mastodon.stream_event("notification", {"id": "1", "type": "favourite", "account": {"id": "2"}, "status": None})
    mastodon.stream_event("notification", mastodon.notifications[-1])
    mastodon.stream_event("delete", "113410553238590999")
    mastodon.stream_event("update", fixture("status_direct"))
    backend = make_connector("mastodon", credentials={"access_token": TOKEN},
                             config={"instance_url": mastodon.url}).get_backend()
    messages = list(backend.stream("user"))
    assert [m.external_id for m in messages] == [mentioned["id"], "113410601112345678"]
    assert messages[1].text == "CW: order details\n\n@acme my address changed, can you reroute 4412? [image]"
    [call] = mastodon.calls(r"/api/v1/streaming/.*")
    assert (call.path, call.headers["authorization"]) == ("/api/v1/streaming/user/notification", f"Bearer {TOKEN}")
    list(backend.stream("hashtag:#Acme"))
    assert mastodon.calls(r"/api/v1/streaming/.*")[-1].query == {"tag": "acme"}


def test_mastodon_stream_parser_handles_multiline_data_and_rejects_malformed_events():
    lines = [":thump", "event: update", 'data: {"id": "5", "created_at": "2026-11-02T09:14:07Z",',
             'data:  "content": "<b>hi</b>", "account": {"id": "7", "acct": "bo"}}', "", ":thump"]
    [message] = list(read_events(lines))
    assert (message.external_id, message.text, message.author.handle) == ("5", "hi", "bo")
    with pytest.raises(ProviderUnavailable, match="malformed update event"):
        list(read_events(["event: update", "data: {not json", ""]))
    with pytest.raises(ProviderUnavailable, match="malformed notification event"):
        list(read_events(["event: notification", 'data: {"type": "mention", "status": {"id": "5"}}', ""]))


def test_mastodon_stream_command_catches_up_by_polling_then_stores_the_stream_once(make_connector, mastodon):
    row = make_connector("mastodon", slug="masto-live", credentials={"access_token": TOKEN},
                         config={"instance_url": mastodon.url})
    polled = mastodon.mention(status(1))
    mastodon.stream_event("notification", mastodon.notifications[-1])  # also polled: stored once
    mastodon.stream_event("update", fixture("status_direct"))
    call_command("stream_mastodon", connector="masto-live", rounds=1)
    assert stored_ids() == sorted([polled["id"], "113410601112345678"])
    assert Connector.objects.get(pk=row.pk).cursor == {"mentions": {"since": mastodon.notifications[-1]["id"]}}
    assert len(mastodon.calls(r"/api/v1/streaming/user/notification")) == 1


def test_mastodon_stream_command_survives_a_failing_stream(make_connector, mastodon, capsys):
    make_connector("mastodon", slug="masto-down", credentials={"access_token": TOKEN},
                   config={"instance_url": mastodon.url})
    mastodon.fail(r"/api/v1/streaming/user/notification", Reply(502, "<html>Bad Gateway</html>"))
    call_command("stream_mastodon", connector="masto-down", rounds=1)
    assert "stream failed (1 in a row)" in capsys.readouterr().err
    assert not Message.objects.exists()


# --- Configuration -----------------------------------------------------------------------------
def test_mastodon_is_registered_with_its_config_and_credentials(settings):
    assert get_connector_class("mastodon") is MastodonConnector
    assert MastodonConnector.credential_fields == ("access_token", "client_id", "client_secret")
    settings.ALLOW_PRIVATE_URLS = False
    assert MastodonConnector.validate_config({"instance_url": "https://mastodon.social",
                                              "hashtags": ["#AcmeKettles", "café"]}) == {
        "instance_url": "https://mastodon.social", "hashtags": ["acmekettles", "café"], "mentions": True,
        "visibility": "unlisted", "max_chars": 500, "page_size": 40}


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, "instance_url"),
        ({"instance_url": "http://mastodon.social"}, "instance_url must be an https URL"),
        ({"instance_url": "https://mastodon.social/api"}, "instance_url"),
        ({"instance_url": "https://user@mastodon.social"}, "instance_url"),
        ({"hashtags": "acme"}, "hashtags"),
        ({"hashtags": ["ac me"]}, "hashtags"),
        ({"hashtags": [f"t{n}" for n in range(11)]}, "hashtags"),
        ({"visibility": "everyone"}, "visibility must be one of"),
        ({"max_chars": 10}, "max_chars"),
        ({"page_size": 41}, "page_size"),
        ({"mentions": "yes"}, "mentions"),
        ({"access_token": "x"}, "unknown config keys"),
    ],
)
def test_mastodon_validate_config_names_the_bad_key(settings, config, reason):
    settings.ALLOW_PRIVATE_URLS = False
    with pytest.raises(ConfigInvalid, match=reason):
        MastodonConnector.validate_config({"instance_url": "https://mastodon.social", **config}
                                          if config and "instance_url" not in config else config)


def test_mastodon_refuses_a_private_instance_in_production(make_connector, settings):
    row = make_connector("mastodon", credentials={"access_token": TOKEN},
                         config={"instance_url": "https://127.0.0.1"})
    settings.ALLOW_PRIVATE_URLS = False
    outcome = poll_connector(row.pk)
    assert "instance_url must be an https URL" not in outcome.error
    assert "resolves to a non-public address" in outcome.error
