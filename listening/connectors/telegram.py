"""Telegram Bot API: updates arrive by webhook (setWebhook with a secret_token) or by long polling
(getUpdates, config mode "polling"); replies go out with sendMessage.

- external_id "<chat_id>:<message_id>" (message ids are only unique within a chat). An edit is a
  message of its own, "<chat_id>:<message_id>:edit:<edit_date>", whose parent is the original.
- thread: a private chat is one conversation, "<chat_id>"; a forum topic "<chat_id>:topic:<id>".
  In groups and channels a message joins the thread of the message it replies to, or starts its
  own, so a busy group is many conversations rather than one.
- send() answers in the chat named by the thread's first segment and returns "<chat_id>:<message_id>".
- "test connection" calls getMe (the token) and getWebhookInfo (whether Telegram can reach the hook,
  or, when polling, whether a leftover webhook would make getUpdates fail with 409).
- no backfill: the Bot API has no message history, and Telegram drops undelivered updates after 24 h.
The bot token travels only in request URLs; errors carry the redacted URL and the API's description.
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import httpx
from django.conf import settings
from django.urls import reverse

from listening import exceptions as errors, http
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundAuthor,
    InboundMessage,
    OutboundReply,
    PollResult,
    ReplyRules,
    WebhookRequest,
)
from listening.connectors.payload import from_unix, optional, require
from listening.exceptions import NotSupported, PayloadInvalid, ProviderError, ProviderUnavailable
from listening.sanitize import clean_text

logger = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"
UPDATE_KINDS = ("message", "edited_message", "channel_post", "edited_channel_post")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{4,32}$")
CHAT_ID_RE = re.compile(r"^-?\d{1,20}$")
ID_LIMIT = 2**63  # Telegram ids fit in 64 bits; anything larger is not from Telegram


class TelegramConnector(BaseConnector):
    kind = "telegram"
    label = "Telegram bot"
    channel = "telegram"
    description = "A Telegram bot: chats by webhook or long polling, answered as the bot."
    icon = icons.PLANE
    colour = "#229ed9"
    channels = (Channel("telegram", "Telegram"),)
    receives_webhooks = True
    polls = True
    config_defaults = {"mode": "webhook", "long_poll_seconds": 20, "page_size": 100,
                       "api_base": "https://api.telegram.org"}
    credential_fields = ("bot_token", "webhook_secret")
    generated_credentials = ("webhook_secret",)
    config_help = {
        "mode": '"webhook": Telegram calls /hooks/<slug>/ (register it with setWebhook); "polling": CXM calls '
                "getUpdates, no public URL needed.",
        "long_poll_seconds": "Polling mode: how long one getUpdates call waits for news, 0 to 50 seconds.",
        "page_size": "Polling mode: updates fetched per getUpdates call, 1 to 100.",
        "api_base": "The Bot API server: keep https://api.telegram.org unless you run your own telegram-bot-api.",
    }
    credential_help = {
        "bot_token": "The token @BotFather gave the bot (/newbot, or /token to show it again), like 123456:AAH...",
        "webhook_secret": "Webhook mode: made up by CXM when left empty (shown once; 1-256 of A-Z, a-z, 0-9, _, -); "
                          "pass it to setWebhook as secret_token and Telegram sends it with every delivery.",
    }
    # webhook_secret too in webhook mode: check_connection says so (this tuple cannot depend on the mode).
    required_credentials = ("bot_token",)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        if config["mode"] not in ("webhook", "polling"):
            raise errors.ConfigInvalid('mode must be "webhook" or "polling"')
        for key, low, high in (("long_poll_seconds", 0, 50), ("page_size", 1, 100)):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise errors.ConfigInvalid(f"{key} must be an integer from {low} to {high}")
        if not isinstance(config["api_base"], str) or not re.match(r"^https?://[^/\s]+/?$", config["api_base"]):
            raise errors.ConfigInvalid("api_base must be an http(s) URL with no path, like https://api.telegram.org")
        return config

    @classmethod
    def wants_polling(cls, config: dict[str, Any]) -> bool:
        return (config or {}).get("mode", cls.config_defaults["mode"]) == "polling"

    def verify(self, request: WebhookRequest) -> None:
        expected = self.secret("webhook_secret")  # none configured: 403, fail closed
        provided = request.header(SECRET_HEADER)
        if not provided:
            raise errors.SignatureMissing("the X-Telegram-Bot-Api-Secret-Token header is missing")
        if not hmac.compare_digest(provided.encode(), expected.encode()):
            raise errors.SignatureInvalid("the X-Telegram-Bot-Api-Secret-Token header does not match")

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        update = request.json()
        if not isinstance(update, dict):
            raise PayloadInvalid("body must be a Telegram Update object")
        _id(update, "update_id", "")
        message = self._parse_update(update)
        return [message] if message else []

    def poll(self, cursor: dict[str, Any]) -> PollResult:
        config = self.validate_config(dict(self.row.config or {}))
        wait, limit, offset = config["long_poll_seconds"], config["page_size"], cursor.get("offset")
        params: dict[str, Any] = {"limit": limit, "timeout": wait, "allowed_updates": list(UPDATE_KINDS)}
        if isinstance(offset, int):
            params["offset"] = offset  # confirms every update below it: Telegram then forgets them
        # The HTTP timeout must outlast the long poll, or every quiet poll would look like an outage.
        updates = self._call("getUpdates", params, timeout=wait + settings.PROVIDER_HTTP_TIMEOUT)
        if not isinstance(updates, list):
            raise PayloadInvalid("getUpdates result must be a list")
        messages: list[InboundMessage] = []
        for index, update in enumerate(updates):
            update_id = _id(update, "update_id", f"result[{index}]")
            offset = max(offset if isinstance(offset, int) else 0, update_id + 1)
            try:
                message = self._parse_update(update)
            except PayloadInvalid as exc:
                # Skipped, not retried: an update Telegram would resend forever must not block the bot.
                logger.warning("telegram connector %s: skipped update %s: %s", self.row.pk, update_id, exc)
                continue
            messages.extend([message] if message else [])
        new_cursor = {**cursor, "offset": offset} if isinstance(offset, int) else dict(cursor)
        return PollResult(messages, new_cursor, more=len(updates) >= limit)

    def _parse_update(self, update: dict[str, Any]) -> InboundMessage | None:
        for kind in UPDATE_KINDS:
            if update.get(kind) is not None:
                return self._message(require(update, kind, dict), kind, update)
        return None  # callback queries, member changes, polls...: nothing a person wrote

    def _message(self, msg: dict[str, Any], kind: str, update: dict[str, Any]) -> InboundMessage | None:
        chat = require(msg, "chat", dict, kind)
        chat_id, message_id = _id(chat, "id", f"{kind}.chat"), _id(msg, "message_id", kind)
        # A photo, video or document carries its words in the caption.
        text = optional(msg, "text", str, "", kind) or optional(msg, "caption", str, "", kind)
        if not text.strip():
            return None
        stamp_key = "edit_date" if kind.startswith("edited_") else "date"
        stamp = _id(msg, stamp_key, kind)
        when = from_unix(stamp, f"{kind}.{stamp_key}")
        private = optional(chat, "type", str, "", f"{kind}.chat") == "private"
        external_id, parent, thread = f"{chat_id}:{message_id}", "", ""
        replied = optional(msg, "reply_to_message", dict, {}, kind)
        if stamp_key == "edit_date":
            parent, external_id = external_id, f"{external_id}:edit:{stamp}"
        elif replied and "forum_topic_created" not in replied:
            # (In a forum every topic message "replies" to the topic's opening service message.)
            parent = f"{chat_id}:{_id(replied, 'message_id', f'{kind}.reply_to_message')}"
        if private:
            thread = str(chat_id)
        elif msg.get("is_topic_message") is True:
            thread = f"{chat_id}:topic:{_id(msg, 'message_thread_id', kind)}"
        # sender_chat: channel posts, anonymous group admins, posts forwarded from a linked channel.
        who = next((key for key in ("sender_chat", "from") if msg.get(key) is not None), None)
        author = _author(require(msg, who, dict, kind), f"{kind}.{who}") if who else _author(chat, f"{kind}.chat")
        username = optional(chat, "username", str, "", f"{kind}.chat")
        return InboundMessage(
            external_id=external_id, text=text, author=author, sent_at=when, channel=self.channel,
            thread_id=thread, parent_external_id=parent, raw=update,
            subject="" if private else optional(chat, "title", str, "", f"{kind}.chat"),
            url=f"https://t.me/{username}/{message_id}" if USERNAME_RE.match(username) and not private else "",
        )

    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        raise NotSupported("Telegram's Bot API has no message history: a bot only receives new updates, and "
                           "Telegram keeps undelivered ones for 24 hours at most")

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """getMe proves the token; getWebhookInfo tells whether deliveries reach us (webhook mode)
        or whether a leftover webhook blocks getUpdates (polling mode)."""
        config = self.validate_config(dict(self.row.config or {}))
        polling = self.wants_polling(config)
        if not polling:
            self.secret("webhook_secret")  # without it every delivery is refused (403)
        me = self._call("getMe", {})
        username = me.get("username") if isinstance(me, dict) else None
        if not isinstance(username, str) or not USERNAME_RE.match(username):
            raise ProviderUnavailable("getMe answered without the bot's username")
        info = self._call("getWebhookInfo", {})
        if not isinstance(info, dict):
            raise ProviderUnavailable("getWebhookInfo answered without a WebhookInfo")
        said = f"Signed in as @{username}."
        return f"{said} {self._polling_note(info) if polling else self._webhook_note(info)}"

    @staticmethod
    def _polling_note(info: dict[str, Any]) -> str:
        url = _webhook_url(info)
        if url:
            return f"A webhook is still set ({url}): getUpdates fails with 409 Conflict until deleteWebhook is called."
        return "No webhook is set, so polling with getUpdates works."

    def _webhook_note(self, info: dict[str, Any]) -> str:
        url, ours = _webhook_url(info), self._hook_url()
        if not url:
            target = ours or f"<CXM URL>/hooks/{self.row.slug or '<slug>'}/"
            return f"No webhook URL is set: call setWebhook with url={target} and secret_token=<the webhook_secret>."
        note = f"The webhook URL is set to {url}" + (f", not this connector's {ours}" if ours and url != ours else "")
        pending = info.get("pending_update_count")
        if isinstance(pending, int) and not isinstance(pending, bool):
            note += f"; {pending} update(s) waiting for delivery"
        error = info.get("last_error_message")
        if not isinstance(error, str) or not error:
            return f"{note}. No delivery errors reported."
        when = info.get("last_error_date")
        dated = isinstance(when, int) and 0 < when < 10**11
        at = f" at {from_unix(when, 'last_error_date'):%Y-%m-%d %H:%M} UTC" if dated else ""
        return f"{note}. Telegram's last delivery error{at}: {clean_text(error, 300)}"

    def _hook_url(self) -> str:
        base = str(getattr(settings, "CXM_PUBLIC_URL", "") or "")
        # An unsaved connector (tested from the connect form) has no slug yet.
        return base.rstrip("/") + unquote(reverse("webhook", kwargs={"ref": self.row.slug or "<slug>"})) if base else ""

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        # Bot API: 4,096 characters a message; a bot may write to a chat that started it at any time.
        return ReplyRules(max_chars=4096, media=True)

    def send(self, reply: OutboundReply) -> str:
        chat, _, rest = (reply.thread_id or reply.recipient_id).partition(":")
        if not CHAT_ID_RE.match(chat):
            raise errors.ProviderRejected(f"no Telegram chat id in thread {reply.thread_id[:60]!r}")
        params: dict[str, Any] = {"chat_id": int(chat), "text": reply.text}
        if rest.startswith("topic:") and rest[6:].isdigit():
            params["message_thread_id"] = int(rest[6:])
        reply_chat, _, tail = reply.in_reply_to.partition(":")
        target = tail.split(":")[0]  # "<chat>:<id>" or an edit's "<chat>:<id>:edit:<date>"
        if target.isdigit() and reply_chat == chat:
            params["reply_parameters"] = {"message_id": int(target), "allow_sending_without_reply": True}
        elif target.isdigit() and CHAT_ID_RE.match(reply_chat):
            params["reply_parameters"] = {"message_id": int(target), "chat_id": int(reply_chat)}
        sent = self._call("sendMessage", params)
        if not isinstance(sent, dict) or not isinstance(sent.get("chat"), dict):
            raise ProviderUnavailable("sendMessage answered without the sent message")
        return f"{_id(sent['chat'], 'id', 'result.chat')}:{_id(sent, 'message_id', 'result')}"

    def _call(self, method: str, params: dict[str, Any], *, timeout: float | None = None) -> Any:
        """One Bot API call: its `result`, or a ProviderError that never contains the token."""
        token = self.secret("bot_token")
        url = f"{str(self.config['api_base']).rstrip('/')}/bot{token}/{method}"
        try:
            response = http.request(
                "POST", url, json=params, timeout=timeout or settings.PROVIDER_HTTP_TIMEOUT,
                error_mapper=lambda failed, safe: _api_error(method, failed, safe),
            )
            body = http.json_or_none(response)
            if isinstance(body, dict) and body.get("ok") is True and "result" in body:
                return body["result"]
            status = response.status_code
            raise ProviderUnavailable(f"{http.redact_url(url)} answered {status} without a Bot API result")
        except ProviderError as exc:  # a proxy page or description could echo the URL
            if token not in exc.reason:
                raise
            raise type(exc)(exc.reason.replace(token, "***"), retry_after=exc.retry_after, status=exc.status) from None


def _api_error(method: str, response: httpx.Response, safe_url: str) -> ProviderError:
    """Map {"ok": false, "error_code": N, "description": ..., "parameters": {...}} to our errors;
    anything else (a proxy's error page) by its HTTP status."""
    body = http.json_or_none(response)
    if not isinstance(body, dict) or body.get("ok") is not False:
        return http.status_error(response, safe_url)
    code = body.get("error_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else response.status_code
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    reason = f"Telegram {method} failed ({code}): {clean_text(body.get('description') or 'no description', 200)}"
    if code == 429:
        retry_after = parameters.get("retry_after")
        if not isinstance(retry_after, int | float) or isinstance(retry_after, bool):
            retry_after = http.retry_after_seconds(response.headers.get("retry-after"))
        return errors.ProviderRateLimited(reason, retry_after=retry_after, status=code)
    if code in (401, 404):  # Telegram answers a wrong token with 401, a malformed one with 404
        return errors.ProviderAuthError(reason, status=code)
    if code >= 500:
        return ProviderUnavailable(reason, status=code)
    if parameters.get("migrate_to_chat_id") is not None:
        reason += f" (the group moved to chat {str(parameters['migrate_to_chat_id'])[:24]})"
    # 400 bad request, 403 bot blocked or kicked, 409 webhook set while polling: permanent here.
    return errors.ProviderRejected(reason, status=code)


def _webhook_url(info: dict[str, Any]) -> str:
    url = info.get("url")
    # Redacted: an admin may have put a token in the query string of their own URL.
    return http.redact_url(clean_text(url, 500)) if isinstance(url, str) and url else ""


def _id(obj: Any, key: str, path: str) -> int:
    where = f"{path}.{key}" if path else key
    try:
        value = require(obj, key, int, path)
    except ValueError:  # a digit string int() refuses, like "²"
        raise PayloadInvalid(f"field {where} must be int") from None
    if not -ID_LIMIT < value < ID_LIMIT:
        raise PayloadInvalid(f"field {where} is out of range")
    return value


def _author(who: dict[str, Any], path: str) -> InboundAuthor:
    """A User (from) or a Chat (sender_chat, or the chat itself when no sender is given)."""
    username = optional(who, "username", str, "", path)
    names = [optional(who, key, str, "", path) for key in ("title", "first_name", "last_name")]
    return InboundAuthor(
        external_id=str(_id(who, "id", path)),  # users are positive, chats negative: never clash
        handle=username, display_name=" ".join(name for name in names if name),
        profile_url=f"https://t.me/{username}" if USERNAME_RE.match(username) else "",
    )
