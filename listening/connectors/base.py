"""The connector interface every source implements, and the plain data it exchanges.

A connector class is stateless apart from the Connector row it wraps. It never touches the
database: it turns provider payloads into `InboundMessage`s and `OutboundReply`s into provider
calls. Storage, threading, dedupe and health are the job of listening.actions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    SecretNotConfigured,
    SignatureInvalid,
    SignatureMissing,
)

if TYPE_CHECKING:
    from listening.models import Connector as ConnectorRow


@dataclass(frozen=True)
class InboundAuthor:
    external_id: str
    handle: str = ""
    display_name: str = ""
    profile_url: str = ""
    followers: int | None = None
    email: str = ""
    email_verified: bool = False
    phone: str = ""
    phone_verified: bool = False


@dataclass(frozen=True)
class InboundMessage:
    """A message normalised from any source, ready for listening.actions.ingest_messages."""

    external_id: str
    text: str
    author: InboundAuthor
    sent_at: datetime  # timezone-aware
    channel: str
    thread_id: str = ""  # the source's thread key; empty: the parent's thread, else its own id
    parent_external_id: str = ""
    subject: str = ""
    url: str = ""
    direction: str = "in"
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundReply:
    """What a connector needs to send a reply on the customer's channel."""

    text: str
    channel: str
    recipient_id: str  # the Contact's external id on the channel
    thread_id: str = ""  # the Conversation's external id
    in_reply_to: str = ""  # external id of the message answered
    idempotency_key: str = ""


@dataclass(frozen=True)
class ReplyRules:
    """What a channel lets care send back: the console shows these, and `send_reply` refuses a
    reply that breaks them before anything is sent."""

    max_chars: int = 4000
    window_hours: float | None = None  # replies only this long after the customer's last message
    media: bool = False  # whether the channel carries images and files
    when_closed: str = ""  # what the channel allows once the window has closed, in words

    def window_closed(self, last_inbound, now) -> bool:
        if self.window_hours is None or last_inbound is None:
            return False
        return (now - last_inbound).total_seconds() > self.window_hours * 3600


@dataclass(frozen=True)
class DeliveryStatus:
    """A provider's report on a message we sent (a delivery receipt or status callback)."""

    external_id: str  # what send() returned for the message
    status: str  # one of DELIVERY_STATES
    error: str = ""  # why it failed, in the provider's words
    raw: dict[str, Any] = field(default_factory=dict)


# The generic delivery states, in the order a message moves through them; "failed" is as final
# as "delivered", and a "read" receipt proves delivery.
DELIVERY_STATES = ("queued", "sent", "delivered", "failed", "read")


@dataclass(frozen=True)
class PollResult:
    messages: list[InboundMessage]
    cursor: dict[str, Any]
    more: bool = False  # another page is ready now


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of an HTTP request a connector may look at. Header names are lower-case."""

    method: str
    url: str  # absolute URL as the provider called it
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def json(self) -> Any:
        """Parse the body as JSON, rejecting bad UTF-8 or JSON with a 400 and a reason."""
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadInvalid(f"body is not valid UTF-8 (byte {exc.start})") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PayloadInvalid(f"body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        except RecursionError:
            raise PayloadInvalid("body is nested too deeply") from None
        except ValueError as exc:  # valid syntax, unacceptable value (an integer of 5,000 digits)
            raise PayloadInvalid(f"body is not valid JSON: {str(exc)[:120]}") from None


class BaseConnector:
    """Subclass per source kind and register it in listening.connectors.

    Override what the source supports; the defaults refuse clearly."""

    kind: ClassVar[str]
    label: ClassVar[str]
    channel: ClassVar[str]  # default channel of its messages
    receives_webhooks: ClassVar[bool] = False
    polls: ClassVar[bool] = False
    can_reply: ClassVar[bool] = True
    # The provider drops a repeated send with the same idempotency key, so a send whose outcome
    # is unknown (the worker died during the call) may safely be repeated.
    idempotent_sends: ClassVar[bool] = False
    # Keys allowed in Connector.config, with their defaults.
    config_defaults: ClassVar[dict[str, Any]] = {}
    # Names of secrets kept in Connector.credentials (encrypted).
    credential_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, row: ConnectorRow) -> None:
        self.row = row
        self.config = {**self.config_defaults, **(row.config or {})}
        self._credentials: dict[str, Any] | None = None

    @property
    def credentials(self) -> dict[str, Any]:
        if self._credentials is None:
            self._credentials = self.row.credentials
        return self._credentials

    def secret(self, name: str) -> str:
        """A credential that must be present: fail closed when it is not configured."""
        value = self.credentials.get(name)
        if not value:
            raise SecretNotConfigured(f"this connector has no {name} configured")
        return str(value)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Return the config with defaults, or raise ConfigInvalid naming the bad key."""
        if not isinstance(config, dict):
            raise ConfigInvalid("config must be a JSON object")
        unknown = set(config) - set(cls.config_defaults)
        if unknown:
            raise ConfigInvalid(f"unknown config keys for {cls.kind}: {', '.join(sorted(unknown))}")
        return {**cls.config_defaults, **config}

    # --- Webhooks ------------------------------------------------------------------------------
    def handshake(self, request: WebhookRequest) -> tuple[int, str, str] | None:
        """Answer a provider's verification handshake (status, content type, body), or None."""
        return None

    def verify(self, request: WebhookRequest) -> None:
        """Raise SignatureMissing/SignatureInvalid/SecretNotConfigured/ReplayRejected unless the
        request provably comes from the provider. Must compare in constant time."""
        raise SecretNotConfigured(f"{self.kind} does not receive webhooks")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        """Turn a verified delivery into messages. Raise PayloadInvalid with a reason."""
        raise PayloadInvalid(f"{self.kind} does not receive webhooks")

    def parse_statuses(self, request: WebhookRequest) -> list[DeliveryStatus]:
        """Delivery reports on sent replies carried by a verified delivery (none by default).
        listening.webhooks announces them with the delivery_status signal."""
        return []

    def acknowledge(self, stored: int, duplicates: int) -> tuple[int, str, str] | None:
        """The answer to an accepted delivery (status, content type, body), for providers that
        expect a body of their own; None answers {"stored": n, "duplicates": m}."""
        return None

    # --- Polling -------------------------------------------------------------------------------
    @classmethod
    def wants_polling(cls, config: dict[str, Any]) -> bool:
        """Whether a connector with this config should be polled (some kinds poll or receive
        webhooks depending on their config)."""
        return cls.polls

    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """Fetch what is new since `cursor`. Raise ProviderError subclasses on failure."""
        raise NotSupported(f"{self.kind} does not poll")

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        """The rules of a reply on `channel` (a connector may serve several channels)."""
        return ReplyRules()

    def send(self, reply: OutboundReply) -> str:
        """Deliver a reply through the provider's API and return its external id."""
        raise NotSupported(f"{self.kind} cannot send replies")


def hmac_sha256_hex(secret: str | bytes, payload: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def require_signature(provided: str, expected: str) -> None:
    """Constant-time comparison of a provided signature against the expected one."""
    if not provided:
        raise SignatureMissing("the request carries no signature")
    if not hmac.compare_digest(provided.encode(), expected.encode()):
        raise SignatureInvalid("the signature does not match the body")
