"""A fake Slack on FakeProvider: the Web API's chat.postMessage over real HTTP, and Slack's side of
the Events API (signing deliveries the way Slack does).

- POST /api/<method>, with a JSON body (Content-Type application/json; charset=utf-8) or a form;
- the token travels as "Authorization: Bearer xoxb-..."; none gets {"ok": false, "error":
  "not_authed"}, a wrong one "invalid_auth", both with HTTP 200 as Slack answers them;
- every answer is {"ok": true, ...} or {"ok": false, "error": "<code>"}; a JSON body without a
  charset gets the "missing_charset" warning Slack adds;
- chat.postMessage checks channel (a channel the bot is not in: not_in_channel; unknown:
  channel_not_found), text (no_text, msg_too_long past 40,000 characters) and thread_ts, and answers
  {"ok", "channel", "ts", "message"} with the bot's message, as Slack does;
- auth.test answers who the token is: {"ok", "url", "team", "user", "team_id", "user_id", "bot_id"};
- oauth.v2.access (no token: the app's client_id and client_secret in the form or HTTP basic, a
  single-use `code` from `authorize()` and its redirect_uri) answers the bot token as Slack does:
  {"ok", "access_token": "xoxb-...", "token_type": "bot", "scope", "bot_user_id", "app_id", "team":
  {"id", "name"}, "enterprise", "authed_user"}, else invalid_client_id, bad_client_secret,
  invalid_code or bad_redirect_uri;
- failures are scriptable: `fail_next(RATE_LIMITED)` (HTTP 429 with Retry-After), or any Reply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import time
from collections import deque
from typing import Any

from tests.fakes.http import FakeProvider, Recorded, Reply

TEAM, APP = "T024BE7LD", "A0KRD7HC3"
TEAM_NAME, BOT_NAME = "Acme Community", "acmecare"
SCOPES = "channels:history,groups:history,im:history,app_mentions:read,chat:write,users:read"
BOT_USER, BOT_ID = "U0LAN0Z89", "B0LAN0Z89"
TS_RE = re.compile(r"\d+\.\d+")


def slack_error(error: str, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"ok": False, "error": error}, headers or {})


# Failures as Slack sends them.
RATE_LIMITED = slack_error("ratelimited", 429, {"Retry-After": "30"})
INVALID_AUTH = slack_error("invalid_auth")
TOKEN_REVOKED = slack_error("token_revoked")
CHANNEL_NOT_FOUND = slack_error("channel_not_found")
IS_ARCHIVED = slack_error("is_archived")
FATAL_ERROR = slack_error("fatal_error")
SERVICE_UNAVAILABLE = slack_error("service_unavailable", 503)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a delivery: v0 signature over "v0:<timestamp>:<body>"."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


class FakeSlack:
    """Register on a started FakeProvider; point the connector's api_base at `url`."""

    def __init__(self, provider: FakeProvider, token: str, *, channels: set[str] | None = None,
                 member_of: set[str] | None = None, client_id: str = "", client_secret: str = "") -> None:
        self.provider = provider
        self.token = token
        self.client = (client_id, client_secret)
        self.codes: dict[str, str] = {}  # unused authorization code -> its redirect_uri
        self.channels = channels if channels is not None else {"C2147483705", "D0PNCRP9N"}
        self.member_of = member_of if member_of is not None else set(self.channels)
        self.failures: deque[Reply] = deque()
        self.posted: list[dict[str, Any]] = []  # the bot messages chat.postMessage created
        self._ts = itertools.count(1793535000)
        provider.route("POST", r"/api/(?P<method>[\w.]+)")(self._handle)

    @property
    def url(self) -> str:
        return self.provider.url

    def fail_next(self, *replies: Reply) -> None:
        self.failures.extend(replies)

    def authorize(self, redirect_uri: str) -> str:
        """The code Slack appends to redirect_uri once an admin approves the app's install."""
        code = f"{len(self.codes) + 1}.{hashlib.sha256(redirect_uri.encode()).hexdigest()[:12]}"
        self.codes[code] = redirect_uri
        return code

    def calls(self, method: str = "chat.postMessage") -> list[Recorded]:
        return self.provider.calls(rf"/api/{re.escape(method)}")

    def echo_event(self, message: dict[str, Any], event_id: str = "Ev0ECHO0001") -> dict[str, Any]:
        """The event_callback Slack delivers for a message the bot itself posted."""
        event = {**message, "channel_type": "channel", "event_ts": message["ts"]}
        return {"token": "XXYYZZverificationTOKEN", "team_id": TEAM, "api_app_id": APP, "event": event,
                "type": "event_callback", "event_id": event_id, "event_time": int(float(message["ts"]))}

    # --- Protocol ------------------------------------------------------------------------------
    def _handle(self, request: Recorded) -> Reply:
        assert request.match is not None
        if request.match["method"] == "oauth.v2.access":
            return self._oauth_access(request)
        auth = request.headers.get("authorization", "")
        if not auth:
            return slack_error("not_authed")
        if not hmac.compare_digest(auth, f"Bearer {self.token}"):
            return slack_error("invalid_auth")
        if self.failures:
            return self.failures.popleft()
        if request.match["method"] == "auth.test":
            return Reply(200, {"ok": True, "url": "https://acme-community.slack.com/", "team": TEAM_NAME,
                               "user": BOT_NAME, "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID,
                               "is_enterprise_install": False})
        if request.match["method"] != "chat.postMessage":
            return slack_error("unknown_method", 404)
        content_type = request.headers.get("content-type", "")
        try:
            params = json.loads(request.body) if content_type.startswith("application/json") else request.form()
        except ValueError:
            return slack_error("invalid_json")
        if not isinstance(params, dict):
            return slack_error("invalid_arguments")
        reply = self._post_message(params)
        if content_type.startswith("application/json") and "charset" not in content_type:
            assert isinstance(reply.body, dict)
            reply.body.update(warning="missing_charset", response_metadata={"warnings": ["missing_charset"]})
        return reply

    def _oauth_access(self, request: Recorded) -> Reply:
        form = request.form()
        client = (form.get("client_id", ""), form.get("client_secret", ""))
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme == "Basic":
            client = tuple(base64.b64decode(encoded).decode().split(":", 1))  # type: ignore[assignment]
        if not client[0] or client[0] != self.client[0]:
            return slack_error("invalid_client_id")
        if client[1] != self.client[1]:
            return slack_error("bad_client_secret")
        code = form.get("code", "")
        if code not in self.codes:
            return slack_error("invalid_code")
        if form.get("redirect_uri", self.codes[code]) != self.codes.pop(code):
            return slack_error("bad_redirect_uri")
        return Reply(200, {"ok": True, "access_token": self.token, "token_type": "bot", "scope": SCOPES,
                           "bot_user_id": BOT_USER, "app_id": APP, "team": {"name": TEAM_NAME, "id": TEAM},
                           "enterprise": None, "is_enterprise_install": False, "authed_user": {"id": "U061F7AUR"}})

    def _post_message(self, params: dict[str, Any]) -> Reply:
        channel, text, thread_ts = params.get("channel"), params.get("text"), params.get("thread_ts")
        if not isinstance(channel, str) or channel not in self.channels:
            return slack_error("channel_not_found")
        if channel not in self.member_of:
            return slack_error("not_in_channel")
        if not isinstance(text, str) or not text.strip():
            return slack_error("no_text")
        if len(text) > 40_000:
            return slack_error("msg_too_long")
        if thread_ts is not None and not (isinstance(thread_ts, str) and TS_RE.fullmatch(thread_ts)):
            return slack_error("invalid_thread_ts")
        ts = f"{next(self._ts)}.000100"
        message: dict[str, Any] = {"bot_id": BOT_ID, "type": "message", "text": text, "user": BOT_USER, "ts": ts,
                                   "app_id": APP, "team": TEAM, "channel": channel}
        if thread_ts:
            message.update(thread_ts=thread_ts, parent_user_id="U061F7AUR")
        self.posted.append(message)
        public = {key: value for key, value in message.items() if key != "channel"}
        return Reply(200, {"ok": True, "channel": channel, "ts": ts, "message": public})
