"""Mastodon (and compatible servers): mentions and hashtag timelines, polled with since_id or read
from the streaming API; replies posted as statuses.

Setup: on the brand's account, Preferences › Development › New application with the scopes
`read:notifications`, `read:statuses` and `write:statuses`; its access token is `access_token`.
Or connect with OAuth (`oauth`, with PKCE): register an application with the scopes `read write`
and the connect page's redirect URI, enter its `client_id` and `client_secret`, and the token
answer's access_token is saved. "Test connection" calls /api/v1/accounts/verify_credentials.
Config: `instance_url` (https://mastodon.social), `hashtags` to follow, reply `visibility`.

- a message is its status id on our instance, so a status seen as a mention *and* in a hashtag
  timeline (or again in the stream) is stored once. A reply's parent is its `in_reply_to_id`.
- polling keeps one cursor per source ("mentions", "tag:<name>"). The API answers newest first,
  so a backlog larger than a page is walked down with max_id (the Link header's rel="next")
  above the old since_id; since_id moves to the newest id only once the walk is stored, so a
  failed page resumes where it stopped and leaves no gap. The first poll takes the newest page
  and does not backfill history.
- replies: POST /api/v1/statuses in reply to the answered status, starting with "@<acct> " (a
  direct status reaches only the accounts it mentions), with the visibility of the customer's
  status and never wider: direct stays direct, private stays private, the rest is `visibility`
  (unlisted unless configured). A content warning is carried over. The reply's idempotency key
  is sent as Idempotency-Key, so a repeated send posts once.
- backfill walks each source down from the newest page with max_id until a page reaches items
  created before `since`; its state keeps each source's next max_id, or that it is done.
- every answer's X-RateLimit-Limit/Remaining/Reset (an ISO 8601 time) is noted as the headroom.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from django.conf import settings
from django.utils import timezone

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
)
from listening.connectors.payload import from_iso, optional, require
from listening.exceptions import (
    ConfigInvalid,
    PayloadInvalid,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from listening.htmltext import html_to_text
from listening.sanitize import clean_text

VISIBILITIES = ("direct", "private", "unlisted", "public")  # narrowest first
# Mastodon ids are digit strings; Pleroma and Akkoma use fixed-length base62 "flake" ids. Both
# sort by (length, text), which is how ids are compared here.
ID_RE = re.compile(r"[0-9A-Za-z]{1,40}")
TAG_RE = re.compile(r"[^\W]{1,100}")  # letters, digits and underscores, in any script
ACCT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}(@[A-Za-z0-9.-]{1,253})?")
MENTION_ROOM = 32  # Mastodon counts "@user@domain " as "@user ": at most 30 characters and a space
MAX_HASHTAGS = 10


class MastodonConnector(BaseConnector):
    kind = "mastodon"
    label = "Mastodon account"
    channel = "mastodon"
    description = "Mentions and hashtags on a Mastodon server, polled or streamed; replies as posts."
    icon = icons.LETTER_M
    colour = "#563acc"
    channels = (Channel("mastodon", "Mastodon"),)
    polls = True
    idempotent_sends = True  # Mastodon drops a repeated POST /api/v1/statuses with the same Idempotency-Key
    config_defaults = {"instance_url": "", "hashtags": [], "mentions": True, "visibility": "unlisted",
                       "max_chars": 500, "page_size": 40}
    credential_fields = ("access_token", "client_id", "client_secret")
    config_help = {
        "instance_url": "The server the brand's account lives on, with no path, like https://mastodon.social.",
        "hashtags": "Hashtags to follow on that server's public timeline (up to 10, without the #).",
        "mentions": "Whether to read the account's mentions (its notifications of type mention).",
        "visibility": "The widest visibility of a reply (direct, private, unlisted or public); a reply is never "
                      "more visible than the status it answers.",
        "max_chars": "The server's character limit per status (500 on mastodon.social; see its About page).",
        "page_size": "Statuses fetched per call, 1 to 40.",
    }
    credential_help = {
        "access_token": "Preferences › Development › your application › Your access token (scopes "
                        "read:notifications, read:statuses, write:statuses); filled in by Connect with Mastodon.",
        "client_id": "Preferences › Development › your application › Client key (only for Connect with Mastodon).",
        "client_secret": "Preferences › Development › your application › Client secret (only for Connect with "
                         "Mastodon).",
    }
    required_credentials = ("access_token",)
    oauth = OAuthSpec(authorize_url="{instance_url}/oauth/authorize", token_url="{instance_url}/oauth/token",
                      scopes=("read", "write"), client_auth="body", pkce=True)
    supports_backfill = True

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        config = super().validate_config(config)
        url = config["instance_url"]
        # http only where private URLs are allowed (tests, a local trial): tokens never go out in clear.
        schemes = "https?" if settings.ALLOW_PRIVATE_URLS else "https"
        if not isinstance(url, str) or not re.fullmatch(rf"{schemes}://[^/\s?#@]+/?", url):
            raise ConfigInvalid("instance_url must be an https URL with no path, like https://mastodon.social")
        tags = config["hashtags"]
        if not isinstance(tags, list) or len(tags) > MAX_HASHTAGS or not all(
                isinstance(tag, str) and TAG_RE.fullmatch(tag.removeprefix("#")) for tag in tags):
            raise ConfigInvalid(f"hashtags must be a list of up to {MAX_HASHTAGS} hashtags (letters, digits, _)")
        config["hashtags"] = list(dict.fromkeys(tag.removeprefix("#").lower() for tag in tags))
        if not isinstance(config["mentions"], bool):
            raise ConfigInvalid("mentions must be true or false")
        if config["visibility"] not in VISIBILITIES:
            raise ConfigInvalid(f"visibility must be one of {', '.join(VISIBILITIES)}")
        for key, low, high in (("max_chars", MENTION_ROOM + 1, 100_000), ("page_size", 1, 40)):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigInvalid(f"{key} must be an integer from {low} to {high}")
        return config

    # --- Polling -------------------------------------------------------------------------------
    def poll(self, cursor: dict[str, Any]) -> PollResult:
        """One page from every source; the page and all the new cursors are stored together."""
        config = self.validate_config(dict(self.row.config or {}))
        found: dict[str, InboundMessage] = {}
        new_cursor, more = dict(cursor), False
        for source, path, params in self.sources(config):
            state = cursor.get(source) if isinstance(cursor.get(source), dict) else {}
            items, state, has_more = self._page(path, params, state, config["page_size"])
            for message in self._parse_page(source, path, items):
                found.setdefault(message.external_id, message)  # a mention also in a hashtag: once
            new_cursor[source] = state
            more = more or has_more
        return PollResult(list(found.values()), new_cursor, more=more)

    @staticmethod
    def sources(config: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(cursor key, API path, fixed parameters) of each thing the connector listens to."""
        found = [("mentions", "/api/v1/notifications", {"types[]": "mention"})] if config["mentions"] else []
        return found + [(f"tag:{tag}", f"/api/v1/timelines/tag/{quote(tag, safe='')}", {})
                        for tag in config["hashtags"]]

    def _page(self, path: str, params: dict[str, Any], state: dict[str, Any],
              limit: int) -> tuple[list[Any], dict[str, Any], bool]:
        since, walk_max = _cursor_id(state, "since"), _cursor_id(state, "max")
        query = {**params, "limit": limit}
        if since:
            query["since_id"] = since
        if walk_max:
            query["max_id"] = walk_max
        response = self._request("GET", path, params=query)
        items = _json_list(response, path)
        ids = [_id(item, "id", f"{path}[{index}]") for index, item in enumerate(items)]
        top = max([state.get("top") or "", *ids], key=_order) or since
        if since and len(items) >= limit:  # a backlog: walk down below the oldest id of this page
            below = _link_max_id(response) or min(ids, key=_order)
            return items, {"since": since, "max": below, "top": top}, True
        return items, ({"since": top} if top else {}), False

    # --- Backfill ------------------------------------------------------------------------------
    def backfill(self, since: datetime, state: dict[str, Any]) -> PollResult:
        """One page further back from each source not yet walked down to `since`. State:
        {"<source>": {"max": "<id>"}} while walking, {"<source>": {"done": true}} once there."""
        config = self.validate_config(dict(self.row.config or {}))
        found: dict[str, InboundMessage] = {}
        new_state: dict[str, Any] = {}
        for source, path, params in self.sources(config):
            walked = state.get(source) if isinstance(state.get(source), dict) else {}
            if walked.get("done") is True:
                new_state[source] = {"done": True}
                continue
            messages, new_state[source] = self._backfill_page(source, path, params, walked, since,
                                                              config["page_size"])
            for message in messages:
                found.setdefault(message.external_id, message)
        more = any(not walked.get("done") for walked in new_state.values())
        return PollResult(list(found.values()), new_state, more=more)

    def _backfill_page(self, source: str, path: str, params: dict[str, Any], walked: dict[str, Any],
                       since: datetime, limit: int) -> tuple[list[InboundMessage], dict[str, Any]]:
        query = {**params, "limit": limit}
        if _cursor_id(walked, "max"):
            query["max_id"] = walked["max"]
        response = self._request("GET", path, params=query)
        items = _json_list(response, path)
        ids = [_id(item, "id", f"{path}[{index}]") for index, item in enumerate(items)]
        stamps = [_created_at(item, f"{path}[{index}]") for index, item in enumerate(items)]
        recent = [item for item, stamp in zip(items, stamps, strict=True) if stamp >= since]
        messages = [m for m in self._parse_page(source, path, recent) if m.sent_at >= since]
        # Newest first: one item older than `since` means everything below it is older too.
        if not items or min(stamps) < since:
            return messages, {"done": True}
        return messages, {"max": _link_max_id(response) or min(ids, key=_order)}

    def _parse_page(self, source: str, path: str, items: list[Any]) -> list[InboundMessage]:
        messages = []
        try:
            for index, item in enumerate(items):
                where = f"{path}[{index}]"
                if source == "mentions":
                    if require(item, "type", str, where) != "mention" or item.get("status") is None:
                        continue  # an older server ignoring types[]; a deleted status
                    status, where = require(item, "status", dict, where), f"{where}.status"
                else:
                    status = item
                message = status_message(status, where, raw=item)
                if message:
                    messages.append(message)
        except PayloadInvalid as exc:  # the server's fault: retried with backoff, nothing stored
            raise ProviderUnavailable(f"Mastodon {path} sent a malformed page: {exc}") from None
        return messages

    # --- Setup ---------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """verify_credentials: which account the token signs in as, and what is listened to."""
        config = self.validate_config(dict(self.row.config or {}))
        path = "/api/v1/accounts/verify_credentials"
        account = _json_dict(self._request("GET", path), path)
        acct = account.get("acct")
        if not isinstance(acct, str) or not ACCT_RE.fullmatch(acct):
            raise ProviderUnavailable(f"Mastodon {path} answered without the account's acct")
        listening = (["mentions"] if config["mentions"] else []) + [f"#{tag}" for tag in config["hashtags"]]
        where = urlsplit(str(config["instance_url"])).netloc
        return f"Signed in as @{acct} on {where}; listening to {', '.join(listening) or 'nothing'}."

    def oauth_credentials(self, token: dict[str, Any]) -> dict[str, Any]:
        """Mastodon's token answer: {"access_token", "token_type": "Bearer", "scope", "created_at"};
        its tokens do not expire, so there is no refresh_token."""
        access = token.get("access_token") if isinstance(token, dict) else None
        if not isinstance(access, str) or not access:
            said = (token.get("error_description") or token.get("error")) if isinstance(token, dict) else None
            reason = clean_text(said, 200) or "no reason given"
            raise ProviderAuthError(f"Mastodon's token answer has no access_token: {reason}")
        return {"access_token": access}

    # --- Replies -------------------------------------------------------------------------------
    def reply_rules(self, channel: str) -> ReplyRules:
        # Instances set their own limit (500 on mastodon.social); room is kept for the @mention.
        return ReplyRules(max_chars=int(self.config.get("max_chars") or 500) - MENTION_ROOM, media=True)

    def send(self, reply: OutboundReply) -> str:
        """Post a status in reply to the answered one (else the thread's root); return its id."""
        target = reply.in_reply_to or reply.thread_id
        if not ID_RE.fullmatch(target):
            raise ProviderRejected(f"no Mastodon status to answer in {target[:60]!r}")
        answered = _json_dict(self._request("GET", f"/api/v1/statuses/{target}"), "/api/v1/statuses/:id")
        try:
            acct = require(require(answered, "account", dict), "acct", str, "account")
            theirs = optional(answered, "visibility", str, "public")
            spoiler = optional(answered, "spoiler_text", str, "")
        except PayloadInvalid as exc:
            raise ProviderUnavailable(f"Mastodon sent a malformed status {target}: {exc}") from None
        if not ACCT_RE.fullmatch(acct):
            raise ProviderRejected(f"the answered status's author {acct[:80]!r} is not a Mastodon account")
        mention = f"@{acct}"
        text = reply.text if reply.text.startswith(f"{mention} ") else f"{mention} {reply.text}"
        body = {"status": text, "in_reply_to_id": target,
                "visibility": narrowest(theirs, str(self.config["visibility"]))}
        if spoiler:
            body["spoiler_text"] = spoiler
        headers = {"Idempotency-Key": reply.idempotency_key} if reply.idempotency_key else {}
        response = self._request("POST", "/api/v1/statuses", json=body, headers=headers)
        sent = http.json_or_none(response)
        sent_id = sent.get("id") if isinstance(sent, dict) else None
        if not isinstance(sent_id, str) or not ID_RE.fullmatch(sent_id):
            # Not retryable: the status is most likely posted, and must never go twice.
            raise ProviderRejected("POST /api/v1/statuses answered without the posted status's id")
        return sent_id

    # --- HTTP ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = self.credentials.get("access_token")
        if not token:
            raise ProviderAuthError("this connector has no access_token configured")
        url = f"{str(self.config['instance_url']).rstrip('/')}{path}"
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        response = http.request(method, url, headers=headers, error_mapper=self._api_error, **kwargs)
        self._note_headroom(response)
        return response

    def _api_error(self, response: httpx.Response, safe_url: str) -> ProviderError:
        self._note_headroom(response)  # a 429 says when the window resets
        return api_error(response, safe_url)

    def _note_headroom(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is None:
            return
        try:
            resets_at = from_iso(response.headers.get("x-ratelimit-reset", ""), "X-RateLimit-Reset")
        except PayloadInvalid:
            resets_at = None
        self.note_rate_limit(remaining, response.headers.get("x-ratelimit-limit"), resets_at)

    def stream_url(self, stream: str) -> str:
        """The server-sent events URL of `stream`: "user" (notifications) or "hashtag:<tag>"."""
        base = f"{str(self.config['instance_url']).rstrip('/')}/api/v1/streaming"
        if stream == "user":
            return f"{base}/user/notification"
        tag = stream.removeprefix("hashtag:").removeprefix("#").lower()
        if not stream.startswith("hashtag:") or not TAG_RE.fullmatch(tag):
            raise ConfigInvalid('stream must be "user" or "hashtag:<tag>"')
        return f"{base}/hashtag?tag={quote(tag, safe='')}"

    def stream(self, stream: str, *, timeout: float = 90.0) -> Iterator[InboundMessage]:
        """Messages from the streaming API as they come, until the server closes the stream.
        Mastodon sends a heartbeat comment every few seconds, so a silent `timeout` is an outage."""
        token = self.credentials.get("access_token")
        if not token:
            raise ProviderAuthError("this connector has no access_token configured")
        url = self.stream_url(stream)
        http.guard_url(url)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", "User-Agent": http.USER_AGENT}
        safe_url = http.redact_url(url)
        try:
            # Through the guarded client: the stream connects to the address its URL was checked at.
            with http.client(timeout=httpx.Timeout(10.0, read=timeout)) as client, \
                    client.stream("GET", url, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise api_error(response, safe_url)
                yield from read_events(response.iter_lines())
        except httpx.TimeoutException:
            raise ProviderUnavailable(f"{safe_url} went silent for {timeout:.0f}s") from None
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"stream {safe_url} broke: {type(exc).__name__}") from None


def narrowest(theirs: str, ours: str) -> str:
    """A reply is never more visible than what it answers (an unknown visibility counts as direct)."""
    rank = {name: index for index, name in enumerate(VISIBILITIES)}
    return VISIBILITIES[min(rank.get(theirs, 0), rank.get(ours, 0))]


def read_events(lines: Iterable[str]) -> Iterator[InboundMessage]:
    """Server-sent events (event:/data: lines, a blank line ends an event, ":" lines are
    heartbeats) to messages: `update` carries a Status, `notification` a Notification whose
    mentions count. Deletions, edits and other events are skipped; a malformed event raises
    ProviderUnavailable, as a malformed poll page does."""
    event, data = "", []
    for line in lines:
        if line.startswith(":"):
            continue  # ":thump", Mastodon's heartbeat
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            continue
        if event in ("update", "notification") and data:
            message = _event_message(event, "\n".join(data))
            if message:
                yield message
        event, data = "", []


def _event_message(event: str, data: str) -> InboundMessage | None:
    try:
        payload = json.loads(data)
        if event == "notification":
            if require(payload, "type", str, "notification") != "mention" or payload.get("status") is None:
                return None
            return status_message(require(payload, "status", dict, "notification"), "notification.status", raw=payload)
        return status_message(payload, "update", raw=payload)
    except (ValueError, RecursionError, PayloadInvalid) as exc:
        raise ProviderUnavailable(f"Mastodon stream sent a malformed {event} event: {str(exc)[:200]}") from None


def status_message(status: Any, where: str, *, raw: Any) -> InboundMessage | None:
    """A Status as a message; None for a boost (the original is what a person wrote) or no words."""
    if not isinstance(status, dict):
        raise PayloadInvalid(f"{where} must be an object")
    status_id = _id(status, "id", where)
    if status.get("reblog") is not None:
        return None
    # Checked before the words, so a malformed status is reported rather than silently skipped.
    author = _author(require(status, "account", dict, where), f"{where}.account")
    sent_at = from_iso(require(status, "created_at", str, where), f"{where}.created_at")
    text = html_to_text(optional(status, "content", str, "", where))
    spoiler = optional(status, "spoiler_text", str, "", where).strip()
    if spoiler:
        text = f"CW: {spoiler}\n\n{text}"
    media = optional(status, "media_attachments", list, [], where)
    labels = [f"[{clean_text(m.get('type') or 'media', 20)}]" if isinstance(m, dict) else "[media]" for m in media]
    text = " ".join(part for part in (text, *labels) if part)
    if not text.strip():
        return None
    parent = optional(status, "in_reply_to_id", str, "", where)
    if parent and not ID_RE.fullmatch(parent):
        raise PayloadInvalid(f"field {where}.in_reply_to_id is not a status id")
    url = optional(status, "url", str, "", where) or optional(status, "uri", str, "", where)
    return InboundMessage(
        external_id=status_id, text=clean_text(text), author=author, sent_at=sent_at,
        channel=MastodonConnector.channel, parent_external_id=parent,
        url=url if url.startswith(("https://", "http://")) else "", raw=raw,
    )


def _author(account: dict[str, Any], where: str) -> InboundAuthor:
    acct = optional(account, "acct", str, "", where)
    url = optional(account, "url", str, "", where)
    followers = account.get("followers_count")
    return InboundAuthor(
        external_id=_id(account, "id", where), handle=clean_text(acct, 200),
        display_name=clean_text(optional(account, "display_name", str, "", where), 200),
        profile_url=url if url.startswith(("https://", "http://")) else "",
        followers=followers if isinstance(followers, int) and not isinstance(followers, bool) and followers >= 0
        else None,
    )


def api_error(response: httpx.Response, safe_url: str) -> ProviderError:
    """Map {"error": "..."} answers: 429 waits for Retry-After or X-RateLimit-Reset, 401/403 is
    the token, 5xx and timeouts are retried, other 4xx (404, 422 validation) are permanent."""
    body = http.json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, str):
        failure = http.status_error(response, safe_url)
        if response.status_code != 429:
            return failure
        error = "rate limited"
    status = response.status_code
    path = urlsplit(safe_url).path
    reason = f"Mastodon {path} failed ({status}): {clean_text(error, 200)}"
    if status == 429:
        wait = http.retry_after_seconds(response.headers.get("retry-after"))
        if wait is None:
            reset = response.headers.get("x-ratelimit-reset", "")
            try:
                wait = max(0.0, (from_iso(reset, "X-RateLimit-Reset") - timezone.now()).total_seconds())
            except PayloadInvalid:
                wait = None
        return ProviderRateLimited(reason, retry_after=wait, status=status)
    if status in (401, 403):
        return ProviderAuthError(reason, status=status)
    if status >= 500:
        return ProviderUnavailable(reason, status=status)
    return ProviderRejected(reason, status=status)


def _json_list(response: httpx.Response, path: str) -> list[Any]:
    body = http.json_or_none(response)
    if not isinstance(body, list):
        kind = "no JSON" if body is None else f"a JSON {type(body).__name__}"
        raise ProviderUnavailable(f"Mastodon {path} answered {response.status_code} with {kind}, not a list")
    return body


def _json_dict(response: httpx.Response, path: str) -> dict[str, Any]:
    body = http.json_or_none(response)
    if not isinstance(body, dict):
        raise ProviderUnavailable(f"Mastodon {path} answered {response.status_code} without a JSON object")
    return body


def _id(obj: Any, key: str, where: str) -> str:
    try:
        value = require(obj, key, str, where)
    except PayloadInvalid as exc:
        raise ProviderUnavailable(f"Mastodon sent a malformed item: {exc}") from None
    if not ID_RE.fullmatch(value):
        raise ProviderUnavailable(f"Mastodon sent a malformed item: field {where}.{key} is not an id")
    return value


def _created_at(item: Any, where: str) -> datetime:
    """When a notification or status was created (paging order follows it)."""
    try:
        return from_iso(require(item, "created_at", str, where), f"{where}.created_at")
    except PayloadInvalid as exc:
        raise ProviderUnavailable(f"Mastodon sent a malformed item: {exc}") from None


def _order(value: str) -> tuple[int, str]:
    return len(value), value


def _cursor_id(state: dict[str, Any], key: str) -> str:
    value = state.get(key)
    return value if isinstance(value, str) and ID_RE.fullmatch(value) else ""


def _link_max_id(response: httpx.Response) -> str:
    """max_id of the Link header's rel="next" page, as Mastodon pages back through results."""
    target = response.links.get("next", {}).get("url", "")
    found = parse_qs(urlsplit(target).query).get("max_id", [""])[0]
    return found if ID_RE.fullmatch(found) else ""
