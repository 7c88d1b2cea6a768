"""X (Twitter) API v2: mentions and recent-search queries polled with since_id, Account Activity
webhooks for mentions and direct messages, replies as posts in the thread or as DMs.

Setup, in the X developer portal (an App inside a Project):
- Keys and tokens: the app's Bearer Token (app-only; reads mentions and search) is `bearer_token`;
  the API Key Secret (the consumer secret; X signs webhooks with it) is `consumer_secret`.
- User authentication settings: OAuth 2.0, type "Web App", callback = CXM's connect URL; its
  OAuth 2.0 Client ID and Client Secret are `client_id` and `client_secret`. Connecting the account
  (authorization code + PKCE, scopes in `oauth`) saves the user-context `access_token` and
  `refresh_token` that post replies and DMs.
- Config: `user_id` (the brand account's numeric id), `mentions`, recent-search `queries` (up to
  10, like "acme -is:retweet"), `mode` ("polling", "webhook" for the Account Activity API only, or
  "both"), `page_size` (10 to 100).

Polling: GET /2/users/<user_id>/mentions and GET /2/tweets/search/recent?query=..., with the
app's bearer token, one cursor per source ("mentions", "search:<digest of the query>"). X answers
newest first: a backlog larger than a page is walked down with meta.next_token above the old
since_id, and since_id moves to the newest id only once the walk is stored, so a failed page
resumes where it stopped. While a walk is under way only the walking sources are called (X's
limits are tight). The first poll takes the newest page only. Recent search reaches back 7 days:
a search cursor older than that restarts from the newest page.

Webhooks (Account Activity API, mode "webhook" or "both"): X checks the URL with a GET carrying
crc_token, answered with {"response_token": "sha256=" + base64(HMAC-SHA256(consumer_secret,
crc_token))}; every POST carries x-twitter-webhooks-signature: "sha256=" + base64(HMAC-SHA256(
consumer_secret, raw body)), compared in constant time. X sends no timestamp to sign, so a
replayed delivery is stopped by dedupe on the message id, not by its age. The crc_token must be
a token (letters, digits, ._~+/=:-), never JSON: otherwise the CRC answer would sign any body an
attacker chose. tweet_create_events (v1.1 posts: mentions and replies) and direct_message_events
(message_create) of `for_user_id` are stored; everything else is accepted and skipped.

Conventions:
- a post is its id, so a post found by mentions and by a search, or again by webhook, is stored
  once; its thread is conversation_id (the root post), its parent the `replied_to` reference.
  Reposts and posts by user_id itself are skipped.
- a DM is "dm:<event id>" on channel "x_dm", in one conversation "dm:<other participant's id>".
- replies: POST /2/tweets {"text", "reply": {"in_reply_to_tweet_id"}} or POST
  /2/dm_conversations/with/<participant>/messages {"text"}, with the user-context token. When X
  answers 401 the token is refreshed once (grant refresh_token, HTTP basic auth with the app's
  client id and secret) and the call repeated; X voids a used refresh token, so the new pair is
  saved at once (listening.credentials.renew_credentials). X has no idempotency key for posts:
  a repeat of the same text is refused as duplicate content (403), so a post never goes twice.
- every answer's x-rate-limit-* headers are noted; 429 waits until x-rate-limit-reset (or the
  24-hour posting limit's reset).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.utils import timezone

from listening import http
from listening.connectors import icons
from listening.connectors.base import (
    BaseConnector,
    Channel,
    InboundMessage,
    OAuthSpec,
    OutboundReply,
    PollResult,
    ReplyRules,
    WebhookRequest,
    require_signature,
)
from listening.connectors.payload import optional
from listening.connectors.x_payloads import (
    CHANNEL,
    DM_CHANNEL,
    ID_RE,
    activity_messages,
    post_message,
    snowflake_time,
    users_by_id,
    weighted_length,
    x_id,
)
from listening.exceptions import (
    ConfigInvalid,
    NotSupported,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.sanitize import clean_text

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
CRC_RE = re.compile(r"[A-Za-z0-9._~+/=:-]{1,512}")
MODES = ("polling", "webhook", "both")
SCOPES = ("tweet.read", "tweet.write", "users.read", "dm.read", "dm.write", "offline.access")
FIELDS = {"tweet.fields": "created_at,conversation_id,author_id,in_reply_to_user_id,referenced_tweets,lang,note_tweet",
          "expansions": "author_id", "user.fields": "username,name,public_metrics"}
SEARCH_WINDOW = timedelta(days=7)
WINDOW_MARGIN = timedelta(minutes=1)  # start_time must be inside the window when X reads it
MAX_QUERIES, MAX_QUERY_CHARS = 10, 512
POST_MAX_WEIGHT, DM_MAX_CHARS = 280, 10_000
LIMIT_HEADERS = ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour")


class XAuthError(ProviderAuthError):
    """An admin must act (no user token, or X refused the refresh token): not retried."""

    retryable = False


class XUnauthorized(ProviderAuthError):
    """X answered 401: the token expired or was revoked (a refresh may cure it)."""


@dataclass(frozen=True)
class Source:
    key: str  # its place in the cursor
    path: str
    params: dict[str, str]
    token_param: str  # mentions page with pagination_token, search with next_token
    recent_only: bool = False  # recent search: the last 7 days only


class XConnector(BaseConnector):
    kind = "x"
    label = "X account"
    channel = CHANNEL
    description = "Mentions, searches and direct messages on X; replies as posts or DMs."
    icon = icons.CROSS
    colour = "#111111"
    channels = (Channel(CHANNEL, "X"), Channel(DM_CHANNEL, "X direct message", icons.MAIL))
    receives_webhooks = True
    polls = True
    supports_backfill = True
    config_defaults = {"api_base": "https://api.x.com", "user_id": "", "mentions": True, "queries": [],
                       "mode": "polling", "page_size": 100}
    credential_fields = ("bearer_token", "consumer_secret", "client_id", "client_secret", "access_token",
                         "refresh_token")
    required_credentials = ("bearer_token", "client_id", "client_secret")
    oauth = OAuthSpec(authorize_url="https://x.com/i/oauth2/authorize", token_url="{api_base}/2/oauth2/token",
                      scopes=SCOPES, pkce=True, client_auth="basic")
    config_help = {
        "user_id": "The brand account's numeric id (not its @handle), e.g. 2244994945.",
        "mentions": "Poll the account's mentions timeline.",
        "queries": f"Up to {MAX_QUERIES} recent-search queries in X's syntax, e.g. \"acme -is:retweet\" "
                   "(the last 7 days only; your API tier limits operators and length).",
        "mode": "polling: read mentions and searches every poll interval; webhook: receive the Account "
                "Activity API (mentions and DMs, Pro or Enterprise tier) at this connector's webhook URL; "
                "both: do both (a message found twice is stored once).",
        "page_size": "Posts per request, 10 to 100.",
        "api_base": "X's API root; change it only for a proxy or a test server.",
    }
    credential_help = {
        "bearer_token": "The app's Bearer Token (Keys and tokens): reads mentions and searches.",
        "consumer_secret": "The app's API Key Secret: checks the Account Activity webhook's signatures.",
        "client_id": "OAuth 2.0 Client ID (User authentication settings, type Web App).",
        "client_secret": "OAuth 2.0 Client Secret: renews the account's access token.",
        "access_token": "Saved by Connect (OAuth 2.0 user context): posts replies and DMs.",
        "refresh_token": "Saved by Connect; X replaces it at each renewal and CXM saves the new one.",
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        # http only where private URLs are allowed (tests, a local trial): tokens never go out in clear.
        schemes = "https?" if settings.ALLOW_PRIVATE_URLS else "https"
        if not isinstance(config["api_base"], str) or not re.fullmatch(rf"{schemes}://[^/\s?#@]+/?",
                                                                       config["api_base"]):
            raise ConfigInvalid("api_base must be an https URL with no path, like https://api.x.com")
        if not isinstance(config["user_id"], str) or not ID_RE.fullmatch(config["user_id"]):
            raise ConfigInvalid("user_id must be the account's numeric X id, like 2244994945")
        queries = config["queries"]
        if not isinstance(queries, list) or len(queries) > MAX_QUERIES or not all(
                isinstance(q, str) and 0 < len(q.strip()) <= MAX_QUERY_CHARS and q.isprintable() for q in queries):
            raise ConfigInvalid(f"queries must be a list of up to {MAX_QUERIES} searches of 1 to "
                                f"{MAX_QUERY_CHARS} printable characters")
        config["queries"] = list(dict.fromkeys(q.strip() for q in queries))
        if not isinstance(config["mentions"], bool):
            raise ConfigInvalid("mentions must be true or false")
        if config["mode"] not in MODES:
            raise ConfigInvalid(f"mode must be one of {', '.join(MODES)}")
        size = config["page_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 10 <= size <= 100:
            raise ConfigInvalid("page_size must be an integer from 10 to 100")
        if config["mode"] != "webhook" and not config["mentions"] and not config["queries"]:
            raise ConfigInvalid("nothing to poll: turn mentions on, add a query, or use mode webhook")
        return config

    @classmethod
    def wants_polling(cls, config: dict[str, Any]) -> bool:
        return (config or {}).get("mode", cls.config_defaults["mode"]) in ("polling", "both")

    # --- Webhooks ------------------------------------------------------------------------------
    def handshake(self, request: WebhookRequest) -> tuple[int, str, str] | None:
        """X's challenge-response check (CRC): a GET with crc_token, answered with its HMAC."""
        if request.method != "GET" or "crc_token" not in request.query:
            return None
        secret = self.secret("consumer_secret")  # none configured: 403, fail closed
        token = request.query["crc_token"]
        if not CRC_RE.fullmatch(token):
            raise PayloadInvalid("crc_token must be 1 to 512 letters, digits or ._~+/=:-")
        return 200, "application/json", json.dumps({"response_token": crc_response_token(secret, token)})

    def verify(self, request: WebhookRequest) -> None:
        secret = self.secret("consumer_secret")  # none configured: 403, fail closed
        require_signature(request.header(SIGNATURE_HEADER), "sha256=" + hmac_sha256_base64(secret, request.body))

    def parse_webhook(self, request: WebhookRequest) -> list[InboundMessage]:
        return activity_messages(request.json(), str(self.config.get("user_id") or ""))

    # --- Polling -------------------------------------------------------------------------------
    @staticmethod
    def sources(config: dict[str, Any]) -> list[Source]:
        found = [Source("mentions", f"/2/users/{config['user_id']}/mentions", {}, "pagination_token")] \
            if config["mentions"] else []
        return found + [Source(f"search:{hashlib.sha256(q.encode()).hexdigest()[:16]}", "/2/tweets/search/recent",
                               {"query": q}, "next_token", recent_only=True) for q in config["queries"]]

    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """One page from every source (only the walking ones while a walk is under way); the page
        and all the new cursors are stored together."""
        config = self.validate_config(dict(self.row.config or {}))
        sources = self.sources(config)
        walking = {s.key for s in sources if _state(cursor.get(s.key)).get("next")}
        found: dict[str, InboundMessage] = {}
        new_cursor = {s.key: cursor[s.key] for s in sources if s.key in cursor}  # a removed query's goes
        more = False
        for source in sources:
            if walking and source.key not in walking:
                continue
            messages, new_cursor[source.key], has_more = self._page(source, _state(cursor.get(source.key)), config)
            for message in messages:
                found.setdefault(message.external_id, message)  # a mention a search also found: once
            more = more or has_more
        return PollResult(list(found.values()), new_cursor, more=more)

    def _page(self, source: Source, state: dict[str, Any],
              config: dict[str, Any]) -> tuple[list[InboundMessage], dict[str, Any], bool]:
        since, next_token = state.get("since", ""), state.get("next", "")
        if since and source.recent_only and snowflake_time(since) < timezone.now() - SEARCH_WINDOW + WINDOW_MARGIN:
            since, next_token = "", ""  # out of search's reach: start again from the newest page
        query = {**source.params, **FIELDS, "max_results": config["page_size"]}
        if since:
            query["since_id"] = since
        if next_token:
            query[source.token_param] = next_token
        messages, meta = self._timeline(source.path, query, config["user_id"])
        newest = optional(meta, "newest_id", str, "", "meta")
        top = max([state.get("top", "") if next_token else "", newest if ID_RE.fullmatch(newest) else ""],
                  key=_order) or since
        following = optional(meta, "next_token", str, "", "meta")
        if since and following:  # a backlog: walk down to since_id before moving it
            return messages, {"since": since, "next": following, "top": top}, True
        return messages, ({"since": top} if top else {}), False

    def _timeline(self, path: str, query: dict[str, Any], own_id: str) -> tuple[list[InboundMessage], dict]:
        body = self._app_get(path, query)
        try:
            users = users_by_id(body.get("includes"), "includes")
            posts = optional(body, "data", list, [], "")
            messages = [m for i, post in enumerate(posts) if (m := post_message(post, users, own_id, f"data[{i}]"))]
            meta = dict(optional(body, "meta", dict, {}, ""))
            if posts and not ID_RE.fullmatch(str(meta.get("newest_id") or "")):
                meta["newest_id"] = max((x_id(post, "id", f"data[{i}]") for i, post in enumerate(posts)), key=_order)
            return messages, meta
        except PayloadInvalid as exc:  # X's fault: retried with backoff, nothing stored
            raise ProviderUnavailable(f"X {path} sent a malformed page: {exc}") from None

    # --- Backfill ------------------------------------------------------------------------------
    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """One page of a source from `since` (start_time), walking next_token, then the next
        source. Recent search reaches back 7 days only: an older start is refused."""
        config = self.validate_config(dict(self.row.config or {}))
        sources, now = self.sources(config), timezone.now()
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        if since < now - SEARCH_WINDOW and any(s.recent_only for s in sources):
            raise NotSupported("X's recent search reaches back only 7 days: choose a start within the last "
                               "7 days (or remove the queries to backfill mentions alone)")
        index = state.get("source", 0) if isinstance(state.get("source"), int) else 0
        if index >= len(sources):
            return PollResult([], {"source": index}, more=False)
        source = sources[index]
        start = max(since, now - SEARCH_WINDOW + WINDOW_MARGIN) if source.recent_only else since
        query = {**source.params, **FIELDS, "max_results": config["page_size"], "start_time": _rfc3339(start)}
        if _state(state).get("next"):
            query[source.token_param] = _state(state)["next"]
        messages, meta = self._timeline(source.path, query, config["user_id"])
        following = optional(meta, "next_token", str, "", "meta")
        new_state = {"source": index, "next": following} if following else {"source": index + 1}
        return PollResult(messages, new_state, more=new_state["source"] < len(sources))

    # --- Setup ---------------------------------------------------------------------------------
    def oauth_credentials(self, token: dict[str, Any]) -> dict[str, Any]:
        """X answers {"token_type": "bearer", "expires_in": 7200, "access_token", "scope",
        "refresh_token"} (a refresh token only with offline.access): the tokens, and the granted
        scope, which check_connection reads to warn of a missing write scope."""
        saved = super().oauth_credentials(token)
        if isinstance(token.get("scope"), str):
            saved["scope"] = clean_text(token["scope"], 500)
        return saved

    def check_connection(self) -> str:
        """Who the user token signs in as (it must be user_id), and that the bearer token reads."""
        config = self.validate_config(dict(self.row.config or {}))
        if config["mode"] != "polling":
            self.secret("consumer_secret")
        parts = []
        if self.credentials.get("access_token") or self.credentials.get("refresh_token"):
            me = self._user_data("GET", "/2/users/me", params={"user.fields": FIELDS["user.fields"]})
            handle, their_id = _handle(me), x_id(me, "id", "data")
            if their_id != config["user_id"]:
                raise ConfigInvalid(f"the connected account @{handle} has id {their_id}, not user_id "
                                    f"{config['user_id']}: connect the brand account or fix user_id")
            granted = str(self.credentials.get("scope") or " ".join(SCOPES)).split()
            missing = [scope for scope in ("tweet.write", "dm.write") if scope not in granted]
            parts.append(f"Signed in as @{handle}" + (f" without {' and '.join(missing)}: connect again to reply"
                                                      if missing else ""))
        if self.wants_polling(config) or not parts:
            user = _data(self._app_get(f"/2/users/{config['user_id']}", {"user.fields": FIELDS["user.fields"]}),
                         "/2/users/:id")
            parts.append(f"reading @{_handle(user)} with the app's bearer token")
        text = ", ".join(parts)
        return text[0].upper() + text[1:] + "."

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        if channel == DM_CHANNEL:
            return ReplyRules(max_chars=DM_MAX_CHARS)
        # 280 as X weighs it: a link counts 23, CJK and emoji 2 (send() checks the weighted length).
        return ReplyRules(max_chars=POST_MAX_WEIGHT)

    def send(self, reply: OutboundReply) -> str:
        """Post in the thread (answering the message replied to, else the thread's root), or send
        a DM to the conversation's participant; return the new post id or "dm:<event id>"."""
        if reply.channel == DM_CHANNEL:
            return self._send_dm(reply)
        target = reply.in_reply_to or reply.thread_id
        if not ID_RE.fullmatch(target):
            raise ProviderRejected(f"no X post to answer in {target[:60]!r}")
        if weighted_length(reply.text) > POST_MAX_WEIGHT:
            raise ProviderRejected(f"the reply weighs {weighted_length(reply.text)} of X's {POST_MAX_WEIGHT} "
                                   "(a link counts 23, CJK characters and emoji 2)")
        sent = self._user_data("POST", "/2/tweets", json={"text": reply.text,
                                                          "reply": {"in_reply_to_tweet_id": target}})
        sent_id = sent.get("id")
        if not isinstance(sent_id, str) or not ID_RE.fullmatch(sent_id):
            # Not retryable: the post is most likely up, and it must never go twice.
            raise ProviderRejected("POST /2/tweets answered without the new post's id")
        return sent_id

    def _send_dm(self, reply: OutboundReply) -> str:
        participant = reply.thread_id.removeprefix("dm:") if reply.thread_id.startswith("dm:") else reply.recipient_id
        if not ID_RE.fullmatch(participant):
            raise ProviderRejected(f"no X account to message in {reply.thread_id[:60]!r}")
        sent = self._user_data("POST", f"/2/dm_conversations/with/{participant}/messages", json={"text": reply.text})
        event_id = sent.get("dm_event_id")
        if not isinstance(event_id, str) or not ID_RE.fullmatch(event_id):
            raise ProviderRejected("the DM was accepted without its dm_event_id; it may have been sent")
        return f"dm:{event_id}"

    # --- HTTP ----------------------------------------------------------------------------------
    def _app_get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """A read with the app-only bearer token."""
        token = self.credentials.get("bearer_token")
        if not token:
            raise XAuthError("this connector has no bearer_token configured")
        return _json_object(self._call("GET", path, str(token), params=params), path)

    def _user_data(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call in the account's name; a 401 refreshes the token once and repeats the call."""
        token = str(self.credentials.get("access_token") or "")
        if not token:
            token = self._refresh(stale="")
        try:
            response = self._call(method, path, token, **kwargs)
        except XUnauthorized:
            response = self._call(method, path, self._refresh(stale=token), **kwargs)
        return _data(_json_object(response, path), path)

    def _call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        url = f"{str(self.config['api_base']).rstrip('/')}{path}"
        response = http.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                error_mapper=self._failed, **kwargs)
        self._note(response)
        return response

    def _failed(self, response: httpx.Response, safe_url: str) -> ProviderError:
        self._note(response)
        return api_error(response, safe_url)

    def _note(self, response: httpx.Response) -> None:
        headers = response.headers
        if "x-rate-limit-remaining" in headers:
            self.note_rate_limit(headers["x-rate-limit-remaining"], headers.get("x-rate-limit-limit"),
                                 _epoch(headers.get("x-rate-limit-reset")))

    def _refresh(self, stale: str) -> str:
        """New user tokens from the refresh token, saved at once (X voids the used one)."""
        updated = self.row.renew_credentials("access_token", stale, self._fetch_tokens)
        self._credentials = updated
        return str(updated.get("access_token") or "")

    def _fetch_tokens(self, saved: dict[str, Any]) -> dict[str, Any]:
        refresh, client_id = saved.get("refresh_token"), saved.get("client_id")
        if not refresh or not client_id:
            raise XAuthError("no access_token X accepts, and no refresh_token and client_id to renew it: "
                             "connect the account again")
        url = f"{str(self.config['api_base']).rstrip('/')}/2/oauth2/token"
        secret = str(saved.get("client_secret") or "")
        response = http.request(
            "POST", url, data={"grant_type": "refresh_token", "refresh_token": str(refresh), "client_id": client_id},
            auth=(str(client_id), secret) if secret else None, error_mapper=_token_error)
        body = http.json_or_none(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise XAuthError("X's token endpoint answered without an access_token: connect the account again")
        return self.oauth_credentials(body)


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    """The answer to X's challenge-response check."""
    return "sha256=" + hmac_sha256_base64(consumer_secret, crc_token.encode())


def hmac_sha256_base64(secret: str, payload: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), payload, hashlib.sha256).digest()).decode()


# --- Errors ----------------------------------------------------------------------------------------
def api_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Map X's problem answers ({"title", "detail", "type", "status"} or {"errors": [...]}): 429
    waits for the limit's reset, 401 is the token (refreshed once by the caller), 403 (duplicate
    content, not permitted) and other 4xx are permanent with X's words, 5xx are retried."""
    status = response.status_code
    detail = _detail(http.json_or_none(response))
    path = urlsplit(safe_url).path
    reason = f"X {path} failed ({status}): {detail}" if detail else f"X {path} answered {status}"
    if status == 429:
        return ProviderRateLimited(reason, retry_after=_reset_wait(response.headers), status=status)
    if status == 401:
        return XUnauthorized(reason, status=status)
    if status >= 500:
        return ProviderUnavailable(reason, retry_after=http.retry_after_seconds(response.headers.get("retry-after")),
                                   status=status)
    return ProviderRejected(reason, status=status)


def _token_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """The token endpoint's {"error", "error_description"}: a refused grant needs an admin."""
    if response.status_code in (400, 401, 403):
        return XAuthError(f"X refused to renew the account's token ({response.status_code}: "
                          f"{_detail(http.json_or_none(response))}); connect the account again",
                          status=response.status_code)
    return api_error(response, safe_url)


def _detail(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    # An invalid request's own message names the parameter; its top-level detail does not.
    for value in (first.get("message"), body.get("detail"), first.get("detail"), body.get("error_description"),
                  body.get("title"), body.get("error")):
        if isinstance(value, str) and value.strip():
            return clean_text(value, 300)
    return ""


def _reset_wait(headers: httpx.Headers) -> float | None:
    """Seconds until the exhausted limit resets: the 15-minute window, or a 24-hour posting cap."""
    waits = []
    for prefix in LIMIT_HEADERS:
        reset = _epoch(headers.get(f"{prefix}-reset"))
        if reset and headers.get(f"{prefix}-remaining", "0").strip() == "0":
            waits.append((reset - timezone.now()).total_seconds())
    if waits:
        return max(0.0, *waits)
    return http.retry_after_seconds(headers.get("retry-after"))


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value).strip()), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _json_object(response: httpx.Response, path: str) -> dict[str, Any]:
    body = http.json_or_none(response)
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"X {path} answered {response.status_code} without a JSON object")
    return body


def _data(body: dict[str, Any], path: str) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise ProviderRejected(f"X {path} answered without its data object: {_detail(body)}")
    return data


def _handle(user: dict[str, Any]) -> str:
    username = user.get("username")
    return clean_text(username, 15) if isinstance(username, str) else "?"


def _state(value: Any) -> dict[str, Any]:
    """A source's cursor, keeping only well-formed values (the cursor is stored, not trusted)."""
    if not isinstance(value, dict):
        return {}
    state = {key: value[key] for key in ("since", "top") if isinstance(value.get(key), str) and ID_RE.fullmatch(
        value[key])}
    if isinstance(value.get("next"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,200}", value["next"]):
        state["next"] = value["next"]
    return state


def _order(value: str) -> tuple[int, str]:
    return len(value), value


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
