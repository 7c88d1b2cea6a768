"""The Meta connector (Messenger, Instagram, WhatsApp), end to end through /hooks/<slug>/ and out
to a fake Graph API over real HTTP."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from listening.connectors.base import OutboundReply, hmac_sha256_hex
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.models import Contact, Conversation, Message
from tests.fakes.meta import (
    APP_RATE_LIMITED,
    MESSENGER_WINDOW_CLOSED,
    RATE_LIMITED,
    SERVER_ERROR,
    TOKEN_EXPIRED,
    WINDOW_CLOSED,
    FakeGraph,
)
from tests.listening.helpers import run_concurrently

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "meta"
APP_SECRET, VERIFY_TOKEN, ACCESS_TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "cxm-verify-7f3a", "EAAGtest-token"
PAGE, PSID = "682498302938465", "6934112743300901"
PNID, WA_ID = "106540352242922", "16505551234"
CREDENTIALS = {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "access_token": ACCESS_TOKEN}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def post(client, connector, payload, *, secret: str = APP_SECRET, signature: str | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {} if secret is None else {"X-Hub-Signature-256": signature or "sha256=" + hmac_sha256_hex(secret, body)}
    return client.post(f"/hooks/{connector.slug}/", data=body, content_type="application/json", headers=headers)


@pytest.fixture
def connector(make_connector):
    return make_connector("meta", slug="meta-app", credentials=CREDENTIALS)


@pytest.fixture
def graph(fake_provider):
    return FakeGraph(fake_provider, token=ACCESS_TOKEN)


@pytest.fixture
def sender(make_connector, graph):
    connector = make_connector("meta", config={"api_base": graph.url, "graph_version": "v21.0",
                                               "phone_number_id": "999000111222333", "page_id": PAGE},
                               credentials=CREDENTIALS)
    return connector.get_backend()


# --- Handshake ---------------------------------------------------------------------------------
def test_meta_handshake_answers_the_challenge(client, connector):
    response = client.get(f"/hooks/{connector.slug}/", {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                         "hub.challenge": "1158201444"})
    assert response.status_code == 200
    assert response.content == b"1158201444"
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("token", ["cxm-verify-7f3b", "", None])
def test_meta_handshake_refuses_wrong_or_missing_token(client, connector, token):
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
    if token is not None:
        query["hub.verify_token"] = token
    response = client.get(f"/hooks/{connector.slug}/", query)
    assert response.status_code == 403
    assert b"1158201444" not in response.content
    connector.refresh_from_db()
    assert connector.deliveries_rejected == 1


def test_meta_handshake_fails_closed_without_verify_token(client, make_connector):
    bare = make_connector("meta", slug="bare", credentials={"app_secret": APP_SECRET})
    response = client.get(f"/hooks/{bare.slug}/", {"hub.mode": "subscribe", "hub.verify_token": "",
                                                    "hub.challenge": "42"})
    assert response.status_code == 403
    assert response.json()["error"] == "secret_not_configured"


@pytest.mark.parametrize(("mode", "challenge"), [("unsubscribe", "42"), ("subscribe", ""), ("subscribe", "<b>x</b>")])
def test_meta_handshake_rejects_bad_mode_or_challenge(client, connector, mode, challenge):
    response = client.get(f"/hooks/{connector.slug}/", {"hub.mode": mode, "hub.verify_token": VERIFY_TOKEN,
                                                         "hub.challenge": challenge})
    assert response.status_code == 400
    assert "hub." in response.json()["reason"]


# --- Signature, size, malformed bodies -----------------------------------------------------------
@pytest.mark.parametrize(
    ("signature", "status", "code"),
    [(None, 401, "signature_missing"), ("sha256=" + "0" * 64, 403, "signature_invalid"),
     ("sha1=deadbeef", 403, "signature_invalid")],
)
def test_meta_signature_missing_or_wrong_stores_nothing(client, connector, signature, status, code):
    response = post(client, connector, fixture("whatsapp_text"), secret=None if signature is None else APP_SECRET,
                    signature=signature)
    assert response.status_code == status
    assert response.json()["error"] == code
    assert not Message.objects.exists()


def test_meta_signature_from_another_secret_is_refused(client, connector):
    response = post(client, connector, fixture("messenger_text"), secret="someone-elses-app-secret")
    assert response.status_code == 403
    assert not Message.objects.exists()


def test_meta_signature_covers_the_raw_bytes_not_the_parsed_json(client, connector):
    payload = fixture("messenger_text")
    signed = "sha256=" + hmac_sha256_hex(APP_SECRET, json.dumps(payload).encode())
    reformatted = json.dumps(payload, indent=2).encode()  # same JSON, other bytes
    assert post(client, connector, reformatted, signature=signed).status_code == 403
    assert not Message.objects.exists()


def test_meta_fails_closed_without_app_secret(client, make_connector):
    bare = make_connector("meta", slug="no-secret", credentials={"verify_token": VERIFY_TOKEN})
    response = post(client, bare, fixture("whatsapp_text"), secret="")
    assert response.status_code == 403
    assert response.json()["error"] == "secret_not_configured"
    assert not Message.objects.exists()


def test_meta_rejects_oversized_body(client, connector, settings):
    settings.WEBHOOK_MAX_BYTES = 4096
    payload = fixture("whatsapp_text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "x" * 8000
    response = post(client, connector, payload)
    assert response.status_code == 413
    assert not Message.objects.exists()


def _without(payload: dict, *path) -> dict:
    payload = copy.deepcopy(payload)
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return payload


WA_MESSAGE = ("entry", 0, "changes", 0, "value", "messages", 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2]", "body must be an object"),
        (json.dumps({"entry": []}).encode(), "missing field object"),
        (json.dumps({"object": "user", "entry": []}).encode(), "unsupported object"),
        (json.dumps({"object": "page", "entry": {}}).encode(), "field entry must be list"),
        (json.dumps(_without(fixture("whatsapp_text"), *WA_MESSAGE, "id")).encode(),
         "missing field entry[0].changes[0].value.messages[0].id"),
        (json.dumps(_without(fixture("whatsapp_text"), "entry", 0, "changes", 0, "value", "metadata")).encode(),
         "missing field entry[0].changes[0].value.metadata"),
        (json.dumps(_without(fixture("messenger_text"), "entry", 0, "messaging", 0, "sender")).encode(),
         "missing field entry[0].messaging[0].sender"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "recipient": {"id": "1"},'
         b' "timestamp": "soon", "message": {"mid": "m_1", "text": "hi"}}]}]}', "timestamp must be a Unix timestamp"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "recipient": {"id": "1"},'
         b' "timestamp": 1, "message": {"mid": "m_\\u0000", "text": "hi"}}]}]}', "printable ASCII"),
        (b'{"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "recipient": {"id": "1"},'
         b' "timestamp": 1, "message": {"mid": "m_1", "text": {"nested": 1}}}]}]}', "message.text must be str"),
        (b'{"object": "page", "entry": [' + b"9" * 5000 + b"]}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_meta_rejects_malformed_body_with_reason(client, connector, body, reason):
    response = post(client, connector, body)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert not Message.objects.exists()


# --- Parsing -----------------------------------------------------------------------------------
def test_meta_messenger_text_is_stored_with_page_thread(client, connector):
    response = post(client, connector, fixture("messenger_text"))
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0}
    message = Message.objects.get()
    assert message.channel == "messenger" and message.direction == "in"
    assert message.external_id.startswith("m_AG5Hz2Uq7")
    assert message.text.startswith("My order #4411 arrived")
    assert message.conversation.external_id == f"{PAGE}:{PSID}"
    assert message.author.external_id == PSID and message.author.channel == "messenger"
    assert message.sent_at.isoformat() == "2026-11-01T12:00:00.123000+00:00"
    assert message.raw["message"]["quick_reply"] == {"payload": "ORDER_PROBLEM"}


def test_meta_messenger_reply_is_threaded_to_its_parent(client, connector):
    assert post(client, connector, fixture("messenger_text")).status_code == 200
    assert post(client, connector, fixture("messenger_reply")).status_code == 200
    original = Message.objects.get(text__startswith="My order")
    reply = Message.objects.get(text__startswith="Still waiting")
    assert reply.parent_id == original.pk
    assert reply.parent_external_id == original.external_id
    assert reply.conversation_id == original.conversation_id
    assert Conversation.objects.get().message_count == 2


def test_meta_messenger_reply_arriving_first_is_linked_later(client, connector):
    post(client, connector, fixture("messenger_reply"))
    post(client, connector, fixture("messenger_text"))
    reply = Message.objects.get(text__startswith="Still waiting")
    assert reply.parent.text.startswith("My order")


def test_meta_echo_is_stored_as_outbound_in_the_customers_thread(client, connector):
    post(client, connector, fixture("messenger_text"))
    post(client, connector, fixture("messenger_echo"))
    echo = Message.objects.get(direction="out")
    assert echo.text.startswith("So sorry about that")
    assert echo.author.external_id == PAGE
    assert echo.conversation.external_id == f"{PAGE}:{PSID}"
    assert echo.conversation.contact.external_id == PSID  # the customer, not the page
    assert Message.objects.filter(direction="in").count() == 1


def test_meta_standby_messages_are_ingested_while_another_app_holds_the_thread(client, connector):
    payload = fixture("messenger_text")
    payload["entry"][0]["standby"] = payload["entry"][0].pop("messaging")
    assert post(client, connector, payload).json() == {"stored": 1, "duplicates": 0}
    assert Message.objects.get().conversation.external_id == f"{PAGE}:{PSID}"


def test_meta_instagram_dm_is_stored_on_the_instagram_channel(client, connector):
    assert post(client, connector, fixture("instagram_dm")).status_code == 200
    message = Message.objects.get()
    assert message.channel == "instagram"
    assert message.text == "Love the new colourway 😍 when does it ship to Canada?"
    assert message.conversation.external_id == "17841400008460056:1093542561980317"
    assert message.author.external_id == "1093542561980317"


def test_meta_instagram_deleted_message_is_skipped(client, connector):
    payload = fixture("instagram_dm")
    payload["entry"][0]["messaging"][0]["message"] = {"mid": "aWdfZAG1-deleted", "is_deleted": True}
    response = post(client, connector, payload)
    assert response.status_code == 200 and response.json()["stored"] == 0


def test_meta_whatsapp_text_keeps_profile_and_unverified_phone(client, connector):
    response = post(client, connector, fixture("whatsapp_text"))
    assert response.json() == {"stored": 1, "duplicates": 0}
    message = Message.objects.get()
    assert message.channel == "whatsapp"
    assert message.external_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUY0RjM2QjI0NTVFMDc0QjVEQgA="
    assert message.text == "Hi, I was charged twice for my subscription this month."
    assert message.conversation.external_id == f"{PNID}:{WA_ID}"
    assert message.sent_at.isoformat() == "2026-11-01T12:00:30+00:00"
    author = message.author
    assert (author.external_id, author.display_name, author.phone) == (WA_ID, "Ada Lovelace", "+16505551234")
    assert author.phone_verified is False and author.customer_id is None
    assert message.raw["metadata"]["phone_number_id"] == PNID


def test_meta_whatsapp_reply_with_context_is_threaded(client, connector):
    post(client, connector, fixture("whatsapp_text"))
    post(client, connector, fixture("whatsapp_reply"))
    first, second = Message.objects.order_by("sent_at")
    assert second.parent_id == first.pk
    assert second.conversation_id == first.conversation_id


def test_meta_whatsapp_statuses_only_store_nothing(client, connector):
    response = post(client, connector, fixture("whatsapp_statuses"))
    assert response.status_code == 200
    assert response.json() == {"stored": 0, "duplicates": 0}
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_meta_whatsapp_image_uses_caption_or_placeholder(client, connector):
    post(client, connector, fixture("whatsapp_image"))
    captioned = Message.objects.get()
    assert captioned.text == "Screenshot of both charges"
    assert captioned.raw["message"]["image"]["mime_type"] == "image/jpeg"
    bare = fixture("whatsapp_image")
    item = bare["entry"][0]["changes"][0]["value"]["messages"][0]
    item["id"], item["type"] = "wamid.NOCAPTION", "audio"
    item["audio"] = item.pop("image") | {"voice": True}
    del item["audio"]["caption"]
    post(client, connector, bare)
    assert Message.objects.get(external_id="wamid.NOCAPTION").text == "[audio]"


@pytest.mark.parametrize(
    ("kind", "content", "text"),
    [
        ("interactive", {"type": "button_reply", "button_reply": {"id": "refund", "title": "Refund please"}},
         "Refund please"),
        ("interactive", {"type": "list_reply", "list_reply": {"id": "r2", "title": "Billing", "description": "x"}},
         "Billing"),
        ("button", {"payload": "STOP", "text": "Stop promotions"}, "Stop promotions"),
        ("location", {"latitude": 38.9, "longitude": -77.0, "name": "Main St store"}, "Main St store"),
        ("sticker", {"mime_type": "image/webp", "id": "1"}, "[sticker]"),
        ("unsupported", None, "[unsupported]"),
        ("some new type!", None, "[unknown]"),
    ],
)
def test_meta_whatsapp_non_text_messages_keep_words_or_a_placeholder(client, connector, kind, content, text):
    payload = fixture("whatsapp_text")
    item = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del item["text"]
    item["type"] = kind
    if content is not None:
        item[kind] = content
    assert post(client, connector, payload).status_code == 200
    assert Message.objects.get().text == text


def test_meta_whatsapp_username_user_is_known_by_business_scoped_id(client, connector):
    payload = fixture("whatsapp_text")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": "Ada", "username": "@ada"}, "user_id": "US.13491208655302741918"}]
    del value["messages"][0]["from"]
    value["messages"][0]["from_user_id"] = "US.13491208655302741918"
    assert post(client, connector, payload).status_code == 200
    author = Message.objects.get().author
    assert (author.external_id, author.handle, author.phone) == ("US.13491208655302741918", "@ada", "")


def test_meta_batched_messenger_delivery_stores_every_message_and_skips_receipts(client, connector):
    response = post(client, connector, fixture("messenger_batch"))
    assert response.json() == {"stored": 4, "duplicates": 0}
    texts = list(Message.objects.order_by("sent_at").values_list("text", flat=True))
    assert texts == ["Is the store on Main St open on Sunday?", "And do you price-match?", "[image]",
                     "Talk to a person"]
    assert Conversation.objects.count() == 1


def whatsapp_batch(entries: int = 3, changes: int = 2, per_change: int = 5) -> dict:
    template = fixture("whatsapp_text")
    batch = {"object": "whatsapp_business_account", "entry": []}
    for e in range(entries):
        entry = {"id": f"10229012934039{e}", "changes": []}
        for c in range(changes):
            change = copy.deepcopy(template["entry"][0]["changes"][0])
            value = change["value"]
            wa_id = f"1650555{e}{c}00"
            value["contacts"] = [{"profile": {"name": f"Customer {e}{c}"}, "wa_id": wa_id}]
            value["messages"] = [
                {"from": wa_id, "id": f"wamid.BATCH-{e}-{c}-{m}", "timestamp": str(1793534400 + m), "type": "text",
                 "text": {"body": f"message {m} from entry {e} change {c}"}}
                for m in range(per_change)
            ]
            entry["changes"].append(change)
        batch["entry"].append(entry)
    return batch


def test_meta_whatsapp_batch_of_3_entries_2_changes_5_messages_stores_30(client, connector):
    response = post(client, connector, whatsapp_batch())
    assert response.json() == {"stored": 30, "duplicates": 0}
    assert Message.objects.filter(connector=connector).count() == 30
    assert Conversation.objects.count() == 6
    assert set(Conversation.objects.values_list("message_count", flat=True)) == {5}
    assert Contact.objects.get(external_id="16505551000").display_name == "Customer 10"


def test_meta_same_delivery_three_times_stores_once(client, connector):
    statuses = [post(client, connector, fixture("messenger_batch")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert Message.objects.count() == 4
    connector.refresh_from_db()
    assert (connector.messages_received, connector.duplicates_received) == (4, 8)


@pytest.mark.django_db(transaction=True)
def test_meta_concurrent_duplicate_deliveries_store_once(make_connector):
    connector = make_connector("meta", slug="meta-race", credentials=CREDENTIALS)
    body = json.dumps(whatsapp_batch(entries=2, changes=2, per_change=5)).encode()
    statuses = run_concurrently(lambda: post(Client(), connector, body).status_code, 4)
    assert statuses == [200] * 4
    assert Message.objects.filter(connector=connector).count() == 20
    connector.refresh_from_db()
    assert (connector.messages_received, connector.duplicates_received) == (20, 60)
    assert sum(Conversation.objects.values_list("message_count", flat=True)) == 20


# --- Hostile bodies ----------------------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers() | st.just(10**300) | st.just(-(2**70))
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["", "0", "1793534400", "m_1", "\x00", "\ud800", "x" * 300]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


def shaped(**fields) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={key: value | json_values for key, value in fields.items()})


party = shaped(id=st.sampled_from(["1", "2", PSID]), user_ref=st.text(max_size=5))
messenger_event = shaped(
    sender=party, recipient=party, timestamp=st.integers(),
    message=shaped(mid=st.text(max_size=5), text=st.text(max_size=5), is_echo=st.booleans(),
                   reply_to=shaped(mid=st.text(max_size=5)), attachments=st.lists(shaped(type=st.text(max_size=5)))),
    postback=shaped(mid=st.text(max_size=5), title=st.text(max_size=5)), read=shaped(watermark=st.integers()),
)
wa_message = shaped(
    **{"from": st.sampled_from([WA_ID, "abc"]), "from_user_id": st.text(max_size=5), "id": st.text(max_size=8),
       "timestamp": st.integers().map(str), "type": st.sampled_from(["text", "image", "interactive", "reaction"]),
       "text": shaped(body=st.text(max_size=5)), "image": shaped(caption=st.text(max_size=5)),
       "interactive": shaped(type=st.just("button_reply"), button_reply=shaped(title=st.text(max_size=5))),
       "context": shaped(id=st.text(max_size=5)), "reaction": shaped(message_id=st.text(max_size=5))}
)
wa_value = shaped(metadata=shaped(phone_number_id=st.sampled_from([PNID, ""])),
                  messages=st.lists(wa_message, max_size=3),
                  contacts=st.lists(shaped(wa_id=st.just(WA_ID), profile=shaped(name=st.text(max_size=5))), max_size=2),
                  statuses=st.lists(json_values, max_size=2))
entry = shaped(id=st.sampled_from([PAGE, "1"]), messaging=st.lists(messenger_event, max_size=3),
               standby=st.lists(messenger_event, max_size=2),
               changes=st.lists(shaped(field=st.sampled_from(["messages", "statuses"]), value=wa_value), max_size=2))
meta_body = json_values | shaped(object=st.sampled_from(["page", "instagram", "whatsapp_business_account"]),
                                 entry=st.lists(entry, max_size=3))


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=meta_body)
def test_meta_hostile_bodies_never_500(client, connector, body):
    response = post(client, connector, json.dumps(body).encode())
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["reason"]


# --- Sending -----------------------------------------------------------------------------------
def test_meta_send_whatsapp_posts_once_with_context(sender, graph):
    external_id = sender.send(OutboundReply(
        text="We refunded the second charge.", channel="whatsapp", recipient_id=WA_ID,
        thread_id=f"{PNID}:{WA_ID}", in_reply_to="wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUY0", idempotency_key="r-1",
    ))
    assert external_id == "wamid.HBgLFAKEOUTBOUND00000001AA=="
    [call] = graph.whatsapp_calls()
    assert call.path == f"/v21.0/{PNID}/messages"  # the number the customer wrote to, not the default
    assert call.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.json() == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_ID,
                           "type": "text", "text": {"body": "We refunded the second charge."},
                           "context": {"message_id": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUY0"}}
    assert graph.send_api_calls() == []


def test_meta_send_whatsapp_without_thread_uses_configured_number_and_bsuid(sender, graph):
    sender.send(OutboundReply(text="Hello!", channel="whatsapp", recipient_id="US.13491208655302741918"))
    [call] = graph.whatsapp_calls()
    assert call.path == "/v21.0/999000111222333/messages"
    assert call.json()["recipient"] == "US.13491208655302741918" and "to" not in call.json()
    assert "context" not in call.json()


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_meta_send_messenger_and_instagram_use_the_send_api(sender, graph, channel):
    external_id = sender.send(OutboundReply(text="A replacement mug is on its way.", channel=channel,
                                            recipient_id=PSID, thread_id=f"{PAGE}:{PSID}", in_reply_to="m_1"))
    assert external_id == "m_FAKEOUTBOUND00000001"
    [call] = graph.send_api_calls()
    assert call.path == "/v21.0/me/messages"
    assert call.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert call.json() == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                           "message": {"text": "A replacement mug is on its way."}}
    assert graph.whatsapp_calls() == []


@pytest.mark.parametrize(
    ("failure", "error", "retryable", "words"),
    [
        (RATE_LIMITED, ProviderRateLimited, True, "130429"),
        (APP_RATE_LIMITED, ProviderRateLimited, True, "(#4)"),
        (WINDOW_CLOSED, ProviderRejected, False, "24-hour customer service window is closed"),
        (TOKEN_EXPIRED, ProviderAuthError, True, "190"),
        (SERVER_ERROR, ProviderUnavailable, True, "500"),
    ],
)
def test_meta_send_maps_whatsapp_graph_errors(sender, graph, failure, error, retryable, words):
    graph.fail_next(failure)
    with pytest.raises(error) as raised:
        sender.send(OutboundReply(text="hi", channel="whatsapp", recipient_id=WA_ID, thread_id=f"{PNID}:{WA_ID}"))
    assert raised.value.retryable is retryable
    assert words in raised.value.reason and "AbCdEfGhIjKlMnOpQrStUvW" in raised.value.reason
    assert ACCESS_TOKEN not in raised.value.reason
    assert len(graph.whatsapp_calls()) == 1  # no hidden retries: backoff belongs to the caller


def test_meta_send_rate_limit_carries_retry_after(sender, graph):
    graph.fail_next(RATE_LIMITED)
    with pytest.raises(ProviderRateLimited) as raised:
        sender.send(OutboundReply(text="hi", channel="whatsapp", recipient_id=WA_ID))
    assert raised.value.retry_after == 17 and raised.value.status == 429


def test_meta_send_messenger_window_closed_is_rejected(sender, graph):
    graph.fail_next(MESSENGER_WINDOW_CLOSED)
    with pytest.raises(ProviderRejected, match="window is closed"):
        sender.send(OutboundReply(text="hi", channel="messenger", recipient_id=PSID, thread_id=f"{PAGE}:{PSID}"))
    assert len(graph.send_api_calls()) == 1


def test_meta_send_with_a_token_graph_refuses_is_an_auth_error(make_connector, graph):
    connector = make_connector("meta", config={"api_base": graph.url},
                               credentials=CREDENTIALS | {"access_token": "EAAG-revoked"})
    with pytest.raises(ProviderAuthError, match="190"):
        connector.get_backend().send(OutboundReply(text="hi", channel="messenger", recipient_id=PSID))


def test_meta_send_without_token_or_number_never_calls_graph(make_connector, graph):
    tokenless = make_connector("meta", config={"api_base": graph.url}, credentials={"app_secret": APP_SECRET})
    with pytest.raises(ProviderAuthError):
        tokenless.get_backend().send(OutboundReply(text="hi", channel="whatsapp", recipient_id=WA_ID))
    numberless = make_connector("meta", config={"api_base": graph.url}, credentials=CREDENTIALS)
    with pytest.raises(ProviderRejected, match="phone_number_id"):
        numberless.get_backend().send(OutboundReply(text="hi", channel="whatsapp", recipient_id=WA_ID))
    with pytest.raises(NotSupported):
        numberless.get_backend().send(OutboundReply(text="hi", channel="telegram", recipient_id="1"))
    assert graph.provider.requests == []


def test_meta_send_refuses_a_thread_of_another_page(sender, graph):
    with pytest.raises(ProviderRejected, match="another page"):
        sender.send(OutboundReply(text="hi", channel="messenger", recipient_id=PSID, thread_id=f"111:{PSID}"))
    assert graph.provider.requests == []


@pytest.mark.parametrize(
    "config",
    [{"graph_version": "21"}, {"api_base": "ftp://graph.facebook.com"}, {"phone_number_id": "+1555"},
     {"page_id": 682498302938465}, {"token": "x"}],
)
def test_meta_config_validation_names_the_bad_key(config):
    from listening.connectors.meta import MetaConnector

    with pytest.raises(ConfigInvalid):
        MetaConnector.validate_config(config)
    assert MetaConnector.validate_config({"phone_number_id": PNID})["graph_version"] == "v21.0"
