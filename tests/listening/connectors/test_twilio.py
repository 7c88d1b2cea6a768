"""The Twilio connector (SMS and WhatsApp) end to end: signed deliveries through /hooks/<slug>/,
form-encoded and JSON (bodySHA256); replies through a fake Messages API over real HTTP
(tests/fakes/twilio.py); and the status callbacks Twilio sends back, which update the Reply."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from listening.connectors import get_connector_class
from listening.connectors.base import OutboundReply
from listening.connectors.twilio import TwilioConnector, twilio_signature
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.models import Contact, Message
from responses import replies
from responses.exceptions import InvalidRequest
from responses.models import Case, ConsoleEvent, Reply, Role, Team
from responses.routing import route_messages
from responses.teams import ensure_default_queues
from tests.fakes.http import Reply as FakeReply
from tests.fakes.twilio import FakeTwilio, fixture, twilio_error
from tests.responses.conftest import classify, make_user

ACCOUNT = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PUBLIC = "https://cxm.example.com"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "twilio"
VECTORS = json.loads((FIXTURES / "signature_vectors.json").read_text())


def sign(token: str, url: str, params: dict[str, str] | list[tuple[str, str]]) -> str:
    """Twilio's algorithm, written out here independently of the connector's."""
    pairs = sorted(params.items() if isinstance(params, dict) else params)
    data = url + "".join(name + value for name, value in pairs)
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def post_form(client, connector, params: dict[str, str], *, token: str | None = TOKEN, url: str | None = None,
              signature: str | None = None, body: bytes | None = None):
    """POST as Twilio does: form-encoded, signed over the URL it called (default: as Django sees it)."""
    path = f"/hooks/{connector.slug}/"
    headers = {}
    if token is not None:
        headers["X-Twilio-Signature"] = signature or sign(token, url or f"http://testserver{path}", params)
    return client.post(path, data=body if body is not None else urlencode(params),
                       content_type="application/x-www-form-urlencoded", headers=headers)


def post_json(client, connector, payload: Any, *, token: str = TOKEN, hashed: bytes | None = None):
    """POST a JSON body: its SHA-256 goes in the URL, and the URL alone is signed."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    path = f"/hooks/{connector.slug}/?bodySHA256={hashlib.sha256(hashed or body).hexdigest()}"
    return client.post(path, data=body, content_type="application/json",
                       headers={"X-Twilio-Signature": sign(token, f"http://testserver{path}", {})})


@pytest.fixture
def hook(make_connector):
    return make_connector("twilio", slug="twilio-hook", config={"account_sid": ACCOUNT},
                          credentials={"auth_token": TOKEN})


@pytest.fixture
def twilio_api(fake_provider) -> FakeTwilio:
    return FakeTwilio(fake_provider, ACCOUNT, TOKEN)


@pytest.fixture
def sender(make_connector, twilio_api):
    connector = make_connector("twilio", slug="twilio-out", config={
        "account_sid": ACCOUNT, "api_base": twilio_api.url, "public_url": PUBLIC,
        "sms_from": "+14155550100", "whatsapp_from": "whatsapp:+14155238886"}, credentials={"auth_token": TOKEN})
    return connector.get_backend()


# --- Signatures ----------------------------------------------------------------------------------
def test_twilio_signature_matches_twilios_published_vectors():
    params = VECTORS["params"]
    assert twilio_signature(VECTORS["auth_token"], VECTORS["url"], params.items()) == VECTORS["signature"]
    assert sign(VECTORS["auth_token"], VECTORS["url"], params) == VECTORS["signature"]
    repeated = [tuple(pair) for pair in VECTORS["repeated_params"]]
    assert twilio_signature(VECTORS["auth_token"], VECTORS["url"], repeated) == VECTORS["repeated_signature"]
    with_port = VECTORS["url"].replace(".com", ".com:443")
    assert twilio_signature(VECTORS["auth_token"], with_port, params.items()) == VECTORS["signature_https_port_443"]
    assert hashlib.sha256(VECTORS["json_body"].encode()).hexdigest() == VECTORS["json_body_sha256"]
    json_url = f"{VECTORS['url']}&bodySHA256={VECTORS['json_body_sha256']}"
    assert twilio_signature(VECTORS["auth_token"], json_url, []) == VECTORS["json_signature"]


# --- Inbound -------------------------------------------------------------------------------------
def test_twilio_sms_is_stored_on_the_sms_channel_with_its_contact(client, hook):
    params = fixture("inbound_sms")
    response = post_form(client, hook, params)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")  # TwiML: Twilio sends no automatic answer
    assert response.content == b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    message = Message.objects.get()
    assert (message.external_id, message.channel, message.direction) == (params["MessageSid"], "sms", "in")
    assert message.text == params["Body"]  # "&" and quotes arrive intact through the form encoding
    assert message.conversation.external_id == "+14155550100|+14155550123"
    author = message.author
    assert (author.channel, author.external_id, author.phone) == ("sms", "+14155550123", "+14155550123")
    assert author.phone_verified is False and author.customer_id is None
    assert message.raw["MessagingServiceSid"] == params["MessagingServiceSid"]


def test_twilio_whatsapp_is_stored_on_the_whatsapp_channel_with_profile_name(client, hook):
    params = fixture("inbound_whatsapp")
    assert post_form(client, hook, params).status_code == 200
    message = Message.objects.get()
    assert message.channel == "whatsapp" and message.text == "Bonjour ! Ma carte a été débitée deux fois 😕"
    assert message.conversation.external_id == "whatsapp:+14155238886|whatsapp:+447700900123"
    author = message.author
    assert (author.channel, author.external_id, author.display_name, author.phone) == (
        "whatsapp", "447700900123", "Ada Lovelace", "+447700900123")  # the wa_id, as the Meta connector keeps it
    assert author.phone_verified is False


def test_twilio_whatsapp_reply_is_threaded_to_the_message_it_answers(client, hook):
    post_form(client, hook, fixture("inbound_whatsapp"))
    post_form(client, hook, fixture("inbound_whatsapp_reply"))
    first = Message.objects.get(external_id=fixture("inbound_whatsapp")["MessageSid"])
    second = Message.objects.get(external_id=fixture("inbound_whatsapp_reply")["MessageSid"])
    assert second.parent_id == first.pk and second.conversation_id == first.conversation_id


def test_twilio_mms_without_words_gets_a_placeholder_and_keeps_its_media(client, hook):
    params = fixture("inbound_mms")
    assert post_form(client, hook, params).status_code == 200
    message = Message.objects.get()
    assert message.text == "[image]"
    assert message.raw["MediaUrl0"] == params["MediaUrl0"] and message.raw["MediaContentType0"] == "image/jpeg"


def test_twilio_json_body_signed_with_body_sha256_is_stored(client, hook):
    params = fixture("inbound_whatsapp")
    response = post_json(client, hook, params)
    assert response.status_code == 200
    message = Message.objects.get()
    assert (message.external_id, message.channel) == (params["MessageSid"], "whatsapp")


def test_twilio_json_body_that_does_not_match_its_hash_is_refused(client, hook):
    params = fixture("inbound_sms")
    tampered = json.dumps(params | {"Body": "Please refund me 10,000"}).encode()
    response = post_json(client, hook, tampered, hashed=json.dumps(params).encode())
    assert response.status_code == 403 and "bodySHA256" in response.json()["reason"]
    unhashed = client.post(f"/hooks/{hook.slug}/", data=json.dumps(params), content_type="application/json",
                           headers={"X-Twilio-Signature": sign(TOKEN, f"http://testserver/hooks/{hook.slug}/", {})})
    assert unhashed.status_code == 403
    assert not Message.objects.exists()


def test_twilio_same_message_sid_three_times_is_stored_once(client, hook):
    statuses = [post_form(client, hook, fixture("inbound_sms")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert post_json(client, hook, fixture("inbound_sms")).status_code == 200  # the same sid as JSON
    assert Message.objects.count() == 1 and Contact.objects.count() == 1
    hook.refresh_from_db()
    assert (hook.messages_received, hook.duplicates_received) == (1, 3)


def test_twilio_signature_over_the_public_url_is_accepted_with_or_without_port(client, make_connector, settings):
    settings.CXM_PUBLIC_URL = ""
    proxied = make_connector("twilio", slug="behind-proxy", config={"public_url": f"{PUBLIC}/"},
                             credentials={"auth_token": TOKEN})
    sms, whatsapp = fixture("inbound_sms"), fixture("inbound_whatsapp")
    assert post_form(client, proxied, sms, url=f"{PUBLIC}/hooks/behind-proxy/").status_code == 200
    assert post_form(client, proxied, whatsapp, url=f"{PUBLIC}:443/hooks/behind-proxy/").status_code == 200
    assert Message.objects.count() == 2


def test_twilio_signature_uses_the_cxm_public_url_setting(client, hook, settings):
    settings.CXM_PUBLIC_URL = "https://care.example.org"
    url = "https://care.example.org/hooks/twilio-hook/"
    assert post_form(client, hook, fixture("inbound_sms"), url=url).status_code == 200
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("http://testserver/hooks/another-hook/", TOKEN),  # captured for another connector
        ("https://attacker.example/hooks/twilio-hook/", TOKEN),
        ("http://testserver/hooks/twilio-hook/?extra=1", TOKEN),
        ("http://testserver/hooks/twilio-hook/", "0" * 32),  # someone else's auth token
    ],
)
def test_twilio_signature_over_another_url_or_token_is_refused(client, hook, url, token):
    response = post_form(client, hook, fixture("inbound_sms"), signature=sign(token, url, fixture("inbound_sms")))
    assert response.status_code == 403 and response.json()["error"] == "signature_invalid"
    assert not Message.objects.exists()
    hook.refresh_from_db()
    assert hook.deliveries_rejected == 1


def test_twilio_signature_over_other_parameters_is_refused(client, hook):
    params = fixture("inbound_sms")
    signature = sign(TOKEN, "http://testserver/hooks/twilio-hook/", params)
    forged = params | {"Body": "Cancel my account and refund everything"}
    assert post_form(client, hook, forged, signature=signature).status_code == 403
    assert post_form(client, hook, params, signature="x" + signature[1:]).status_code == 403
    assert not Message.objects.exists()


def test_twilio_missing_signature_is_401(client, hook):
    response = post_form(client, hook, fixture("inbound_sms"), token=None)
    assert response.status_code == 401 and response.json()["error"] == "signature_missing"
    assert not Message.objects.exists()


def test_twilio_fails_closed_without_an_auth_token(client, make_connector):
    bare = make_connector("twilio", slug="no-token", config={"account_sid": ACCOUNT})
    response = post_form(client, bare, fixture("inbound_sms"), token="")
    assert response.status_code == 403 and response.json()["error"] == "secret_not_configured"
    assert not Message.objects.exists()


def test_twilio_rejects_an_oversized_body(client, hook, settings):
    settings.WEBHOOK_MAX_BYTES = 4096
    response = post_form(client, hook, fixture("inbound_sms") | {"Body": "x" * 8000})
    assert response.status_code == 413
    assert not Message.objects.exists()


def _sms(**changes: str | None) -> dict[str, str]:
    params = fixture("inbound_sms") | changes
    return {key: value for key, value in params.items() if value is not None}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (_sms(MessageSid=None), "missing field MessageSid"),
        (_sms(MessageSid="SM123"), "MessageSid must be a Twilio sid"),
        (_sms(MessageSid="SM3f1c2b7e9a4d8f60b5e2c1a7d9f0e4b3\x00"), "MessageSid must be a Twilio sid"),
        (_sms(From=None), "missing field From"),
        (_sms(From="ada@example.com"), "From must be a phone number"),
        (_sms(From="messenger:+14155550123", To="messenger:+14155550100"), "messenger channel is not supported"),
        (_sms(To="whatsapp:+14155238886"), "different channels"),
        (_sms(NumMedia="two"), "NumMedia"),
        (_sms(NumMedia="11"), "NumMedia"),
        (_sms(NumMedia="²"), "NumMedia"),
        (_sms(NumMedia="1"), "MediaUrl0 must be an http(s) URL"),
        (_sms(OriginalRepliedMessageSid="not-a-sid"), "OriginalRepliedMessageSid"),
        (_sms(MessageStatus="failed", ErrorCode="30003; DROP TABLE"), "ErrorCode must be a number"),
    ],
)
def test_twilio_malformed_fields_are_refused_with_a_reason(client, hook, params, reason):
    response = post_form(client, hook, params)
    assert response.status_code == 400, response.content
    assert reason in response.json()["reason"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"Body=%FF%FE&MessageSid=SM1", "not UTF-8"),
        (b"\xff\xfe=1", "not UTF-8"),
        (b"&".join(b"f%d=1" % n for n in range(600)), "more than 500 fields"),
        (urlencode(list(fixture("inbound_sms").items()) + [("Body", "second body")]).encode(), "Body appears more"),
    ],
)
def test_twilio_malformed_form_bodies_are_refused_with_a_reason(client, hook, body, reason):
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)  # signed as sent
    response = post_form(client, hook, {}, signature=sign(TOKEN, f"http://testserver/hooks/{hook.slug}/", pairs),
                         body=body)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(b"[1, 2]", "JSON object"), (b"{not json", "not valid JSON"),
     (json.dumps(fixture("inbound_sms") | {"Body": {"nested": 1}}).encode(), "Body must be a string"),
     (json.dumps(fixture("inbound_sms") | {"NumMedia": True}).encode(), "NumMedia must be a string")],
)
def test_twilio_malformed_json_bodies_are_refused_with_a_reason(client, hook, payload, reason):
    response = post_json(client, hook, payload)
    assert response.status_code == 400
    assert reason in response.json()["reason"]
    assert not Message.objects.exists()


def test_twilio_paused_connector_refuses_deliveries(client, hook):
    hook.enabled = False
    hook.save()
    assert post_form(client, hook, fixture("inbound_sms")).status_code == 403
    assert not Message.objects.exists()


form_values = st.text(max_size=20) | st.sampled_from(
    ["", "+14155550123", "whatsapp:+447700900123", "SM3f1c2b7e9a4d8f60b5e2c1a7d9f0e4b3", "1", "10", "99",
     "received", "delivered", "failed", "https://x.example/m.jpg", "\x00", "\ud7ff"])
form_names = st.sampled_from(["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "MediaContentType0",
                              "ProfileName", "MessageStatus", "SmsStatus", "ErrorCode", "ButtonText", "Latitude",
                              "OriginalRepliedMessageSid"]) | st.text(max_size=8)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(form_names, form_values, max_size=10))
def test_twilio_hostile_signed_forms_never_500(client, hook, params):
    response = post_form(client, hook, params)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert response.json()["reason"]


# --- Sending -------------------------------------------------------------------------------------
def test_twilio_send_sms_posts_the_form_with_basic_auth_and_returns_the_sid(sender, twilio_api):
    sid = sender.send(OutboundReply(text="So sorry! Your order ships today.", channel="sms",
                                    recipient_id="+14155550123", thread_id="+14155550100|+14155550123"))
    [call] = twilio_api.calls()
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert call.headers["authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert call.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert call.form() == {"To": "+14155550123", "From": "+14155550100", "Body": "So sorry! Your order ships today.",
                           "StatusCallback": f"{PUBLIC}/hooks/twilio-out/"}
    assert sid == twilio_api.sent[0]["sid"] and sid.startswith("SM")


def test_twilio_send_whatsapp_answers_from_the_number_the_customer_wrote_to(sender, twilio_api):
    sender.send(OutboundReply(text="Refund issued.", channel="whatsapp", recipient_id="447700900123",
                              thread_id="whatsapp:+14155238999|whatsapp:+447700900123"))
    form = twilio_api.calls()[0].form()
    assert (form["To"], form["From"]) == ("whatsapp:+447700900123", "whatsapp:+14155238999")


def test_twilio_send_without_a_thread_number_uses_the_service_or_configured_number(make_connector, twilio_api,
                                                                                   settings):
    settings.CXM_PUBLIC_URL = ""
    config = {"account_sid": ACCOUNT, "api_base": twilio_api.url, "whatsapp_from": "+14155238886"}
    numbered = make_connector("twilio", config=config, credentials={"auth_token": TOKEN}).get_backend()
    numbered.send(OutboundReply(text="Hi", channel="whatsapp", recipient_id="447700900123"))
    service = make_connector("twilio", config=config | {"messaging_service_sid": "MG4f2c8e1a9b7d6053e4c2a1f0b9d8c7e6"},
                             credentials={"auth_token": TOKEN}).get_backend()
    service.send(OutboundReply(text="Hi", channel="sms", recipient_id="+14155550123"))
    first, second = (call.form() for call in twilio_api.calls())
    assert first == {"To": "whatsapp:+447700900123", "From": "whatsapp:+14155238886", "Body": "Hi"}
    assert second == {"To": "+14155550123", "MessagingServiceSid": "MG4f2c8e1a9b7d6053e4c2a1f0b9d8c7e6", "Body": "Hi"}
    assert "StatusCallback" not in first  # no public URL known: Twilio would have nowhere to call


@pytest.mark.parametrize(
    ("answer", "error", "check"),
    [
        (twilio_error(20429, headers={"Retry-After": "12"}), ProviderRateLimited,
         lambda e: e.retry_after == 12 and e.retryable and "20429" in e.reason),
        (twilio_error(21211), ProviderRejected,
         lambda e: not e.retryable and "Invalid 'To' Phone Number" in e.reason and "21211" in e.reason),
        (twilio_error(21617), ProviderRejected, lambda e: "1600 character limit" in e.reason),
        (twilio_error(20500), ProviderUnavailable, lambda e: e.retryable and e.status == 500),
        (FakeReply(503, "<html>upstream down</html>"), ProviderUnavailable, lambda e: e.status == 503),
        (FakeReply(201, {"status": "queued"}), ProviderRejected, lambda e: "no message sid" in e.reason),
    ],
)
def test_twilio_send_maps_api_answers_to_provider_errors(sender, twilio_api, answer, error, check):
    twilio_api.fail_next(answer)
    with pytest.raises(error) as caught:
        sender.send(OutboundReply(text="hi", channel="sms", recipient_id="+14155550123"))
    assert check(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(twilio_api.calls()) == 1  # no hidden retries: backoff belongs to the caller


def test_twilio_send_with_a_wrong_token_is_an_auth_error(make_connector, twilio_api):
    connector = make_connector("twilio", config={"account_sid": ACCOUNT, "api_base": twilio_api.url,
                                                 "sms_from": "+14155550100"}, credentials={"auth_token": "wrong"})
    with pytest.raises(ProviderAuthError, match="20003"):
        connector.get_backend().send(OutboundReply(text="hi", channel="sms", recipient_id="+14155550123"))
    assert twilio_api.sent == []


def test_twilio_send_refuses_what_it_cannot_send_without_calling(make_connector, twilio_api):
    def backend(config, credentials=None):
        return make_connector("twilio", config={"api_base": twilio_api.url} | config,
                              credentials={"auth_token": TOKEN} if credentials is None else credentials).get_backend()

    reply = OutboundReply(text="hi", channel="sms", recipient_id="+14155550123")
    with pytest.raises(ProviderRejected, match="account_sid"):
        backend({}).send(reply)
    with pytest.raises(ProviderAuthError, match="auth_token"):
        backend({"account_sid": ACCOUNT}, {}).send(reply)
    with pytest.raises(ProviderRejected, match="no sms number to send from"):
        backend({"account_sid": ACCOUNT}).send(reply)
    with pytest.raises(ProviderRejected, match="not a phone number"):
        backend({"account_sid": ACCOUNT, "sms_from": "+14155550100"}).send(
            OutboundReply(text="hi", channel="sms", recipient_id="ada@example.com"))
    with pytest.raises(NotSupported):
        backend({"account_sid": ACCOUNT}).send(OutboundReply(text="hi", channel="telegram", recipient_id="1"))
    assert twilio_api.provider.requests == []


# --- Replies and their status callbacks, through responses -------------------------------------------
@pytest.fixture
def team(db):
    team = Team.objects.create(name="Care", slug="care")
    ensure_default_queues(team)
    return team


@pytest.fixture
def agent(django_user_model, team):
    return make_user(django_user_model, "agent_tw", Role.AGENT, [team])


@pytest.fixture
def line(make_connector, twilio_api, team, settings):
    """A Twilio connector with a team, behind a proxy at PUBLIC, sending to the fake API."""
    settings.CXM_CLASSIFY_ON_INGEST = False
    connector = make_connector("twilio", slug="twilio-line", credentials={"auth_token": TOKEN},
                               config={"account_sid": ACCOUNT, "api_base": twilio_api.url, "public_url": PUBLIC})
    team.connectors.add(connector)
    return connector


def open_case(client, connector, name: str = "inbound_sms") -> Case:
    params = fixture(name)
    assert post_form(client, connector, params, url=f"{PUBLIC}/hooks/{connector.slug}/").status_code == 200
    message = Message.objects.get(external_id=params["MessageSid"])
    classify(message)
    route_messages([message.pk])
    return Case.objects.get(conversation=message.conversation)


def reply_to(agent, case, text: str, capture) -> Reply:
    with capture(execute=True):  # the delivery task is enqueued on commit (and runs eagerly)
        reply = replies.send_reply(agent, case.pk, text)
    reply.refresh_from_db()
    return reply


def report(client, connector, twilio_api, sid: str, state: str, **kwargs):
    """Twilio calls the StatusCallback the reply was sent with, signed over that URL."""
    callback = next(m["status_callback"] for m in twilio_api.sent if m["sid"] == sid)
    assert callback == f"{PUBLIC}/hooks/{connector.slug}/"
    return post_form(client, connector, twilio_api.status_callback(sid, state, **kwargs), url=callback)


def updates(reply: Reply) -> int:
    return ConsoleEvent.objects.filter(type="reply.updated", payload__reply__id=reply.pk).count()


def test_twilio_reply_is_sent_with_its_sid_and_delivered_callback_updates_it_once(
        client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    case = open_case(client, line)
    reply = reply_to(agent, case, "Sorry Ada, it ships today.", django_capture_on_commit_callbacks)
    assert reply.status == Reply.Status.DELIVERED
    [sent] = twilio_api.sent
    assert reply.external_id == sent["sid"] and reply.message.external_id == sent["sid"]
    assert (sent["to"], sent["from"]) == ("+14155550123", "+14155550100")
    accepted_at, events_before = reply.delivered_at, updates(reply)

    assert report(client, line, twilio_api, sent["sid"], "sent").status_code == 200
    reply.refresh_from_db()
    assert (reply.status, reply.delivered_at, updates(reply)) == (Reply.Status.DELIVERED, accepted_at, events_before)

    assert report(client, line, twilio_api, sent["sid"], "delivered").status_code == 200
    reply.refresh_from_db()
    confirmed_at = reply.delivered_at
    assert reply.status == Reply.Status.DELIVERED and confirmed_at > accepted_at
    assert updates(reply) == events_before + 1
    assert Message.objects.get(pk=reply.message_id).raw["delivery"]["status"] == "delivered"

    for state in ("delivered", "sent", "queued", "undelivered"):  # repeated, late or contradicting: no change
        assert report(client, line, twilio_api, sent["sid"], state).status_code == 200
    reply.refresh_from_db()
    assert (reply.status, reply.delivered_at, updates(reply)) == (Reply.Status.DELIVERED, confirmed_at,
                                                                  events_before + 1)
    assert Message.objects.filter(direction="in").count() == 1  # callbacks are never stored as messages


def test_twilio_failed_callback_marks_the_reply_failed_with_the_reason(
        client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    case = open_case(client, line, "inbound_whatsapp")
    reply = reply_to(agent, case, "Your refund is on its way.", django_capture_on_commit_callbacks)
    [sent] = twilio_api.sent
    assert (sent["to"], sent["from"]) == ("whatsapp:+447700900123", "whatsapp:+14155238886")
    assert report(client, line, twilio_api, sent["sid"], "undelivered", error_code="63016").status_code == 200
    reply.refresh_from_db()
    assert reply.status == Reply.Status.FAILED
    assert "undelivered: error 63016" in reply.last_error and "24-hour" in reply.last_error
    event = ConsoleEvent.objects.filter(type="reply.updated", payload__reply__id=reply.pk).latest("id")
    assert event.payload["reply"]["status"] == "failed" and "63016" in event.payload["reply"]["error"]
    assert report(client, line, twilio_api, sent["sid"], "sent").status_code == 200  # late: stays failed
    reply.refresh_from_db()
    assert reply.status == Reply.Status.FAILED


def test_twilio_status_for_an_unknown_sid_is_accepted_and_changes_nothing(
        client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    reply = reply_to(agent, open_case(client, line), "On it!", django_capture_on_commit_callbacks)
    before = (reply.status, reply.delivered_at, reply.last_error, updates(reply))
    params = twilio_api.status_callback(twilio_api.sent[0]["sid"], "failed", error_code="30003")
    params |= {"MessageSid": "SM" + "0" * 32, "SmsSid": "SM" + "0" * 32}
    response = post_form(client, line, params, url=f"{PUBLIC}/hooks/{line.slug}/")
    assert response.status_code == 200
    reply.refresh_from_db()
    assert (reply.status, reply.delivered_at, reply.last_error, updates(reply)) == before


def test_twilio_status_callback_must_be_signed(client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    reply = reply_to(agent, open_case(client, line), "On it!", django_capture_on_commit_callbacks)
    params = twilio_api.status_callback(reply.external_id, "failed", error_code="30003")
    assert post_form(client, line, params, token="0" * 32, url=f"{PUBLIC}/hooks/{line.slug}/").status_code == 403
    assert post_form(client, line, params, token=None).status_code == 401
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED and reply.last_error == ""


def test_twilio_429_is_retried_after_retry_after_then_sent_once(
        client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    twilio_api.fail_next(twilio_error(20429, headers={"Retry-After": "9"}))
    reply = reply_to(agent, open_case(client, line), "Thanks for waiting", django_capture_on_commit_callbacks)
    assert reply.status == Reply.Status.PENDING and "Too Many Requests" in reply.last_error
    assert 8 <= (reply.next_attempt_at - timezone.now()).total_seconds() <= 9.5
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE  # what the retry does, when due
    reply.refresh_from_db()
    assert reply.status == Reply.Status.DELIVERED and reply.external_id == twilio_api.sent[0]["sid"]
    assert len(twilio_api.calls()) == 2 and len(twilio_api.sent) == 1


def test_twilio_400_fails_the_reply_for_good_with_twilios_message(
        client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    twilio_api.fail_next(twilio_error(21211))
    reply = reply_to(agent, open_case(client, line), "Hello again", django_capture_on_commit_callbacks)
    assert reply.status == Reply.Status.FAILED
    assert "Twilio error 21211: Invalid 'To' Phone Number" in reply.last_error
    assert replies.deliver(reply.pk)[0] == replies.Outcome.DONE and len(twilio_api.calls()) == 1


def test_twilio_reply_rules_refuse_long_sms_and_whatsapp_after_24_hours_before_sending(
        client, line, agent, twilio_api, django_capture_on_commit_callbacks):
    sms = open_case(client, line)
    with pytest.raises(InvalidRequest, match="sms replies are at most 1600 characters"):
        reply_to(agent, sms, "x" * 1601, django_capture_on_commit_callbacks)
    whatsapp = open_case(client, line, "inbound_whatsapp")
    Message.objects.filter(conversation=whatsapp.conversation).update(sent_at=timezone.now() - timedelta(hours=25))
    with pytest.raises(InvalidRequest, match="24-hour reply window on whatsapp closed") as refused:
        reply_to(agent, whatsapp, "Sorry for the wait!", django_capture_on_commit_callbacks)
    assert "template" in refused.value.reason
    assert not Reply.objects.exists() and twilio_api.provider.requests == []


# --- Configuration -------------------------------------------------------------------------------
def test_twilio_is_registered_with_its_config_and_credentials():
    assert get_connector_class("twilio") is TwilioConnector
    assert TwilioConnector.credential_fields == ("auth_token",)
    assert TwilioConnector.validate_config({"account_sid": ACCOUNT})["api_base"] == "https://api.twilio.com"


@pytest.mark.parametrize(
    ("config", "reason"),
    [({"account_sid": "AC123"}, "account_sid"), ({"messaging_service_sid": "AB" + "0" * 32}, "messaging_service_sid"),
     ({"sms_from": "ACME"}, "sms_from"), ({"public_url": "cxm.example.com"}, "public_url"),
     ({"public_url": "https://cxm.example.com/?x=1"}, "public_url"), ({"api_base": ""}, "api_base"),
     ({"auth_token": TOKEN}, "unknown config keys")],
)
def test_twilio_validate_config_names_the_bad_key(config, reason):
    with pytest.raises(ConfigInvalid, match=reason):
        TwilioConnector.validate_config(config)
