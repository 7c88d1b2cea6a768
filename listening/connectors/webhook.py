"""Generic signed webhook, for any custom source: a website form, a chat widget, a CRM.

The JSON schema and signing scheme are documented in README ("Generic webhook"). Deliveries are
signed like Stripe's: HMAC-SHA256 over "<timestamp>.<raw body>" with the shared secret, sent as
`X-CXM-Signature: sha256=<hex>` beside `X-CXM-Timestamp: <unix seconds>`; a timestamp outside
the tolerance window is a replay and is refused. Replies are POSTed, signed the same way, to the
connector's `callback_url`.

"Test connection" calls nobody (the sender calls us): it checks the secret is set and gives a
shell command that signs and sends a test delivery. No backfill: the sender pushes; older
messages can be POSTed the same way or imported from a file.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.urls import reverse

from listening import http, location, times
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundAuthor,
    InboundMessage,
    OutboundReply,
    PollResult,
    WebhookRequest,
    hmac_sha256_hex,
    require_signature,
)
from listening.connectors.payload import from_iso, optional, require
from listening.exceptions import NotSupported, PayloadInvalid, ReplayRejected, SignatureMissing

SIGNATURE_HEADER = "x-cxm-signature"
TIMESTAMP_HEADER = "x-cxm-timestamp"
MAX_MESSAGES_PER_DELIVERY = 1000
CHANNEL_RE = re.compile(r"^[a-z0-9_\-]{1,40}$")
TEST_BODY = '{"id":"cxm-test-delivery","text":"Test delivery from the connect page","author":{"id":"cxm-test"}}'


def sign(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Headers that sign `body`; used by senders (our replies, the demo source, tests)."""
    digest = hmac_sha256_hex(secret, f"{timestamp}.".encode() + body)
    return {"X-CXM-Timestamp": str(timestamp), "X-CXM-Signature": f"sha256={digest}"}


class GenericWebhookConnector(BaseConnector):
    kind = "webhook"
    label = "Generic signed webhook"
    channel = "web"
    description = "Any custom source (a website form, a chat widget, a CRM) posting signed JSON."
    icon = icons.GLOBE
    colour = "#3b6fd8"
    channels = (Channel("web", "Website"), Channel("chat", "Chat", icons.CHAT, "#0e9384"),
                Channel("app_review", "App review", icons.STAR, "#b54708"), Channel("api", "API"))
    receives_webhooks = True
    receives_signals = True  # {"signals": [...]} deliveries (listening.signal_webhook)
    idempotent_sends = True  # replies carry an Idempotency-Key header the receiver dedupes on
    config_defaults = {"channel": "web", "tolerance_seconds": 300, "callback_url": ""}
    credential_fields = ("signing_secret",)
    config_help = {
        "channel": "The channel messages are filed under when a delivery names none (a-z, 0-9, _ and -), like web.",
        "tolerance_seconds": "How far X-CXM-Timestamp may be from now before a delivery counts as a replay.",
        "callback_url": "Where replies are POSTed, signed the same way; empty: replies cannot be sent.",
    }
    credential_help = {
        "signing_secret": "Made up by CXM when left empty (shown once): give it to the sender; it signs every "
                          "delivery and reply (HMAC-SHA256 over \"<timestamp>.<body>\").",
    }
    required_credentials = ("signing_secret",)
    generated_credentials = ("signing_secret",)

    def verify(self, request: WebhookRequest) -> None:
        secret = self.secret("signing_secret")
        timestamp = request.header(TIMESTAMP_HEADER)
        signature = request.header(SIGNATURE_HEADER)
        if not timestamp or not signature:
            raise SignatureMissing(f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
        expected = "sha256=" + hmac_sha256_hex(secret, f"{timestamp}.".encode() + request.body)
        require_signature(signature, expected)
        # Checked after the signature so an attacker learns nothing from the window.
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > int(
            self.config["tolerance_seconds"]
        ):
            raise ReplayRejected("timestamp is outside the replay window")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        payload = request.json()
        if isinstance(payload, dict) and "messages" in payload:
            items = payload["messages"]
            if not isinstance(items, list):
                raise PayloadInvalid("messages must be a list")
        elif isinstance(payload, dict):
            items = [payload]
        else:
            raise PayloadInvalid("body must be a message object or {\"messages\": [...]}")
        if len(items) > MAX_MESSAGES_PER_DELIVERY:
            raise PayloadInvalid(f"at most {MAX_MESSAGES_PER_DELIVERY} messages per delivery")
        return [self._message(item, f"messages[{i}]") for i, item in enumerate(items)]

    def _message(self, item: Any, path: str) -> InboundMessage:
        author = require(item, "author", dict, path)
        channel = optional(item, "channel", str, self.config["channel"], path)
        if not CHANNEL_RE.match(channel):
            raise PayloadInvalid(f"{path}.channel must be 1-40 of a-z, 0-9, _ and -")
        sent_at = item.get("sent_at") if isinstance(item, dict) else None
        # The author's time zone, when the sender knows it (an IANA name or a UTC offset): kept
        # on the raw for the customer's profile (listening.location), a bad one is a 400.
        zone = author.get("timezone")
        raw = item if zone in (None, "") else {
            **item, **location.time_zone_raw(location.clean_channel_zone(zone, f"{path}.author.timezone"), "author")}
        return InboundMessage(
            external_id=require(item, "id", str, path),
            text=require(item, "text", str, path),
            author=InboundAuthor(
                external_id=require(author, "id", str, f"{path}.author"),
                handle=optional(author, "handle", str, "", f"{path}.author"),
                display_name=optional(author, "name", str, "", f"{path}.author"),
                profile_url=optional(author, "url", str, "", f"{path}.author"),
                followers=optional(author, "followers", int, None, f"{path}.author"),
                email=optional(author, "email", str, "", f"{path}.author"),
                email_verified=optional(author, "email_verified", bool, False, f"{path}.author"),
                phone=optional(author, "phone", str, "", f"{path}.author"),
                phone_verified=optional(author, "phone_verified", bool, False, f"{path}.author"),
            ),
            # Our own API: a sender can correct a wrong clock, so an out-of-range time is a 400.
            sent_at=times.refuse_out_of_range(from_iso(sent_at, f"{path}.sent_at"), f"{path}.sent_at")
            if sent_at else datetime.now(tz=UTC),
            channel=channel,
            thread_id=optional(item, "thread_id", str, "", path),
            parent_external_id=optional(item, "in_reply_to", str, "", path),
            subject=optional(item, "subject", str, "", path),
            url=optional(item, "url", str, "", path),
            raw=raw,
        )

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("the sender pushes messages to this webhook: POST older ones the same way, or import "
                           "them from a file")

    def check_connection(self) -> str:
        """No provider to call: check the secret is set and say how to sign a test delivery."""
        self.secret("signing_secret")
        callback = str(self.config.get("callback_url") or "")
        replies = f"Replies are POSTed to {http.redact_url(callback)}." if callback else (
            "No callback_url is set, so replies cannot be sent.")
        base = str(getattr(settings, "CXM_PUBLIC_URL", "") or "").rstrip("/") or "<CXM URL>"
        hook = base + unquote(reverse("webhook", kwargs={"ref": self.row.slug or "<slug>"}))  # unsaved: no slug yet
        command = (
            f"TS=$(date +%s); BODY='{TEST_BODY}'; "
            "SIG=$(printf '%s.%s' \"$TS\" \"$BODY\" | openssl dgst -sha256 -hmac \"$SECRET\" | awk '{print $NF}'); "
            f"curl -fsS -X POST '{hook}' -H 'Content-Type: application/json' -H \"X-CXM-Timestamp: $TS\" "
            "-H \"X-CXM-Signature: sha256=$SIG\" --data-raw \"$BODY\""
        )
        return (f"The signing secret is set. {replies} To send a test delivery, run this in a shell with SECRET "
                f"set to the signing secret:\n{command}")

    def send(self, reply: OutboundReply) -> str:
        callback = self.config.get("callback_url")
        if not callback:
            raise NotSupported("this webhook connector has no callback_url to send replies to")
        body = json.dumps(
            {
                "type": "reply",
                "id": reply.idempotency_key,
                "text": reply.text,
                "channel": reply.channel,
                "recipient_id": reply.recipient_id,
                "thread_id": reply.thread_id,
                "in_reply_to": reply.in_reply_to,
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": reply.idempotency_key,
            **sign(self.secret("signing_secret"), int(time.time()), body),
        }
        response = http.request("POST", callback, content=body, headers=headers)
        try:
            answered = response.json()
        except ValueError:
            answered = {}
        external_id = answered.get("id") if isinstance(answered, dict) else None
        return str(external_id or reply.idempotency_key)
