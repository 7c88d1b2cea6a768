"""Meta: Messenger, Instagram messaging and the WhatsApp Cloud API, through one Meta app.

Setup: in the app's Webhooks settings the callback URL is /hooks/<slug>/ and the verify token
is this connector's `verify_token`; subscribe the page (`messages`, `message_echoes`,
`messaging_postbacks`), the Instagram account (`messages`) and/or the WhatsApp Business Account
(`messages`). Meta signs each delivery with the app secret: X-Hub-Signature-256 is
"sha256=<hex HMAC-SHA256(app_secret, raw body)>". Replies go out through the Graph API with
`access_token` (a Page token for Messenger and Instagram, a system-user token with
whatsapp_business_messaging for WhatsApp).

Conventions (see meta_payloads for the parsing):
- external ids are Meta's message ids (mid, wamid); threads are "<page or IG account id>:<PSID>"
  and "<phone_number_id>:<wa_id>", so a reply knows which page or number to answer from;
- echoes of what the page sent (from CXM or from Meta Business Suite) are stored as outbound;
- a WhatsApp wa_id becomes the contact's phone, unverified (it never merges customers).
- "test connection" reads GET /me?fields=id,name with `access_token`; every Graph answer's
  X-App-Usage, X-Page-Usage and X-Business-Use-Case-Usage (JSON percentages of the quota used)
  is noted as headroom: 100 minus the highest percentage, reset after the estimated minutes.
- no backfill: messages arrive by webhook only (WhatsApp keeps no history to read back).
"""

from __future__ import annotations

import hmac
import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.utils import timezone

from listening import http
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundMessage,
    OutboundReply,
    PollResult,
    ReplyRules,
    WebhookRequest,
    hmac_sha256_hex,
    require_signature,
)
from listening.connectors.meta_payloads import CHANNELS, parse_delivery
from listening.connectors.templates import MessageTemplate, parse_templates
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    SignatureInvalid,
)
from listening.sanitize import clean_text

SIGNATURE_HEADER = "x-hub-signature-256"
GRAPH_VERSION_RE = re.compile(r"v\d{1,3}\.\d{1,2}")
NUMERIC_ID_RE = re.compile(r"\d{1,40}")
CHALLENGE_RE = re.compile(r"[\w.\-]{1,256}")  # Meta sends digits; anything else is not Meta
# Graph's rate-limit usage headers: JSON percentages of the quota used in the current window.
USAGE_HEADERS = ("x-app-usage", "x-page-usage", "x-business-use-case-usage")
USAGE_KEYS = ("call_count", "total_cputime", "total_time")

# Graph error codes (https://developers.facebook.com/docs/graph-api/guides/error-handling and
# the WhatsApp Cloud API error-code reference), matched before the HTTP status, because Graph
# answers most of them with a plain 400.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})
AUTH_CODES = frozenset({0, 10, 102, 190})  # and 200-299, the permission family
UNAVAILABLE_CODES = frozenset({1, 2, 131000, 131016})
WINDOW_CLOSED_CODE = 131047  # WhatsApp "re-engagement message"
WINDOW_CLOSED_SUBCODES = frozenset({2018278, 2534022})  # code 10 on Messenger, Instagram
WINDOW_CLOSED_REASON = (
    "the 24-hour customer service window is closed (the customer last wrote more than 24 hours "
    "ago): only an approved template message can reach them now"
)


# Meta's messaging policies: a business answers within 24 hours of the person's last message;
# after that Messenger and Instagram allow only a human-agent tagged message (up to 7 days) and
# WhatsApp only an approved template.
REPLY_RULES = {
    "messenger": ReplyRules(max_chars=2000, window_hours=24, media=True,
                            when_closed="Send with the HUMAN_AGENT tag (up to 7 days) from Meta Business Suite."),
    "instagram": ReplyRules(max_chars=1000, window_hours=24, media=True,
                            when_closed="Send with the HUMAN_AGENT tag (up to 7 days) from Meta Business Suite."),
    "whatsapp": ReplyRules(max_chars=4096, window_hours=24, media=True, templates=True,
                           when_closed="Only an approved WhatsApp template message can reopen the conversation."),
}


class MetaConnector(BaseConnector):
    kind = "meta"
    label = "Meta: Messenger, Instagram and WhatsApp"
    channel = "whatsapp"
    description = "Messenger, Instagram and WhatsApp messages through one Meta app, by webhook."
    icon = icons.CHAT
    colour = "#1877f2"
    channels = (Channel("messenger", "Messenger"), Channel("instagram", "Instagram", icons.CAMERA, "#c13584"),
                Channel("whatsapp", "WhatsApp", colour="#1f9d55"))
    receives_webhooks = True
    config_defaults = {
        "api_base": "https://graph.facebook.com",
        "graph_version": "v21.0",
        "phone_number_id": "",  # WhatsApp sender when a thread does not name one
        "page_id": "",  # the Page whose token this is; replies to other pages' threads are refused
        "templates": [],  # WhatsApp templates approved in WhatsApp Manager (listening.connectors.templates)
    }
    credential_fields = ("app_secret", "verify_token", "access_token")
    config_help = {
        "api_base": "The Graph API host: keep https://graph.facebook.com.",
        "graph_version": "The Graph API version calls use, like v21.0 (App Dashboard › Settings › Advanced).",
        "phone_number_id": "WhatsApp Manager › Phone numbers, or the app's WhatsApp › API Setup page: the id of "
                           "the number replies are sent from when a thread names none.",
        "page_id": "The Facebook Page the access token belongs to (the Page's About › Page transparency, or "
                   "GET /me with the Page token); replies to other pages' threads are refused.",
        "templates": "WhatsApp message templates approved in WhatsApp Manager › Message templates, one per line: "
                     "name | language | body, e.g. device_help | en | Hi {{1}}, your {{2}} needs a look. Only "
                     "these can start a conversation after the 24-hour window.",
    }
    credential_help = {
        "app_secret": "App Dashboard › App settings › Basic › App secret; it signs every delivery.",
        "verify_token": "Made up by CXM when left empty (shown once), or any string you choose; enter the same in "
                        "the app's Webhooks settings as the Verify token.",
        "access_token": "A Page access token (Messenger › Settings › Generate token) for Messenger and Instagram, "
                        "or a system-user token with whatsapp_business_messaging (Business settings › System "
                        "users) for WhatsApp.",
    }
    required_credentials = ("app_secret", "verify_token", "access_token")
    generated_credentials = ("verify_token",)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        if not isinstance(config["graph_version"], str) or not GRAPH_VERSION_RE.fullmatch(config["graph_version"]):
            raise ConfigInvalid("graph_version must look like v21.0")
        if not isinstance(config["api_base"], str) or not config["api_base"].startswith(("https://", "http://")):
            raise ConfigInvalid("api_base must be an http(s) URL")
        for key in ("phone_number_id", "page_id"):
            if config[key] and not (isinstance(config[key], str) and NUMERIC_ID_RE.fullmatch(config[key])):
                raise ConfigInvalid(f"{key} must be a numeric id, as a string")
        parse_templates(config["templates"])
        return config

    # --- Webhooks ------------------------------------------------------------------------------
    def handshake(self, request: WebhookRequest) -> tuple[int, str, str] | None:
        """Meta's subscription check: GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=.."""
        if request.method != "GET":
            return None
        expected = self.secret("verify_token")
        provided = request.query.get("hub.verify_token", "")
        # The token is the only proof the caller is Meta: checked first, in constant time.
        if not provided or not hmac.compare_digest(provided.encode(), expected.encode()):
            raise SignatureInvalid("hub.verify_token does not match this connector's verify token")
        if request.query.get("hub.mode") != "subscribe":
            raise PayloadInvalid("hub.mode must be subscribe")
        challenge = request.query.get("hub.challenge", "")
        if not CHALLENGE_RE.fullmatch(challenge):
            raise PayloadInvalid("hub.challenge is missing or malformed")
        return 200, "text/plain", challenge

    def verify(self, request: WebhookRequest) -> None:
        secret = self.secret("app_secret")  # fails closed (403) when none is configured
        expected = "sha256=" + hmac_sha256_hex(secret, request.body)
        require_signature(request.header(SIGNATURE_HEADER), expected)

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        return parse_delivery(request.json())

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("Meta delivers messages to this connector by webhook only: the WhatsApp Cloud API keeps "
                           "no message history, and Messenger and Instagram history is not read back")

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """GET /me with the access token: the Page (or system user) it speaks for."""
        for name in ("app_secret", "verify_token"):
            self.secret(name)  # without them Meta's deliveries and handshake are refused
        token = self.credentials.get("access_token")
        if not token:
            raise ProviderAuthError("this connector has no access_token configured")
        response = self._graph("GET", "me", str(token), params={"fields": "id,name"})
        me = http.json_or_none(response)
        who, name = (me.get(key) if isinstance(me, dict) else None for key in ("id", "name"))
        if not isinstance(who, str) or not NUMERIC_ID_RE.fullmatch(who):
            raise ProviderUnavailable("Graph GET /me answered without an id")
        said = f"Signed in as {clean_text(name, 100) if isinstance(name, str) else 'an unnamed account'} ({who})."
        page_id = str(self.config.get("page_id") or "")
        if page_id and page_id != who:
            said += f" Note: page_id is {page_id}, but this token speaks for {who}."
        return said

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        return REPLY_RULES.get(channel, ReplyRules())

    def templates(self) -> tuple[MessageTemplate, ...]:
        return parse_templates(self.config.get("templates"))

    def send(self, reply: OutboundReply) -> str:
        token = self.credentials.get("access_token")
        if not token:
            raise ProviderAuthError("this connector has no access_token configured")
        if reply.channel not in CHANNELS.values():
            raise NotSupported(f"meta connectors cannot reply on {reply.channel!r}")
        if reply.template is not None and reply.channel != "whatsapp":
            raise NotSupported(f"message templates are WhatsApp's; {reply.channel} has none")
        business, _, customer = reply.thread_id.partition(":")
        recipient = reply.recipient_id or customer
        if not recipient:
            raise ProviderRejected("the reply has no recipient")
        if reply.channel == "whatsapp":
            path = self._whatsapp_path(business if customer else "")
            sent = self._graph_post(path, whatsapp_body(recipient, reply), str(token)).get("messages")
            # {"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}
            first = sent[0] if isinstance(sent, list) and sent and isinstance(sent[0], dict) else {}
            external_id = first.get("id")
        else:
            page_id = str(self.config.get("page_id") or "")
            if reply.channel == "messenger" and page_id and customer and business != page_id:
                raise ProviderRejected(f"thread {reply.thread_id!r} belongs to another page than {page_id}")
            body = {"recipient": {"id": recipient}, "messaging_type": "RESPONSE", "message": {"text": reply.text}}
            # {"recipient_id": "<PSID>", "message_id": "m_..."}
            external_id = self._graph_post("me/messages", body, str(token)).get("message_id")
        if not external_id or not isinstance(external_id, str):
            # Not retryable: the message may well have gone out, and it must never go twice.
            raise ProviderRejected("the Graph API accepted the message but returned no message id")
        return external_id

    def _whatsapp_path(self, thread_number: str) -> str:
        phone_number_id = thread_number or str(self.config.get("phone_number_id") or "")
        if not NUMERIC_ID_RE.fullmatch(phone_number_id):
            raise ProviderRejected(
                f"no valid WhatsApp phone_number_id to send from ({phone_number_id[:40]!r}): "
                "the thread names none and the config sets none"
            )
        return f"{phone_number_id}/messages"

    def _graph_post(self, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        answer = http.json_or_none(self._graph("POST", path, token, json=body))
        return answer if isinstance(answer, dict) else {}

    def _graph(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        """One Graph API call; errors are classified by the error code in the body."""
        url = f"{str(self.config['api_base']).rstrip('/')}/{self.config['graph_version']}/{path}"
        response = http.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                error_mapper=self._graph_error, **kwargs)
        self._note_usage(response)
        return response

    def _graph_error(self, response: httpx.Response, safe_url: str) -> ProviderError:
        self._note_usage(response)  # a throttled answer says how long until access returns
        return graph_error(response, safe_url)

    def _note_usage(self, response: httpx.Response) -> None:
        """Headroom from the usage headers: 100 minus the most used percentage of any quota."""
        percents: list[float] = []
        waits: list[float] = []
        for name in USAGE_HEADERS:
            for usage in _usages(response.headers.get(name)):
                percents += [v for k in USAGE_KEYS if (v := _number(usage.get(k))) is not None]
                wait = _number(usage.get("estimated_time_to_regain_access"))  # minutes
                waits += [wait] if wait is not None else []
        if not percents:
            return
        longest = min(max(waits, default=0.0), 24 * 60.0)
        resets_at = timezone.now() + timedelta(minutes=longest) if longest > 0 else None
        self.note_rate_limit(100 - max(percents), 100, resets_at)


def whatsapp_body(recipient: str, reply: OutboundReply) -> dict[str, Any]:
    """A text message, or an approved template; `to` takes a phone number (wa_id), `recipient` a
    business-scoped user id."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        ("to" if recipient.isdigit() else "recipient"): recipient,
        "type": "text",
        "text": {"body": reply.text},
    }
    if reply.template is not None:  # an approved template: Meta fills in the body it approved
        del body["text"]
        body["type"] = "template"
        body["template"] = {"name": reply.template.name, "language": {"code": reply.template.language}}
        if reply.template_values:
            body["template"]["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": value} for value in reply.template_values]}]
        return body
    if reply.in_reply_to:
        body["context"] = {"message_id": reply.in_reply_to}
    return body


def graph_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Map a Graph API error response to the ProviderError that drives retries and health."""
    answer = http.json_or_none(response)
    status = response.status_code
    error = answer.get("error") if isinstance(answer, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    data = error.get("error_data") if isinstance(error.get("error_data"), dict) else {}
    said = " ".join(str(part) for part in (error.get("message"), data.get("details")) if part)
    reason = f"{safe_url} answered {status}: Graph error {code}/{subcode}: {said or response.text[:200]}"
    if error.get("fbtrace_id"):
        reason += f" (fbtrace_id {error['fbtrace_id']})"
    retry_after = http.retry_after_seconds(response.headers.get("retry-after"))
    if code == WINDOW_CLOSED_CODE or (code == 10 and subcode in WINDOW_CLOSED_SUBCODES):
        return ProviderRejected(f"{WINDOW_CLOSED_REASON}. {reason}", status=status)
    if status == 429 or code in RATE_LIMIT_CODES:
        return ProviderRateLimited(reason, retry_after=retry_after, status=status)
    if code in AUTH_CODES or 200 <= code <= 299 or status in (401, 403):
        return ProviderAuthError(reason, status=status)
    if status >= 500 or code in UNAVAILABLE_CODES:
        return ProviderUnavailable(reason, retry_after=retry_after, status=status)
    return ProviderRejected(reason, status=status)


def _usages(header: str | None) -> list[dict[str, Any]]:
    """X-App-Usage and X-Page-Usage are one object; X-Business-Use-Case-Usage maps each business
    object id to a list of objects, one per use case (messenger, pages...)."""
    try:
        parsed = json.loads(header) if header else None
    except (ValueError, RecursionError):
        return []
    if not isinstance(parsed, dict):
        return []
    if any(key in parsed for key in USAGE_KEYS):
        return [parsed]
    return [usage for uses in parsed.values() if isinstance(uses, list) for usage in uses if isinstance(usage, dict)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
