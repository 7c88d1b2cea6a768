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
from typing import Any, ClassVar, Protocol

from listening.connectors import icons
from listening.connectors.templates import MessageTemplate
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    SecretNotConfigured,
    SignatureInvalid,
    SignatureMissing,
)


class ConnectorRow(Protocol):
    """What a connector reads of its row (listening.models.Connector). A protocol, not the model:
    the models import this package's registry, so this package must not import the models."""

    pk: int
    slug: str
    kind: str
    config: dict[str, Any]
    cursor: dict[str, Any]
    credentials: dict[str, Any]

    def renew_credentials(self, field: str, stale: str, fetch) -> dict[str, Any]: ...


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
class InboundAttachment:
    """A file that came with a message. `content` is empty when it was not kept, and then
    `skipped_reason` says why ("larger than 10 MB, not kept")."""

    filename: str
    content_type: str
    size: int
    content: bytes = b""
    skipped_reason: str = ""

    def __repr__(self) -> str:  # never the bytes: reprs end up in logs and tracebacks
        return f"<InboundAttachment {self.filename[:60]!r} {self.content_type} {self.size} bytes>"


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
    attachments: tuple[InboundAttachment, ...] = ()  # stored by ingest_messages with a new message


@dataclass(frozen=True)
class OutboundReply:
    """What a connector needs to send a reply on the customer's channel."""

    text: str
    channel: str
    recipient_id: str  # the Contact's external id on the channel
    thread_id: str = ""  # the Conversation's external id
    in_reply_to: str = ""  # external id of the message answered
    idempotency_key: str = ""
    subject: str = ""  # the Conversation's subject (email answers "Re: <subject>")
    # A proactive first message outside the window: an approved template and its values
    # (responses.proactive); `text` then holds the filled-in body, for the record only.
    template: MessageTemplate | None = None
    template_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplyRules:
    """What a channel lets care send back: the console shows these, and `send_reply` refuses a
    reply that breaks them before anything is sent."""

    max_chars: int = 4000
    window_hours: float | None = None  # replies only this long after the customer's last message
    media: bool = False  # whether the channel carries images and files
    when_closed: str = ""  # what the channel allows once the window has closed, in words
    templates: bool = False  # approved templates (BaseConnector.templates) may start a conversation

    def window_closed(self, last_inbound, now) -> bool:
        if self.window_hours is None or last_inbound is None:
            return False
        return (now - last_inbound).total_seconds() > self.window_hours * 3600


@dataclass(frozen=True)
class Channel:
    """One channel a connector's messages arrive on, as people see it. An empty icon or colour is
    the connector's own."""

    key: str  # Message.channel
    label: str  # "WhatsApp"
    icon: str = ""  # SVG path data, see listening.connectors.icons
    colour: str = ""  # "#rrggbb", the badge's background (white icon on top)


@dataclass(frozen=True)
class Presentation:
    """What the product shows for a connector kind or a channel: listening.connectors.presentation."""

    key: str
    label: str
    icon: str
    colour: str
    description: str = ""
    kind: str = ""  # the connector kind that serves it; empty for a channel no connector declares


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
class RateLimit:
    """The provider's rate-limit headroom as its last response told it (shown on Sources)."""

    remaining: int
    limit: int | None = None
    resets_at: datetime | None = None  # timezone-aware


@dataclass(frozen=True)
class OAuthSpec:
    """How an admin connects this source with the provider's OAuth 2 authorization-code flow
    (responses.views.connect). URLs may name config keys in braces, e.g. "{instance_url}/oauth/
    authorize". The app's id and secret are credentials the admin enters first."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    client_id_field: str = "client_id"
    client_secret_field: str = "client_secret"
    pkce: bool = True
    client_auth: str = "basic"  # "basic": HTTP basic with id and secret; "body": in the form
    extra_params: tuple[tuple[str, str], ...] = ()  # added to the authorize URL


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

    # Templates show a connector class's attributes (the connect pages); never call it there.
    do_not_call_in_templates: ClassVar[bool] = True
    kind: ClassVar[str]
    label: ClassVar[str]
    channel: ClassVar[str]  # default channel of its messages
    # How people see it (the connect page, channel badges, the dashboards' channel list): one
    # line of description, an icon from listening.connectors.icons and a colour; and the channels
    # its messages arrive on, each with its own name (a connector may serve several).
    description: ClassVar[str] = ""
    icon: ClassVar[str] = icons.CHAT
    colour: ClassVar[str] = "#667085"
    channels: ClassVar[tuple[Channel, ...]] = ()
    receives_webhooks: ClassVar[bool] = False
    polls: ClassVar[bool] = False
    can_reply: ClassVar[bool] = True
    # Whether its messages are sent to the brand (direct messages, mentions, replies, reviews,
    # email) rather than overheard in public (feeds, searches). The lane rules never set a message
    # sent to the brand aside as noise on a model's guess; only confident spam (learning.lanes).
    addressed: ClassVar[bool] = True
    # The provider drops a repeated send with the same idempotency key, so a send whose outcome
    # is unknown (the worker died during the call) may safely be repeated.
    idempotent_sends: ClassVar[bool] = False
    # Keys allowed in Connector.config, with their defaults.
    config_defaults: ClassVar[dict[str, Any]] = {}
    # Names of secrets kept in Connector.credentials (encrypted).
    credential_fields: ClassVar[tuple[str, ...]] = ()
    # Words for the connect form (responses.views.connect), by config key or credential name.
    config_help: ClassVar[dict[str, str]] = {}
    credential_help: ClassVar[dict[str, str]] = {}
    # Credentials the connector cannot work without (the source's page says which are missing).
    required_credentials: ClassVar[tuple[str, ...]] = ()
    # Shared secrets CXM makes up for the admin to paste into the provider's console (a
    # webhook's secret): generated when missing, shown once, never again.
    generated_credentials: ClassVar[tuple[str, ...]] = ()
    # The provider's OAuth 2 flow, where it has one; None: credentials are pasted in.
    oauth: ClassVar[OAuthSpec | None] = None
    # Whether backfill() can fetch messages older than the connector's cursor.
    supports_backfill: ClassVar[bool] = False

    def __init__(self, row: ConnectorRow) -> None:
        self.row = row
        self.config = {**self.config_defaults, **(row.config or {})}
        self._credentials: dict[str, Any] | None = None
        # Set by note_rate_limit from the provider's latest response; listening.polling and
        # responses.replies save it on the row.
        self.rate_limit: RateLimit | None = None

    def note_rate_limit(self, remaining: Any, limit: Any = None, resets_at: datetime | None = None) -> None:
        """Remember the headroom a provider reported (header values as they came; junk ignored)."""
        try:
            left = int(float(remaining))
            most = None if limit in (None, "") else int(float(limit))
        except (TypeError, ValueError, OverflowError):
            return
        self.rate_limit = RateLimit(remaining=max(0, left), limit=most, resets_at=resets_at)

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

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """One page of messages sent at or after `since`, older than what polling fetches, walking
        back from `state` ({} at first). PollResult.cursor is the next state (never the polling
        cursor), `more` whether another page follows. Only when supports_backfill."""
        raise NotSupported(f"{self.label}'s API does not let us fetch older messages")

    # --- Setup ---------------------------------------------------------------------------------
    def oauth_credentials(self, token: dict[str, Any]) -> dict[str, Any]:
        """The credentials to save from the OAuth token endpoint's answer (see `oauth`)."""
        saved = {"access_token": str(token.get("access_token") or "")}
        if token.get("refresh_token"):
            saved["refresh_token"] = str(token["refresh_token"])
        return saved

    def oauth_config(self, token: dict[str, Any]) -> dict[str, Any]:
        """Config the OAuth answer settles (Slack: the workspace the app was installed in)."""
        return {}

    def check_connection(self) -> str:
        """Call the provider with the saved credentials and say, in words, what it answered
        ("Signed in as @brand on mastodon.social"). Raise a ProviderError (or
        SecretNotConfigured / ConfigInvalid) with the reason when it fails. Stores nothing."""
        if self.polls and self.wants_polling(self.config):
            page = self.poll({})
            return f"Reached {self.label}: {len(page.messages)} message(s) waiting (none stored by this test)."
        for name in self.required_credentials:
            self.secret(name)
        return f"{self.label} calls us: nothing to call from here. Send a test delivery to the webhook URL."

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        """The rules of a reply on `channel` (a connector may serve several channels)."""
        return ReplyRules()

    def templates(self) -> tuple[MessageTemplate, ...]:
        """The provider-approved templates this connector may send (its config's `templates`)."""
        return ()

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
