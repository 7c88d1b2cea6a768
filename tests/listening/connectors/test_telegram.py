"""The Telegram connector end to end: webhook deliveries through /hooks/<slug>/, long polling and
sendMessage against a fake Bot API over real HTTP (tests/fakes/telegram.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st

from listening.connectors import get_connector_class
from listening.connectors.base import OutboundReply
from listening.connectors.telegram import TelegramConnector
from listening.exceptions import (
    ConfigInvalid,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.models import Connector, Contact, Health, Message
from listening.polling import due_polling_connector_ids, poll_connector
from listening.signals import messages_ingested
from tests.fakes.http import Reply
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456789:AAHfakeTokenForTests_0123456789abcdef"
SECRET = "hook-secret_42"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "telegram"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def deliver(client, connector, body: Any, *, secret: str | None = SECRET):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return client.post(f"/hooks/{connector.slug}/", data=data, content_type="application/json", headers=headers)


def private_update(message_id: int, text: str = "hi", *, user: int = 731284556) -> dict[str, Any]:
    return {
        "update_id": 1,
        "message": {
            "message_id": message_id,
            "from": {"id": user, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": user, "first_name": "Ada", "type": "private"},
            "date": 1793534400 + message_id,
            "text": text,
        },
    }


@pytest.fixture
def hook(make_connector):
    return make_connector("telegram", slug="tg-hook", credentials={"bot_token": TOKEN, "webhook_secret": SECRET})


@pytest.fixture
def telegram(fake_provider) -> FakeTelegram:
    return FakeTelegram(fake_provider, TOKEN)


@pytest.fixture
def poller(make_connector, telegram):
    return make_connector(
        "telegram", slug="tg-poll", poll_interval_seconds=1, credentials={"bot_token": TOKEN},
        config={"mode": "polling", "long_poll_seconds": 0, "page_size": 2, "api_base": telegram.api_base},
    )


# --- Webhook: storing -------------------------------------------------------------------------
def test_telegram_webhook_stores_private_message_with_author_and_thread(client, hook):
    response = deliver(client, hook, fixture("private_text"))
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0}
    message = Message.objects.get(connector=hook)
    assert message.external_id == "731284556:52"
    assert message.channel == "telegram"
    assert message.text == "My order #4411 arrived broken, can someone help?"
    assert message.sent_at == datetime.fromtimestamp(1793534400, tz=UTC)
    assert message.conversation.external_id == "731284556"  # a private chat is one conversation
    assert message.raw["update_id"] == 483920101
    author = message.author
    assert (author.external_id, author.handle, author.display_name, author.profile_url) == (
        "731284556", "ada_l", "Ada Lovelace", "https://t.me/ada_l")


def test_telegram_webhook_group_reply_links_parent_and_shares_its_thread(client, hook):
    assert deliver(client, hook, fixture("group_root")).status_code == 200
    assert deliver(client, hook, fixture("group_reply")).status_code == 200
    root = Message.objects.get(external_id="-1001987654321:9001")
    reply = Message.objects.get(external_id="-1001987654321:9002")
    assert reply.parent_id == root.pk
    assert reply.parent_external_id == root.external_id
    assert reply.conversation_id == root.conversation_id
    assert root.conversation.external_id == "-1001987654321:9001"  # the chain's first message
    assert root.conversation.subject == "Acme Support Community"
    assert reply.url == "https://t.me/acme_community/9002"
    assert (reply.author.external_id, reply.author.display_name, reply.author.profile_url) == (
        "600777888", "Linus T", "")  # no username: no profile link


def test_telegram_webhook_messages_in_a_group_without_replies_are_separate_threads(client, hook):
    first, second = fixture("group_root"), fixture("group_root")
    second["message"]["message_id"] = 9005
    deliver(client, hook, first)
    deliver(client, hook, second)
    threads = set(Message.objects.values_list("conversation__external_id", flat=True))
    assert threads == {"-1001987654321:9001", "-1001987654321:9005"}


def test_telegram_webhook_edit_is_stored_as_its_own_message_beside_the_original(client, hook):
    deliver(client, hook, fixture("private_text"))
    response = deliver(client, hook, fixture("edited_message"))
    assert response.json() == {"stored": 1, "duplicates": 0}
    original = Message.objects.get(external_id="731284556:52")
    edit = Message.objects.get(external_id="731284556:52:edit:1793534490")
    assert edit.text == "My order #4411 arrived broken (the glass jug), can someone help?"
    assert edit.parent_id == original.pk
    assert edit.conversation_id == original.conversation_id
    assert edit.sent_at == datetime.fromtimestamp(1793534490, tz=UTC)
    assert original.text.startswith("My order #4411 arrived broken, ")  # the original is kept
    assert deliver(client, hook, fixture("edited_message")).json() == {"stored": 0, "duplicates": 1}


def test_telegram_webhook_channel_post_is_authored_by_the_channel(client, hook):
    assert deliver(client, hook, fixture("channel_post")).json()["stored"] == 1
    post = Message.objects.get()
    assert post.external_id == "-1001122334455:311"
    assert post.url == "https://t.me/acme_news/311"
    assert (post.author.external_id, post.author.handle, post.author.display_name, post.author.profile_url) == (
        "-1001122334455", "acme_news", "Acme News", "https://t.me/acme_news")


def test_telegram_webhook_photo_caption_is_the_text(client, hook):
    deliver(client, hook, fixture("photo_caption"))
    assert Message.objects.get().text == "Here is the crack in the jug"


def test_telegram_webhook_forum_topic_message_threads_by_topic(client, hook):
    deliver(client, hook, fixture("forum_topic_message"))
    message = Message.objects.get()
    assert message.conversation.external_id == "-1002233445566:topic:70"
    assert message.parent_external_id == ""  # the topic's service message is not a parent


@pytest.mark.parametrize("name", ["sticker_only", "my_chat_member", "callback_query"])
def test_telegram_webhook_ignores_updates_without_words(client, hook, name):
    response = deliver(client, hook, fixture(name))
    assert response.status_code == 200
    assert response.json() == {"stored": 0, "duplicates": 0}
    assert not Message.objects.exists()
    assert not Contact.objects.exists()


def test_telegram_webhook_same_update_three_times_stores_once(client, hook):
    for _ in range(3):
        assert deliver(client, hook, fixture("group_reply")).status_code == 200
    assert Message.objects.filter(connector=hook).count() == 1
    hook.refresh_from_db()
    assert (hook.messages_received, hook.duplicates_received) == (1, 2)


# --- Webhook: rejecting -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("secret", "status", "code"),
    [
        (None, 401, "signature_missing"),
        ("", 401, "signature_missing"),
        ("hook-secret_43", 403, "signature_invalid"),
        ("hook-secret_4", 403, "signature_invalid"),
        ("hook-secret_42 ", 403, "signature_invalid"),
        ("h\u00e9", 403, "signature_invalid"),
    ],
)
def test_telegram_webhook_rejects_missing_or_wrong_secret(client, hook, secret, status, code):
    response = deliver(client, hook, fixture("private_text"), secret=secret)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert not Message.objects.exists()
    hook.refresh_from_db()
    assert hook.deliveries_rejected == 1


def test_telegram_webhook_fails_closed_without_a_configured_secret(client, make_connector):
    bare = make_connector("telegram", slug="tg-bare", credentials={"bot_token": TOKEN})
    for secret in (None, "", "anything"):
        response = deliver(client, bare, fixture("private_text"), secret=secret)
        assert response.status_code == 403
        assert response.json()["error"] == "secret_not_configured"
    assert not Message.objects.exists()


def test_telegram_webhook_rejects_oversized_body(client, hook, settings):
    settings.WEBHOOK_MAX_BYTES = 2048
    update = fixture("private_text")
    update["message"]["text"] = "x" * 5000
    response = deliver(client, hook, update)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert not Message.objects.exists()


def _broken(path: str, value: Any, base: str = "private_text") -> bytes:
    """The fixture with one field replaced (value ...) or deleted (value None)."""
    update = fixture(base)
    *parents, leaf = path.split(".")
    target = update
    for key in parents:
        target = target[key]
    if value is None:
        del target[leaf]
    else:
        target[leaf] = value
    return json.dumps(update).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2]", "Telegram Update object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (_broken("update_id", None), "missing field update_id"),
        (_broken("update_id", 2**80), "update_id is out of range"),
        (_broken("message", "hello"), "message must be dict"),
        (_broken("message.chat", None), "missing field message.chat"),
        (_broken("message.chat.id", 2**70), "message.chat.id is out of range"),
        (_broken("message.chat.id", True), "message.chat.id must be int"),
        (_broken("message.message_id", "fifty-two"), "message.message_id must be int"),
        (_broken("message.date", "yesterday"), "message.date must be int"),
        (_broken("message.text", ["hi"]), "message.text must be str"),
        (_broken("message.from", "ada"), "message.from must be dict"),
        (_broken("message.from.id", None), "missing field message.from.id"),
        (_broken("edited_message.edit_date", None, "edited_message"), "missing field edited_message.edit_date"),
        (_broken("message.reply_to_message.message_id", {"x": 1}, "group_reply"),
         "message.reply_to_message.message_id must be int"),
    ],
    ids=lambda value: "body" if isinstance(value, bytes) else value,
)
def test_telegram_webhook_rejects_malformed_body_with_reason(client, hook, body, reason):
    response = deliver(client, hook, body)
    assert response.status_code == 400, response.content
    assert reason in response.json()["reason"]
    assert not Message.objects.exists()


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**62, max_value=2**200)
    | st.floats() | st.text(max_size=20) | st.sampled_from(["\x00", "\ud800", "12", "-7", "\u00b2", ""]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
ids = junk | st.integers(min_value=-(2**70), max_value=2**70) | st.integers(min_value=-5, max_value=5)
person = st.fixed_dictionaries({}, optional={
    "id": ids, "first_name": junk, "last_name": junk, "username": junk | st.just("ada_l"), "title": junk,
    "type": junk | st.sampled_from(["private", "group", "supergroup", "channel"]),
})
message = st.fixed_dictionaries({}, optional={
    "message_id": ids, "chat": person | junk, "from": person | junk, "sender_chat": person | junk,
    "date": ids, "edit_date": ids, "text": junk | st.text(min_size=1, max_size=50), "caption": junk,
    "reply_to_message": st.fixed_dictionaries({}, optional={"message_id": ids, "forum_topic_created": junk}) | junk,
    "is_topic_message": junk, "message_thread_id": ids,
})
update = st.tuples(
    st.fixed_dictionaries({}, optional={"update_id": ids}),
    st.sampled_from(["message", "edited_message", "channel_post", "edited_channel_post", "callback_query"]),
    message | junk,
).map(lambda parts: {**parts[0], parts[1]: parts[2]})
DELETE = object()
FIELDS = [
    "update_id", "*", "*.message_id", "*.date", "*.edit_date", "*.text", "*.caption", "*.chat", "*.chat.id",
    "*.chat.type", "*.chat.username", "*.chat.title", "*.from", "*.from.id", "*.from.username",
    "*.from.first_name", "*.sender_chat", "*.reply_to_message", "*.reply_to_message.message_id",
    "*.reply_to_message.forum_topic_created", "*.is_topic_message", "*.message_thread_id",
]
FIXTURE_UPDATES = ["private_text", "group_reply", "edited_message", "channel_post", "photo_caption",
                   "forum_topic_message", "sticker_only", "callback_query"]


def _mutate(name: str, mutations: list[tuple[str, Any]]) -> Any:
    """A recorded update with a few fields replaced by junk or deleted ("*" is the update's kind)."""
    body = fixture(name)
    kind = next(key for key in body if key != "update_id")
    for path, value in mutations:
        *parents, leaf = path.replace("*", kind).split(".")
        target = body
        for key in parents:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if value is DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return body


mutated = st.builds(
    _mutate, st.sampled_from(FIXTURE_UPDATES),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.just(DELETE) | ids | junk), min_size=1, max_size=4),
)


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(mutated, mutated, update, junk))
def test_telegram_webhook_hostile_bodies_never_500(client, hook, body):
    response = deliver(client, hook, json.dumps(body).encode())
    event(f"status {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["reason"]
    else:
        assert response.json()["stored"] + response.json()["duplicates"] <= 1


# --- Polling ----------------------------------------------------------------------------------
def test_telegram_wants_polling_only_in_polling_mode(hook, poller):
    assert not TelegramConnector.wants_polling({})
    assert not TelegramConnector.wants_polling({"mode": "webhook"})
    assert TelegramConnector.wants_polling({"mode": "polling"})
    due = due_polling_connector_ids()
    assert poller.pk in due
    assert hook.pk not in due


def test_telegram_poll_ingests_every_page_and_advances_offset(telegram, poller):
    for item in fixture("get_updates_page")["result"]:  # five updates, one without words
        telegram.push(item, renumber=False)
    outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.pages, outcome.created) == ("", 3, 4)
    poller.refresh_from_db()
    assert poller.cursor == {"offset": 483920206}
    assert poller.health == Health.OK
    calls = telegram.params("getUpdates")
    assert [c.get("offset") for c in calls] == [None, 483920203, 483920205]
    assert {(c["limit"], c["timeout"]) for c in calls} == {(2, 0)}
    reply = Message.objects.get(external_id="731284556:61")
    assert reply.parent.external_id == "731284556:60"
    assert reply.conversation.external_id == "731284556"
    # Nothing new: one call, confirming what was stored, and the cursor stays put.
    again = poll_connector(poller.pk, force=True)
    assert (again.error, again.created) == ("", 0)
    assert telegram.params("getUpdates")[-1]["offset"] == 483920206
    assert telegram.updates == []  # the fake forgot the confirmed updates, as Telegram does
    poller.refresh_from_db()
    assert poller.cursor == {"offset": 483920206}
    assert Message.objects.filter(connector=poller).count() == 4


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (Reply(200, {"ok": True, "result": {"update_id": 1}}), "result must be a list"),
        (Reply(200, {"ok": True, "result": [{"message": {}}]}), "missing field result[0].update_id"),
        (Reply(200, b'{"ok": true, "result": [{"update_id": 48'), "without a Bot API result"),
        (Reply(502, "<html>Bad Gateway</html>"), "answered 502"),
    ],
)
def test_telegram_poll_resumes_after_a_bad_page_without_loss_or_duplicates(telegram, poller, page, expected):
    pushed = [telegram.push(private_update(n)) for n in range(1, 6)]
    telegram.fail_raw("getUpdates", page, after=1)  # the second page comes back broken
    first = poll_connector(poller.pk)
    assert (first.pages, first.created) == (1, 2)
    assert expected in first.error
    poller.refresh_from_db()
    assert poller.cursor == {"offset": pushed[1]["update_id"] + 1}  # not past what is unstored
    assert poller.health == Health.DEGRADED
    second = poll_connector(poller.pk, force=True)
    assert (second.error, second.created) == ("", 3)
    stored = sorted(Message.objects.filter(connector=poller).values_list("external_id", flat=True))
    assert stored == sorted(f"731284556:{n}" for n in range(1, 6))
    poller.refresh_from_db()
    assert (poller.cursor, poller.duplicates_received, poller.health) == (
        {"offset": pushed[-1]["update_id"] + 1}, 0, Health.OK)


@pytest.mark.django_db(transaction=True)
def test_telegram_poll_crash_while_storing_a_page_loses_and_duplicates_nothing(make_connector, telegram):
    poller = make_connector(
        "telegram", slug="tg-crash", credentials={"bot_token": TOKEN},
        config={"mode": "polling", "long_poll_seconds": 0, "page_size": 2, "api_base": telegram.api_base},
    )
    pushed = [telegram.push(private_update(n)) for n in range(1, 6)]
    announced: list[int] = []

    def receiver(sender, message_ids, connector_id, **kwargs):
        announced.extend(message_ids)

    cursor_writes = {"n": 0}

    def crash_on_second_cursor_write(execute, sql, params, many, context):
        if sql.startswith('UPDATE "listening_connector" SET "cursor"'):
            cursor_writes["n"] += 1
            if cursor_writes["n"] == 2:  # the worker dies after storing page 2, before it commits
                raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    messages_ingested.connect(receiver)
    try:
        with connection.execute_wrapper(crash_on_second_cursor_write), pytest.raises(OperationalError):
            poll_connector(poller.pk)
        assert Message.objects.filter(connector=poller).count() == 2  # page 2 rolled back whole
        poller.refresh_from_db()
        assert poller.cursor == {"offset": pushed[1]["update_id"] + 1}
        assert poller.messages_received == 2
        outcome = poll_connector(poller.pk, force=True)  # the lease ran out; another worker resumes
    finally:
        messages_ingested.disconnect(receiver)
    assert (outcome.error, outcome.created) == ("", 3)
    stored = dict(Message.objects.filter(connector=poller).values_list("external_id", "id"))
    assert sorted(stored) == sorted(f"731284556:{n}" for n in range(1, 6))
    assert sorted(announced) == sorted(stored.values())  # each announced once, none for the rollback
    poller.refresh_from_db()
    assert (poller.cursor, poller.messages_received, poller.duplicates_received) == (
        {"offset": pushed[-1]["update_id"] + 1}, 5, 0)


def test_telegram_poll_skips_an_unparseable_update_and_keeps_the_rest(telegram, poller, caplog):
    telegram.push(private_update(1))
    bad = private_update(2)
    del bad["message"]["chat"]
    bad = telegram.push(bad)
    telegram.push(private_update(3))
    with caplog.at_level(logging.WARNING, logger="listening.connectors.telegram"):
        outcome = poll_connector(poller.pk)
    assert (outcome.error, outcome.created) == ("", 2)
    assert f"skipped update {bad['update_id']}: missing field message.chat" in caplog.text
    poller.refresh_from_db()
    assert poller.cursor == {"offset": bad["update_id"] + 2}


def test_telegram_poll_failures_are_recorded_on_health_and_keep_the_cursor(telegram, poller, caplog):
    Connector.objects.filter(pk=poller.pk).update(cursor={"offset": 483920300})
    caplog.set_level(logging.INFO)

    def poll_and_reload() -> Connector:
        outcome = poll_connector(poller.pk, force=True)
        assert outcome.error and TOKEN not in outcome.error
        return Connector.objects.get(pk=poller.pk)

    telegram.fail("getUpdates", 429, "Too Many Requests: retry after 300", retry_after=300)
    before = timezone.now()
    row = poll_and_reload()
    assert (row.health, row.consecutive_failures) == (Health.DEGRADED, 1)
    assert row.last_error.startswith("ProviderRateLimited: Telegram getUpdates failed (429)")
    assert row.next_poll_at >= before + timedelta(seconds=300)  # backoff alone would be ~2 s

    telegram.fail_raw("getUpdates", Reply(500, f"<h1>Internal error on /bot{TOKEN}/getUpdates</h1>"))
    row = poll_and_reload()
    assert (row.health, row.consecutive_failures) == (Health.DEGRADED, 2)
    assert row.last_error.startswith("ProviderUnavailable:") and "500" in row.last_error

    poller.credentials = {"bot_token": "123456789:AAHrevokedToken"}
    poller.save(update_fields=["credentials_encrypted"])
    row = poll_and_reload()
    assert (row.health, row.consecutive_failures) == (Health.FAILING, 3)
    assert row.last_error == "ProviderAuthError: Telegram getUpdates failed (401): Unauthorized"

    assert row.cursor == {"offset": 483920300}
    assert not Message.objects.exists()
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text
    assert "Unauthorized" in caplog.text  # the failures were logged, without the token

    poller.credentials = {"bot_token": TOKEN}
    poller.save(update_fields=["credentials_encrypted"])
    telegram.push(private_update(7), renumber=False)  # update_id 1 is below the offset: confirmed
    pushed = telegram.push(private_update(8))
    assert poll_connector(poller.pk, force=True).created == 1
    row = Connector.objects.get(pk=poller.pk)
    assert (row.health, row.consecutive_failures, row.cursor) == (
        Health.OK, 0, {"offset": pushed["update_id"] + 1})


def test_telegram_poll_while_a_webhook_is_set_records_the_conflict(telegram, poller):
    telegram.fail_raw("getUpdates", Reply(409, fixture("error_409_webhook_active")))
    outcome = poll_connector(poller.pk)
    assert outcome.error.startswith("Telegram getUpdates failed (409): Conflict: can't use getUpdates")
    row = Connector.objects.get(pk=poller.pk)
    assert (row.health, row.cursor) == (Health.DEGRADED, {})
    assert row.last_error.startswith("ProviderRejected:")


def test_telegram_poll_http_timeout_outlasts_the_long_poll(telegram, poller, settings):
    settings.PROVIDER_HTTP_TIMEOUT = 0.5
    poller.config = {**poller.config, "long_poll_seconds": 1}
    poller.save()
    started = time.monotonic()
    outcome = poll_connector(poller.pk)
    assert outcome.error == ""  # an HTTP timeout of 0.5 s alone would have cut the 1 s long poll
    assert time.monotonic() - started >= 0.9
    assert telegram.params("getUpdates")[0]["timeout"] == 1


def test_telegram_poll_with_invalid_config_records_the_failure(make_connector, telegram):
    broken = make_connector("telegram", credentials={"bot_token": TOKEN},
                            config={"mode": "polling", "api_base": telegram.api_base, "page_size": 500})
    outcome = poll_connector(broken.pk)
    assert "page_size must be an integer from 1 to 100" in outcome.error
    assert Connector.objects.get(pk=broken.pk).health == Health.DEGRADED
    assert telegram.calls("getUpdates") == []


# --- Sending ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("thread", "in_reply_to", "chat_id", "expected_params"),
    [
        ("731284556", "731284556:52", 731284556,
         {"reply_parameters": {"message_id": 52, "allow_sending_without_reply": True}}),
        ("731284556", "731284556:52:edit:1793534490", 731284556,
         {"reply_parameters": {"message_id": 52, "allow_sending_without_reply": True}}),
        ("-1001987654321:9001", "-1001987654321:9002", -1001987654321,
         {"reply_parameters": {"message_id": 9002, "allow_sending_without_reply": True}}),
        ("-1002233445566:topic:70", "-1002233445566:77", -1002233445566,
         {"message_thread_id": 70, "reply_parameters": {"message_id": 77, "allow_sending_without_reply": True}}),
        ("731284556", "-1001987654321:9002", 731284556,
         {"reply_parameters": {"message_id": 9002, "chat_id": -1001987654321}}),
        ("", "", 731284556, {}),
    ],
)
def test_telegram_send_posts_one_reply_to_the_chat_answering_the_message(
    make_connector, telegram, thread, in_reply_to, chat_id, expected_params
):
    for name in ("private_text", "group_reply", "forum_topic_message"):
        telegram.push(fixture(name))
    connector = make_connector("telegram", credentials={"bot_token": TOKEN}, config={"api_base": telegram.api_base})
    sent_id = connector.get_backend().send(OutboundReply(
        text="So sorry! A replacement is on its way.", channel="telegram", recipient_id="731284556",
        thread_id=thread, in_reply_to=in_reply_to, idempotency_key="reply-1"))
    [call] = telegram.calls("sendMessage")
    assert call.headers["content-type"].startswith("application/json")
    assert call.json() == {"chat_id": chat_id, "text": "So sorry! A replacement is on its way.", **expected_params}
    assert sent_id == f"{chat_id}:1000"
    assert len(telegram.sent) == 1


def test_telegram_send_reads_the_sent_message_id_from_the_recorded_answer(make_connector, telegram):
    telegram.fail_raw("sendMessage", Reply(200, fixture("send_message_result")))
    connector = make_connector("telegram", credentials={"bot_token": TOKEN}, config={"api_base": telegram.api_base})
    sent_id = connector.get_backend().send(OutboundReply(
        text="So sorry, Ada! A replacement is on its way.", channel="telegram", recipient_id="731284556",
        thread_id="731284556", in_reply_to="731284556:52"))
    assert sent_id == "731284556:55"


@pytest.mark.parametrize(
    ("reply", "error", "check"),
    [
        (Reply(429, fixture("error_429")), ProviderRateLimited, lambda e: e.retry_after == 37),
        (Reply(429, {"ok": False, "error_code": 429, "description": "Too Many Requests",
                     "parameters": {"retry_after": 10**30}}), ProviderRateLimited, lambda e: e.retry_after == 86400),
        (Reply(403, fixture("error_403_blocked")), ProviderRejected, lambda e: not e.retryable),
        (Reply(400, fixture("error_400_migrated")), ProviderRejected,
         lambda e: "moved to chat -1001987654321" in e.reason),
        (Reply(500, fixture("error_500")), ProviderUnavailable, lambda e: e.retryable and e.status == 500),
        (Reply(503, "<html>upstream down</html>"), ProviderUnavailable, lambda e: e.status == 503),
        (Reply(200, {"ok": True, "result": True}), ProviderUnavailable, lambda e: "sent message" in e.reason),
    ],
)
def test_telegram_send_maps_api_errors_to_provider_errors(make_connector, telegram, reply, error, check):
    telegram.fail_raw("sendMessage", reply)
    connector = make_connector("telegram", credentials={"bot_token": TOKEN}, config={"api_base": telegram.api_base})
    with pytest.raises(error) as caught:
        connector.get_backend().send(OutboundReply(text="hi", channel="telegram", recipient_id="731284556",
                                                   thread_id="731284556"))
    assert check(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(telegram.calls("sendMessage")) == 1


def test_telegram_send_with_a_wrong_token_is_an_auth_error(make_connector, telegram):
    connector = make_connector("telegram", credentials={"bot_token": "42:wrong"},
                               config={"api_base": telegram.api_base})
    with pytest.raises(ProviderAuthError, match=r"\(401\): " + fixture("error_401")["description"]) as caught:
        connector.get_backend().send(OutboundReply(text="hi", channel="telegram", recipient_id="1"))
    assert "42:wrong" not in str(caught.value)
    assert telegram.sent == []


def test_telegram_send_to_an_unreachable_api_is_unavailable_without_the_token(make_connector):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = make_connector("telegram", credentials={"bot_token": TOKEN}, config={"api_base": f"http://127.0.0.1:{port}"})
    with pytest.raises(ProviderUnavailable) as caught:
        connector.get_backend().send(OutboundReply(text="hi", channel="telegram", recipient_id="1"))
    assert "/***/sendMessage" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_telegram_send_without_a_chat_is_rejected_before_calling(make_connector, telegram):
    connector = make_connector("telegram", credentials={"bot_token": TOKEN}, config={"api_base": telegram.api_base})
    with pytest.raises(ProviderRejected):
        connector.get_backend().send(OutboundReply(text="hi", channel="telegram", recipient_id="", thread_id=""))
    assert telegram.calls("sendMessage") == []


# --- Configuration ----------------------------------------------------------------------------
def test_telegram_is_registered_with_its_config_and_credentials():
    assert get_connector_class("telegram") is TelegramConnector
    assert TelegramConnector.credential_fields == ("bot_token", "webhook_secret")
    assert TelegramConnector.validate_config({}) == {
        "mode": "webhook", "long_poll_seconds": 20, "page_size": 100, "api_base": "https://api.telegram.org"}
    assert TelegramConnector.validate_config({"mode": "polling", "long_poll_seconds": 0})["mode"] == "polling"


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"mode": "push"}, "mode must be"),
        ({"long_poll_seconds": -1}, "long_poll_seconds"),
        ({"long_poll_seconds": "20"}, "long_poll_seconds"),
        ({"long_poll_seconds": True}, "long_poll_seconds"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"api_base": "ftp://api.telegram.org"}, "api_base"),
        ({"api_base": "https://api.telegram.org/bot1:x"}, "api_base"),
        ({"bot_token": "1:x"}, "unknown config keys"),
        ([], "JSON object"),
    ],
)
def test_telegram_validate_config_names_the_bad_key(config, reason):
    with pytest.raises(ConfigInvalid, match=reason):
        TelegramConnector.validate_config(config)
