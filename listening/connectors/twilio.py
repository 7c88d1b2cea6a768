"""Twilio Programmable Messaging: SMS (and MMS) and WhatsApp through one Twilio account.

Setup: point the number's (or Messaging Service's) "A message comes in" webhook at
/hooks/<slug>/ (HTTP POST). Replies go out through the Messages API with `account_sid` and
`auth_token`; when CXM knows its public URL (`public_url`, else CXM_PUBLIC_URL) they ask Twilio
to report on them at the same URL (StatusCallback), and those reports update the Reply.

Twilio signs every request with the auth token: X-Twilio-Signature is
base64(HMAC-SHA1(auth_token, URL + each POST parameter's name and value, sorted by name)). A
JSON body is signed through the URL instead: Twilio adds ?bodySHA256=<hex SHA-256 of the body>
and signs the URL alone. The URL is the one Twilio called, which a proxy hides from us, so it is
rebuilt from `public_url` (and CXM_PUBLIC_URL, and the URL as this server saw it), each with
and without its port, as Twilio's own validators do. There is no timestamp to check: a replayed
delivery is a duplicate MessageSid, and a replayed status report cannot move a reply backwards.

Conventions:
- external ids are MessageSids; a conversation is "<our address>|<customer address>", so a reply
  goes out from the number the customer wrote to ("+14155550100", "whatsapp:+14155238886");
- the channel is "whatsapp" for "whatsapp:" addresses and "sms" for plain numbers;
- the customer is their number: "+15551234567" on sms, the wa_id "15551234567" on whatsapp (as
  the Meta connector stores it), kept as an unverified phone that never merges customers.
- "test connection" fetches the Account resource (GET /2010-04-01/Accounts/<sid>.json) and reads
  only its name, status and type: the resource also carries the auth token.
- no backfill: messages arrive by webhook; Twilio's message log is not read back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from listening import http, location
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    DeliveryStatus,
    InboundAuthor,
    InboundMessage,
    OutboundReply,
    PollResult,
    ReplyRules,
    WebhookRequest,
)
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    SignatureInvalid,
    SignatureMissing,
)
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-twilio-signature"
BODY_HASH = "bodySHA256"
THREAD_SEP = "|"
SID_RE = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
ACCOUNT_SID_RE = re.compile(r"AC[0-9a-fA-F]{32}")
SERVICE_SID_RE = re.compile(r"MG[0-9a-fA-F]{32}")
ADDRESS_RE = re.compile(r"(?:(?P<prefix>[a-z]{2,20}):)?(?P<number>\+?[0-9]{3,15})")
ERROR_CODE_RE = re.compile(r"[0-9]{1,6}")
PREFIXES = {"sms": "", "whatsapp": "whatsapp"}  # channel -> address prefix
CHANNELS = {prefix: channel for channel, prefix in PREFIXES.items()}
MAX_FIELDS, MAX_MEDIA = 500, 10  # Twilio sends a few dozen parameters and at most 10 media
INBOUND_STATES = frozenset({"received", "receiving"})
# Twilio's MessageStatus values -> the generic delivery states (listening.connectors.base).
STATES = {"accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "queued", "sent": "sent",
          "delivered": "delivered", "read": "read", "undelivered": "failed", "failed": "failed",
          "canceled": "failed"}
# Status callbacks carry an ErrorCode without words: the common ones, for the agent who reads it.
ERROR_CODES = {
    "21610": "the recipient replied STOP and is unsubscribed",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error",
    "30034": "sent from an unregistered US A2P 10DLC number",
    "63016": "outside WhatsApp's 24-hour customer service window: only a template can be sent",
}
# Twilio takes a Body of up to 1,600 characters (split into segments on SMS). WhatsApp allows
# free-form replies for 24 hours after the customer's last message, then only templates.
REPLY_RULES = {
    "sms": ReplyRules(max_chars=1600),
    "whatsapp": ReplyRules(max_chars=1600, window_hours=24, media=True,
                           when_closed="Only an approved WhatsApp template (a Twilio Content template) can "
                                       "reopen the conversation."),
}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class TwilioConnector(BaseConnector):
    kind = "twilio"
    label = "Twilio: SMS and WhatsApp"
    channel = "sms"
    description = "SMS and WhatsApp through one Twilio account, by webhook."
    icon = icons.PHONE
    colour = "#d92d20"
    channels = (Channel("sms", "SMS"), Channel("whatsapp", "WhatsApp", icons.CHAT, "#1f9d55"))
    receives_webhooks = True
    config_defaults = {
        "account_sid": "",
        "messaging_service_sid": "",  # sends through a Messaging Service when a thread names no number
        "sms_from": "",
        "whatsapp_from": "",
        "public_url": "",  # scheme and host Twilio calls (plus any path prefix the proxy strips)
        "api_base": "https://api.twilio.com",
    }
    credential_fields = ("auth_token",)
    config_help = {
        "account_sid": "Twilio Console › Account Dashboard › Account Info › Account SID (AC...).",
        "messaging_service_sid": "Messaging › Services › the service's SID (MG...), to send from it when a thread "
                                 "names no number; optional.",
        "sms_from": "The Twilio number (E.164, like +14155550100) SMS replies come from when a thread names none; "
                    "optional.",
        "whatsapp_from": "The WhatsApp sender (like +14155238886) replies come from when a thread names none; "
                         "optional.",
        "public_url": "The https address Twilio reaches CXM at (scheme and host, plus any path prefix a proxy "
                      "strips); needed to check signatures behind a proxy and for delivery reports.",
        "api_base": "Twilio's REST API host: keep https://api.twilio.com.",
    }
    credential_help = {
        "auth_token": "Twilio Console › Account Dashboard › Account Info › Auth Token; it signs every delivery.",
    }
    required_credentials = ("auth_token",)

    def __init__(self, row: Any) -> None:
        super().__init__(row)
        self._parsed: tuple[WebhookRequest, dict[str, str]] | None = None

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        for key, pattern in (("account_sid", ACCOUNT_SID_RE), ("messaging_service_sid", SERVICE_SID_RE),
                             ("sms_from", ADDRESS_RE), ("whatsapp_from", ADDRESS_RE)):
            if config[key] and not (isinstance(config[key], str) and pattern.fullmatch(config[key])):
                raise ConfigInvalid(f"{key} is not a valid Twilio value")
        for key in ("public_url", "api_base"):
            value = config[key]
            parts = urlsplit(value) if isinstance(value, str) else None
            if (value or key == "api_base") and not (parts and parts.scheme in ("http", "https") and parts.netloc
                                                     and not parts.query and not parts.fragment):
                raise ConfigInvalid(f"{key} must be an http(s) URL without query, like https://cxm.example.com")
        return config

    # --- Webhooks ------------------------------------------------------------------------------
    def verify(self, request: WebhookRequest) -> None:
        token = self.secret("auth_token")  # none configured: 403, fail closed
        provided = request.header(SIGNATURE_HEADER)
        if not provided:
            raise SignatureMissing("the X-Twilio-Signature header is missing")
        if BODY_HASH in request.query:
            digest = hashlib.sha256(request.body).hexdigest()
            if not hmac.compare_digest(digest.encode(), request.query[BODY_HASH].encode()):
                raise SignatureInvalid("the body does not match the bodySHA256 in the URL")
            params: list[tuple[str, str]] = []  # the URL, hash included, is all that is signed
        elif request.header("content-type").startswith("application/json"):
            raise SignatureInvalid("a JSON body is only accepted with bodySHA256 in the URL")
        else:
            params = _form_pairs(request.body)
        urls = self._signed_urls(request)
        matches = [hmac.compare_digest(provided.encode(), twilio_signature(token, url, params).encode())
                   for url in urls]
        if not any(matches):
            raise SignatureInvalid("X-Twilio-Signature does not match this URL and body (check public_url)")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        fields = self._fields(request)
        if _is_status(fields):
            return []  # a report on a message we sent: see parse_statuses
        message = _inbound(fields)
        return [message] if message else []

    def parse_statuses(self, request: WebhookRequest) -> list[DeliveryStatus]:
        fields = self._fields(request)
        if not _is_status(fields):
            return []
        sid, state = _sid(fields, "MessageSid"), fields.get("MessageStatus") or fields["SmsStatus"]
        status = STATES.get(state)
        if status is None:  # a state Twilio added after this was written: nothing to apply
            logger.info("twilio connector %s: ignored status %r of %s", self.row.pk, state[:40], sid)
            return []
        error = _failure_reason(state, fields) if status == "failed" else ""
        return [DeliveryStatus(external_id=sid, status=status, error=error, raw=dict(fields))]

    def acknowledge(self, stored: int, duplicates: int) -> tuple[int, str, str]:
        # Twilio expects TwiML; an empty Response sends no automatic answer to the customer.
        return 200, "text/xml", EMPTY_TWIML

    def _fields(self, request: WebhookRequest) -> dict[str, str]:
        """The delivery's parameters, parsed once per request (verify and both parsers read them)."""
        if self._parsed is None or self._parsed[0] is not request:
            fields = _json_fields(request) if BODY_HASH in request.query else _unique(_form_pairs(request.body))
            self._parsed = (request, fields)
        return self._parsed[1]

    def _signed_urls(self, request: WebhookRequest) -> list[str]:
        here = urlsplit(request.url)
        tail = here.path + (f"?{here.query}" if here.query else "")
        urls = [base.rstrip("/") + tail for base in self._public_bases()] + [request.url]
        return list(dict.fromkeys(variant for url in urls for variant in (url, *_port_variants(url))))

    def _public_bases(self) -> list[str]:
        return [base for base in (self.config.get("public_url"), getattr(settings, "CXM_PUBLIC_URL", "")) if base]

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("Twilio delivers messages to this connector by webhook only; Twilio's message log is "
                           "not read back")

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """Fetch the Account resource with the account SID and auth token."""
        config = self.validate_config(dict(self.row.config or {}))
        account = str(config["account_sid"] or "")
        if not account:
            raise ConfigInvalid("account_sid is empty: copy the Account SID from the Twilio Console")
        token = self.secret("auth_token")
        url = f"{str(config['api_base']).rstrip('/')}/2010-04-01/Accounts/{account}.json"
        answer = http.json_or_none(http.request("GET", url, auth=(account, token), error_mapper=api_error))
        # Only these fields are read: the Account resource also carries the auth token itself.
        name, status, kind = (clean_text(answer.get(key), 100) if isinstance(answer, dict) else ""
                              for key in ("friendly_name", "status", "type"))
        if not status:
            raise ProviderUnavailable(f"Twilio answered without the status of account {account}")
        if status != "active":
            raise ProviderAuthError(f"the Twilio account {account} is {status}: it can neither receive nor send")
        said = f"Signed in to Twilio account {name or account} ({account}): active"
        said += ", a trial account (it can only message verified numbers)." if kind == "Trial" else "."
        hook = self.status_callback_url() if self.row.slug else ""  # unsaved: no slug yet
        return f'{said} Set each number\'s "A message comes in" webhook to {hook} (HTTP POST).' if hook else said

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        return REPLY_RULES.get(channel, ReplyRules())

    def send(self, reply: OutboundReply) -> str:
        if reply.channel not in PREFIXES:
            raise NotSupported(f"twilio connectors cannot reply on {reply.channel!r}")
        account = str(self.config.get("account_sid") or "")
        if not ACCOUNT_SID_RE.fullmatch(account):
            raise ProviderRejected("this connector has no valid account_sid configured")
        token = self.credentials.get("auth_token")
        if not token:
            raise ProviderAuthError("this connector has no auth_token configured")
        business, _, customer = reply.thread_id.partition(THREAD_SEP)
        form = {"To": _address_for(reply.channel, reply.recipient_id or customer, "recipient"),
                **self._sender(reply.channel, business), "Body": reply.text}
        callback = self.status_callback_url()
        if callback:
            form["StatusCallback"] = callback
        url = f"{str(self.config['api_base']).rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"
        response = http.request("POST", url, data=form, auth=(account, str(token)), error_mapper=api_error)
        answer = http.json_or_none(response)
        sid = answer.get("sid") if isinstance(answer, dict) else None
        if not isinstance(sid, str) or not SID_RE.fullmatch(sid):
            # Not retryable: the message may well have gone out, and it must never go twice.
            raise ProviderRejected("Twilio accepted the message but returned no message sid")
        return sid

    def status_callback_url(self) -> str:
        """Where Twilio reports on sent messages: this connector's webhook, if CXM knows its URL."""
        bases = self._public_bases()
        return bases[0].rstrip("/") + reverse("webhook", kwargs={"ref": self.row.slug}) if bases else ""

    def _sender(self, channel: str, business: str) -> dict[str, str]:
        """Answer from the number the customer wrote to; else the Messaging Service or configured number."""
        match = ADDRESS_RE.fullmatch(business)
        if match and CHANNELS.get(match["prefix"] or "") == channel:
            return {"From": business}
        if self.config.get("messaging_service_sid"):
            return {"MessagingServiceSid": str(self.config["messaging_service_sid"])}
        configured = str(self.config.get(f"{channel}_from") or "")
        if configured:
            return {"From": _address_for(channel, configured, f"{channel}_from")}
        raise ProviderRejected(f"no {channel} number to send from: the thread names none and the config sets "
                               f"neither messaging_service_sid nor {channel}_from")


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + name + value of each parameter,
    sorted by name, then by value for a repeated name))."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _port_variants(url: str) -> list[str]:
    """The URL without its port and with it (the scheme's default if none is written): Twilio
    signs with one or the other depending on the product."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return []
    host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    port = port or (443 if parts.scheme == "https" else 80)
    return [urlunsplit(parts._replace(netloc=host)), urlunsplit(parts._replace(netloc=f"{host}:{port}"))]


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                         max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise PayloadInvalid("body is not UTF-8 form data") from None
    except ValueError:
        raise PayloadInvalid(f"body has more than {MAX_FIELDS} fields") from None


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:  # Twilio never repeats a name: which one would be meant?
            raise PayloadInvalid(f"field {clean_text(name, 40)} appears more than once")
        fields[name] = value
    return fields


def _json_fields(request: WebhookRequest) -> dict[str, str]:
    """A JSON body carries the same parameters as the form, as one flat object."""
    body = request.json()
    if not isinstance(body, dict):
        raise PayloadInvalid("body must be a JSON object of Twilio parameters")
    fields = {}
    for name, value in body.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise PayloadInvalid(f"field {clean_text(name, 40)} must be a string")
        fields[name] = str(value)
    return fields


def _is_status(fields: dict[str, str]) -> bool:
    state = fields.get("MessageStatus") or fields.get("SmsStatus") or ""
    return bool(state) and state not in INBOUND_STATES


def _inbound(fields: dict[str, str]) -> InboundMessage | None:
    sid = _sid(fields, "MessageSid")
    channel, customer = _channel_address(fields, "From")
    to_channel, business = _channel_address(fields, "To")
    if channel != to_channel:
        raise PayloadInvalid("From and To are on different channels")
    media = _media(fields)
    text = (clean_text(fields.get("Body")).strip() or clean_text(fields.get("ButtonText")).strip()
            or _placeholder(fields, media))
    if not text:
        return None  # nothing a person wrote (a reaction, an empty message)
    number = customer.rpartition(":")[2]
    parent = fields.get("OriginalRepliedMessageSid", "")
    if parent:
        parent = _sid(fields, "OriginalRepliedMessageSid")
    return InboundMessage(
        external_id=sid, text=text, sent_at=timezone.now(), channel=channel,  # Twilio sends no timestamp
        author=InboundAuthor(
            external_id=number.lstrip("+") if channel == "whatsapp" else number,
            display_name=clean_text(fields.get("ProfileName"), 255),
            phone=number if number.startswith("+") else "",
        ),
        thread_id=f"{business}{THREAD_SEP}{customer}", parent_external_id=parent,
        raw={**fields, **_location_raw(fields)},
    )


def _sid(fields: dict[str, str], key: str) -> str:
    value = fields.get(key, "")
    if not SID_RE.fullmatch(value):
        raise PayloadInvalid(f"field {key} must be a Twilio sid" if value else f"missing field {key}")
    return value


def _channel_address(fields: dict[str, str], key: str) -> tuple[str, str]:
    value = fields.get(key, "")
    match = ADDRESS_RE.fullmatch(value)
    if not match:
        raise PayloadInvalid(f"field {key} must be a phone number or whatsapp: address" if value
                             else f"missing field {key}")
    channel = CHANNELS.get(match["prefix"] or "")
    if channel is None:
        raise PayloadInvalid(f"field {key}: the {match['prefix']} channel is not supported")
    return channel, value


def _media(fields: dict[str, str]) -> list[str]:
    count = fields.get("NumMedia") or "0"
    if not (count.isascii() and count.isdigit()) or int(count) > MAX_MEDIA:
        raise PayloadInvalid(f"field NumMedia must be a number from 0 to {MAX_MEDIA}")
    kinds = []
    for index in range(int(count)):
        if not fields.get(f"MediaUrl{index}", "").startswith(("https://", "http://")):
            raise PayloadInvalid(f"field MediaUrl{index} must be an http(s) URL")
        kinds.append(fields.get(f"MediaContentType{index}", "").partition("/")[0])
    return kinds


def _placeholder(fields: dict[str, str], media: list[str]) -> str:
    if media:
        kind = media[0] if media[0] in ("image", "video", "audio") else "media"
        return f"[{kind}]"
    if fields.get("Latitude") or fields.get("Longitude"):
        lat, lon = location.clean_coordinates(fields.get("Latitude"), fields.get("Longitude"), "Latitude/Longitude")
        return location.location_text(lat, lon, clean_text(fields.get("Label"), 200),
                                      clean_text(fields.get("Address"), 300))
    return ""


def _location_raw(fields: dict[str, str]) -> dict:
    """Twilio's location fields (WhatsApp shares) as coordinates on the raw, for listening.location."""
    if not (fields.get("Latitude") or fields.get("Longitude")):
        return {}
    return location.location_raw(*location.clean_coordinates(fields.get("Latitude"), fields.get("Longitude"),
                                                              "Latitude/Longitude"))


def _failure_reason(state: str, fields: dict[str, str]) -> str:
    code = fields.get("ErrorCode", "")
    if code and not ERROR_CODE_RE.fullmatch(code):
        raise PayloadInvalid("field ErrorCode must be a number")
    reason = f"Twilio reports the message {state}"
    if code:
        said = clean_text(fields.get("ErrorMessage"), 300) or ERROR_CODES.get(code, "")
        reason += f": error {code}" + (f", {said}" if said else "") + f" (https://www.twilio.com/docs/api/errors/{code})"
    return reason


def _address_for(channel: str, value: str, what: str) -> str:
    """A Twilio address on `channel` from a thread address, a contact id or a configured number."""
    number = value.rpartition(":")[2]
    if not re.fullmatch(r"\+?[0-9]{3,15}", number):
        raise ProviderRejected(f"the {what} {value[:40]!r} is not a phone number")
    if channel == "whatsapp":
        return f"whatsapp:+{number.lstrip('+')}"
    return number


def api_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Map a REST API error ({"code", "message", "more_info", "status"}) to our errors, keeping
    Twilio's words; anything else (a proxy's page) by its HTTP status."""
    answer = http.json_or_none(response)
    if not isinstance(answer, dict) or not answer.get("message"):
        return http.status_error(response, safe_url)
    reason = f"Twilio error {clean_text(answer.get('code'), 12)}: {clean_text(answer['message'], 300)}"
    if isinstance(answer.get("more_info"), str):
        reason += f" ({clean_text(answer['more_info'], 200)})"
    return http.status_error(response, safe_url, reason)
