"""Slack, for community workspaces: the Events API in, chat.postMessage out.

Setup: create a Slack app; under Event Subscriptions set the Request URL to /hooks/<slug>/ (Slack
checks it with a signed `url_verification` request, answered here) and subscribe the bot to
`message.channels`, `message.groups`, `message.im`, `message.mpim` and/or `app_mention`. Copy the
app's Signing Secret into `signing_secret`, and the Bot User OAuth Token (xoxb-, scope `chat:write`)
into `bot_token`, or enter the app's Client ID and Client Secret and connect with Slack's OAuth v2
flow (`oauth`), whose token answer gives the bot token and the workspace (`oauth_config`).
"Test connection" calls auth.test. No backfill: the Events API only delivers what happens next.

Every request is signed: X-Slack-Signature is "v0=" + hex HMAC-SHA256(signing_secret,
"v0:<X-Slack-Request-Timestamp>:<raw body>"), and a timestamp more than 5 minutes from now is a
replay. Slack retries a delivery it got no 200 for (X-Slack-Retry-Num), with the same event_id.

Conventions:
- a message is "<channel>:<ts>" (ts is unique within a channel). A retried event_id carries the
  same channel and ts, and a mention the bot also hears as a `message` is one "<channel>:<ts>"
  under two event_ids: dedupe on the message id covers both.
- thread: "<channel>:<thread_ts>" (a thread reply, whose parent is the thread's root) or
  "<channel>:<ts>" (a root message); a DM or group DM is one conversation, "<channel>", so a
  customer writing three lines to the bot is one case, not three.
- an edit (message_changed with `edited`) is "<channel>:<ts>:edit:<edited.ts>", parented to the
  original, like Telegram's edits. Bots (bot_id, bot_message), including our own replies echoed
  back, joins, topic changes, deletions and unfurls carry no customer words: skipped with a 200.
- authors are "<team>:<user>": user ids are only promised unique within a workspace.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime
from typing import Any

import httpx

from listening import http
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundAuthor,
    InboundMessage,
    OAuthSpec,
    OutboundReply,
    PollResult,
    ReplyRules,
    WebhookRequest,
    hmac_sha256_hex,
    require_signature,
)
from listening.connectors.payload import from_unix, optional, require
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    ReplayRejected,
    SignatureInvalid,
    SignatureMissing,
)
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

SIGNATURE_HEADER, TIMESTAMP_HEADER = "x-slack-signature", "x-slack-request-timestamp"
TOLERANCE_SECONDS = 300
ID_RE = re.compile(r"[A-Z0-9]{2,40}")  # team, channel, user, bot ids: T024BE7LD, C2147483705, U061F7AUR
EVENT_ID_RE = re.compile(r"[A-Za-z0-9]{2,64}")  # Ev0PV52K21
TS_RE = re.compile(r"\d{1,12}\.\d{1,9}")  # 1355517523.000005
CHALLENGE_RE = re.compile(r"[\x21-\x7e]{1,256}")
# Subtypes that are a person writing; every other subtype (joins, topics, bot_message, deletions...)
# is skipped, so a new subtype Slack invents is ignored rather than stored as customer words.
PERSON_SUBTYPES = frozenset({"", "thread_broadcast", "file_share", "me_message"})
DIRECT_CHANNEL_TYPES = frozenset({"im", "mpim"})
MARKUP_RE = re.compile(r"<([^<>\n]{1,1000})>")

# chat.postMessage errors (https://api.slack.com/methods/chat.postMessage#errors), by what to do.
RATE_LIMIT_ERRORS = frozenset({"ratelimited", "rate_limited"})
AUTH_ERRORS = frozenset({"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired",
                         "no_permission", "missing_scope", "not_allowed_token_type", "team_access_not_granted"})
TRANSIENT_ERRORS = frozenset({"service_unavailable", "request_timeout", "team_added_to_org",
                              "org_login_required"})
# Slack says part of the call may have succeeded: a retry could post the reply twice.
UNKNOWN_OUTCOME_ERRORS = frozenset({"internal_error", "fatal_error"})


class SlackAuthError(ProviderAuthError):
    """Slack itself said the token is invalid, revoked or lacks a scope. Unlike a bare 401 (which
    a proxy may send), that is certain, so the reply fails at once with the reason for an admin
    instead of being retried for minutes against a token that cannot work."""

    retryable = False


class SlackConnector(BaseConnector):
    kind = "slack"
    label = "Slack workspace"
    channel = "slack"
    description = "A community Slack workspace: the Events API in, replies in the thread."
    icon = icons.HASH
    colour = "#611f69"
    channels = (Channel("slack", "Slack"),)
    receives_webhooks = True
    config_defaults = {"api_base": "https://slack.com", "team_id": ""}
    credential_fields = ("signing_secret", "bot_token", "client_id", "client_secret")
    config_help = {
        "api_base": "Slack's Web API host: keep https://slack.com.",
        "team_id": "The workspace id (T0...) whose events are accepted, from auth.test or the workspace URL; "
                   "empty accepts any workspace the app is installed in.",
    }
    credential_help = {
        "signing_secret": "Your app at api.slack.com/apps › Basic Information › App Credentials › Signing Secret.",
        "bot_token": "OAuth & Permissions › Bot User OAuth Token (xoxb-...), after installing the app; filled in "
                     "for you by Connect with Slack.",
        "client_id": "Basic Information › App Credentials › Client ID (only for Connect with Slack).",
        "client_secret": "Basic Information › App Credentials › Client Secret (only for Connect with Slack).",
    }
    required_credentials = ("signing_secret", "bot_token")
    oauth = OAuthSpec(
        authorize_url="https://slack.com/oauth/v2/authorize",
        token_url="{api_base}/api/oauth.v2.access",
        scopes=("channels:history", "groups:history", "im:history", "app_mentions:read", "chat:write", "users:read"),
        scope_separator=",",
        pkce=False,
        client_auth="body",
    )

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        if not isinstance(config["api_base"], str) or not re.fullmatch(r"https?://[^/\s]+/?", config["api_base"]):
            raise ConfigInvalid("api_base must be an http(s) URL with no path, like https://slack.com")
        if config["team_id"] and not (isinstance(config["team_id"], str) and ID_RE.fullmatch(config["team_id"])):
            raise ConfigInvalid("team_id must be a Slack workspace id like T024BE7LD, or empty for any")
        return config

    # --- Webhooks ------------------------------------------------------------------------------
    def handshake(self, request: WebhookRequest) -> tuple[int, str, str] | None:
        """Slack's url_verification: answered only when signed, since it proves the secret."""
        if request.method != "POST":
            return None
        self.verify(request)
        body = request.json()
        if not isinstance(body, dict) or body.get("type") != "url_verification":
            return None
        challenge = require(body, "challenge", str)
        if not CHALLENGE_RE.fullmatch(challenge):
            raise PayloadInvalid("challenge must be 1 to 256 printable ASCII characters")
        return 200, "text/plain", challenge

    def verify(self, request: WebhookRequest) -> None:
        secret = self.secret("signing_secret")  # none configured: 403, fail closed
        provided, stamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER)
        if provided and not stamp:
            raise SignatureMissing("the X-Slack-Request-Timestamp header is missing")
        if stamp and not re.fullmatch(r"\d{1,12}", stamp):
            raise SignatureInvalid("X-Slack-Request-Timestamp must be Unix seconds")
        if stamp and abs(time.time() - int(stamp)) > TOLERANCE_SECONDS:
            raise ReplayRejected("X-Slack-Request-Timestamp is more than 5 minutes from now")
        expected = "v0=" + hmac_sha256_hex(secret, b"v0:" + stamp.encode() + b":" + request.body)
        require_signature(provided, expected)

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        envelope = request.json()
        kind = require(envelope, "type", str)
        if kind == "app_rate_limited":  # Slack is dropping our events for a minute: say so, accept
            logger.warning("slack connector %s: Slack rate-limited event delivery (minute %s)",
                           self.row.pk, str(envelope.get("minute_rate_limited"))[:20])
            return []
        if kind != "event_callback":
            raise PayloadInvalid(f"unsupported type {kind[:40]!r}: expected event_callback")
        team = _id(envelope, "team_id", "")
        _id(envelope, "event_id", "", EVENT_ID_RE)
        _id(envelope, "api_app_id", "")
        event = require(envelope, "event", dict)
        if self.config["team_id"] and team != self.config["team_id"]:
            logger.warning("slack connector %s: skipped an event from workspace %s", self.row.pk, team)
            return []
        if require(event, "type", str, "event") not in ("message", "app_mention"):
            return []  # reactions, joins, channel changes...: nothing a customer wrote
        message = _message(event, team, _raw(envelope))
        return [message] if message else []

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("this connector hears Slack through the Events API, which delivers only new events; "
                           "it does not read channel history")

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """auth.test with the bot token: who the bot is, and in which workspace."""
        self.secret("signing_secret")  # without it every event is refused (403)
        answer = self._call("auth.test", {})
        user, team, team_id = (clean_text(answer.get(key), 100) if isinstance(answer.get(key), str) else ""
                               for key in ("user", "team", "team_id"))
        if not user or not ID_RE.fullmatch(team_id):
            raise ProviderUnavailable("Slack auth.test answered ok without the bot's user and workspace")
        wanted = self.config.get("team_id")
        if wanted and wanted != team_id:
            raise ConfigInvalid(f"the bot token belongs to workspace {team_id} ({team}), but team_id is {wanted}: "
                                "every event would be skipped")
        return f"Signed in as {user} in {team or team_id}."

    def oauth_credentials(self, token: dict[str, Any]) -> dict[str, Any]:
        """oauth.v2.access's access_token is the bot token (token_type "bot"); a user token the
        answer may also carry (authed_user) is never kept."""
        access = _oauth_answer(token).get("access_token")
        if token.get("token_type") != "bot" or not isinstance(access, str) or not access.startswith("xoxb-"):
            raise SlackAuthError("Slack's OAuth answer carries no bot token (xoxb-): give the app bot scopes")
        return {"bot_token": access}

    @staticmethod
    def oauth_config(token: dict[str, Any]) -> dict[str, Any]:
        """The config the OAuth answer settles: the workspace the app was installed in."""
        team = _oauth_answer(token).get("team")
        team_id = team.get("id") if isinstance(team, dict) else None
        return {"team_id": team_id} if isinstance(team_id, str) and ID_RE.fullmatch(team_id) else {}

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        # chat.postMessage truncates text past 40,000 characters; a bot may post at any time.
        return ReplyRules(max_chars=40_000, media=True)

    def send(self, reply: OutboundReply) -> str:
        """Post in the conversation's thread (top level in a DM) and return "<channel>:<ts>"."""
        channel, _, thread_ts = reply.thread_id.partition(":")
        if not ID_RE.fullmatch(channel) or (thread_ts and not TS_RE.fullmatch(thread_ts)):
            raise ProviderRejected(f"no Slack channel and thread in {reply.thread_id[:80]!r}")
        body: dict[str, Any] = {"channel": channel, "text": escape(reply.text)}
        if thread_ts:
            body["thread_ts"] = thread_ts
        answer = self._call("chat.postMessage", body)
        sent_channel, sent_ts = answer.get("channel"), answer.get("ts")
        if not (isinstance(sent_channel, str) and ID_RE.fullmatch(sent_channel)
                and isinstance(sent_ts, str) and TS_RE.fullmatch(sent_ts)):
            # Not retryable: the message is most likely out, and it must never go twice.
            raise ProviderRejected("chat.postMessage answered ok without a channel and ts")
        return f"{sent_channel}:{sent_ts}"

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One Web API call with the bot token; Slack answers most errors with 200 {"ok": false}."""
        token = self._bot_token()
        url = f"{str(self.config['api_base']).rstrip('/')}/api/{method}"
        response = http.request(
            "POST", url, content=json.dumps(body).encode(), error_mapper=api_error,
            # Without the charset Slack answers with a missing_charset warning.
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
        )
        answer = http.json_or_none(response)
        if isinstance(answer, dict) and answer.get("ok") is True:
            return answer
        raise api_error(response, http.redact_url(url))

    def _bot_token(self) -> str:
        token = self.credentials.get("bot_token")
        if not token:  # an admin must act: nothing to retry
            raise SlackAuthError("this connector has no bot_token configured")
        return str(token)


def _oauth_answer(token: Any) -> dict[str, Any]:
    """Slack answers a failed code exchange with HTTP 200 {"ok": false, "error": "invalid_code"}."""
    if not isinstance(token, dict) or token.get("ok") is not True:
        error = token.get("error") if isinstance(token, dict) else None
        raise SlackAuthError(f"Slack oauth.v2.access failed: {clean_text(error, 80) or 'no ok answer'}")
    return token


def api_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Map {"ok": false, "error": "<code>"} (or a bare HTTP error) to the ProviderError that says
    whether the reply is retried: rate limits honour Retry-After, token problems are permanent."""
    answer = http.json_or_none(response)
    error = answer.get("error") if isinstance(answer, dict) else None
    status = response.status_code
    if not isinstance(error, str):
        return http.status_error(response, safe_url) if status >= 400 else ProviderRejected(
            f"{safe_url} answered {status} without a Web API result; the message may have been posted")
    error = clean_text(error, 80)
    reason = f"Slack {safe_url.rsplit('/', 1)[-1]} failed ({status}): {error}"
    retry_after = http.retry_after_seconds(response.headers.get("retry-after"))
    if status == 429 or error in RATE_LIMIT_ERRORS:
        return ProviderRateLimited(reason, retry_after=retry_after, status=status)
    if error in AUTH_ERRORS:
        return SlackAuthError(f"{reason}: the bot token is wrong, revoked or lacks chat:write", status=status)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return ProviderUnavailable(reason, retry_after=retry_after, status=status)
    if error in UNKNOWN_OUTCOME_ERRORS:
        return ProviderRejected(f"{reason}: the message may have been posted; check the thread before retrying",
                                status=status)
    # channel_not_found, not_in_channel, is_archived, msg_too_long, restricted_action...: permanent.
    return ProviderRejected(reason, status=status)


# --- Inbound payloads ----------------------------------------------------------------------------
def _message(event: dict[str, Any], team: str, raw: dict[str, Any]) -> InboundMessage | None:
    subtype = optional(event, "subtype", str, "", "event")
    if subtype == "message_changed":
        return _edit(event, team, raw)
    if subtype not in PERSON_SUBTYPES or event.get("bot_id") is not None:
        return None  # bots (our own replies too), joins, topics, deletions, unfurls...
    channel, ts = _id(event, "channel", "event"), _ts(event, "ts", "event")
    text = _text(event, "event")
    if not text:
        return None
    thread_ts = _ts(event, "thread_ts", "event") if event.get("thread_ts") is not None else ""
    threaded = thread_ts and thread_ts != ts
    return InboundMessage(
        external_id=f"{channel}:{ts}", text=text, author=_author(event, team, "event"),
        sent_at=from_unix(ts, "event.ts"), channel=SlackConnector.channel,
        thread_id=_thread(event, channel, thread_ts or ts),
        parent_external_id=f"{channel}:{thread_ts}" if threaded else "", raw=raw,
    )


def _edit(event: dict[str, Any], team: str, raw: dict[str, Any]) -> InboundMessage | None:
    """A person's edit is kept beside the original; unfurls and bot edits (no `edited`) are not."""
    channel = _id(event, "channel", "event")
    message = require(event, "message", dict, "event")
    edited = optional(message, "edited", dict, {}, "event.message")
    if not edited or message.get("bot_id") is not None:
        return None
    previous = optional(event, "previous_message", dict, {}, "event")
    text = _text(message, "event.message")
    if not text or text == _text(previous, "event.previous_message"):
        return None
    ts, edited_ts = _ts(message, "ts", "event.message"), _ts(edited, "ts", "event.message.edited")
    thread_ts = _ts(message, "thread_ts", "event.message") if message.get("thread_ts") is not None else ""
    return InboundMessage(
        external_id=f"{channel}:{ts}:edit:{edited_ts}", text=text, author=_author(message, team, "event.message"),
        sent_at=from_unix(edited_ts, "event.message.edited.ts"), channel=SlackConnector.channel,
        thread_id=_thread(event, channel, thread_ts or ts), parent_external_id=f"{channel}:{ts}", raw=raw,
    )


def _thread(event: dict[str, Any], channel: str, root_ts: str) -> str:
    direct = optional(event, "channel_type", str, "", "event") in DIRECT_CHANNEL_TYPES
    return channel if direct else f"{channel}:{root_ts}"


def _author(message: dict[str, Any], team: str, path: str) -> InboundAuthor:
    user = _id(message, "user", path)
    # In a shared (Slack Connect) channel the author may belong to another workspace.
    user_team = optional(message, "user_team", str, "", path) or optional(message, "team", str, "", path)
    profile = optional(message, "user_profile", dict, {}, path)
    name = (optional(profile, "display_name", str, "", f"{path}.user_profile")
            or optional(profile, "real_name", str, "", f"{path}.user_profile"))
    return InboundAuthor(
        external_id=f"{user_team if ID_RE.fullmatch(user_team) else team}:{user}",
        handle=optional(profile, "name", str, "", f"{path}.user_profile")[:100], display_name=name[:200],
    )


def _text(message: dict[str, Any], path: str) -> str:
    text = plain_text(optional(message, "text", str, "", path))
    if text.strip():
        return text
    files = optional(message, "files", list, [], path)
    names = [str(f.get("title") or f.get("name") or "file")[:100] if isinstance(f, dict) else "file" for f in files]
    return " ".join(f"[{name}]" for name in names)


def plain_text(text: str) -> str:
    """Slack's markup as a person reads it: <@U1|ada> -> @ada, <https://x|docs> -> docs (https://x),
    <!here> -> @here, and &amp; &lt; &gt; unescaped (the console escapes text itself)."""

    def readable(match: re.Match) -> str:
        target, _, label = match[1].partition("|")
        if target[:1] and target[0] in "@#":
            return target[0] + (label.lstrip("@#") or target[1:])
        if target.startswith("!"):
            return label or "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label and target and label != target else label or target

    text = MARKUP_RE.sub(readable, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Slack reads <...> as control sequences (<!channel> pings everyone): an agent's text is inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _raw(envelope: dict[str, Any]) -> dict[str, Any]:
    # The deprecated verification `token` is a credential: never stored.
    keep = ("type", "team_id", "api_app_id", "event_id", "event_time", "event_context", "event",
            "is_ext_shared_channel", "context_team_id")
    return {key: envelope[key] for key in keep if key in envelope}


def _id(obj: Any, key: str, path: str, pattern: re.Pattern = ID_RE) -> str:
    if not _string(obj, key, path) or not pattern.fullmatch(obj[key]):
        raise PayloadInvalid(f"field {f'{path}.{key}' if path else key} is not a Slack id")
    return obj[key]


def _ts(obj: Any, key: str, path: str) -> str:
    # Slack always sends ts as a string: a JSON number would lose digits and so dodge dedupe.
    if not _string(obj, key, path) or not TS_RE.fullmatch(obj[key]):
        raise PayloadInvalid(f"field {path}.{key} must be a Slack timestamp like 1355517523.000005")
    return obj[key]


def _string(obj: Any, key: str, path: str) -> bool:
    """Whether obj[key] is a string; a missing field is a 400 that names it."""
    require(obj, key, object, path)
    return isinstance(obj[key], str)
